//! Sentry's way of making names unique: `slugify` and `unique_db_instance`
//! (`src/sentry/db/models/utils.py`), split into the queries a plugin asks in
//! `prepare` and the choice it makes in `resolve`.
//!
//! Sentry checks each candidate against the database as it goes. A plugin
//! cannot, so [`UniqueNames::bases`] lists every prefix a candidate can start
//! with, the plugin asks the host which values are `taken` under each, and
//! [`UniqueNames::pick`] checks candidates against those answers and against
//! the names this import already gave out (two records of one batch may want
//! the same name, and neither is in the database yet).

use relocate_plugin_sdk::{HashSet, Session};

/// Sentry's suffix alphabet, as it is: `9` is missing and `0` appears twice.
pub const SUFFIX_ALPHABET: &str = "abcdefghijklmnopqrstuvwxyz0123456790";

/// Sentry's tries: `(attempts, suffix length)`, shortest first.
const SIZES: [(usize, usize); 4] = [(1, 2), (5, 3), (20, 5), (1, 12)];

/// The names one import has given out for one column, and how long they may be.
#[derive(Debug)]
pub struct UniqueNames {
    max_length: usize,
    /// Lower-cased: collisions are checked ignoring case, as Sentry's `iexact`.
    given: HashSet<String>,
}

impl UniqueNames {
    /// Names of at most `max_length` characters (128 for usernames, 30 for
    /// organization slugs), for `session` (call it in `Model::new`).
    pub fn new(session: &Session, max_length: usize) -> Self {
        Self { max_length, given: HashSet::with_hasher(session.hasher()) }
    }

    /// The bases to ask `taken` about so that [`UniqueNames::pick`] can check
    /// every candidate: `base` itself, and each truncation a suffix forces.
    pub fn bases(&self, base: &str) -> Vec<String> {
        let base = base.trim();
        let mut out = vec![base.to_string()];
        for (_, size) in SIZES {
            let prefix = truncate(base, self.max_length.saturating_sub(size + 1));
            if !out.iter().any(|b| b == prefix) {
                out.push(prefix.to_string());
            }
        }
        out
    }

    /// Picks a free name for `base`, as Sentry's `unique_db_instance` does.
    ///
    /// `base` (stripped) is kept if no taken value or given name equals it
    /// ignoring case and it is not all digits. Otherwise it becomes
    /// `<base truncated>-<suffix>`: 1 try of 2 random characters, 5 of 3, 20
    /// of 5, then 1 of 12. `None` when all fail, where Sentry hits an
    /// IntegrityError. The name picked counts as given from then on.
    pub fn pick<'a>(
        &mut self,
        session: &Session,
        base: &str,
        taken: impl IntoIterator<Item = &'a str>,
    ) -> Option<String> {
        let mut lowered = HashSet::with_hasher(session.hasher());
        lowered.extend(taken.into_iter().map(str::to_lowercase));
        let mut base = base.trim().to_string();
        if base.is_empty() {
            base = session.uuid4_hex().chars().take(12).collect();
        }
        let free = |v: &str| {
            let v = v.to_lowercase();
            !lowered.contains(&v) && !self.given.contains(&v)
        };
        if free(&base) && !is_decimal(&base) {
            self.give(&base);
            return Some(base);
        }
        for (attempts, size) in SIZES {
            let prefix = truncate(&base, self.max_length.saturating_sub(size + 1));
            for _ in 0..attempts {
                let candidate = format!("{prefix}-{}", session.random_string(SUFFIX_ALPHABET, size));
                if free(&candidate) {
                    self.give(&candidate);
                    return Some(candidate);
                }
            }
        }
        None
    }

    /// Records a name given out without [`UniqueNames::pick`] (kept as exported).
    pub fn give(&mut self, name: &str) {
        self.given.insert(name.to_lowercase());
    }

    /// Whether this import already gave out `name`, ignoring case.
    pub fn is_given(&self, name: &str) -> bool {
        self.given.contains(&name.to_lowercase())
    }
}

/// Python's `str.isdecimal()` for the names at hand: non-empty, all digits.
fn is_decimal(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_digit())
}

/// The first `n` characters (not bytes), like a Python slice.
fn truncate(s: &str, n: usize) -> &str {
    // No more bytes than `n`: no more characters either.
    if s.len() <= n {
        return s;
    }
    s.char_indices().nth(n).map_or(s, |(end, _)| &s[..end])
}

/// Django's `slugify`: ASCII letters, digits, `_` and `-`; whitespace and runs
/// of `-` become one `-`; lower case; `-` and `_` stripped from both ends.
///
/// Django first folds accents away (NFKD, then drops non-ASCII). Carrying
/// Unicode tables into every guest is not worth it, so only Latin-1 letters are
/// folded here; other non-ASCII characters are dropped, as Django drops those
/// without an ASCII decomposition.
pub fn slugify(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut dash = false;
    for c in value.chars().map(fold_latin1) {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() || c == '_' {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(c);
        } else if c == '-' || c.is_whitespace() {
            dash = true;
        }
    }
    // A leading run was never written; only `_` can remain at the ends.
    out.trim_matches(|c| c == '-' || c == '_').to_string()
}

/// The base letter of a Latin-1 accented letter; anything else unchanged.
fn fold_latin1(c: char) -> char {
    match c {
        'À'..='Å' => 'A',
        'Ç' => 'C',
        'È'..='Ë' => 'E',
        'Ì'..='Ï' => 'I',
        'Ñ' => 'N',
        'Ò'..='Ö' => 'O',
        'Ù'..='Ü' => 'U',
        'Ý' => 'Y',
        'à'..='å' => 'a',
        'ç' => 'c',
        'è'..='ë' => 'e',
        'ì'..='ï' => 'i',
        'ñ' => 'n',
        'ò'..='ö' => 'o',
        'ù'..='ü' => 'u',
        'ý' | 'ÿ' => 'y',
        c => c,
    }
}

#[cfg(test)]
mod tests {
    use relocate_plugin_sdk::testing::TestHost;
    use relocate_plugin_sdk::{ImportFlags, Scope};

    use super::*;

    fn session() -> Session {
        Session::new("sentry.organization", Scope::Organization, ImportFlags::default(), "2024-01-01T00:00:00.000Z")
    }

    #[test]
    fn slugify_follows_django() {
        assert_eq!(slugify("Hello World"), "hello-world");
        assert_eq!(slugify("  --a  b--  "), "a-b");
        assert_eq!(slugify("Crème brûlée!"), "creme-brulee");
        assert_eq!(slugify("__x__"), "x");
        assert_eq!(slugify("a_b"), "a_b");
        assert_eq!(slugify("日本"), "");
    }

    #[test]
    fn free_names_are_kept_and_taken_ones_get_a_suffix() {
        let _host = TestHost::new(3);
        let mut names = UniqueNames::new(&session(), 30);
        assert_eq!(names.pick(&session(), " testing ", ["other"]).as_deref(), Some("testing"));
        let second = names.pick(&session(), "testing", []).expect("a name");
        assert!(second.starts_with("testing-") && second.len() == "testing-".len() + 2, "{second}");
        let third = names.pick(&session(), "TESTING", [second.as_str()]).expect("a name");
        assert_ne!(third.to_lowercase(), second);
    }

    #[test]
    fn decimal_names_always_get_a_suffix() {
        let _host = TestHost::new(3);
        let mut names = UniqueNames::new(&session(), 30);
        assert!(names.pick(&session(), "1234", []).is_some_and(|n| n.starts_with("1234-")));
    }

    #[test]
    fn long_names_are_truncated_before_the_suffix() {
        let _host = TestHost::new(3);
        let mut names = UniqueNames::new(&session(), 30);
        let base = "a".repeat(30);
        assert_eq!(
            names.bases(&base),
            vec![base.clone(), "a".repeat(27), "a".repeat(26), "a".repeat(24), "a".repeat(17)]
        );
        let picked = names.pick(&session(), &base, [base.as_str()]).expect("a name");
        assert_eq!(picked.len(), 30);
        assert!(picked.starts_with(&"a".repeat(27)));
    }

    #[test]
    fn names_given_earlier_count_as_taken() {
        let _host = TestHost::new(3);
        let mut names = UniqueNames::new(&session(), 128);
        names.give("Owner");
        assert!(names.is_given("OWNER"));
        assert!(names.pick(&session(), "owner", []).is_some_and(|n| n.starts_with("owner-")));
    }

    #[test]
    fn suffixes_repeat_for_a_seed() {
        let pick = |seed| {
            let _host = TestHost::new(seed);
            UniqueNames::new(&session(), 30).pick(&session(), "x", ["x"])
        };
        assert_eq!(pick(9), pick(9));
    }
}

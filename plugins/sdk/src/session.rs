//! The context of one model's import: scope, flags, clock, and the host's
//! facilities (seeded randomness, the pk map, logging).

use crate::collections::Hasher;
use crate::host;
use crate::model::Scope;
use crate::record::ImportKind;

/// The import's flags (Sentry's `ImportFlags`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportFlags {
    /// On a username collision, reuse the existing user instead of renaming.
    pub merge_users: bool,
    /// Overwrite colliding config rows instead of keeping them.
    pub overwrite_configs: bool,
    /// Import organizations as pending approval.
    pub hide_organizations: bool,
}

/// The severity of a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// How the import mapped an old pk of some model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub new_pk: i64,
    pub kind: ImportKind,
    /// The slug the row ended up with, for models that have one.
    pub slug: Option<String>,
}

/// The context a model's import runs in.
///
/// One per model per import. Its randomness comes from the host, seeded per
/// import, model and record (the runtime names the record before
/// `prepare` and `resolve` see it), so that a seeded import makes the same
/// suffixes and tokens every time, resumed or not: never use another source.
#[derive(Clone, Debug, PartialEq)]
pub struct Session {
    model: String,
    scope: Scope,
    flags: ImportFlags,
    started_at: String,
    /// Rows derived while resolving the current record.
    derived: std::cell::RefCell<Vec<crate::Derived>>,
    /// Drawn on the first [`Session::hasher`].
    hasher: std::cell::Cell<Option<Hasher>>,
}

impl Session {
    /// A session for `model`; the runtime builds it from the host's config.
    pub fn new(model: &str, scope: Scope, flags: ImportFlags, started_at: &str) -> Self {
        Self {
            model: model.to_string(),
            scope,
            flags,
            started_at: started_at.to_string(),
            derived: Default::default(),
            hasher: Default::default(),
        }
    }

    /// What this session's [`HashSet`](crate::HashSet)s and
    /// [`HashMap`](crate::HashMap)s hash with:
    /// `HashSet::with_hasher(session.hasher())`.
    ///
    /// Its key is drawn from the host's generator on the first call; make
    /// that call in [`Model::new`](crate::Model::new), where it draws from the
    /// session's own stream and leaves the records' draws as they were.
    pub fn hasher(&self) -> Hasher {
        if let Some(hasher) = self.hasher.get() {
            return hasher;
        }
        let hasher = Hasher::with_key(host::hash_key());
        self.hasher.set(Some(hasher));
        hasher
    }

    /// Writes `row` along with the record being resolved (only from
    /// `resolve`, and only for a record that is inserted, reused or
    /// overwritten; the rows of a skipped record are dropped).
    pub fn derive(&self, row: crate::Derived) {
        self.derived.borrow_mut().push(row);
    }

    /// The rows derived since the last call.
    pub(crate) fn take_derived(&self) -> Vec<crate::Derived> {
        std::mem::take(&mut *self.derived.borrow_mut())
    }

    /// The normalized name of the model being imported.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The import's scope (`users`, `organizations`, `config` or `global`).
    pub fn scope(&self) -> Scope {
        self.scope
    }

    pub fn flags(&self) -> ImportFlags {
        self.flags
    }

    /// When the import started, ISO 8601 UTC: the only clock a plugin has.
    pub fn started_at(&self) -> &str {
        &self.started_at
    }

    /// `len` bytes from the import's seeded generator for the record being
    /// prepared or resolved (for the session, in [`crate::Model::new`]).
    pub fn random_bytes(&self, len: u32) -> Vec<u8> {
        host::random_bytes(len)
    }

    /// `len` characters drawn uniformly from `alphabet`, as Django's
    /// `get_random_string` does.
    ///
    /// A character listed twice is twice as likely, as in Python. Bytes that
    /// would bias the draw are thrown away.
    pub fn random_string(&self, alphabet: &str, len: usize) -> String {
        // Indexing bytes spares a `Vec<char>` per call for the usual ASCII alphabet.
        let ascii = alphabet.is_ascii();
        let chars: Vec<char> = if ascii { Vec::new() } else { alphabet.chars().collect() };
        let n = if ascii { alphabet.len() } else { chars.len() };
        if n == 0 || n > 256 {
            return String::new();
        }
        let pick = |i: usize| if ascii { char::from(alphabet.as_bytes()[i]) } else { chars[i] };
        // The largest multiple of n that fits a byte: bytes at or above it are biased.
        let limit = 256 - 256 % n;
        let mut out = String::with_capacity(len);
        let mut picked = 0;
        while picked < len {
            let want = (len - picked).saturating_mul(2).min(1024);
            let bytes = self.random_bytes(u32::try_from(want).unwrap_or(1024));
            if bytes.is_empty() {
                // A host that gives nothing would loop forever.
                break;
            }
            for b in bytes {
                if picked == len {
                    break;
                }
                if usize::from(b) < limit {
                    out.push(pick(usize::from(b) % n));
                    picked += 1;
                }
            }
        }
        out
    }

    /// A random version-4 UUID as 32 lower-case hex digits (`uuid4().hex`).
    pub fn uuid4_hex(&self) -> String {
        let mut bytes = self.random_bytes(16);
        bytes.resize(16, 0);
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        let mut out = String::with_capacity(32);
        for b in bytes {
            out.push(hex_digit(b >> 4));
            out.push(hex_digit(b & 0x0f));
        }
        out
    }

    /// How this import mapped `old_pk` of `model`, if it has been imported.
    ///
    /// Models before this one are complete. Of this session's own model,
    /// `resolve` sees every batch before the current one, but `prepare` not
    /// the one just before it: the host prepares a batch while it writes the
    /// previous one.
    pub fn mapping_of(&self, model: &str, old_pk: i64) -> Option<Mapping> {
        host::mapping_of(model, old_pk)
    }

    /// Logs a line under the plugin's and model's name.
    pub fn log(&self, level: Level, message: &str) {
        host::log(level, message);
    }

    pub fn debug(&self, message: &str) {
        self.log(Level::Debug, message);
    }

    pub fn info(&self, message: &str) {
        self.log(Level::Info, message);
    }

    pub fn warn(&self, message: &str) {
        self.log(Level::Warn, message);
    }
}

fn hex_digit(nibble: u8) -> char {
    char::from(if nibble < 10 { b'0' + nibble } else { b'a' + nibble - 10 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestHost;

    fn session() -> Session {
        Session::new("sentry.user", Scope::User, ImportFlags::default(), "2024-01-01T00:00:00.000Z")
    }

    #[test]
    fn random_strings_come_from_the_alphabet_and_the_seed() {
        let _host = TestHost::new(42);
        let a = session().random_string("abc", 50);
        assert_eq!(a.chars().count(), 50);
        assert!(a.chars().all(|c| "abc".contains(c)));
        let _host = TestHost::new(42);
        assert_eq!(session().random_string("abc", 50), a);
        let _host = TestHost::new(43);
        assert_ne!(session().random_string("abc", 50), a);
    }

    #[test]
    fn uuid4_hex_is_version_4() {
        let _host = TestHost::new(1);
        let u = session().uuid4_hex();
        assert_eq!(u.len(), 32);
        assert!(u.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(&u[12..13], "4");
        assert!("89ab".contains(&u[16..17]));
    }

    #[test]
    fn logs_are_captured() {
        let host = TestHost::new(1);
        session().warn("careful");
        assert_eq!(host.logs(), vec![(Level::Warn, "careful".to_string())]);
    }
}

//! `sentry.user`: sanitized for the import's scope, then inserted, merged into
//! an existing user, or renamed on a username collision (spec §5.2).

use relocate_plugin_sdk::{
    Answers, Ask, Decision, Derived, FieldError, Found, HashSet, Model, ModelDesc, Prepared, Query, Record, Result,
    Scope, Session,
};
use sentry_models::naming::UniqueNames;

/// `User.username` is a `CharField(max_length=128)`.
const MAX_USERNAME: usize = 128;

/// A user with exactly this username, already in the database.
const SAME_USERNAME: Ask<Found> = Ask::find("same username");
/// The `Email` row a new user's signals would add, if it exists already.
const EMAIL_ROW: Ask<Found> = Ask::find("email row");

/// Django's `RANDOM_STRING_CHARS`.
const PASSWORD_CHARS: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// Sentry's password-reset and email-validation hashes: 32 of these.
const HASH_CHARS: &str = PASSWORD_CHARS;

/// A user, as Sentry's `User.normalize_before_relocation_import` and
/// `write_relocation_import` treat it.
pub struct User {
    /// Usernames given out by this import, for suffixes ignoring case.
    names: UniqueNames,
    /// The same, exactly: what a later record of the same batch collides with.
    exact: HashSet<String>,
    /// Emails this import created an `Email` row for.
    emails: HashSet<String>,
}

impl Model for User {
    fn describe() -> ModelDesc {
        sentry_models::sentry::USER.desc()
    }

    fn new(session: &Session) -> Result<Self> {
        Ok(Self {
            names: UniqueNames::new(session, MAX_USERNAME),
            exact: HashSet::with_hasher(session.hasher()),
            emails: HashSet::with_hasher(session.hasher()),
        })
    }

    fn prepare(&mut self, session: &Session, record: &mut Record) -> Result<Prepared> {
        let mut username = record.text("username").unwrap_or_default().to_string();
        if username.is_empty() {
            // `User.save()` falls back to the email for an empty username.
            match record.text("email") {
                Some(email) if !email.is_empty() => username = email.to_string(),
                _ => {
                    return Ok(Prepared::invalid(FieldError::new(
                        "username",
                        "is missing or empty, and there is no email to use instead",
                    )));
                }
            }
            record.set("username", username.as_str())?;
        }
        if username.chars().count() > MAX_USERNAME {
            return Ok(Prepared::invalid(FieldError::new(
                "username",
                format!("has more than {MAX_USERNAME} characters"),
            )));
        }
        sanitize(session, record)?;

        let exact = Query::find_by(record.model(), "username", username.as_str());
        // Does the email a new user's signals would add already exist?
        let email = record.text("email").unwrap_or_default().to_string();
        let email = Query::find_by("sentry.email", "email", email.as_str());
        let taken = self.names.bases(&username).into_iter().map(|b| Query::taken(record.model(), "username", &b));
        Ok(Prepared::ready().ask(SAME_USERNAME, exact).ask(EMAIL_ROW, email).with_queries(taken))
    }

    fn resolve(&mut self, session: &Session, mut record: Record, answers: &Answers) -> Result<Decision> {
        let username = record.text("username").unwrap_or_default().to_string();
        // Sentry looks for an exact (case-sensitive) match only; a name equal
        // ignoring case is inserted as it is.
        let in_db = answers.get(SAME_USERNAME)?;
        let in_this_import = self.exact.contains(&username);
        if in_db.is_none() && !in_this_import {
            self.names.give(&username);
            self.exact.insert(username);
            self.signals(session, &record, answers.get(EMAIL_ROW)?.is_some())?;
            return Ok(Decision::insert(record));
        }
        if session.flags().merge_users {
            if let Some(pk) = in_db {
                return Ok(Decision::reuse(pk));
            }
            // The other user is in this batch and not written yet, so there is
            // no pk to reuse; renaming keeps both users.
            session.warn(&format!(
                "user #{} has the same username as a user earlier in this batch; \
                 it cannot be merged into a row not written yet, so it is renamed",
                record.ordinal()
            ));
        }
        let Some(name) = self.names.pick(session, &username, answers.all_taken()) else {
            return Ok(Decision::invalid(FieldError::new(
                "username",
                "is taken, and so is every suffixed variant tried",
            )));
        };
        self.exact.insert(name.clone());
        record.set("username", name)?;
        self.signals(session, &record, answers.get(EMAIL_ROW)?.is_some())?;
        Ok(Decision::insert(record))
    }
}

impl User {
    /// What Sentry's signals write for a new user: a password-reset hash
    /// outside the global scope (so an unclaimed user can set a password),
    /// the user's primary `UserEmail`, and the `Email` row behind it. An
    /// exported `UserEmail` for the same address later overwrites the
    /// primary one, as Sentry's `get_or_create` does.
    fn signals(&mut self, session: &Session, record: &Record, email_in_db: bool) -> Result<()> {
        use sentry_models::sentry::{EMAIL, LOSTPASSWORDHASH, USEREMAIL};
        if session.scope() != Scope::Global {
            session.derive(
                Derived::new(LOSTPASSWORDHASH.shared())
                    .set("hash", session.random_string(HASH_CHARS, 32))?
                    .set("date_added", session.started_at())?
                    .parent("user")?,
            );
        }
        let email = record.text("email").unwrap_or_default();
        if email.is_empty() {
            return Ok(());
        }
        session.derive(
            Derived::new(USEREMAIL.shared())
                .set("email", email)?
                .set("validation_hash", session.random_string(HASH_CHARS, 32))?
                .set("date_hash_added", session.started_at())?
                .set("is_verified", false)?
                .parent("user")?,
        );
        if !email_in_db && self.emails.insert(email.to_string()) {
            session.derive(Derived::new(EMAIL.shared()).set("email", email)?.set("date_added", session.started_at())?);
        }
        Ok(())
    }
}

/// Strips what a user must not bring into a scope below its own.
///
/// Outside the config and global scopes nobody arrives as staff. Outside the
/// global scope, and for users never claimed, the account is marked unclaimed
/// and its password made unusable, so that the owner has to claim it.
///
/// Sentry sets a random 32-character password and hashes it. An unusable one,
/// Django's `!` plus 40 random characters (what `make_password(None)` gives),
/// has the same effect, since no hash ever matches it, without the hashing
/// cost, which is most of the time Sentry spends per user.
fn sanitize(session: &Session, record: &mut Record) -> Result<()> {
    if !matches!(session.scope(), Scope::Config | Scope::Global) {
        for field in ["is_staff", "is_superuser", "is_managed"] {
            record.set(field, false)?;
        }
    }
    if session.scope() != Scope::Global || record.boolean("is_unclaimed") == Some(true) {
        record.set("is_unclaimed", true)?;
        record.set("password", format!("!{}", session.random_string(PASSWORD_CHARS, 40)))?;
        record.set("last_password_change", session.started_at())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use relocate_plugin_sdk::testing::{InputRecord, RecordBuilder, STARTED_AT, TestHost, record};
    use relocate_plugin_sdk::{ImportFlags, Level, Value};

    use super::*;

    const HASH: &str = "pbkdf2_sha256$150000$iEvdIknqYjTr$+QsGn0tfIJ1FZLxQI37mVU1gL2KbL/wqjMtG/dFhsMA=";

    fn user(pk: i64, username: &str) -> InputRecord {
        claimed(pk).set("username", username).set("email", username).build()
    }

    /// A claimed admin with every NOT NULL field but the names.
    fn claimed(pk: i64) -> RecordBuilder {
        record::<User>(pk)
            .set("password", HASH)
            .set("date_joined", "2023-06-22T22:59:55.488Z")
            .set("is_staff", true)
            .set("is_superuser", true)
            .set("is_managed", false)
            .set("is_active", true)
            .set("is_password_expired", false)
            .set("is_unclaimed", false)
    }

    fn field<'a>(decision: &'a Decision, name: &str) -> &'a Value {
        let desc = User::describe();
        let i = desc.column_index(name).expect("a user field");
        match decision {
            Decision::Insert { values, .. } | Decision::Overwrite { values, .. } => &values[i],
            other => panic!("expected a row, got {other:?}"),
        }
    }

    fn text<'a>(decision: &'a Decision, name: &str) -> &'a str {
        field(decision, name).as_text().expect("text")
    }

    fn flags(merge_users: bool) -> ImportFlags {
        ImportFlags { merge_users, ..ImportFlags::default() }
    }

    #[test]
    fn a_new_username_is_kept() {
        let host = TestHost::new(1);
        host.insert_row("sentry.user", 7, &[("username", "someone-else".into())]);
        let out = host.session::<User>(Scope::User, flags(false)).run(vec![user(1, "owner")]).unwrap();
        assert_eq!(text(&out[0], "username"), "owner");
    }

    #[test]
    fn a_colliding_username_gets_a_two_character_suffix() {
        let host = TestHost::new(1);
        host.insert_row("sentry.user", 7, &[("username", "owner".into())]);
        let out = host.session::<User>(Scope::User, flags(false)).run(vec![user(1, "owner")]).unwrap();
        let name = text(&out[0], "username");
        assert!(name.starts_with("owner-") && name.len() == "owner-xx".len(), "{name}");
        assert!(name["owner-".len()..].chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
    }

    #[test]
    fn a_suffix_avoids_names_already_taken_ignoring_case() {
        let rename = |also_taken: Option<&str>| {
            let host = TestHost::new(1);
            host.insert_row("sentry.user", 7, &[("username", "owner".into())]);
            if let Some(name) = also_taken {
                host.insert_row("sentry.user", 8, &[("username", name.into())]);
            }
            let out = host.session::<User>(Scope::User, flags(false)).run(vec![user(1, "owner")]).unwrap();
            text(&out[0], "username").to_string()
        };
        let first = rename(None);
        // Same seed, so the same first try, which is now taken (in upper case).
        let second = rename(Some(&first.to_uppercase()));
        assert!(second.starts_with("owner-") && !second.eq_ignore_ascii_case(&first), "{second} vs {first}");
        assert_eq!(second.len(), "owner-xxx".len());
    }

    #[test]
    fn merging_reuses_the_existing_user() {
        let host = TestHost::new(1);
        host.insert_row("sentry.user", 7, &[("username", "owner".into())]);
        let out = host.session::<User>(Scope::User, flags(true)).run(vec![user(1, "owner")]).unwrap();
        assert_eq!(out[0], Decision::Reuse(7));
        assert_eq!(host.mapping("sentry.user", 1).map(|m| m.new_pk), Some(7));
    }

    #[test]
    fn a_new_user_brings_sentrys_signal_rows() {
        let host = TestHost::new(1);
        host.session::<User>(Scope::User, flags(false)).run(vec![user(1, "a@example.com")]).unwrap();
        let derived = host.derived();
        let models: Vec<&str> = derived.iter().map(|d| d.model()).collect();
        assert_eq!(models, ["sentry.lostpasswordhash", "sentry.useremail", "sentry.email"]);
        assert!(derived[..2].iter().all(|d| d.parent_field() == Some("user")));
        assert_eq!(derived[1].get("email"), Some(&Value::Text("a@example.com".into())));
        assert_eq!(derived[2].parent_field(), None);
    }

    #[test]
    fn global_scope_writes_no_password_hash_and_an_existing_email_is_not_repeated() {
        let host = TestHost::new(1);
        host.insert_row("sentry.email", 3, &[("email", "a@example.com".into())]);
        host.session::<User>(Scope::Global, flags(false)).run(vec![user(1, "a@example.com")]).unwrap();
        let models: Vec<String> = host.derived().iter().map(|d| d.model().to_string()).collect();
        assert_eq!(models, ["sentry.useremail"]);
    }

    #[test]
    fn a_merged_user_brings_no_signal_rows() {
        let host = TestHost::new(1);
        host.insert_row("sentry.user", 7, &[("username", "owner".into())]);
        host.session::<User>(Scope::User, flags(true)).run(vec![user(1, "owner")]).unwrap();
        assert!(host.derived().is_empty());
    }

    #[test]
    fn only_an_exact_match_collides() {
        let host = TestHost::new(1);
        host.insert_row("sentry.user", 7, &[("username", "Owner".into())]);
        let out = host.session::<User>(Scope::User, flags(true)).run(vec![user(1, "owner")]).unwrap();
        assert_eq!(text(&out[0], "username"), "owner");
    }

    #[test]
    fn two_users_of_one_batch_with_the_same_name_are_told_apart() {
        // backup/duplicate-username-and-organization-slug.json
        let host = TestHost::new(1);
        let batch = vec![user(1, "testing@example.com"), user(2, "testing@example.com")];
        let out = host.session::<User>(Scope::User, flags(false)).run(batch).unwrap();
        assert_eq!(text(&out[0], "username"), "testing@example.com");
        assert!(text(&out[1], "username").starts_with("testing@example.com-"));
    }

    #[test]
    fn merging_within_one_batch_falls_back_to_renaming() {
        let host = TestHost::new(1);
        let batch = vec![user(1, "testing@example.com"), user(2, "testing@example.com")];
        let out = host.session::<User>(Scope::User, flags(true)).run(batch).unwrap();
        assert!(text(&out[1], "username").starts_with("testing@example.com-"));
        assert!(host.logs().iter().any(|(level, m)| *level == Level::Warn && m.contains("user #2")));
    }

    #[test]
    fn a_later_batch_merges_into_an_earlier_one() {
        let host = TestHost::new(1);
        let mut s = host.session::<User>(Scope::User, flags(true));
        let first = s.run(vec![user(1, "owner")]).unwrap();
        assert!(matches!(first[0], Decision::Insert { .. }));
        let pk = host.mapping("sentry.user", 1).expect("mapped").new_pk;
        assert_eq!(s.run(vec![user(2, "owner")]).unwrap()[0], Decision::Reuse(pk));
    }

    #[test]
    fn user_scope_strips_privileges_and_the_password() {
        let host = TestHost::new(1);
        let out = host.session::<User>(Scope::User, flags(false)).run(vec![user(1, "owner")]).unwrap();
        for f in ["is_staff", "is_superuser", "is_managed"] {
            assert_eq!(field(&out[0], f), &Value::Boolean(false), "{f}");
        }
        assert_eq!(field(&out[0], "is_unclaimed"), &Value::Boolean(true));
        let password = text(&out[0], "password");
        assert!(password.starts_with('!') && password.len() == 41, "{password}");
        assert_eq!(text(&out[0], "last_password_change"), STARTED_AT);
    }

    #[test]
    fn organization_scope_is_sanitized_like_user_scope() {
        let host = TestHost::new(1);
        let out = host.session::<User>(Scope::Organization, flags(false)).run(vec![user(1, "owner")]).unwrap();
        assert_eq!(field(&out[0], "is_superuser"), &Value::Boolean(false));
        assert_eq!(field(&out[0], "is_unclaimed"), &Value::Boolean(true));
    }

    #[test]
    fn config_scope_keeps_privileges_but_not_the_password() {
        let host = TestHost::new(1);
        let out = host.session::<User>(Scope::Config, flags(false)).run(vec![user(1, "owner")]).unwrap();
        assert_eq!(field(&out[0], "is_staff"), &Value::Boolean(true));
        assert_eq!(field(&out[0], "is_superuser"), &Value::Boolean(true));
        assert_eq!(field(&out[0], "is_unclaimed"), &Value::Boolean(true));
        assert_ne!(text(&out[0], "password"), HASH);
    }

    #[test]
    fn global_scope_keeps_a_claimed_user_as_is() {
        let host = TestHost::new(1);
        let out = host.session::<User>(Scope::Global, flags(false)).run(vec![user(1, "owner")]).unwrap();
        assert_eq!(field(&out[0], "is_staff"), &Value::Boolean(true));
        assert_eq!(field(&out[0], "is_unclaimed"), &Value::Boolean(false));
        assert_eq!(text(&out[0], "password"), HASH);
    }

    #[test]
    fn global_scope_still_resets_an_unclaimed_user() {
        let host = TestHost::new(1);
        let input = claimed(1).set("username", "app").set("is_unclaimed", true).build();
        let out = host.session::<User>(Scope::Global, flags(false)).run(vec![input]).unwrap();
        assert!(text(&out[0], "password").starts_with('!'));
    }

    #[test]
    fn a_missing_username_takes_the_email() {
        // backup/invalid-user.json has no username but an email.
        let host = TestHost::new(1);
        let input = claimed(1).set("email", "maximum@example.com").build();
        let out = host.session::<User>(Scope::Global, flags(false)).run(vec![input]).unwrap();
        assert_eq!(text(&out[0], "username"), "maximum@example.com");
    }

    #[test]
    fn no_username_and_no_email_is_invalid() {
        let host = TestHost::new(1);
        let input = claimed(1).set("email", "").build();
        let out = host.session::<User>(Scope::Global, flags(false)).run(vec![input]).unwrap();
        assert!(matches!(&out[0], Decision::Invalid(e) if e[0].field.as_deref() == Some("username")));
    }

    #[test]
    fn an_overlong_username_is_invalid() {
        let host = TestHost::new(1);
        let out = host.session::<User>(Scope::User, flags(false)).run(vec![user(1, &"u".repeat(129))]).unwrap();
        assert!(matches!(&out[0], Decision::Invalid(e) if e[0].message.contains("128")));
    }

    #[test]
    fn a_seed_fixes_suffixes_and_passwords() {
        let run = |seed| {
            let host = TestHost::new(seed);
            host.insert_row("sentry.user", 7, &[("username", "owner".into())]);
            let out = host.session::<User>(Scope::User, flags(false)).run(vec![user(1, "owner")]).unwrap();
            (text(&out[0], "username").to_string(), text(&out[0], "password").to_string())
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5).1, run(6).1);
    }

    #[test]
    fn a_long_colliding_username_is_cut_to_fit_the_suffix() {
        let long = "x".repeat(128);
        let host = TestHost::new(1);
        host.insert_row("sentry.user", 7, &[("username", long.as_str().into())]);
        let out = host.session::<User>(Scope::User, flags(false)).run(vec![user(1, &long)]).unwrap();
        let name = text(&out[0], "username");
        assert_eq!(name.len(), 128);
        assert!(name.starts_with(&"x".repeat(125)) && name.as_bytes()[125] == b'-');
    }
}

//! `sentry.email` and `sentry.useremail`: addresses, shared or per user
//! (spec §5.3).

use relocate_plugin_sdk::{Answers, Decision, HashSet, Model, ModelDesc, Prepared, Record, Result, Scope, Session};

use crate::skip_if_user_merged;

/// Letters and digits, for new validation hashes.
const HASH_CHARS: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// An address known to Sentry, shared by every user who has it: an existing
/// row is reused (`get_or_create`).
pub struct Email {
    /// Addresses this import inserted, lower-cased as Sentry's `CIEmailField`
    /// compares them.
    inserted: HashSet<String>,
}

impl Model for Email {
    fn describe() -> ModelDesc {
        sentry_models::sentry::EMAIL.desc()
    }

    fn new(session: &Session) -> Result<Self> {
        Ok(Self { inserted: HashSet::with_hasher(session.hasher()) })
    }

    fn prepare(&mut self, _: &Session, record: &mut Record) -> Result<Prepared> {
        Ok(Prepared::ready().with_query(record.find(&["email"])?))
    }

    fn resolve(&mut self, _: &Session, record: Record, answers: &Answers) -> Result<Decision> {
        if let Some(pk) = answers.found(0) {
            return Ok(Decision::reuse(pk));
        }
        let email = record.text("email").unwrap_or_default().to_lowercase();
        if !self.inserted.insert(email) {
            // Inserted earlier in this batch, so not in the database yet. No
            // foreign key points at an email, so leaving it out loses nothing.
            return Ok(Decision::skip("the same address was imported earlier in this batch"));
        }
        Ok(Decision::insert(record))
    }
}

/// One address of one user.
///
/// Dropped when its user was merged. Outside the global scope the address
/// must be verified again. A row for the same user and address (Sentry
/// creates the primary one when it creates the user) is overwritten.
pub struct UserEmail;

impl Model for UserEmail {
    fn describe() -> ModelDesc {
        sentry_models::sentry::USEREMAIL.desc()
    }

    fn new(_: &Session) -> Result<Self> {
        Ok(Self)
    }

    fn prepare(&mut self, session: &Session, record: &mut Record) -> Result<Prepared> {
        if let Some(skip) = skip_if_user_merged(record, "user") {
            return Ok(skip);
        }
        if session.scope() != Scope::Global {
            record.set("is_verified", false)?;
            record.set("validation_hash", session.random_string(HASH_CHARS, 32))?;
            record.set("date_hash_added", session.started_at())?;
        }
        Ok(Prepared::ready().with_query(record.find(&["user", "email"])?))
    }

    fn resolve(&mut self, _: &Session, record: Record, answers: &Answers) -> Result<Decision> {
        Ok(match answers.found(0) {
            Some(pk) => Decision::overwrite(pk, record),
            None => Decision::insert(record),
        })
    }
}

#[cfg(test)]
mod tests {
    use relocate_plugin_sdk::testing::{InputRecord, STARTED_AT, TestHost, record};
    use relocate_plugin_sdk::{ImportFlags, ImportKind, Value};

    use super::*;

    fn email(pk: i64, address: &str) -> InputRecord {
        record::<Email>(pk).set("email", address).set("date_added", "2023-06-22T22:59:55.531Z").build()
    }

    fn user_email(pk: i64, user_kind: ImportKind) -> InputRecord {
        record::<UserEmail>(pk)
            .fk("user", 1, 101, user_kind)
            .set("email", "admin@example.com")
            .set("validation_hash", "mCnWesSVvYQcq7qXQ36AZHwosAd6cghE")
            .set("date_hash_added", "2023-06-22T22:59:55.521Z")
            .set("is_verified", true)
            .build()
    }

    fn value<'a>(d: &'a Decision, name: &str) -> &'a Value {
        let i = UserEmail::describe().column_index(name).expect("a field");
        match d {
            Decision::Insert { values, .. } | Decision::Overwrite { values, .. } => &values[i],
            other => panic!("expected a row, got {other:?}"),
        }
    }

    #[test]
    fn an_existing_email_is_reused() {
        let host = TestHost::new(1);
        host.insert_row("sentry.email", 3, &[("email", "admin@example.com".into())]);
        let mut s = host.session::<Email>(Scope::User, ImportFlags::default());
        let out = s.run(vec![email(1, "admin@example.com"), email(2, "new@example.com")]).unwrap();
        assert_eq!(out[0], Decision::Reuse(3));
        assert!(matches!(out[1], Decision::Insert { .. }));
    }

    #[test]
    fn the_same_email_twice_in_a_batch_is_inserted_once() {
        let host = TestHost::new(1);
        let mut s = host.session::<Email>(Scope::User, ImportFlags::default());
        let out = s.run(vec![email(1, "a@example.com"), email(2, "A@example.com")]).unwrap();
        assert!(matches!(out[0], Decision::Insert { .. }));
        assert!(matches!(out[1], Decision::Skip(_)));
    }

    #[test]
    fn a_merged_users_email_is_skipped() {
        let host = TestHost::new(1);
        let mut s = host.session::<UserEmail>(Scope::User, ImportFlags { merge_users: true, ..Default::default() });
        let out = s.run(vec![user_email(1, ImportKind::Existing)]).unwrap();
        assert!(matches!(&out[0], Decision::Skip(reason) if reason.contains("merged")));
    }

    #[test]
    fn outside_global_scope_the_email_must_be_verified_again() {
        let host = TestHost::new(1);
        let mut s = host.session::<UserEmail>(Scope::User, ImportFlags::default());
        let out = s.run(vec![user_email(1, ImportKind::Inserted)]).unwrap();
        assert_eq!(value(&out[0], "is_verified"), &Value::Boolean(false));
        let hash = value(&out[0], "validation_hash").as_text().expect("text");
        assert!(hash.len() == 32 && hash.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(hash, "mCnWesSVvYQcq7qXQ36AZHwosAd6cghE");
        assert_eq!(value(&out[0], "date_hash_added").as_text(), Some(STARTED_AT));
    }

    #[test]
    fn global_scope_keeps_verification() {
        let host = TestHost::new(1);
        let mut s = host.session::<UserEmail>(Scope::Global, ImportFlags::default());
        let out = s.run(vec![user_email(1, ImportKind::Inserted)]).unwrap();
        assert_eq!(value(&out[0], "is_verified"), &Value::Boolean(true));
    }

    #[test]
    fn an_existing_row_for_the_user_and_address_is_overwritten() {
        let host = TestHost::new(1);
        host.insert_row("sentry.useremail", 9, &[("user", 101.into()), ("email", "admin@example.com".into())]);
        let mut s = host.session::<UserEmail>(Scope::Global, ImportFlags::default());
        let out = s.run(vec![user_email(1, ImportKind::Inserted)]).unwrap();
        assert!(matches!(out[0], Decision::Overwrite { pk: 9, .. }));
    }
}

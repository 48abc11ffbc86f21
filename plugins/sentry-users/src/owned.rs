//! What hangs off a user: authenticators, options, IP addresses and
//! permissions. Each is dropped when its user was merged into an existing one.

use relocate_plugin_sdk::{
    Answers, Decision, FieldError, HashSet, Model, ModelDesc, Prepared, Record, Result, Scope, Session, Value,
};

use crate::skip_if_user_merged;

/// A second factor (`sentry.authenticator`, global scope only).
pub struct Authenticator;

impl Model for Authenticator {
    fn describe() -> ModelDesc {
        sentry_models::sentry::AUTHENTICATOR.desc()
    }

    fn new(_: &Session) -> Result<Self> {
        Ok(Self)
    }

    fn prepare(&mut self, _: &Session, record: &mut Record) -> Result<Prepared> {
        Ok(skip_if_user_merged(record, "user").unwrap_or_else(Prepared::ready))
    }
}

/// A user's setting (`sentry.useroption`).
///
/// A `timezone` must name a time zone Sentry knows, as its user-options
/// serializer checks on import; anything else stops the import with a
/// validation error rather than leave the user with a setting the product
/// cannot use.
pub struct UserOption;

impl Model for UserOption {
    fn describe() -> ModelDesc {
        sentry_models::sentry::USEROPTION.desc()
    }

    fn new(_: &Session) -> Result<Self> {
        Ok(Self)
    }

    fn prepare(&mut self, _: &Session, record: &mut Record) -> Result<Prepared> {
        sentry_models::pickled::normalize(record, "value")?;
        if let Some(skip) = skip_if_user_merged(record, "user") {
            return Ok(skip);
        }
        if record.text("key") == Some("timezone") {
            let stored = record.json("value").and_then(|v| serde_json::from_str::<serde_json::Value>(v).ok());
            let zone = stored.as_ref().and_then(serde_json::Value::as_str);
            if !zone.is_some_and(crate::timezone::is_known) {
                let shown = record.json("value").unwrap_or("null");
                return Ok(Prepared::invalid(FieldError::new(
                    "value",
                    format!("{shown} is not a valid choice of timezone"),
                )));
            }
        }
        Ok(Prepared::ready())
    }
}

/// An address a user was seen at (`sentry.userip`, global scope only).
///
/// The geo codes are cleared (Sentry recomputes them from its GeoIP
/// database, which a plugin does not have). Outside the global scope the
/// first and last sightings become the import's start. A row for the same
/// user and address is overwritten, as Sentry's `get_or_create` does, so a
/// user has one row per address (getsentry/self-hosted#2437, #2468). An
/// address that is not an IPv4 or IPv6 address is a validation error, as
/// Sentry's `full_clean` makes it.
pub struct UserIp {
    /// (user, address) pairs this import inserted: a repeat in the same
    /// batch is not in the database yet, so it cannot be overwritten, and
    /// is left out instead.
    inserted: HashSet<(i64, String)>,
}

impl Model for UserIp {
    fn describe() -> ModelDesc {
        sentry_models::sentry::USERIP.desc()
    }

    fn new(session: &Session) -> Result<Self> {
        Ok(Self { inserted: HashSet::with_hasher(session.hasher()) })
    }

    fn prepare(&mut self, session: &Session, record: &mut Record) -> Result<Prepared> {
        if let Some(skip) = skip_if_user_merged(record, "user") {
            return Ok(skip);
        }
        let ip = record.text("ip_address").unwrap_or_default();
        if ip.parse::<std::net::IpAddr>().is_err() {
            return Ok(Prepared::invalid(FieldError::new(
                "ip_address",
                format!("`{ip}` is not a valid IPv4 or IPv6 address"),
            )));
        }
        record.set("country_code", Value::Null)?;
        record.set("region_code", Value::Null)?;
        if session.scope() != Scope::Global {
            record.set("first_seen", session.started_at())?;
            record.set("last_seen", session.started_at())?;
        }
        Ok(Prepared::ready().with_query(record.find(&["user", "ip_address"])?))
    }

    fn resolve(&mut self, _: &Session, record: Record, answers: &Answers) -> Result<Decision> {
        if let Some(pk) = answers.found(0) {
            return Ok(Decision::overwrite(pk, record));
        }
        let key =
            (record.integer("user").unwrap_or_default(), record.text("ip_address").unwrap_or_default().to_string());
        if !self.inserted.insert(key) {
            return Ok(Decision::skip("the user's row for this address was imported earlier in this batch"));
        }
        Ok(Decision::insert(record))
    }
}

/// An admin permission (`sentry.userpermission`, config scope).
///
/// Sentry treats it as an overwritable config, but its only unique set holds
/// the user, so it always inserts.
pub struct UserPermission;

impl Model for UserPermission {
    fn describe() -> ModelDesc {
        sentry_models::sentry::USERPERMISSION.desc()
    }

    fn new(_: &Session) -> Result<Self> {
        Ok(Self)
    }

    fn prepare(&mut self, _: &Session, record: &mut Record) -> Result<Prepared> {
        Ok(skip_if_user_merged(record, "user").unwrap_or_else(Prepared::ready))
    }
}

/// `sentry.lostpasswordhash`: never exported; written by [`User`](crate::user::User)
/// for every user it inserts outside the global scope, as Sentry does so that
/// an unclaimed user can set a password.
pub struct LostPasswordHash;

impl Model for LostPasswordHash {
    fn describe() -> ModelDesc {
        sentry_models::sentry::LOSTPASSWORDHASH.desc()
    }

    fn new(_: &Session) -> Result<Self> {
        Ok(Self)
    }
}

#[cfg(test)]
mod tests {
    use relocate_plugin_sdk::testing::{STARTED_AT, TestHost, record};
    use relocate_plugin_sdk::{ImportFlags, ImportKind};

    use super::*;

    fn merged() -> ImportFlags {
        ImportFlags { merge_users: true, ..ImportFlags::default() }
    }

    #[test]
    fn everything_of_a_merged_user_is_skipped() {
        let host = TestHost::new(1);
        let auth = record::<Authenticator>(1).fk("user", 1, 7, ImportKind::Existing).build();
        let option = record::<UserOption>(1).fk("user", 1, 7, ImportKind::Existing).build();
        let ip = record::<UserIp>(1).fk("user", 1, 7, ImportKind::Existing).build();
        let perm = record::<UserPermission>(1).fk("user", 1, 7, ImportKind::Existing).build();
        assert!(matches!(
            host.session::<Authenticator>(Scope::Global, merged()).run(vec![auth]).unwrap()[0],
            Decision::Skip(_)
        ));
        assert!(matches!(
            host.session::<UserOption>(Scope::User, merged()).run(vec![option]).unwrap()[0],
            Decision::Skip(_)
        ));
        assert!(matches!(host.session::<UserIp>(Scope::Global, merged()).run(vec![ip]).unwrap()[0], Decision::Skip(_)));
        assert!(matches!(
            host.session::<UserPermission>(Scope::Config, merged()).run(vec![perm]).unwrap()[0],
            Decision::Skip(_)
        ));
    }

    #[test]
    fn an_inserted_users_permission_is_inserted() {
        let host = TestHost::new(1);
        let perm =
            record::<UserPermission>(1).fk("user", 1, 7, ImportKind::Inserted).set("permission", "users.admin").build();
        let out = host.session::<UserPermission>(Scope::Config, merged()).run(vec![perm]).unwrap();
        assert!(matches!(out[0], Decision::Insert { pk: None, .. }));
    }

    #[test]
    fn user_ip_loses_its_geo_and_outside_global_its_dates() {
        let host = TestHost::new(1);
        let ip = || {
            record::<UserIp>(1)
                .fk("user", 1, 7, ImportKind::Inserted)
                .set("ip_address", "127.0.0.2")
                .set("country_code", "US")
                .set("region_code", "CA")
                .set("first_seen", "2013-04-05T03:29:45.000Z")
                .set("last_seen", "2013-04-05T03:29:45.000Z")
                .build()
        };
        let desc = UserIp::describe();
        let at = |d: &Decision, f: &str| match d {
            Decision::Insert { values, .. } => values[desc.column_index(f).expect("field")].clone(),
            other => panic!("expected an insert, got {other:?}"),
        };
        let out = host.session::<UserIp>(Scope::Config, ImportFlags::default()).run(vec![ip()]).unwrap();
        assert_eq!(at(&out[0], "country_code"), Value::Null);
        assert_eq!(at(&out[0], "first_seen"), Value::from(STARTED_AT));

        let host = TestHost::new(1);
        let out = host.session::<UserIp>(Scope::Global, ImportFlags::default()).run(vec![ip()]).unwrap();
        assert_eq!(at(&out[0], "region_code"), Value::Null);
        assert_eq!(at(&out[0], "last_seen"), Value::from("2013-04-05T03:29:45.000Z"));
    }

    fn ip(pk: i64, address: &str) -> relocate_plugin_sdk::testing::InputRecord {
        record::<UserIp>(pk)
            .fk("user", 2, 7, ImportKind::Inserted)
            .set("ip_address", address)
            .set("first_seen", "2013-04-05T03:29:45.000Z")
            .set("last_seen", "2013-04-05T03:29:45.000Z")
            .build()
    }

    #[test]
    fn user_ip_is_one_row_per_user_and_address_within_a_batch() {
        // Sentry's test_good_multiple_user_ips_per_user_in_global_scope.
        let host = TestHost::new(1);
        let batch = vec![ip(2, "8.8.8.8"), ip(3, "8.8.8.9"), ip(4, "8.8.8.9"), ip(4, "8.8.8.7")];
        let out = host.session::<UserIp>(Scope::Global, ImportFlags::default()).run(batch).unwrap();
        assert!(matches!(out[0], Decision::Insert { .. }));
        assert!(matches!(out[1], Decision::Insert { .. }));
        assert!(matches!(&out[2], Decision::Skip(reason) if reason.contains("earlier in this batch")));
        assert!(matches!(out[3], Decision::Insert { .. }));
    }

    #[test]
    fn user_ip_must_be_an_address() {
        let host = TestHost::new(1);
        let batch = vec![ip(1, "0.1.2.3.4.5.6.7.8.9.abc.def"), ip(2, "::ffff:8.8.8.8"), ip(3, "")];
        let out = host.session::<UserIp>(Scope::Global, ImportFlags::default()).run(batch).unwrap();
        assert!(matches!(&out[0], Decision::Invalid(e) if e[0].field.as_deref() == Some("ip_address")));
        assert!(matches!(out[1], Decision::Insert { .. }));
        assert!(matches!(out[2], Decision::Invalid(_)));
    }

    fn option(key: &str, value: &str) -> relocate_plugin_sdk::testing::InputRecord {
        record::<UserOption>(1)
            .fk("user", 2, 7, ImportKind::Inserted)
            .set("key", key)
            .set("value", Value::Json(value.into()))
            .build()
    }

    #[test]
    fn a_timezone_must_be_one_sentry_knows() {
        // Sentry's test_bad_invalid_user_option, and the fixtures' two
        // spellings of a valid one: JSON in a string, and plain text.
        let host = TestHost::new(1);
        let batch = vec![
            option("timezone", r#""\"MiddleEarth/Gondor\"""#),
            option("timezone", r#""\"Europe/Vienna\"""#),
            option("timezone", r#""Europe/Vienna""#),
            option("timezone", "12"),
            option("language", r#""\"xx\"""#),
        ];
        let out = host.session::<UserOption>(Scope::User, ImportFlags::default()).run(batch).unwrap();
        assert!(matches!(&out[0], Decision::Invalid(e) if e[0].message.contains("MiddleEarth/Gondor")));
        assert!(matches!(out[1], Decision::Insert { .. }));
        assert!(matches!(out[2], Decision::Insert { .. }));
        assert!(matches!(out[3], Decision::Invalid(_)));
        assert!(matches!(out[4], Decision::Insert { .. }), "only the timezone is checked");
    }

    #[test]
    fn user_ip_overwrites_the_same_address() {
        let host = TestHost::new(1);
        host.insert_row("sentry.userip", 4, &[("user", 7.into()), ("ip_address", "127.0.0.2".into())]);
        let ip = record::<UserIp>(1)
            .fk("user", 1, 7, ImportKind::Inserted)
            .set("ip_address", "127.0.0.2")
            .set("first_seen", "2013-04-05T03:29:45.000Z")
            .set("last_seen", "2013-04-05T03:29:45.000Z")
            .build();
        let out = host.session::<UserIp>(Scope::Global, ImportFlags::default()).run(vec![ip]).unwrap();
        assert!(matches!(out[0], Decision::Overwrite { pk: 4, .. }));
    }
}

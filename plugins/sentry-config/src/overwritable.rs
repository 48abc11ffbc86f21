//! Sentry's `OverwritableConfigMixin`: a config row that collides with an
//! existing one on its unique key is either kept or overwritten, never
//! duplicated (spec §5.1).

use std::marker::PhantomData;

use relocate_plugin_sdk::{
    Answers, Decision, Fatal, HashSet, Model, ModelDesc, Prepared, Record, Result, Scope, Session, Value,
};
use sentry_models::StaticModel;

/// Names the model an [`Overwritable`] imports.
pub trait ConfigModel: 'static {
    fn model() -> &'static StaticModel;

    /// Fields holding Sentry's pickled JSON (see `sentry_models::pickled`).
    fn pickled_fields() -> &'static [&'static str] {
        &[]
    }
}

/// A config model looked up by its one unique set without foreign keys.
///
/// Found: with `--overwrite-configs` the incoming values replace the existing
/// row's, keeping its pk (`overwrite`); without, the existing row stays as it
/// is (`reuse`). Not found: inserted.
pub struct Overwritable<C> {
    /// The keys this import inserted, to catch a repeated key in one batch.
    inserted: HashSet<Vec<String>>,
    _model: PhantomData<C>,
}

impl<C: ConfigModel> Model for Overwritable<C> {
    fn describe() -> ModelDesc {
        C::model().desc()
    }

    fn new(session: &Session) -> Result<Self> {
        let desc = Self::describe();
        let sets = desc.uniques_without_foreign_keys().count();
        if sets != 1 || desc.scopes != [Scope::Config] {
            // Sentry asserts the same; a registry change would land here.
            return Err(Fatal::internal(format!(
                "{} is not an overwritable config: it needs the config scope alone and one unique set without \
                 foreign keys, it has {:?} and {sets}",
                session.model(),
                desc.scopes
            )));
        }
        Ok(Self { inserted: HashSet::with_hasher(session.hasher()), _model: PhantomData })
    }

    fn prepare(&mut self, _: &Session, record: &mut Record) -> Result<Prepared> {
        for field in C::pickled_fields() {
            sentry_models::pickled::normalize(record, field)?;
        }
        // Sentry leaves null fields out of the lookup, and looks nothing up
        // when all are null.
        let fields: Vec<&str> = key_fields(record).into_iter().filter(|f| !record.is_null(f)).collect();
        if fields.is_empty() {
            return Ok(Prepared::ready());
        }
        Ok(Prepared::ready().with_query(record.find(&fields)?))
    }

    fn resolve(&mut self, session: &Session, record: Record, answers: &Answers) -> Result<Decision> {
        if let Some(pk) = answers.found(0) {
            return Ok(if session.flags().overwrite_configs {
                Decision::overwrite(pk, record)
            } else {
                Decision::reuse(pk)
            });
        }
        let key: Vec<String> = key_fields(&record).into_iter().map(|f| key_text(record.get(f))).collect();
        if !self.inserted.insert(key) {
            // The first one is not in the database yet, so there is no pk to
            // reuse; a second insert would break the unique key.
            session.warn(&format!(
                "record #{} repeats the key of a record earlier in this batch; left out",
                record.ordinal()
            ));
            return Ok(Decision::skip("repeats the unique key of a record earlier in this batch"));
        }
        Ok(Decision::insert(record))
    }
}

/// The model's unique fields (checked in `new` to be exactly one set).
fn key_fields(record: &Record) -> Vec<&str> {
    record
        .desc()
        .uniques_without_foreign_keys()
        .next()
        .map(|set| set.iter().map(String::as_str).collect())
        .unwrap_or_default()
}

fn key_text(value: Option<&Value>) -> String {
    format!("{value:?}")
}

#[cfg(test)]
mod tests {
    use relocate_plugin_sdk::testing::{TestHost, record};
    use relocate_plugin_sdk::{ImportFlags, ImportKind};

    use super::*;
    use crate::{OptionConfig, RelayUsageConfig, UserRoleConfig};

    type Option_ = Overwritable<OptionConfig>;

    fn option(pk: i64, key: &str) -> relocate_plugin_sdk::testing::InputRecord {
        record::<Option_>(pk)
            .set("key", key)
            .set("last_updated", "2023-06-27T21:40:01.305Z")
            .set("last_updated_by", "unknown")
            .set("value", Value::Json("\"\\\"23.6.1\\\"\"".into()))
            .build()
    }

    fn overwrite(yes: bool) -> ImportFlags {
        ImportFlags { overwrite_configs: yes, ..ImportFlags::default() }
    }

    #[test]
    fn a_new_key_is_inserted() {
        let host = TestHost::new(1);
        let out = host
            .session::<Option_>(Scope::Config, overwrite(false))
            .run(vec![option(1, "sentry:latest_version")])
            .unwrap();
        assert!(matches!(out[0], Decision::Insert { pk: None, .. }));
    }

    #[test]
    fn an_existing_key_is_kept_without_overwrite_configs() {
        let host = TestHost::new(1);
        host.insert_row("sentry.option", 5, &[("key", "sentry:latest_version".into())]);
        let out = host
            .session::<Option_>(Scope::Config, overwrite(false))
            .run(vec![option(1, "sentry:latest_version")])
            .unwrap();
        assert_eq!(out[0], Decision::Reuse(5));
        assert_eq!(host.mapping("sentry.option", 1).map(|m| m.kind), Some(ImportKind::Existing));
    }

    #[test]
    fn an_existing_key_is_overwritten_with_overwrite_configs() {
        let host = TestHost::new(1);
        host.insert_row(
            "sentry.option",
            5,
            &[("key", "sentry:latest_version".into()), ("value", Value::Json("1".into()))],
        );
        let out = host
            .session::<Option_>(Scope::Config, overwrite(true))
            .run(vec![option(1, "sentry:latest_version")])
            .unwrap();
        assert!(matches!(out[0], Decision::Overwrite { pk: 5, .. }));
        let row = &host.rows("sentry.option")[0];
        assert_eq!(row.pk, 5);
        // The exported JSON-in-a-string becomes the JSON Sentry stores.
        assert_eq!(row.get("value"), Some(&Value::Json("\"23.6.1\"".into())));
    }

    #[test]
    fn relay_usage_is_keyed_by_relay_and_version() {
        let host = TestHost::new(1);
        host.insert_row("sentry.relayusage", 3, &[("relay_id", "r1".into()), ("version", "23.6.1".into())]);
        let usage = |pk, version: &str| {
            record::<Overwritable<RelayUsageConfig>>(pk)
                .set("relay_id", "r1")
                .set("version", version)
                .set("public_key", "k")
                .set("first_seen", "2023-06-22T23:07:12.275Z")
                .set("last_seen", "2023-06-27T21:27:32.702Z")
                .build()
        };
        let mut s = host.session::<Overwritable<RelayUsageConfig>>(Scope::Config, overwrite(false));
        let out = s.run(vec![usage(1, "23.6.1"), usage(2, "23.7.0")]).unwrap();
        assert_eq!(out[0], Decision::Reuse(3));
        assert!(matches!(out[1], Decision::Insert { .. }));
    }

    #[test]
    fn user_role_is_keyed_by_name() {
        let host = TestHost::new(1);
        host.insert_row("sentry.userrole", 2, &[("name", "Super Admin".into())]);
        let role = record::<Overwritable<UserRoleConfig>>(1)
            .set("name", "Super Admin")
            .set("date_added", "2023-06-22T22:54:27.960Z")
            .set("date_updated", "2023-06-22T22:54:27.960Z")
            .build();
        let out = host.session::<Overwritable<UserRoleConfig>>(Scope::Config, overwrite(true)).run(vec![role]).unwrap();
        assert!(matches!(out[0], Decision::Overwrite { pk: 2, .. }));
    }

    #[test]
    fn a_key_repeated_in_one_batch_is_left_out() {
        let host = TestHost::new(1);
        let mut s = host.session::<Option_>(Scope::Config, overwrite(false));
        let out = s.run(vec![option(1, "a"), option(2, "a")]).unwrap();
        assert!(matches!(out[0], Decision::Insert { .. }));
        assert!(matches!(out[1], Decision::Skip(_)));
    }
}

//! `sentry.project`, `sentry.projectkey` and `sentry.projectoption`: project
//! ids kept in the global scope (spec §5.7), DSN keys made unique and options
//! merged into existing ones (§5.6).

use relocate_plugin_sdk::{
    Answer, Answers, Decision, HashSet, Model, ModelDesc, Prepared, Query, Record, Result, Scope, Session,
};
use sentry_models::sentry;

/// A project. In the global scope it keeps its exported pk, so project ids
/// and DSNs survive the move; in any other scope it gets a new one.
pub struct Project;

impl Model for Project {
    fn describe() -> ModelDesc {
        sentry::PROJECT.desc()
    }

    fn new(_: &Session) -> Result<Self> {
        Ok(Self)
    }

    fn resolve(&mut self, session: &Session, record: Record, _: &Answers) -> Result<Decision> {
        Ok(if session.scope() == Scope::Global {
            let pk = record.old_pk();
            Decision::insert_with_pk(record, pk)
        } else {
            Decision::insert(record)
        })
    }
}

/// The fields of a key that must be unique across the instance.
const KEY_FIELDS: [&str; 2] = ["public_key", "secret_key"];

/// A project's DSN key: a public or secret key that is empty or already used
/// is replaced by a new random one (`uuid4().hex`).
pub struct ProjectKey {
    /// Keys this import gave out, for a repeat within one batch.
    given: HashSet<String>,
}

impl Model for ProjectKey {
    fn describe() -> ModelDesc {
        sentry::PROJECTKEY.desc()
    }

    fn new(session: &Session) -> Result<Self> {
        Ok(Self { given: HashSet::with_hasher(session.hasher()) })
    }

    fn prepare(&mut self, _: &Session, record: &mut Record) -> Result<Prepared> {
        let mut queries = Vec::new();
        for field in KEY_FIELDS {
            if !record.text(field).unwrap_or_default().is_empty() {
                queries.push(record.find(&[field])?);
            }
        }
        Ok(Prepared::ready().with_queries(queries))
    }

    fn resolve(&mut self, session: &Session, mut record: Record, answers: &Answers) -> Result<Decision> {
        for field in KEY_FIELDS {
            let key = record.text(field).unwrap_or_default().to_string();
            if key.is_empty() || found_by(answers, field) || self.given.contains(&key) {
                let new = session.uuid4_hex();
                self.given.insert(new.clone());
                record.set(field, new)?;
            } else {
                self.given.insert(key);
            }
        }
        Ok(Decision::insert(record))
    }
}

/// Whether the `find` on `field` alone matched a row.
fn found_by(answers: &Answers, field: &str) -> bool {
    answers.iter().any(|(q, a)| {
        matches!(q, Query::Find { columns, .. } if columns.len() == 1 && columns[0] == field)
            && matches!(a, Answer::Found(Some(_)))
    })
}

/// A project's option. An existing row for the same project and key (Sentry
/// creates some with the project) is overwritten with the exported value.
pub struct ProjectOption;

impl Model for ProjectOption {
    fn describe() -> ModelDesc {
        sentry::PROJECTOPTION.desc()
    }

    fn new(_: &Session) -> Result<Self> {
        Ok(Self)
    }

    fn prepare(&mut self, _: &Session, record: &mut Record) -> Result<Prepared> {
        sentry_models::pickled::normalize(record, "value")?;
        Ok(Prepared::ready().with_query(record.find(&["project", "key"])?))
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
    use relocate_plugin_sdk::testing::{InputRecord, TestHost, record};
    use relocate_plugin_sdk::{ImportFlags, ImportKind, Value};

    use super::*;

    fn project(pk: i64) -> InputRecord {
        record::<Project>(pk)
            .fk("organization", 1, 10, ImportKind::Inserted)
            .set("name", "project-slug")
            .set("slug", "project-slug")
            .set("status", 0)
            .set("public", false)
            .set("date_added", "2023-06-22T22:54:28.913Z")
            .build()
    }

    #[test]
    fn global_scope_keeps_project_ids() {
        let host = TestHost::new(1);
        let out =
            host.session::<Project>(Scope::Global, ImportFlags::default()).run(vec![project(2), project(4)]).unwrap();
        assert!(matches!(out[0], Decision::Insert { pk: Some(2), .. }));
        assert!(matches!(out[1], Decision::Insert { pk: Some(4), .. }));
    }

    #[test]
    fn other_scopes_give_new_ids() {
        let host = TestHost::new(1);
        let out = host.session::<Project>(Scope::Organization, ImportFlags::default()).run(vec![project(2)]).unwrap();
        assert!(matches!(out[0], Decision::Insert { pk: None, .. }));
    }

    fn key(pk: i64, public: &str, secret: &str) -> InputRecord {
        record::<ProjectKey>(pk)
            .fk("project", 1, 10, ImportKind::Inserted)
            .set("public_key", public)
            .set("secret_key", secret)
            .set("status", 0)
            .set("date_added", "2023-06-22T22:54:28.958Z")
            .build()
    }

    fn text(d: &Decision, field: &str) -> String {
        match d {
            Decision::Insert { values, .. } => {
                values[ProjectKey::describe().column_index(field).expect("field")].as_text().expect("text").to_string()
            }
            other => panic!("expected an insert, got {other:?}"),
        }
    }

    #[test]
    fn a_colliding_key_is_replaced_and_the_other_kept() {
        let host = TestHost::new(1);
        host.insert_row("sentry.projectkey", 3, &[("public_key", "pub".into()), ("secret_key", "other".into())]);
        let out = host
            .session::<ProjectKey>(Scope::Organization, ImportFlags::default())
            .run(vec![key(1, "pub", "sec")])
            .unwrap();
        let public = text(&out[0], "public_key");
        assert!(public.len() == 32 && public != "pub" && public.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(text(&out[0], "secret_key"), "sec");
    }

    #[test]
    fn an_empty_key_is_filled_and_repeats_in_a_batch_are_replaced() {
        let host = TestHost::new(1);
        let mut s = host.session::<ProjectKey>(Scope::Organization, ImportFlags::default());
        let out = s.run(vec![key(1, "", "sec"), key(2, "pub", "sec")]).unwrap();
        assert_eq!(text(&out[0], "public_key").len(), 32);
        assert_eq!(text(&out[0], "secret_key"), "sec");
        assert_eq!(text(&out[1], "public_key"), "pub");
        assert_ne!(text(&out[1], "secret_key"), "sec");
    }

    #[test]
    fn a_project_option_overwrites_the_same_key() {
        let host = TestHost::new(1);
        host.insert_row("sentry.projectoption", 8, &[("project", 10.into()), ("key", "sentry:option-epoch".into())]);
        let option = |pk, k: &str| {
            record::<ProjectOption>(pk)
                .fk("project", 1, 10, ImportKind::Inserted)
                .set("key", k)
                .set("value", Value::Json("11".into()))
                .build()
        };
        let mut s = host.session::<ProjectOption>(Scope::Organization, ImportFlags::default());
        let out = s.run(vec![option(1, "sentry:option-epoch"), option(2, "sentry:token")]).unwrap();
        assert!(matches!(out[0], Decision::Overwrite { pk: 8, .. }));
        assert!(matches!(out[1], Decision::Insert { .. }));
    }
}

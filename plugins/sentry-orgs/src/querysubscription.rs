//! `sentry.querysubscription`: a metric alert's subscription to a Snuba
//! query. Its `subscription_id` (Snuba's, `<partition>/<hex>`) is unique; one
//! that is already some row's, or this import's, gets a new value in the
//! same form (spec §5.6, scenario 40). Most exports hold none: Sentry
//! creates the Snuba side after the import.

use relocate_plugin_sdk::{Answers, Decision, HashSet, Model, ModelDesc, Prepared, Record, Result, Session};

pub struct QuerySubscription {
    /// Subscription ids this import wrote.
    given: HashSet<String>,
}

impl Model for QuerySubscription {
    fn describe() -> ModelDesc {
        sentry_models::sentry::QUERYSUBSCRIPTION.desc()
    }

    fn new(session: &Session) -> Result<Self> {
        Ok(Self { given: HashSet::with_hasher(session.hasher()) })
    }

    fn prepare(&mut self, _: &Session, record: &mut Record) -> Result<Prepared> {
        if record.is_null("subscription_id") {
            return Ok(Prepared::ready());
        }
        Ok(Prepared::ready().with_query(record.find(&["subscription_id"])?))
    }

    fn resolve(&mut self, session: &Session, mut record: Record, answers: &Answers) -> Result<Decision> {
        let Some(id) = record.text("subscription_id").map(str::to_string) else {
            return Ok(Decision::insert(record));
        };
        let id = if answers.found(0).is_some() || self.given.contains(&id) {
            // Keep Snuba's partition prefix, if any, with a fresh id after it.
            let partition = id.rsplit_once('/').map(|(p, _)| format!("{p}/")).unwrap_or_default();
            format!("{partition}{}", session.uuid4_hex())
        } else {
            id
        };
        self.given.insert(id.clone());
        record.set("subscription_id", id)?;
        Ok(Decision::insert(record))
    }
}

#[cfg(test)]
mod tests {
    use relocate_plugin_sdk::testing::{InputRecord, TestHost, record};
    use relocate_plugin_sdk::{ImportFlags, ImportKind, Scope, Value};

    use super::*;

    fn subscription(pk: i64, id: Option<&str>) -> InputRecord {
        record::<QuerySubscription>(pk)
            .fk("project", 1, 10, ImportKind::Inserted)
            .set("subscription_id", id)
            .set("type", "incidents")
            .set("status", 1)
            .build()
    }

    fn ids(host: &TestHost) -> Vec<Value> {
        host.rows("sentry.querysubscription")
            .iter()
            .map(|r| r.get("subscription_id").cloned().unwrap_or(Value::Null))
            .collect()
    }

    #[test]
    fn a_colliding_id_gets_a_new_one_in_the_same_partition() {
        let host = TestHost::new(1);
        host.insert_row("sentry.querysubscription", 5, &[("subscription_id", "0/abc".into())]);
        let batch = vec![
            subscription(1, Some("0/abc")),
            subscription(2, Some("1/def")),
            subscription(3, Some("1/def")),
            subscription(4, None),
        ];
        host.session::<QuerySubscription>(Scope::Organization, ImportFlags::default()).run(batch).unwrap();
        let ids = ids(&host);
        assert_eq!(ids[0], Value::from("0/abc"), "the existing row keeps its id");
        let new = ids[1].as_text().expect("an id");
        assert!(new.starts_with("0/") && new.len() == 34 && new != "0/abc", "{new}");
        assert_eq!(ids[2], Value::from("1/def"));
        let repeat = ids[3].as_text().expect("an id");
        assert!(repeat.starts_with("1/") && repeat != "1/def", "{repeat}");
        assert_eq!(ids[4], Value::Null, "no id stays no id");
    }
}

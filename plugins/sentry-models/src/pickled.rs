//! Sentry's `PickledObjectField` (the `value` of the option models).
//!
//! Sentry keeps JSON text in these columns, and its export carries that text
//! as a JSON string (`"value": "\"23.6.1\""`). On import Django parses such a
//! string back and stores it as JSON again, so the column ends up holding
//! the string's content (`"23.6.1"`). Older exports may hold raw values
//! (`11`, `1687902001.26`) or plain text (`Europe/Vienna`): those are stored
//! as their own JSON.

use relocate_plugin_sdk::{Record, Result, Value};

/// Every pickled field of a described model, as `(model, field)`: the option
/// models' values. A model with one needs a plugin that calls [`normalize`],
/// so each is in `data/special.txt` (a test checks it).
pub const FIELDS: &[(&str, &str)] = &[
    ("sentry.controloption", "value"),
    ("sentry.option", "value"),
    ("sentry.organizationoption", "value"),
    ("sentry.projectoption", "value"),
    ("sentry.projecttemplateoption", "value"),
    ("sentry.useroption", "value"),
];

/// Rewrites `field` (a json column) to the text Sentry would store.
pub fn normalize(record: &mut Record, field: &str) -> Result<()> {
    let Some(text) = record.json(field) else { return Ok(()) };
    let stored = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::String(inner)) if serde_json::from_str::<serde_json::Value>(&inner).is_ok() => inner,
        _ => return Ok(()),
    };
    record.set(field, Value::Json(stored))
}

#[cfg(test)]
mod tests {
    use super::*;
    use relocate_plugin_sdk::testing::{TestHost, record};
    use relocate_plugin_sdk::{Decision, ImportFlags, Model, ModelDesc, Prepared, Scope, Session};

    struct Opt;
    impl Model for Opt {
        fn describe() -> ModelDesc {
            crate::sentry::OPTION.desc()
        }
        fn new(_: &Session) -> Result<Self> {
            Ok(Self)
        }
        fn prepare(&mut self, _: &Session, record: &mut Record) -> Result<Prepared> {
            normalize(record, "value")?;
            Ok(Prepared::ready())
        }
    }

    fn stored(exported: &str) -> String {
        let input = record::<Opt>(1)
            .set("key", "k")
            .set("last_updated", Value::Text("2023-06-27T21:40:01.305Z".into()))
            .set("last_updated_by", "unknown")
            .set("value", Value::Json(exported.into()))
            .build();
        let host = TestHost::new(1);
        let out = host.session::<Opt>(Scope::Config, ImportFlags::default()).run(vec![input]).unwrap();
        let Decision::Insert { values, .. } = &out[0] else { panic!("{out:?}") };
        let column = Opt::describe().column_index("value").unwrap();
        values[column].as_json().unwrap().to_string()
    }

    #[test]
    fn json_text_in_a_string_is_what_sentry_stores() {
        assert_eq!(stored(r#""\"23.6.1\"""#), r#""23.6.1""#);
        assert_eq!(stored(r#""[\"*\"]""#), r#"["*"]"#);
        assert_eq!(stored(r#""11""#), "11");
    }

    #[test]
    fn every_pickled_field_is_a_json_column_of_a_special_model() {
        for (model, field) in FIELDS {
            let desc = crate::describe(model).unwrap_or_else(|| panic!("{model} is described"));
            let column = desc.column_index(field).map(|i| desc.columns[i].kind);
            assert_eq!(column, Some(relocate_plugin_sdk::ColumnKind::Json), "{model}.{field}");
            assert!(
                crate::SPECIAL.iter().any(|(m, _)| m == model),
                "{model} has a pickled field, so a plain insert would store it wrong"
            );
        }
    }

    #[test]
    fn raw_values_and_plain_text_stay_as_their_own_json() {
        assert_eq!(stored("1687902001.2623305"), "1687902001.2623305");
        assert_eq!(stored(r#""Europe/Vienna""#), r#""Europe/Vienna""#);
        assert_eq!(stored("null"), "null");
    }
}

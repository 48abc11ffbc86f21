//! Turning an exported record's `fields` into a model's typed values, and
//! checking the values a plugin hands back before they reach the database.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde_json::Value as Json;

use crate::model::{ColumnKind, ModelDesc, Value};
use crate::plugin::FieldError;

/// The model's values for `fields`, in column order. Unknown fields are
/// ignored (as Sentry's `ignorenonexistent`); a missing field takes the
/// column's default, else null. Nullability is checked on the final values.
/// Takes `fields` so that text moves into the values, not copied.
pub fn values_from_fields(
    desc: &ModelDesc,
    mut fields: serde_json::Map<String, Json>,
) -> Result<Vec<Value>, Vec<FieldError>> {
    let slots = desc.columns.iter().map(|c| fields.remove(&c.field)).collect();
    values_from_slots(desc, slots)
}

/// [`values_from_fields`] of the `fields` of the record whose JSON is
/// `bytes`, read straight into the columns' slots rather than into a map
/// first (a fifth of an import's decoding was building and taking apart
/// that map). The outer error is the JSON's, the inner one the values'.
pub fn values_from_record(desc: &ModelDesc, bytes: &[u8]) -> serde_json::Result<Result<Vec<Value>, Vec<FieldError>>> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let slots = serde::de::DeserializeSeed::deserialize(de::RecordSeed(desc), &mut de)?;
    de.end()?;
    Ok(values_from_slots(desc, slots))
}

/// Each column's JSON value, if the record has that field.
type Slots = Vec<Option<Json>>;

fn values_from_slots(desc: &ModelDesc, slots: Slots) -> Result<Vec<Value>, Vec<FieldError>> {
    let mut values = Vec::with_capacity(desc.columns.len());
    let mut errors = Vec::new();
    for (column, slot) in desc.columns.iter().zip(slots) {
        let value = match slot {
            None => column.default.clone().unwrap_or(Value::Null),
            Some(json) => match convert(column.kind, json) {
                Ok(v) => v,
                Err(message) => {
                    errors.push(FieldError { field: Some(column.field.clone()), message });
                    Value::Null
                }
            },
        };
        values.push(value);
    }
    if errors.is_empty() { Ok(values) } else { Err(errors) }
}

/// The serde side of [`values_from_record`].
mod de {
    use std::fmt;

    use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

    use super::Slots;
    use crate::model::ModelDesc;

    /// A record, `{"model", "pk", "fields"}`: its fields' slots. The index
    /// checked the model and the pk already.
    pub struct RecordSeed<'a>(pub &'a ModelDesc);

    impl<'de> DeserializeSeed<'de> for RecordSeed<'_> {
        type Value = Slots;

        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Slots, D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for RecordSeed<'_> {
        type Value = Slots;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a record: an object with `model`, `pk` and `fields`")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Slots, A::Error> {
            let mut slots = None;
            while let Some(is_fields) = map.next_key_seed(KeyIs("fields"))? {
                if !is_fields {
                    map.next_value::<IgnoredAny>()?;
                } else if slots.is_some() {
                    return Err(de::Error::duplicate_field("fields"));
                } else {
                    slots = Some(map.next_value_seed(FieldsSeed(self.0))?);
                }
            }
            Ok(slots.unwrap_or_else(|| vec![None; self.0.columns.len()]))
        }
    }

    /// Whether a key is the one given.
    struct KeyIs(&'static str);

    impl<'de> DeserializeSeed<'de> for KeyIs {
        type Value = bool;

        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
            d.deserialize_str(self)
        }
    }

    impl<'de> Visitor<'de> for KeyIs {
        type Value = bool;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a key")
        }

        fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
            Ok(key == self.0)
        }
    }

    /// A record's `fields`: each known field's value in its column's slot
    /// (the last one, if a field comes twice, as a map would keep); unknown
    /// fields are skipped unread.
    struct FieldsSeed<'a>(&'a ModelDesc);

    impl<'de> DeserializeSeed<'de> for FieldsSeed<'_> {
        type Value = Slots;

        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Slots, D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for FieldsSeed<'_> {
        type Value = Slots;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object of fields")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Slots, A::Error> {
            let mut slots = vec![None; self.0.columns.len()];
            // Fields usually come in the columns' order: each search starts
            // after the column found last.
            let mut from = 0;
            while let Some(column) = map.next_key_seed(ColumnOf { desc: self.0, from })? {
                match column {
                    Some(c) => {
                        slots[c] = Some(map.next_value()?);
                        from = c + 1;
                    }
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(slots)
        }
    }

    /// The column a field key names, searched from column `from` on, round.
    struct ColumnOf<'a> {
        desc: &'a ModelDesc,
        from: usize,
    }

    impl<'de> DeserializeSeed<'de> for ColumnOf<'_> {
        type Value = Option<usize>;

        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
            d.deserialize_str(self)
        }
    }

    impl<'de> Visitor<'de> for ColumnOf<'_> {
        type Value = Option<usize>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a field name")
        }

        fn visit_str<E: de::Error>(self, key: &str) -> Result<Option<usize>, E> {
            let columns = &self.desc.columns;
            let n = columns.len();
            Ok((0..n).map(|i| (self.from + i) % n).find(|&c| columns[c].field == key))
        }
    }
}

/// Lenient where Django's `to_python` is (numeric strings, `"true"`), strict
/// otherwise.
fn convert(kind: ColumnKind, json: Json) -> Result<Value, String> {
    match (kind, json) {
        // Text moves into the value.
        (ColumnKind::Text, Json::String(s)) => Ok(Value::Text(s)),
        (kind, json) => convert_ref(kind, &json),
    }
}

/// [`convert`] of a value that stays where it is.
fn convert_ref(kind: ColumnKind, json: &Json) -> Result<Value, String> {
    if json.is_null() {
        return Ok(Value::Null);
    }
    let wrong = || format!("expected {}, found {json}", kind_name(kind));
    match kind {
        ColumnKind::Integer => match json {
            Json::Number(n) => n.as_i64().map(Value::Integer).ok_or_else(wrong),
            Json::String(s) => s.trim().parse().map(Value::Integer).map_err(|_| wrong()),
            _ => Err(wrong()),
        },
        ColumnKind::Float => match json {
            Json::Number(n) => n.as_f64().map(Value::Float).ok_or_else(wrong),
            Json::String(s) => s.trim().parse().map(Value::Float).map_err(|_| wrong()),
            _ => Err(wrong()),
        },
        ColumnKind::Boolean => match json {
            Json::Bool(b) => Ok(Value::Boolean(*b)),
            Json::Number(n) if n.as_i64() == Some(0) => Ok(Value::Boolean(false)),
            Json::Number(n) if n.as_i64() == Some(1) => Ok(Value::Boolean(true)),
            Json::String(s) => match s.as_str() {
                "t" | "true" | "True" | "1" => Ok(Value::Boolean(true)),
                "f" | "false" | "False" | "0" => Ok(Value::Boolean(false)),
                _ => Err(wrong()),
            },
            _ => Err(wrong()),
        },
        ColumnKind::Text => match json {
            Json::String(s) => Ok(Value::Text(s.clone())),
            Json::Number(n) => Ok(Value::Text(n.to_string())),
            _ => Err(wrong()),
        },
        ColumnKind::Datetime => match json {
            Json::String(s) => {
                normalize_datetime(s).map(Value::Text).ok_or_else(|| format!("`{s}` is not an ISO 8601 datetime"))
            }
            _ => Err(wrong()),
        },
        ColumnKind::Json => Ok(Value::Json(json.to_string())),
    }
}

fn kind_name(kind: ColumnKind) -> &'static str {
    match kind {
        ColumnKind::Integer => "an integer",
        ColumnKind::Float => "a number",
        ColumnKind::Boolean => "a boolean",
        ColumnKind::Text => "a string",
        ColumnKind::Datetime => "a datetime string",
        ColumnKind::Json => "JSON",
    }
}

/// Sentry's export format, `2023-06-22T22:59:55.531Z`: UTC with
/// milliseconds. Older exports without milliseconds, offsets or no zone at
/// all (taken as UTC) are accepted. A time whose UTC year falls outside
/// 0–9999 (`9999-12-31T23:00:00-05:00`) is refused: RFC 3339 cannot write it.
pub fn normalize_datetime(s: &str) -> Option<String> {
    if is_normal_datetime(s) {
        return Some(s.to_string());
    }
    let utc = DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .ok()
        .or_else(|| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").ok().map(|n| n.and_utc()))
        .or_else(|| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").ok().map(|n| n.and_utc()))?;
    (0..=9999).contains(&chrono::Datelike::year(&utc)).then(|| utc.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// Whether `s` is already in Sentry's form, `YYYY-MM-DDTHH:MM:SS.mmmZ`, and
/// a real time: what nearly every datetime of an export and of a plugin is,
/// checked without parsing and formatting it again.
fn is_normal_datetime(s: &str) -> bool {
    let b = s.as_bytes();
    let shape = b"dddd-dd-ddTdd:dd:dd.dddZ";
    if b.len() != shape.len() || !b.iter().zip(shape).all(|(c, p)| if *p == b'd' { c.is_ascii_digit() } else { c == p })
    {
        return false;
    }
    let n = |range: std::ops::Range<usize>| b[range].iter().fold(0u32, |acc, c| acc * 10 + u32::from(c - b'0'));
    let year = n(0..4) as i32;
    chrono::NaiveDate::from_ymd_opt(year, n(5..7), n(8..10)).is_some()
        && chrono::NaiveTime::from_hms_milli_opt(n(11..13), n(14..16), n(17..19), n(20..23)).is_some()
}

/// What is wrong with the values a plugin returned for `desc`.
pub enum Problem {
    /// The plugin broke the contract (wrong count or kind of value).
    Contract(String),
    /// The record itself is not acceptable (a required field is null).
    Invalid(Vec<FieldError>),
}

/// Checks count, kinds and nullability; integers given for float columns
/// are widened.
pub fn check_values(desc: &ModelDesc, values: &mut [Value]) -> Result<(), Problem> {
    if values.len() != desc.columns.len() {
        return Err(Problem::Contract(format!("returned {} values for {} columns", values.len(), desc.columns.len())));
    }
    let mut invalid = Vec::new();
    for (column, value) in desc.columns.iter().zip(values.iter_mut()) {
        let ok = match (column.kind, &*value) {
            (_, Value::Null) => {
                if !column.nullable {
                    invalid.push(FieldError { field: Some(column.field.clone()), message: "may not be null".into() });
                }
                true
            }
            (ColumnKind::Integer, Value::Integer(_))
            | (ColumnKind::Boolean, Value::Boolean(_))
            | (ColumnKind::Text, Value::Text(_)) => true,
            (ColumnKind::Float, Value::Float(_)) => true,
            (ColumnKind::Float, Value::Integer(i)) => {
                *value = Value::Float(*i as f64);
                true
            }
            (ColumnKind::Datetime, Value::Text(s)) => match normalize_datetime(s) {
                Some(n) => {
                    *value = Value::Text(n);
                    true
                }
                None => {
                    return Err(Problem::Contract(format!(
                        "field `{}`: `{s}` is not an ISO 8601 datetime",
                        column.field
                    )));
                }
            },
            (ColumnKind::Json, Value::Json(s)) => serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok(),
            _ => false,
        };
        if !ok {
            return Err(Problem::Contract(format!(
                "field `{}`: {:?} does not fit a {:?} column",
                column.field, value, column.kind
            )));
        }
    }
    if invalid.is_empty() { Ok(()) } else { Err(Problem::Invalid(invalid)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_are_normalized_to_sentrys_form() {
        assert_eq!(normalize_datetime("2023-06-22T22:59:55.531Z").unwrap(), "2023-06-22T22:59:55.531Z");
        assert_eq!(normalize_datetime("2023-06-22T00:00:00Z").unwrap(), "2023-06-22T00:00:00.000Z");
        assert_eq!(normalize_datetime("2023-06-22T02:00:00+02:00").unwrap(), "2023-06-22T00:00:00.000Z");
        assert_eq!(normalize_datetime("2023-06-22T00:00:00.123456").unwrap(), "2023-06-22T00:00:00.123Z");
        assert!(normalize_datetime("yesterday").is_none());
        // Found by the plugin_output fuzz target: RFC 3339 has no year 10000.
        assert!(normalize_datetime("9999-12-31T23:00:00-05:00").is_none());
        assert_eq!(normalize_datetime("9999-12-31T23:00:00Z").unwrap(), "9999-12-31T23:00:00.000Z");
    }

    #[test]
    fn the_fast_path_agrees_with_parsing() {
        let slow = |s: &str| {
            let utc = DateTime::parse_from_rfc3339(s).ok()?.with_timezone(&Utc);
            Some(utc.to_rfc3339_opts(SecondsFormat::Millis, true))
        };
        for s in [
            "2023-06-22T22:59:55.531Z",
            "0000-01-01T00:00:00.000Z",
            "9999-12-31T23:59:59.999Z",
            "2024-02-29T12:00:00.000Z",
            "2023-02-29T12:00:00.000Z",
            "2023-13-01T00:00:00.000Z",
            "2023-06-31T00:00:00.000Z",
            "2023-06-22T24:00:00.000Z",
            "2023-06-22T23:60:00.000Z",
            "2023-06-22T23:59:60.000Z",
            "2023-06-22T22:59:55.531z",
            "2023-06-22 22:59:55.531Z",
            "2023-06-22T22:59:55.5310",
            "２023-06-22T22:59:55.531Z",
        ] {
            // Whatever the fast path takes as it is, parsing gives back unchanged.
            if is_normal_datetime(s) {
                assert_eq!(Some(s.to_string()), slow(s), "{s}");
            }
        }
        let normal = ["2023-06-22T22:59:55.531Z", "0000-01-01T00:00:00.000Z", "2024-02-29T12:00:00.000Z"];
        assert!(normal.iter().all(|s| is_normal_datetime(s)));
        let not_real = ["2023-02-29T12:00:00.000Z", "2023-06-22T24:00:00.000Z", "2023-06-22T23:59:60.000Z"];
        assert!(not_real.iter().all(|s| !is_normal_datetime(s)));
    }

    fn desc() -> ModelDesc {
        use crate::model::{Column, Ident, ModelName, Scope, Silo};
        let column = |field: &str, kind, default: Option<Value>| Column {
            field: field.into(),
            name: Ident::new(field).unwrap(),
            kind,
            nullable: true,
            default,
        };
        ModelDesc {
            name: ModelName::new("test.thing").unwrap(),
            table: Ident::new("test_thing").unwrap(),
            scopes: vec![Scope::Global],
            silo: Silo::Region,
            columns: vec![
                column("name", ColumnKind::Text, None),
                column("count", ColumnKind::Integer, Some(Value::Integer(7))),
                column("ratio", ColumnKind::Float, None),
                column("active", ColumnKind::Boolean, None),
                column("date_added", ColumnKind::Datetime, None),
                column("data", ColumnKind::Json, None),
            ],
            foreign_keys: Vec::new(),
            uniques: Vec::new(),
            relocation_dependencies: Vec::new(),
        }
    }

    #[test]
    fn reading_a_record_straight_gives_what_its_fields_map_does() {
        let desc = desc();
        let fields = [
            r#"{"name": "a", "count": 1, "ratio": 0.5, "active": true, "date_added": "2023-06-22T22:59:55.531Z", "data": {"b": [1, {"c": null}], "a": "x"}}"#,
            // Out of order, unknown fields, a key written with escapes.
            r#"{"data": [], "unknown": {"deep": [1, 2]}, "active": "t", "name": "escaped", "count": "12"}"#,
            // A field twice: the last one counts, as in a map.
            r#"{"name": "first", "name": "second"}"#,
            // Missing fields take the default, else null; nulls stay null.
            r#"{}"#,
            r#"{"count": null, "name": null}"#,
            // Values of the wrong kind are the values' errors, not the JSON's.
            r#"{"count": 1.5, "active": "maybe", "date_added": "yesterday", "name": ["x"]}"#,
        ];
        for f in fields {
            let record = format!(r#"{{"model": "test.thing", "pk": 3, "fields": {f}}}"#);
            let map: serde_json::Map<String, Json> = serde_json::from_str(f).unwrap();
            let straight = values_from_record(&desc, record.as_bytes()).unwrap();
            assert_eq!(straight, values_from_fields(&desc, map), "{f}");
        }
        // A record without fields has every column's default.
        let bare = values_from_record(&desc, br#"{"pk": 1, "model": "test.thing"}"#).unwrap();
        assert_eq!(bare, values_from_fields(&desc, serde_json::Map::new()));
        // Fields that are not an object, twice, or broken JSON are the JSON's errors.
        for bad in [
            r#"{"model": "test.thing", "pk": 1, "fields": null}"#,
            r#"{"model": "test.thing", "pk": 1, "fields": [1]}"#,
            r#"{"model": "test.thing", "pk": 1, "fields": {}, "fields": {}}"#,
            r#"{"model": "test.thing", "pk": 1, "fields": {"name": "a",}}"#,
            r#"{"model": "test.thing", "pk": 1, "fields": {}} x"#,
        ] {
            assert!(values_from_record(&desc, bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn conversions_follow_django_leniency() {
        assert_eq!(convert(ColumnKind::Integer, serde_json::json!("12")).unwrap(), Value::Integer(12));
        assert_eq!(convert(ColumnKind::Boolean, serde_json::json!("t")).unwrap(), Value::Boolean(true));
        assert_eq!(
            convert(ColumnKind::Json, serde_json::json!({"a": [1]})).unwrap(),
            Value::Json(r#"{"a":[1]}"#.into())
        );
        assert!(convert(ColumnKind::Integer, serde_json::json!(1.5)).is_err());
        assert!(convert(ColumnKind::Boolean, serde_json::json!("maybe")).is_err());
    }
}

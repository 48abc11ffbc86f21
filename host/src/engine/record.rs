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
    let mut values = Vec::with_capacity(desc.columns.len());
    let mut errors = Vec::new();
    for column in &desc.columns {
        let value = match fields.remove(&column.field) {
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

//! Field values and the column kinds they are stored as.

use std::fmt;

/// The storage kind of a column.
///
/// `Datetime` values travel as [`Value::Text`] in ISO 8601 UTC
/// (`2023-06-22T22:59:55.531Z`); `Json` values as [`Value::Json`] holding the
/// JSON text of any JSON value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ColumnKind {
    Integer,
    Float,
    Boolean,
    Text,
    Datetime,
    Json,
}

impl ColumnKind {
    /// The kind's name as the contract spells it (`integer`, `datetime`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Integer => "integer",
            Self::Float => "float",
            Self::Boolean => "boolean",
            Self::Text => "text",
            Self::Datetime => "datetime",
            Self::Json => "json",
        }
    }
}

impl fmt::Display for ColumnKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One field value of a record.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Float(f64),
    Boolean(bool),
    Text(String),
    /// The JSON text of any JSON value (`{"a":1}`, `"\"quoted\""`, `11`).
    Json(String),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Self::Null)
    }

    /// The text of a `Text` value (datetimes included); `None` for anything else.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Self::Integer(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_float(&self) -> Option<f64> {
        match self {
            Self::Float(f) => Some(*f),
            _ => None,
        }
    }

    pub fn as_boolean(&self) -> Option<bool> {
        match self {
            Self::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// The JSON text of a `Json` value.
    pub fn as_json(&self) -> Option<&str> {
        match self {
            Self::Json(s) => Some(s),
            _ => None,
        }
    }

    /// Whether this value may be stored in a column of `kind`.
    ///
    /// `Null` fits every kind: nullability is a property of the column, checked
    /// separately.
    pub fn fits(&self, kind: ColumnKind) -> bool {
        matches!(
            (self, kind),
            (Self::Null, _)
                | (Self::Integer(_), ColumnKind::Integer)
                | (Self::Float(_), ColumnKind::Float)
                | (Self::Boolean(_), ColumnKind::Boolean)
                | (Self::Text(_), ColumnKind::Text | ColumnKind::Datetime)
                | (Self::Json(_), ColumnKind::Json)
        )
    }

    /// A short name of the value's variant, for error messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Integer(_) => "integer",
            Self::Float(_) => "float",
            Self::Boolean(_) => "boolean",
            Self::Text(_) => "text",
            Self::Json(_) => "json",
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Self::Integer(v)
    }
}

impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Self::Integer(v.into())
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Self::Float(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Self::Boolean(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Self::Text(v.to_string())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Self::Text(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Self::Null, Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_fits_datetime_and_null_fits_everything() {
        assert!(Value::from("2023-06-22T22:59:55.531Z").fits(ColumnKind::Datetime));
        assert!(Value::Null.fits(ColumnKind::Boolean));
        assert!(!Value::from(1).fits(ColumnKind::Float));
        assert!(!Value::from("{}").fits(ColumnKind::Json));
    }

    #[test]
    fn options_become_null() {
        assert_eq!(Value::from(None::<i64>), Value::Null);
        assert_eq!(Value::from(Some("a")), Value::Text("a".into()));
    }
}

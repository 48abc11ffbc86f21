//! One exported record as a plugin sees it: fields read and written by name.

use std::rc::Rc;

use crate::error::{Fatal, Result};
use crate::model::ModelDesc;
use crate::query::Query;
use crate::value::Value;

/// How an already-imported record was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ImportKind {
    Inserted,
    /// Merged into a row that was already there (`reuse`).
    Existing,
    Overwrite,
}

/// A foreign key the host remapped before handing the record over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MappedRef {
    /// Index into the model's columns.
    pub column: u32,
    /// The pk the export used.
    pub old_pk: i64,
    /// How the target was imported (`Existing` means merged).
    pub kind: ImportKind,
}

/// One exported record, foreign keys already remapped to new pks.
///
/// Fields are addressed by the names of the model's columns. Reading an
/// unknown field gives `None`; writing one is a plugin bug and gives
/// [`Fatal::Internal`].
#[derive(Clone, Debug)]
pub struct Record {
    desc: Rc<ModelDesc>,
    ordinal: u64,
    old_pk: i64,
    values: Vec<Value>,
    refs: Vec<MappedRef>,
}

impl Record {
    /// Checks the host's record against the model; the runtime's only way in.
    pub(crate) fn new(
        desc: Rc<ModelDesc>,
        ordinal: u64,
        old_pk: i64,
        values: Vec<Value>,
        refs: Vec<MappedRef>,
    ) -> Result<Self> {
        if values.len() != desc.columns.len() {
            return Err(Fatal::protocol(format!(
                "record #{ordinal} of {} has {} values, the model has {} columns",
                desc.name,
                values.len(),
                desc.columns.len()
            )));
        }
        if let Some(r) = refs.iter().find(|r| r.column as usize >= values.len()) {
            return Err(Fatal::protocol(format!(
                "record #{ordinal} of {} refers to column {}, which does not exist",
                desc.name, r.column
            )));
        }
        Ok(Self { desc, ordinal, old_pk, values, refs })
    }

    /// The normalized model name (`sentry.user`).
    pub fn model(&self) -> &str {
        &self.desc.name
    }

    /// The description of the record's model.
    pub fn desc(&self) -> &ModelDesc {
        &self.desc
    }

    /// 1-based position among the export's records of this model.
    pub fn ordinal(&self) -> u64 {
        self.ordinal
    }

    /// The pk the export used.
    pub fn old_pk(&self) -> i64 {
        self.old_pk
    }

    /// The value of `field`, or `None` if the model has no such column.
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.desc.column_index(field).map(|i| &self.values[i])
    }

    /// The text of a text or datetime field; `None` when null or not text.
    pub fn text(&self, field: &str) -> Option<&str> {
        self.get(field).and_then(Value::as_text)
    }

    pub fn integer(&self, field: &str) -> Option<i64> {
        self.get(field).and_then(Value::as_integer)
    }

    pub fn float(&self, field: &str) -> Option<f64> {
        self.get(field).and_then(Value::as_float)
    }

    pub fn boolean(&self, field: &str) -> Option<bool> {
        self.get(field).and_then(Value::as_boolean)
    }

    /// The JSON text of a json field.
    pub fn json(&self, field: &str) -> Option<&str> {
        self.get(field).and_then(Value::as_json)
    }

    /// Whether `field` is null; an unknown field counts as null.
    pub fn is_null(&self, field: &str) -> bool {
        self.get(field).is_none_or(Value::is_null)
    }

    /// Replaces the value of `field`.
    ///
    /// Fails with [`Fatal::Internal`] for an unknown field, a value of the wrong
    /// kind, or null in a NOT NULL column: the host would reject the decision
    /// anyway, and this names the culprit.
    pub fn set(&mut self, field: &str, value: impl Into<Value>) -> Result<()> {
        let value = value.into();
        let Some(i) = self.desc.column_index(field) else {
            return Err(self.desc.no_such_field(field));
        };
        let column = &self.desc.columns[i];
        if !value.fits(column.kind) || (value.is_null() && !column.nullable) {
            return Err(Fatal::internal(format!(
                "{}.{field} is a {}{} column; cannot set it to a {} value",
                self.desc.name,
                if column.nullable { "nullable " } else { "NOT NULL " },
                column.kind,
                value.kind_name()
            )));
        }
        self.values[i] = value;
        Ok(())
    }

    /// How the target of foreign key `field` was imported; `None` when the
    /// field is null or not a foreign key.
    pub fn ref_kind(&self, field: &str) -> Option<ImportKind> {
        self.mapped_ref(field).map(|r| r.kind)
    }

    /// The pk the export used for foreign key `field`, before remapping.
    pub fn ref_old_pk(&self, field: &str) -> Option<i64> {
        self.mapped_ref(field).map(|r| r.old_pk)
    }

    fn mapped_ref(&self, field: &str) -> Option<&MappedRef> {
        let i = self.desc.column_index(field)?;
        self.refs.iter().find(|r| r.column as usize == i)
    }

    /// A `find` query on this record's own model for the current values of
    /// `fields`.
    pub fn find(&self, fields: &[&str]) -> Result<Query> {
        let mut values = Vec::with_capacity(fields.len());
        for field in fields {
            match self.get(field) {
                Some(v) => values.push(v.clone()),
                None => return Err(self.desc.no_such_field(field)),
            }
        }
        Ok(Query::find(&self.desc.name, fields, values))
    }

    /// All values, in the model's column order.
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    pub fn into_values(self) -> Vec<Value> {
        self.values
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FkKind, ForeignKey, Scope, Silo};
    use crate::value::ColumnKind;

    fn record() -> Record {
        let desc = ModelDesc::new("sentry.useremail", "sentry_useremail", Scope::User, Silo::Control)
            .foreign_key(ForeignKey::to("user", "sentry.user").kind(FkKind::FlexibleForeignKey))
            .column("email", ColumnKind::Text)
            .column("is_verified", ColumnKind::Boolean)
            .nullable_column("date_hash_added", ColumnKind::Datetime);
        let values = vec![Value::Integer(10), "a@example.com".into(), true.into(), Value::Null];
        let refs = vec![MappedRef { column: 0, old_pk: 1, kind: ImportKind::Existing }];
        Record::new(Rc::new(desc), 1, 7, values, refs).expect("valid record")
    }

    #[test]
    fn reads_fields_by_name() {
        let r = record();
        assert_eq!(r.text("email"), Some("a@example.com"));
        assert_eq!(r.integer("user"), Some(10));
        assert_eq!(r.boolean("is_verified"), Some(true));
        assert!(r.is_null("date_hash_added"));
        assert!(r.is_null("nope"));
        assert_eq!(r.ref_kind("user"), Some(ImportKind::Existing));
        assert_eq!(r.ref_old_pk("user"), Some(1));
        assert_eq!(r.ref_kind("email"), None);
    }

    #[test]
    fn set_checks_name_kind_and_nullability() {
        let mut r = record();
        assert!(r.set("is_verified", false).is_ok());
        assert!(r.set("date_hash_added", "2024-01-01T00:00:00.000Z").is_ok());
        assert!(matches!(r.set("nope", 1), Err(Fatal::Internal(_))));
        assert!(matches!(r.set("email", 1), Err(Fatal::Internal(_))));
        assert!(matches!(r.set("email", Value::Null), Err(Fatal::Internal(_))));
        assert_eq!(r.boolean("is_verified"), Some(false));
    }

    #[test]
    fn rejects_wrong_value_count() {
        let desc = Rc::new(ModelDesc::new("sentry.x", "x", Scope::User, Silo::Control).column("a", ColumnKind::Text));
        assert!(matches!(Record::new(desc, 1, 1, vec![], vec![]), Err(Fatal::Protocol(_))));
    }
}

//! Rows written along with a record, as Sentry's signals and outboxes do: a
//! new user's password-reset hash, an organization's slug reservation.

use std::rc::Rc;

use crate::{Fatal, ModelDesc, Result, Value};

/// A row of another model to write with the record being resolved; pass it
/// to [`Session::derive`](crate::Session::derive).
#[derive(Clone, Debug, PartialEq)]
pub struct Derived {
    pub(crate) model: String,
    pub(crate) values: Vec<Value>,
    pub(crate) parent_field: Option<String>,
    desc: Rc<ModelDesc>,
}

impl Derived {
    /// A row of `desc`'s model with every column at its default (or null).
    /// A model that derives a row per record keeps the description in an
    /// `Rc` and passes a clone, rather than building it again each time.
    pub fn new(desc: impl Into<Rc<ModelDesc>>) -> Self {
        let desc = desc.into();
        let values = desc.columns.iter().map(|c| c.default.clone().unwrap_or(Value::Null)).collect();
        Self { model: desc.name.clone(), values, parent_field: None, desc }
    }

    /// Sets `field`, checking that the model has it and the value fits.
    pub fn set(mut self, field: &str, value: impl Into<Value>) -> Result<Self> {
        let value = value.into();
        let Some(i) = self.desc.column_index(field) else {
            return Err(self.desc.no_such_field(field));
        };
        if !value.fits(self.desc.columns[i].kind) {
            return Err(Fatal::internal(format!("{}.{field} cannot hold a {} value", self.model, value.kind_name())));
        }
        self.values[i] = value;
        Ok(self)
    }

    /// Names the foreign-key field the host fills with the pk the record
    /// being resolved gets (it is not known until the host writes it).
    pub fn parent(mut self, field: &str) -> Result<Self> {
        if self.desc.column_index(field).is_none() {
            return Err(self.desc.no_such_field(field));
        }
        self.parent_field = Some(field.to_string());
        Ok(self)
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    pub fn get(&self, field: &str) -> Option<&Value> {
        self.desc.column_index(field).map(|i| &self.values[i])
    }

    pub fn parent_field(&self) -> Option<&str> {
        self.parent_field.as_deref()
    }
}

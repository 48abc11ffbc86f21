//! Model descriptions: what a plugin tells the host about each model it owns.

use std::fmt;

use crate::value::{ColumnKind, Value};

/// A relocation scope (Sentry's `RelocationScope` without `Excluded`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    User,
    Organization,
    Config,
    Global,
}

impl Scope {
    /// Sentry's spelling: `User`, `Organization`, `Config`, `Global`.
    pub fn name(self) -> &'static str {
        match self {
            Self::User => "User",
            Self::Organization => "Organization",
            Self::Config => "Config",
            Self::Global => "Global",
        }
    }

    /// Parses Sentry's spelling; `Excluded` and anything else give `None`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "User" => Some(Self::User),
            "Organization" => Some(Self::Organization),
            "Config" => Some(Self::Config),
            "Global" => Some(Self::Global),
            _ => None,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The Sentry silo a model lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Silo {
    Control,
    Region,
}

/// How a relation is declared.
///
/// A team's own model uses [`FkKind::Plain`], whatever app its target is in.
/// The other kinds are Sentry's, for Sentry's models. Only database-level
/// kinds get a constraint in the schema the host creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FkKind {
    /// A plain foreign key to a model, for a model that is not Sentry's (the
    /// default of [`ForeignKey::to`]): the target is imported first, its new
    /// pk replaces the old one, and the schema gets a constraint. It travels
    /// as contract 0.2.0's `plain` (0.1.0 had only Sentry's kinds).
    Plain,
    FlexibleForeignKey,
    DefaultForeignKey,
    DefaultOneToOneField,
    OneToOneCascadeDeletes,
    HybridCloudForeignKey,
    ImplicitForeignKey,
}

impl FkKind {
    /// Parses the names `model_dependencies/detailed.json` uses.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "FlexibleForeignKey" => Some(Self::FlexibleForeignKey),
            "DefaultForeignKey" => Some(Self::DefaultForeignKey),
            "DefaultOneToOneField" => Some(Self::DefaultOneToOneField),
            "OneToOneCascadeDeletes" => Some(Self::OneToOneCascadeDeletes),
            "HybridCloudForeignKey" => Some(Self::HybridCloudForeignKey),
            "ImplicitForeignKey" => Some(Self::ImplicitForeignKey),
            _ => None,
        }
    }
}

/// What the host does when a foreign key's target was not imported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OnMissing {
    /// Drop the record (and, in turn, everything that points at it).
    Drop,
    /// Set the field to null and keep the record.
    SetNull,
}

/// A stored field of a model.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    /// The field as exported (`user`, `user_id`, `slug`).
    pub name: String,
    pub kind: ColumnKind,
    pub nullable: bool,
    /// Used when an export lacks the field (older releases).
    pub default: Option<Value>,
}

/// A foreign key: a column of kind `integer` holding another model's pk.
///
/// Built with [`ForeignKey::to`] and added with [`ModelDesc::foreign_key`]:
///
/// ```
/// use relocate_plugin_sdk::{ForeignKey, ModelDesc, OnMissing, Scope, Silo};
///
/// let desc = ModelDesc::new("acme.invoice", "acme_invoice", Scope::Organization, Silo::Region)
///     .foreign_key(ForeignKey::to("organization", "sentry.organization"))
///     .foreign_key(ForeignKey::to("project", "sentry.project").on_missing(OnMissing::SetNull));
/// assert!(desc.columns[1].nullable);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ForeignKey {
    pub column: String,
    /// The normalized name of the target model (`sentry.user`).
    pub model: String,
    pub kind: FkKind,
    pub nullable: bool,
    pub on_missing: OnMissing,
}

impl ForeignKey {
    /// A NOT NULL [`FkKind::Plain`] foreign key from field `column` to
    /// `model`; a record whose target was not imported is dropped.
    pub fn to(column: &str, model: &str) -> Self {
        Self {
            column: column.to_string(),
            model: model.to_string(),
            kind: FkKind::Plain,
            nullable: false,
            on_missing: OnMissing::Drop,
        }
    }

    /// Lets the field be null (a record may have no target at all).
    #[must_use]
    pub fn nullable(mut self) -> Self {
        self.nullable = true;
        self
    }

    /// What to do when the target was not imported. [`OnMissing::SetNull`]
    /// makes the field nullable too: the host refuses it on a NOT NULL one.
    #[must_use]
    pub fn on_missing(mut self, on_missing: OnMissing) -> Self {
        self.on_missing = on_missing;
        self.nullable |= on_missing == OnMissing::SetNull;
        self
    }

    /// Declares the relation as one of Sentry's kinds (for Sentry's models).
    #[must_use]
    pub fn kind(mut self, kind: FkKind) -> Self {
        self.kind = kind;
        self
    }
}

/// Everything the host needs to order, store and remap a model.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelDesc {
    /// Normalized model name: `app.model`, lower case.
    pub name: String,
    pub table: String,
    /// The scopes an instance may be in; with several, `prepare` decides each
    /// record's own. None: the model is only ever written as [`Derived`](crate::Derived) rows.
    pub scopes: Vec<Scope>,
    pub silo: Silo,
    /// In the order of every record's values.
    pub columns: Vec<Column>,
    pub foreign_keys: Vec<ForeignKey>,
    /// Sets of column names that are unique together.
    pub uniques: Vec<Vec<String>>,
    /// Models that must be imported first although no foreign key says so.
    pub relocation_dependencies: Vec<String>,
}

impl ModelDesc {
    /// Starts a description with one scope and no columns; add them with the
    /// builder methods.
    pub fn new(name: &str, table: &str, scope: Scope, silo: Silo) -> Self {
        Self {
            name: name.to_string(),
            table: table.to_string(),
            scopes: vec![scope],
            silo,
            columns: Vec::new(),
            foreign_keys: Vec::new(),
            uniques: Vec::new(),
            relocation_dependencies: Vec::new(),
        }
    }

    /// Adds a NOT NULL column.
    #[must_use]
    pub fn column(mut self, name: &str, kind: ColumnKind) -> Self {
        self.columns.push(Column { name: name.to_string(), kind, nullable: false, default: None });
        self
    }

    /// Adds a nullable column.
    #[must_use]
    pub fn nullable_column(mut self, name: &str, kind: ColumnKind) -> Self {
        self.columns.push(Column { name: name.to_string(), kind, nullable: true, default: None });
        self
    }

    /// Adds a foreign key and its integer column, nullable as the key is.
    ///
    /// ```
    /// # use relocate_plugin_sdk::{ForeignKey, ModelDesc, OnMissing, Scope, Silo};
    /// ModelDesc::new("acme.invoice", "acme_invoice", Scope::Organization, Silo::Region)
    ///     .foreign_key(ForeignKey::to("organization", "sentry.organization"))
    ///     .foreign_key(ForeignKey::to("approver", "sentry.user").on_missing(OnMissing::SetNull));
    /// ```
    #[must_use]
    pub fn foreign_key(mut self, fk: ForeignKey) -> Self {
        self.columns.push(Column {
            name: fk.column.clone(),
            kind: ColumnKind::Integer,
            nullable: fk.nullable,
            default: None,
        });
        self.foreign_keys.push(fk);
        self
    }

    /// Declares a set of columns unique together.
    #[must_use]
    pub fn unique(mut self, columns: &[&str]) -> Self {
        self.uniques.push(columns.iter().map(|c| c.to_string()).collect());
        self
    }

    /// The position of a column in every record's values.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// The foreign key stored in column `name`, if it is one.
    pub fn foreign_key_of(&self, name: &str) -> Option<&ForeignKey> {
        self.foreign_keys.iter().find(|fk| fk.column == name)
    }

    /// The unique sets that contain no foreign key column.
    ///
    /// Sentry's `get_uniques_without_foreign_keys`: what collision detection
    /// of config models looks at.
    pub fn uniques_without_foreign_keys(&self) -> impl Iterator<Item = &[String]> {
        self.uniques.iter().filter(|set| set.iter().all(|c| self.foreign_key_of(c).is_none())).map(Vec::as_slice)
    }

    /// The plugin named a field this model does not have: a bug, reported
    /// with the model's fields so that a typo shows.
    pub(crate) fn no_such_field(&self, field: &str) -> crate::Fatal {
        let fields: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
        crate::Fatal::internal(format!("{} has no field `{field}` (its fields: {})", self.name, fields.join(", ")))
    }

    /// Checks what the host would reject, so that a plugin's tests catch it.
    pub fn check(&self) -> Result<(), String> {
        let err = |message: String| Err(format!("model {}: {message}", self.name));
        if self.name.split('.').count() != 2 || self.name != self.name.to_ascii_lowercase() {
            return err("the name must be `app.model` in lower case".into());
        }
        for (i, column) in self.columns.iter().enumerate() {
            if self.columns[..i].iter().any(|c| c.name == column.name) {
                return err(format!("column `{}` appears twice", column.name));
            }
            if let Some(default) = &column.default
                && (!default.fits(column.kind) || (default.is_null() && !column.nullable))
            {
                return err(format!("the default of `{}` does not fit its kind {}", column.name, column.kind));
            }
        }
        for fk in &self.foreign_keys {
            match self.columns.iter().find(|c| c.name == fk.column) {
                Some(c) if c.kind == ColumnKind::Integer => {}
                Some(_) => return err(format!("foreign key `{}` is not an integer column", fk.column)),
                None => return err(format!("foreign key `{}` is not a column", fk.column)),
            }
            if fk.model.split('.').count() != 2 || fk.model != fk.model.to_ascii_lowercase() {
                return err(format!("foreign key `{}` points at `{}`, which is not `app.model`", fk.column, fk.model));
            }
            if fk.on_missing == OnMissing::SetNull && !fk.nullable {
                return err(format!("foreign key `{}` sets null on a missing target but is not nullable", fk.column));
            }
        }
        for set in &self.uniques {
            if let Some(missing) = set.iter().find(|c| self.column_index(c).is_none()) {
                return err(format!("unique set names `{missing}`, which is not a column"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc() -> ModelDesc {
        ModelDesc::new("sentry.projectoption", "sentry_projectoptions", Scope::Organization, Silo::Region)
            .foreign_key(ForeignKey::to("project", "sentry.project").kind(FkKind::FlexibleForeignKey))
            .column("key", ColumnKind::Text)
            .nullable_column("value", ColumnKind::Json)
            .unique(&["project", "key"])
    }

    #[test]
    fn builder_gives_a_valid_description() {
        let d = desc();
        assert_eq!(d.check(), Ok(()));
        assert_eq!(d.column_index("value"), Some(2));
        assert_eq!(d.uniques_without_foreign_keys().count(), 0);
    }

    #[test]
    fn a_foreign_key_builds_its_column() {
        let d = ModelDesc::new("acme.invoice", "acme_invoice", Scope::Organization, Silo::Region)
            .foreign_key(ForeignKey::to("organization", "sentry.organization"))
            .foreign_key(ForeignKey::to("project", "sentry.project").on_missing(OnMissing::SetNull))
            .foreign_key(ForeignKey::to("owner", "sentry.user").nullable());
        assert_eq!(d.check(), Ok(()));
        let nullable: Vec<bool> = d.columns.iter().map(|c| c.nullable).collect();
        assert_eq!(nullable, [false, true, true]);
        assert!(d.columns.iter().all(|c| c.kind == ColumnKind::Integer));
        let fk = d.foreign_key_of("project").unwrap();
        assert_eq!((fk.kind, fk.on_missing, fk.nullable), (FkKind::Plain, OnMissing::SetNull, true));
        assert_eq!(d.foreign_key_of("organization").unwrap().on_missing, OnMissing::Drop);
    }

    #[test]
    fn check_names_the_model_and_field_of_a_bad_foreign_key() {
        let mut d = desc();
        d.foreign_keys[0].on_missing = OnMissing::SetNull;
        assert_eq!(
            d.check(),
            Err("model sentry.projectoption: foreign key `project` sets null on a missing target but is not nullable"
                .into())
        );
        let d = desc().foreign_key(ForeignKey::to("org", "Sentry.Organization"));
        assert!(d.check().is_err_and(|e| e.contains("`org`") && e.contains("Sentry.Organization")), "{d:?}");
    }

    #[test]
    fn check_rejects_unknown_unique_column() {
        let d = desc().unique(&["nope"]);
        assert!(d.check().is_err_and(|e| e.contains("nope")));
    }
}

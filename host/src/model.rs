//! The vocabulary shared by every part of the host: model names, pks, scopes,
//! column kinds, values and model descriptions.
//!
//! These are the host's own types. The plugin contract has its own generated
//! types; `plugin` converts between the two and rejects anything malformed, so
//! a value of a type here has already been validated.

use std::fmt;

/// Errors found while validating names and descriptions.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModelError {
    #[error("`{0}` is not a model name: expected `app.model` in lower case")]
    BadModelName(String),
    #[error("`{0}` is not a valid SQL identifier: use lower-case letters, digits and `_`")]
    BadIdentifier(String),
    #[error("model {model}: {message}")]
    BadDescription { model: ModelName, message: String },
}

/// A normalized model name, `app.model` in lower case (`sentry.user`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelName(String);

impl ModelName {
    /// Normalizes as Sentry does (lower case) and checks the `app.model` shape.
    pub fn new(name: &str) -> Result<Self, ModelError> {
        let lower = name.to_ascii_lowercase();
        let mut parts = lower.split('.');
        let ok = matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(m), None)
            if is_ident(a) && is_ident(m));
        if ok { Ok(Self(lower)) } else { Err(ModelError::BadModelName(name.to_string())) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

fn is_ident(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
}

/// A table or column name that is safe to splice into SQL unquoted.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ident(String);

impl Ident {
    pub fn new(name: &str) -> Result<Self, ModelError> {
        if is_ident(name) { Ok(Self(name.to_string())) } else { Err(ModelError::BadIdentifier(name.to_string())) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name double-quoted, for a column in SQL: Sentry has columns named
    /// after SQL keywords (`sentry_dashboardwidget.limit`). An identifier is
    /// lower-case letters, digits and `_`, so quoting changes nothing else,
    /// in PostgreSQL (which folds unquoted names to lower case) as in SQLite.
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// A primary key. Sentry's ids are 64-bit.
pub type Pk = i64;

/// Sentry's `RelocationScope`, less `Excluded` (which is never imported).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    User,
    Organization,
    Config,
    Global,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::User => "User",
            Scope::Organization => "Organization",
            Scope::Config => "Config",
            Scope::Global => "Global",
        }
    }
}

/// The kind of import: which relocation scopes it takes in (spec §3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ImportScope {
    Users,
    Organizations,
    Config,
    Global,
}

impl ImportScope {
    /// The relocation scopes this import accepts.
    pub fn accepts(self, scope: Scope) -> bool {
        match self {
            ImportScope::Users => scope == Scope::User,
            ImportScope::Organizations => matches!(scope, Scope::User | Scope::Organization),
            ImportScope::Config => matches!(scope, Scope::User | Scope::Config),
            ImportScope::Global => true,
        }
    }

    /// The scope a plugin session is told it runs in.
    pub fn as_scope(self) -> Scope {
        match self {
            ImportScope::Users => Scope::User,
            ImportScope::Organizations => Scope::Organization,
            ImportScope::Config => Scope::Config,
            ImportScope::Global => Scope::Global,
        }
    }
}

/// Which of Sentry's silos a model lives in; decides its chunk table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Silo {
    Control,
    Region,
}

/// How a mapped pk came to be (Sentry's `ImportKind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ImportKind {
    Inserted,
    Existing,
    Overwrite,
}

/// The storage kind of a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ColumnKind {
    Integer,
    Float,
    Boolean,
    Text,
    Datetime,
    Json,
}

/// One field value. `Text` also carries datetimes, `Json` the text of any
/// JSON value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Float(f64),
    Boolean(bool),
    Text(String),
    Json(String),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Integer(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }
}

/// What happens to a record whose foreign key points at a record that was not
/// imported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnMissing {
    Drop,
    SetNull,
}

/// How a relation is declared: Sentry's kinds, and `Plain` for a model that
/// is not Sentry's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FkKind {
    /// A team's own model's foreign key: ordered, remapped and constrained
    /// like Sentry's `FlexibleForeignKey` (contract 0.2.0 on).
    Plain,
    FlexibleForeignKey,
    DefaultForeignKey,
    DefaultOneToOneField,
    OneToOneCascadeDeletes,
    HybridCloudForeignKey,
    ImplicitForeignKey,
}

impl FkKind {
    /// Whether Sentry's schema enforces the relation with a constraint.
    pub fn has_constraint(self) -> bool {
        !matches!(self, FkKind::HybridCloudForeignKey | FkKind::ImplicitForeignKey)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    /// The field name as exported (`user`, `user_id`).
    pub field: String,
    /// The database column (`user_id` for both of the above).
    pub name: Ident,
    pub kind: ColumnKind,
    pub nullable: bool,
    pub default: Option<Value>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ForeignKey {
    /// Index into the model's columns.
    pub column: usize,
    pub target: ModelName,
    pub kind: FkKind,
    pub nullable: bool,
    pub on_missing: OnMissing,
}

/// Everything the host knows of a model, as a plugin described it.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelDesc {
    pub name: ModelName,
    pub table: Ident,
    pub scopes: Vec<Scope>,
    pub silo: Silo,
    pub columns: Vec<Column>,
    pub foreign_keys: Vec<ForeignKey>,
    /// Column indices unique together.
    pub uniques: Vec<Vec<usize>>,
    pub relocation_dependencies: Vec<ModelName>,
}

impl ModelDesc {
    pub fn column_index(&self, field: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.field == field || c.name.as_str() == field)
    }

    /// Whether any of this model's scopes is taken in by `scope`.
    pub fn in_import(&self, scope: ImportScope) -> bool {
        self.scopes.iter().any(|s| scope.accepts(*s))
    }

    /// The models this one must come after: foreign-key targets (not itself)
    /// and declared relocation dependencies.
    pub fn dependencies(&self) -> impl Iterator<Item = &ModelName> {
        self.foreign_keys
            .iter()
            .map(|fk| &fk.target)
            .chain(self.relocation_dependencies.iter())
            .filter(move |m| **m != self.name)
    }

    /// The index of the `slug` column, which Sentry records in the pk map.
    pub fn slug_column(&self) -> Option<usize> {
        self.columns.iter().position(|c| c.field == "slug" && c.kind == ColumnKind::Text)
    }
}

/// The database column name for an exported field: foreign keys stored under
/// the field name (`user`) get Django's `_id` suffix.
pub fn column_name_for(field: &str, is_foreign_key: bool) -> String {
    if is_foreign_key && !field.ends_with("_id") { format!("{field}_id") } else { field.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_are_normalized_and_checked() {
        assert_eq!(ModelName::new("sentry.User").unwrap().as_str(), "sentry.user");
        assert!(ModelName::new("sentry").is_err());
        assert!(ModelName::new("sentry.user.x").is_err());
        assert!(ModelName::new("sentry.us-er").is_err());
        assert!(ModelName::new("").is_err());
    }

    #[test]
    fn identifiers_reject_sql() {
        assert!(Ident::new("auth_user").is_ok());
        assert!(Ident::new("auth_user; drop table x").is_err());
        assert!(Ident::new("1abc").is_err());
    }

    #[test]
    fn import_scopes_match_sentry() {
        use Scope::*;
        let accepted = |s: ImportScope| {
            [User, Organization, Config, Global].into_iter().filter(|x| s.accepts(*x)).collect::<Vec<_>>()
        };
        assert_eq!(accepted(ImportScope::Users), vec![User]);
        assert_eq!(accepted(ImportScope::Organizations), vec![User, Organization]);
        assert_eq!(accepted(ImportScope::Config), vec![User, Config]);
        assert_eq!(accepted(ImportScope::Global), vec![User, Organization, Config, Global]);
    }

    #[test]
    fn foreign_key_columns_get_id_suffix() {
        assert_eq!(column_name_for("user", true), "user_id");
        assert_eq!(column_name_for("user_id", true), "user_id");
        assert_eq!(column_name_for("slug", false), "slug");
    }
}

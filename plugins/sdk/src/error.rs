//! The two kinds of failure a plugin reports: a bad record ([`FieldError`]) and
//! a plugin that cannot go on ([`Fatal`]).

use std::fmt;

/// A problem with one field of one record, reported as `invalid`.
///
/// The import stops with these errors, as Sentry's importer stops on a
/// `ValidationError`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The field at fault; `None` when the record as a whole is.
    pub field: Option<String>,
    pub message: String,
}

impl FieldError {
    /// An error about one field.
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        Self { field: Some(field.to_string()), message: message.into() }
    }

    /// An error about the record as a whole.
    pub fn record(message: impl Into<String>) -> Self {
        Self { field: None, message: message.into() }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{field}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// The plugin cannot go on at all, as opposed to one bad record.
///
/// The host aborts the model's import. Returned instead of panicking: a panic
/// traps, and a trap throws the whole instance away.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fatal {
    /// The host asked for a model this plugin does not describe.
    UnsupportedModel(String),
    /// The host broke the contract (wrong number of values, unknown index, ...).
    Protocol(String),
    /// The plugin itself is wrong (a typo in a field name, a value of the wrong kind).
    Internal(String),
}

impl Fatal {
    /// A plugin bug; the usual way for an author to give up.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal(message.into())
    }

    pub(crate) fn protocol(message: impl Into<String>) -> Self {
        Self::Protocol(message.into())
    }
}

impl fmt::Display for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedModel(model) => write!(f, "unsupported model {model}"),
            Self::Protocol(message) => write!(f, "protocol error: {message}"),
            Self::Internal(message) => write!(f, "internal error: {message}"),
        }
    }
}

impl std::error::Error for Fatal {}

/// The SDK's result: `Err` is always a [`Fatal`].
pub type Result<T, E = Fatal> = std::result::Result<T, E>;

//! Model plugins: loading sandboxed wasm components and calling them.
//!
//! This module is the only one that knows about wasmtime. The engine sees
//! [`PluginHost`], [`Session`] and the domain types below; everything a plugin
//! returns is converted and checked structurally before it gets here.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::model::{ImportKind, ModelDesc, ModelName, Pk, Scope, Value};

mod contract;
#[doc(hidden)]
pub mod fuzzing;
mod imports;
mod runtime;
mod state;
mod v1;
mod v2;

pub use contract::{Contract, LATEST, SUPPORTED, supported_versions};
pub use imports::{Access, classify as classify_import};
pub use runtime::{MAX_MEMORY_LIMIT, Pending, PluginHost, Session, SessionThread, Usage};

/// A plugin failure. Every variant names the plugin; those raised during a
/// call name the model and, when known, the record.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("plugin {origin}: cannot load: {message}")]
    Load { origin: String, message: String },
    #[error("plugin {plugin}: invalid description: {message}")]
    Describe { plugin: String, message: String },
    #[error("plugin {plugin} on {model}{at}: trapped: {message}", at = RecordAt(*.ordinal))]
    Trap { plugin: String, model: ModelName, ordinal: Option<u64>, message: String },
    #[error(
        "plugin {plugin} on {model}{at}: ran past its time limit of {limit:?}; raise --plugin-timeout \
         or lower --batch-size",
        at = RecordAt(*.ordinal)
    )]
    Timeout { plugin: String, model: ModelName, ordinal: Option<u64>, limit: Duration },
    #[error(
        "plugin {plugin} on {model}{at}: ran out of its memory limit of {limit_mib} MiB; raise --plugin-memory \
         (at most {max} MiB) or lower --batch-size",
        at = RecordAt(*.ordinal),
        max = MAX_MEMORY_LIMIT >> 20
    )]
    OutOfMemory { plugin: String, model: ModelName, ordinal: Option<u64>, limit_mib: usize },
    #[error("plugin {plugin} on {model}: gave up: {message}")]
    Fatal { plugin: String, model: ModelName, message: String },
    #[error("plugin {plugin} on {model}{at}: broke the contract: {message}", at = RecordAt(*.ordinal))]
    Protocol { plugin: String, model: ModelName, ordinal: Option<u64>, message: String },
    /// The session failed earlier (trap, timeout, fatal, protocol) and its
    /// instance is never entered again; a new session starts afresh.
    #[error("plugin {plugin} on {model}: cannot be called after an earlier failure ({cause}); open a new session")]
    Poisoned { plugin: String, model: ModelName, cause: String },
    #[error("plugin runtime: {0}")]
    Runtime(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

struct RecordAt(Option<u64>);

impl std::fmt::Display for RecordAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(ordinal) => write!(f, " record #{ordinal}"),
            None => Ok(()),
        }
    }
}

/// Limits and settings shared by every plugin of one [`PluginHost`].
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Where compiled components are cached; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// Linear-memory cap of one plugin instance, in bytes; at most
    /// [`MAX_MEMORY_LIMIT`].
    pub memory_limit: usize,
    /// Wall-clock budget of one call into a plugin.
    pub call_timeout: Duration,
    /// Count the instructions plugins run (wasmtime fuel) and record the
    /// `host` imports they call, for `relocate plugin test`; an import leaves
    /// it off, as metering costs time.
    pub meter: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cache_dir: default_cache_dir(),
            memory_limit: 64 << 20,
            call_timeout: Duration::from_secs(10),
            meter: false,
        }
    }
}

/// `$XDG_CACHE_HOME/relocate` or `~/.cache/relocate`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("relocate").join("components"))
}

/// Where a plugin's bytes came from; named in every message about it.
#[derive(Clone, Debug)]
pub enum Origin {
    Builtin(&'static str),
    File(PathBuf),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Builtin(name) => write!(f, "builtin:{name}"),
            Origin::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Index of a loaded plugin in its [`PluginHost`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PluginId(pub usize);

/// What a plugin said about itself, validated.
#[derive(Clone, Debug)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub origin: Origin,
    pub models: Vec<ModelDesc>,
}

/// In-memory facts a plugin may ask for while it runs.
pub trait Facts: Send + Sync {
    fn mapping_of(&self, model: &ModelName, old_pk: Pk) -> Option<Mapping>;
}

#[derive(Clone, Debug, PartialEq)]
pub struct Mapping {
    pub new_pk: Pk,
    pub kind: ImportKind,
    pub slug: Option<String>,
}

/// Sentry's `ImportFlags`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportFlags {
    pub merge_users: bool,
    pub overwrite_configs: bool,
    pub hide_organizations: bool,
}

/// What a session is opened with.
#[derive(Clone)]
pub struct SessionConfig {
    pub model: ModelName,
    pub scope: Scope,
    pub flags: ImportFlags,
    /// When the import started: the only clock plugins see.
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// Seeds the session's random bytes together with the model name.
    pub seed: u64,
    pub facts: Arc<dyn Facts>,
}

/// A foreign key the host remapped before the plugin sees the record.
#[derive(Clone, Debug, PartialEq)]
pub struct MappedRef {
    pub column: usize,
    pub old_pk: Pk,
    pub kind: ImportKind,
}

/// One record handed to `prepare`.
#[derive(Clone, Debug, PartialEq)]
pub struct InputRecord {
    pub ordinal: u64,
    pub old_pk: Pk,
    pub values: Vec<Value>,
    pub refs: Vec<MappedRef>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    pub field: Option<String>,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{field}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// A question about rows already in the database.
#[derive(Clone, Debug, PartialEq)]
pub enum Query {
    /// The pk of a row of `model` whose `columns` (field names) equal `values`.
    Find { model: ModelName, columns: Vec<String>, values: Vec<Value> },
    /// Values of text `column` equal to `base` or starting with `base-`, ignoring case.
    Taken { model: ModelName, column: String, base: String },
}

#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    Found(Option<Pk>),
    Taken(Vec<String>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Prepared {
    Ready { scope: Option<Scope>, queries: Vec<Query> },
    Skip(String),
    Invalid(Vec<FieldError>),
}

/// The answers to one ready record's queries.
#[derive(Clone, Debug, PartialEq)]
pub struct Answered {
    /// Index of the record in the batch given to `prepare`.
    pub index: usize,
    pub answers: Vec<Answer>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Insert { values: Vec<Value>, pk: Option<Pk> },
    Reuse(Pk),
    Overwrite { pk: Pk, values: Vec<Value> },
    Skip(String),
    Invalid(Vec<FieldError>),
}

/// A row written along with a record, as Sentry's signals do.
#[derive(Clone, Debug, PartialEq)]
pub struct DerivedRow {
    pub model: ModelName,
    pub values: Vec<Value>,
    /// A foreign-key field of `model` to fill with the record's pk.
    pub parent_field: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Decided {
    pub index: usize,
    pub decision: Decision,
    pub derived: Vec<DerivedRow>,
}

/// Log levels a plugin may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// Receives what plugins log: plugin (`name@version`), model (none while the
/// plugin describes itself at load), level and the line, already cut to size.
pub type LogSink = Arc<dyn Fn(&str, Option<&ModelName>, Level, &str) + Send + Sync>;

/// The default [`LogSink`]: one line per message on stderr.
pub fn stderr_log_sink() -> LogSink {
    Arc::new(|plugin, model, level, message| {
        let level = match level {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        match model {
            Some(model) => eprintln!("[{plugin} {model}] {level}: {message}"),
            None => eprintln!("[{plugin}] {level}: {message}"),
        }
    })
}

//! The SDK for writing `relocate` model plugins.
//!
//! A plugin owns what is special about some models of a backup export: it
//! describes them, normalizes their records and resolves collisions with rows
//! already in the database, which it never touches itself. Write one
//! [`Model`] impl per model and export them with [`register_plugin!`]:
//!
//! ```
//! use relocate_plugin_sdk::{register_plugin, ColumnKind, Model, ModelDesc, Result, Scope, Session, Silo};
//!
//! struct Widget;
//!
//! impl Model for Widget {
//!     fn describe() -> ModelDesc {
//!         ModelDesc::new("acme.widget", "acme_widget", Scope::Organization, Silo::Region)
//!             .column("name", ColumnKind::Text)
//!     }
//!
//!     fn new(_: &Session) -> Result<Self> {
//!         Ok(Self)
//!     }
//! }
//!
//! register_plugin!("acme-widgets", [Widget]);
//! ```
//!
//! The same code builds natively, where [`testing`] stands in for the host, so
//! a plugin's logic is unit-tested with plain `cargo test`.

mod collections;
mod derived;
mod error;
mod host;
mod model;
mod outcome;
mod query;
mod record;
mod runtime;
mod session;
mod value;

#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
#[path = "wit.rs"]
pub mod __wit;

pub use collections::{HashMap, HashSet, Hasher};
pub use derived::Derived;
pub use error::{Fatal, FieldError, Result};
pub use model::{Column, FkKind, ForeignKey, ModelDesc, OnMissing, Scope, Silo};
pub use outcome::{Decision, Prepared};
pub use query::{Answer, Answers, Ask, AskKind, Found, Query, QueryNames, Taken};
pub use record::{ImportKind, MappedRef, Record};
pub use session::{ImportFlags, Level, Mapping, Session};
pub use value::{ColumnKind, Value};

/// The plumbing behind [`register_plugin!`]; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::runtime::{ModelEntry, PluginDef};
}

/// The import logic of one model.
///
/// The SDK calls [`Model::new`] once per import of the model, then, for each
/// batch, [`Model::prepare`] on every record and [`Model::resolve`] on every
/// record that came out ready, once the host has answered its queries. Only
/// [`Model::describe`] and [`Model::new`] are required: by default a record is
/// inserted unchanged.
///
/// Rules: no I/O and no clock but [`Session::started_at`]; randomness only from
/// the [`Session`] (it is seeded, so imports are reproducible); a bad record is
/// `invalid`, never a panic (a panic traps and kills the instance).
pub trait Model: Sized + 'static {
    /// Describes the model: table, scopes, columns, foreign keys, uniques.
    fn describe() -> ModelDesc;

    /// Starts one import of the model.
    ///
    /// State kept in `self` lives across the import's batches, such as the
    /// names already given out.
    fn new(session: &Session) -> Result<Self>;

    /// Takes a first look at one record: normalize it in place, and list the
    /// queries that [`Model::resolve`] needs answered.
    ///
    /// The default is ready, with no queries, in the model's only scope. A
    /// model with several scopes must override it and say each record's own
    /// scope ([`Prepared::ready_in`]); the default fails rather than guess.
    fn prepare(&mut self, session: &Session, record: &mut Record) -> Result<Prepared> {
        let _ = session;
        let desc = record.desc();
        if desc.scopes.len() > 1 {
            return Err(Fatal::internal(format!(
                "{} has several scopes; its plugin must choose each record's scope in `prepare`",
                desc.name
            )));
        }
        Ok(Prepared::ready())
    }

    /// Decides what to write for a ready record, given the answers to its
    /// queries in the order `prepare` asked them.
    ///
    /// The default inserts the record as it is, under a new pk.
    fn resolve(&mut self, session: &Session, record: Record, answers: &Answers) -> Result<Decision> {
        let _ = (session, answers);
        Ok(Decision::insert(record))
    }
}

/// Registers the given [`Model`] types as a `relocate` plugin.
///
/// Takes the plugin's name, optionally its version (the crate's by default),
/// and the list of models. Call it once, in the plugin crate's `lib.rs`:
///
/// ```ignore
/// register_plugin!("sentry-users", [User, Email, UserEmail]);
/// register_plugin!("sentry-users", "1.2.0", [User, Email, UserEmail]);
/// ```
///
/// In a wasm32 build this exports the component; natively it only declares
/// `__RelocatePlugin`, which [`testing::check_plugin`] accepts.
#[macro_export]
macro_rules! register_plugin {
    ($name:literal, [$($model:ty),+ $(,)?]) => {
        $crate::register_plugin!($name, env!("CARGO_PKG_VERSION"), [$($model),+]);
    };
    ($name:literal, $version:expr, [$($model:ty),+ $(,)?]) => {
        #[doc(hidden)]
        pub struct __RelocatePlugin;

        impl $crate::__private::PluginDef for __RelocatePlugin {
            const NAME: &'static str = $name;
            const VERSION: &'static str = $version;
            const MODELS: &'static [$crate::__private::ModelEntry] =
                &[$($crate::__private::ModelEntry::of::<$model>()),+];
        }

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __RelocateComponent = $crate::__wit::Component<__RelocatePlugin>;
            $crate::__wit::__export_relocate_plugin!(__RelocateComponent with_types_in $crate::__wit);
        };
    };
}

//! relocate: imports relational backup exports (Sentry relocations) through
//! sandboxed wasm model plugins.
//!
//! Dependencies run one way: `cli` → `engine` → {`reader`, `plugin`, `db`},
//! all of which speak the vocabulary of `model`; `reader` uses `crypto`.
//! `jobs` (the queue on NATS) → `engine`, for `relocate submit`, `worker` and `jobs`.

pub mod cli;
pub mod crypto;
pub mod db;
pub mod engine;
#[doc(hidden)]
pub mod fuzzing;
pub mod jobs;
pub mod model;
pub mod plugin;
pub mod reader;
pub mod synth;

/// The first-party plugins, built from `plugins/` and embedded.
pub mod builtin {
    include!(concat!(env!("OUT_DIR"), "/builtin.rs"));

    /// Loads every first-party plugin into `host`.
    pub fn load(host: &mut crate::plugin::PluginHost) -> crate::plugin::Result<()> {
        for (name, bytes) in BUILTIN {
            host.load(crate::plugin::Origin::Builtin(name), bytes)?;
        }
        Ok(())
    }
}

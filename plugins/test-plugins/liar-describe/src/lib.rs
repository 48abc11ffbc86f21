//! Test guest: describes a model under a malformed name.

wit_bindgen::generate!({ path: "../../../wit/v1", world: "plugin" });

use exports::relocate::plugin::importer::{Guest, GuestSession, PluginInfo};
use relocate::plugin::types::*;

struct Plugin;

impl Guest for Plugin {
    type Session = Session;

    fn describe() -> PluginInfo {
        PluginInfo {
            name: "liar-describe".into(),
            version: "0.1.0".into(),
            models: vec![ModelDesc {
                name: "not a model; drop table users".into(),
                table: "bad".into(),
                scopes: vec![Scope::Global],
                silo: Silo::Region,
                columns: vec![],
                foreign_keys: vec![],
                uniques: vec![],
                relocation_dependencies: vec![],
            }],
        }
    }
}

struct Session;

impl GuestSession for Session {
    fn new(_config: SessionConfig) -> Self {
        Session
    }

    fn prepare(&self, _batch: Vec<InputRecord>) -> Result<Vec<Prepared>, Fatal> {
        Err(Fatal::Internal("unreachable: the host rejects this plugin".into()))
    }

    fn resolve(&self, _answers: Vec<Answered>) -> Result<Vec<Decided>, Fatal> {
        Err(Fatal::Internal("unreachable: the host rejects this plugin".into()))
    }
}

export!(Plugin);

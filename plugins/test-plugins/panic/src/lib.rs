//! Test guest: `prepare` panics on a record whose text is `boom`.

wit_bindgen::generate!({ path: "../../../wit/v1", world: "plugin" });

use exports::relocate::plugin::importer::{Guest, GuestSession, PluginInfo};
use relocate::plugin::host;
use relocate::plugin::types::*;

struct Plugin;

impl Guest for Plugin {
    type Session = Session;

    fn describe() -> PluginInfo {
        PluginInfo {
            name: "panic".into(),
            version: "0.1.0".into(),
            models: vec![ModelDesc {
                name: "test.panic".into(),
                table: "test_panic".into(),
                scopes: vec![Scope::Global],
                silo: Silo::Region,
                columns: vec![Column { name: "text".into(), kind: ColumnKind::Text, nullable: false, default: None }],
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

    fn prepare(&self, batch: Vec<InputRecord>) -> Result<Vec<Prepared>, Fatal> {
        for (i, record) in batch.iter().enumerate() {
            host::at_record(i as u32);
            if matches!(record.values.first(), Some(Value::Text(t)) if t == "boom") {
                panic!("the panic plugin blew up on old pk {}", record.old_pk);
            }
        }
        Ok(batch.iter().map(|_| Prepared::Skip("nothing to do".into())).collect())
    }

    fn resolve(&self, _answers: Vec<Answered>) -> Result<Vec<Decided>, Fatal> {
        Ok(Vec::new())
    }
}

export!(Plugin);

//! Test guest that misbehaves on purpose, one way per model, on the record
//! whose text is the trigger: `test.spin` never returns (`spin`),
//! `test.oom` allocates without bound (`oom`), `test.panic` panics (`boom`).
//! Every other record is skipped.

wit_bindgen::generate!({ path: "../../../wit/v1", world: "plugin" });

use exports::relocate::plugin::importer::{Guest, GuestSession, PluginInfo};
use relocate::plugin::host;
use relocate::plugin::types::*;

struct Plugin;

/// One text column, nothing else: the trigger is all these models carry.
fn model(name: &str) -> ModelDesc {
    ModelDesc {
        name: format!("test.{name}"),
        table: format!("test_{name}"),
        scopes: vec![Scope::Global],
        silo: Silo::Region,
        columns: vec![Column { name: "text".into(), kind: ColumnKind::Text, nullable: false, default: None }],
        foreign_keys: vec![],
        uniques: vec![],
        relocation_dependencies: vec![],
    }
}

impl Guest for Plugin {
    type Session = Session;

    fn describe() -> PluginInfo {
        PluginInfo {
            name: "misbehave".into(),
            version: "0.1.0".into(),
            models: ["spin", "oom", "panic"].map(model).into(),
        }
    }
}

struct Session {
    model: String,
}

impl GuestSession for Session {
    fn new(config: SessionConfig) -> Self {
        Session { model: config.model }
    }

    fn prepare(&self, batch: Vec<InputRecord>) -> Result<Vec<Prepared>, Fatal> {
        for (i, record) in batch.iter().enumerate() {
            host::at_record(i as u32);
            let Some(Value::Text(text)) = record.values.first() else { continue };
            match (self.model.as_str(), text.as_str()) {
                ("test.spin", "spin") => {
                    let mut n = 0u64;
                    loop {
                        n = std::hint::black_box(n.wrapping_add(1));
                    }
                }
                ("test.oom", "oom") => {
                    let mut hoard: Vec<Vec<u8>> = Vec::new();
                    loop {
                        hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
                    }
                }
                ("test.panic", "boom") => panic!("the panic plugin blew up on old pk {}", record.old_pk),
                _ => {}
            }
        }
        Ok(batch.iter().map(|_| Prepared::Skip("nothing to do".into())).collect())
    }

    fn resolve(&self, _answers: Vec<Answered>) -> Result<Vec<Decided>, Fatal> {
        Ok(Vec::new())
    }
}

export!(Plugin);

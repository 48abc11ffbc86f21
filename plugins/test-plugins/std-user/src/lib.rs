//! Test guest: uses std's WASI-backed APIs and reports what it saw.
//!
//! `prepare` skips every record with a reason listing what the clock,
//! environment, filesystem, network, sleep and a `HashMap` did, so the host
//! can check that each is harmless under its locked-down WASI.

wit_bindgen::generate!({ path: "../../../wit/v1", world: "plugin" });

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use exports::relocate::plugin::importer::{Guest, GuestSession, PluginInfo};
use relocate::plugin::types::*;

struct Plugin;

impl Guest for Plugin {
    type Session = Session;

    fn describe() -> PluginInfo {
        PluginInfo {
            name: "std-user".into(),
            version: "0.1.0".into(),
            models: vec![ModelDesc {
                name: "test.std".into(),
                table: "test_std".into(),
                scopes: vec![Scope::Config],
                silo: Silo::Control,
                columns: vec![Column { name: "text".into(), kind: ColumnKind::Text, nullable: true, default: None }],
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
        println!("hello from std-user");
        eprintln!("std-user writes to stderr");
        let mut map = HashMap::new();
        for record in &batch {
            map.insert(record.old_pk, record.ordinal);
        }
        let now = match SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => d.as_millis().to_string(),
            Err(_) => "before-epoch".into(),
        };
        let env = match std::env::var("HOME") {
            Ok(v) => format!("set:{v}"),
            Err(e) => format!("err:{e}"),
        };
        let args = std::env::args().count();
        let fs = match std::fs::read_to_string("/etc/passwd") {
            Ok(_) => "read".to_string(),
            Err(_) => "err".to_string(),
        };
        let net = match std::net::TcpStream::connect("127.0.0.1:9") {
            Ok(_) => "connected".to_string(),
            Err(_) => "err".to_string(),
        };
        let start = Instant::now();
        std::thread::sleep(Duration::from_secs(3600));
        let slept = start.elapsed().as_secs();
        let report = format!("now={now} env={env} args={args} fs={fs} net={net} slept={slept} map={}", map.len());
        Ok(batch.iter().map(|_| Prepared::Skip(report.clone())).collect())
    }

    fn resolve(&self, _answers: Vec<Answered>) -> Result<Vec<Decided>, Fatal> {
        Ok(Vec::new())
    }
}

export!(Plugin);

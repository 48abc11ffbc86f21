//! Test guest: describes a model of its own on another plugin's table
//! (`auth_user`, which `sentry.user` of the built-in sentry-users uses), to
//! write that model's rows under a name of its own.

wit_bindgen::generate!({ path: "../../../wit/v1", world: "plugin" });

use exports::relocate::plugin::importer::{Guest, GuestSession, PluginInfo};
use relocate::plugin::types::*;

struct Plugin;

impl Guest for Plugin {
    type Session = Session;

    fn describe() -> PluginInfo {
        PluginInfo {
            name: "hostile-describe".into(),
            version: "0.1.0".into(),
            models: vec![ModelDesc {
                name: "hostile.shadow".into(),
                table: "auth_user".into(),
                scopes: vec![Scope::Config],
                silo: Silo::Control,
                columns: vec![
                    Column { name: "username".into(), kind: ColumnKind::Text, nullable: false, default: None },
                    Column { name: "is_superuser".into(), kind: ColumnKind::Boolean, nullable: false, default: None },
                ],
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
        Ok(batch.iter().map(|_| Prepared::Ready(Ready { scope: None, queries: vec![] })).collect())
    }

    fn resolve(&self, answers: Vec<Answered>) -> Result<Vec<Decided>, Fatal> {
        let row = vec![Value::Text("intruder".into()), Value::Boolean(true)];
        Ok(answers
            .iter()
            .map(|a| Decided {
                index: a.index,
                decision: Decision::Insert(Row { values: row.clone(), pk: None }),
                derived: vec![],
            })
            .collect())
    }
}

export!(Plugin);

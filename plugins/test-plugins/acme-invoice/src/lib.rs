//! Test guest: a team's own model, `acme.invoice`, whose foreign key names a
//! model nobody describes (`sentry.organisation`, a typo of
//! `sentry.organization`). The host must refuse it at load. Were it loaded,
//! it would insert every record as it is.

wit_bindgen::generate!({ path: "../../../wit/v1", world: "plugin" });

use std::cell::RefCell;

use exports::relocate::plugin::importer::{Guest, GuestSession, PluginInfo};
use relocate::plugin::types::*;

struct Plugin;

impl Guest for Plugin {
    type Session = Session;

    fn describe() -> PluginInfo {
        let column = |name: &str, kind| Column { name: name.into(), kind, nullable: false, default: None };
        PluginInfo {
            name: "acme-invoice".into(),
            version: "0.1.0".into(),
            models: vec![ModelDesc {
                name: "acme.invoice".into(),
                table: "acme_invoice".into(),
                scopes: vec![Scope::Organization],
                silo: Silo::Region,
                columns: vec![column("number", ColumnKind::Text), column("organization", ColumnKind::Integer)],
                foreign_keys: vec![ForeignKey {
                    column: "organization".into(),
                    model: "sentry.organisation".into(),
                    kind: FkKind::FlexibleForeignKey,
                    nullable: false,
                    on_missing: OnMissing::Drop,
                }],
                uniques: vec![vec!["number".into(), "organization".into()]],
                relocation_dependencies: vec![],
            }],
        }
    }
}

struct Session {
    batch: RefCell<Vec<InputRecord>>,
}

impl GuestSession for Session {
    fn new(_config: SessionConfig) -> Self {
        Session { batch: RefCell::new(Vec::new()) }
    }

    fn prepare(&self, batch: Vec<InputRecord>) -> Result<Vec<Prepared>, Fatal> {
        let ready = batch.iter().map(|_| Prepared::Ready(Ready { scope: None, queries: vec![] })).collect();
        *self.batch.borrow_mut() = batch;
        Ok(ready)
    }

    fn resolve(&self, answers: Vec<Answered>) -> Result<Vec<Decided>, Fatal> {
        let batch = self.batch.borrow();
        answers
            .into_iter()
            .map(|a| {
                let record =
                    batch.get(a.index as usize).ok_or_else(|| Fatal::Protocol(format!("no record {}", a.index)))?;
                let decision = Decision::Insert(Row { values: record.values.clone(), pk: None });
                Ok(Decided { index: a.index, decision, derived: vec![] })
            })
            .collect()
    }
}

export!(Plugin);

//! Test guest: a plugin built against the frozen contract 0.1.0 (`wit/v1`,
//! raw bindings, no SDK), as a team's plugin built before 0.2.0 is. The host
//! must keep importing with it next to plugins of the latest contract.
//!
//! `legacy.invoice` bills a Sentry organization and maybe one of its
//! projects. `prepare` upper-cases the number and asks for an invoice of the
//! organization with that number; `resolve` reuses it, or inserts the record
//! with `org_new_pk` set from the host's `mapping-of` (so that a test sees
//! every host import of 0.1.0 at work).

wit_bindgen::generate!({ path: "../../../wit/v1", world: "plugin" });

use std::cell::RefCell;

use exports::relocate::plugin::importer::{Guest, GuestSession, PluginInfo};
use relocate::plugin::host;
use relocate::plugin::types::*;

const MODEL: &str = "legacy.invoice";
const ORGANIZATION: usize = 0;
const NUMBER: usize = 2;
const ORG_NEW_PK: usize = 3;

struct Plugin;

impl Guest for Plugin {
    type Session = Session;

    fn describe() -> PluginInfo {
        let column = |name: &str, kind, nullable| Column { name: name.into(), kind, nullable, default: None };
        PluginInfo {
            name: "v1-invoice".into(),
            version: "1.0.0".into(),
            models: vec![ModelDesc {
                name: MODEL.into(),
                table: "legacy_invoice".into(),
                scopes: vec![Scope::Organization],
                silo: Silo::Region,
                columns: vec![
                    column("organization", ColumnKind::Integer, false),
                    column("project", ColumnKind::Integer, true),
                    column("number", ColumnKind::Text, false),
                    column("org_new_pk", ColumnKind::Integer, true),
                ],
                foreign_keys: vec![
                    // 0.1.0 has no `plain`: a team's key is sent as Sentry's ordinary one.
                    ForeignKey {
                        column: "organization".into(),
                        model: "sentry.organization".into(),
                        kind: FkKind::FlexibleForeignKey,
                        nullable: false,
                        on_missing: OnMissing::Drop,
                    },
                    ForeignKey {
                        column: "project".into(),
                        model: "sentry.project".into(),
                        kind: FkKind::FlexibleForeignKey,
                        nullable: true,
                        on_missing: OnMissing::SetNull,
                    },
                ],
                uniques: vec![vec!["organization".into(), "number".into()]],
                relocation_dependencies: vec![],
            }],
        }
    }
}

struct Session {
    /// The last batch, as `prepare` left it.
    batch: RefCell<Vec<InputRecord>>,
}

impl GuestSession for Session {
    fn new(config: SessionConfig) -> Self {
        host::log(
            Level::Info,
            &format!(
                "0.1.0 session on {} in scope {}",
                config.model,
                match config.scope {
                    Scope::User => "user",
                    Scope::Organization => "organization",
                    Scope::Config => "config",
                    Scope::Global => "global",
                }
            ),
        );
        Session { batch: RefCell::new(Vec::new()) }
    }

    fn prepare(&self, mut batch: Vec<InputRecord>) -> Result<Vec<Prepared>, Fatal> {
        let mut prepared = Vec::with_capacity(batch.len());
        for (index, record) in batch.iter_mut().enumerate() {
            host::at_record(index as u32);
            let Some(Value::Text(number)) = record.values.get(NUMBER).cloned() else {
                prepared.push(Prepared::Invalid(vec![FieldError {
                    field: Some("number".into()),
                    message: "not text".into(),
                }]));
                continue;
            };
            let number = number.to_uppercase();
            record.values[NUMBER] = Value::Text(number.clone());
            let organization = record.values[ORGANIZATION].clone();
            prepared.push(Prepared::Ready(Ready {
                scope: None,
                queries: vec![Query::Find(FindQuery {
                    model: MODEL.into(),
                    columns: vec!["organization".into(), "number".into()],
                    values: vec![organization, Value::Text(number)],
                })],
            }));
        }
        *self.batch.borrow_mut() = batch;
        Ok(prepared)
    }

    fn resolve(&self, answers: Vec<Answered>) -> Result<Vec<Decided>, Fatal> {
        let batch = self.batch.borrow();
        answers
            .into_iter()
            .map(|answered| {
                host::at_record(answered.index);
                let record = batch
                    .get(answered.index as usize)
                    .ok_or_else(|| Fatal::Protocol(format!("no record {} in the batch", answered.index)))?;
                let decision = match answered.answers.first() {
                    Some(Answer::Found(Some(pk))) => Decision::Reuse(*pk),
                    _ => {
                        let mut values = record.values.clone();
                        let org_ref = record.refs.iter().find(|r| r.column as usize == ORGANIZATION);
                        let mapped = org_ref.and_then(|r| host::mapping_of("sentry.organization", r.old_pk));
                        values[ORG_NEW_PK] = mapped.map_or(Value::Null, |m| Value::Integer(m.new_pk));
                        Decision::Insert(Row { values, pk: None })
                    }
                };
                Ok(Decided { index: answered.index, decision, derived: vec![] })
            })
            .collect()
    }
}

export!(Plugin);

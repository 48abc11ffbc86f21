//! Test guest: a well-behaved plugin that touches every host import.
//!
//! It describes `test.author` and `test.book`. `prepare` asks to find each
//! record by its first column; `resolve` reuses a found row or inserts the
//! values unchanged. A first value of `?random` is replaced by the hex of 8
//! host random bytes, and a record whose first value is `fatal` makes the
//! batch fail with `fatal.internal`.

wit_bindgen::generate!({ path: "../../../wit/v1", world: "plugin" });

use std::cell::RefCell;

use exports::relocate::plugin::importer::{Guest, GuestSession, PluginInfo};
use relocate::plugin::host;
use relocate::plugin::types::*;

struct Plugin;

impl Guest for Plugin {
    type Session = Session;

    fn describe() -> PluginInfo {
        let column = |name: &str, kind, nullable| Column { name: name.into(), kind, nullable, default: None };
        PluginInfo {
            name: "passthrough".into(),
            version: "1.2.3".into(),
            models: vec![
                ModelDesc {
                    name: "test.author".into(),
                    table: "test_author".into(),
                    scopes: vec![Scope::User],
                    silo: Silo::Control,
                    columns: vec![column("name", ColumnKind::Text, false), column("email", ColumnKind::Text, true)],
                    foreign_keys: vec![],
                    uniques: vec![vec!["name".into()]],
                    relocation_dependencies: vec![],
                },
                ModelDesc {
                    name: "Test.Book".into(),
                    table: "test_book".into(),
                    scopes: vec![Scope::Organization, Scope::Global],
                    silo: Silo::Region,
                    columns: vec![
                        column("title", ColumnKind::Text, false),
                        column("author", ColumnKind::Integer, false),
                        Column {
                            name: "pages".into(),
                            kind: ColumnKind::Integer,
                            nullable: true,
                            default: Some(Value::Null),
                        },
                    ],
                    foreign_keys: vec![ForeignKey {
                        column: "author".into(),
                        model: "test.author".into(),
                        kind: FkKind::FlexibleForeignKey,
                        nullable: false,
                        on_missing: OnMissing::Drop,
                    }],
                    uniques: vec![vec!["title".into(), "author_id".into()]],
                    relocation_dependencies: vec!["test.author".into()],
                },
            ],
        }
    }
}

struct Session {
    model: String,
    /// The batch given to the last `prepare`, for `resolve`.
    batch: RefCell<Vec<InputRecord>>,
}

impl GuestSession for Session {
    fn new(config: SessionConfig) -> Self {
        host::log(Level::Info, &format!("session for {} since {}", config.model, config.started_at));
        Session { model: config.model, batch: RefCell::new(Vec::new()) }
    }

    fn prepare(&self, batch: Vec<InputRecord>) -> Result<Vec<Prepared>, Fatal> {
        host::log(Level::Debug, &format!("prepare {} records", batch.len()));
        let mut out = Vec::with_capacity(batch.len());
        for (i, record) in batch.iter().enumerate() {
            host::at_record(i as u32);
            if matches!(record.values.first(), Some(Value::Text(t)) if t == "fatal") {
                return Err(Fatal::Internal(format!("record {} asked for it", record.ordinal)));
            }
            // Every mapped reference must be known to the host's facts.
            let missing = record.refs.iter().find(|r| host::mapping_of("test.author", r.old_pk).is_none());
            if let Some(r) = missing {
                out.push(Prepared::Invalid(vec![FieldError {
                    field: Some("author".into()),
                    message: format!("author {} was not imported", r.old_pk),
                }]));
                continue;
            }
            // Books have two scopes, so each record must say which it is in.
            let (first, scope) =
                if self.model == "test.book" { ("title", Some(Scope::Organization)) } else { ("name", None) };
            out.push(Prepared::Ready(Ready {
                scope,
                queries: vec![Query::Find(FindQuery {
                    model: self.model.clone(),
                    columns: vec![first.into()],
                    values: vec![record.values.first().cloned().unwrap_or(Value::Null)],
                })],
            }));
        }
        *self.batch.borrow_mut() = batch;
        Ok(out)
    }

    fn resolve(&self, answers: Vec<Answered>) -> Result<Vec<Decided>, Fatal> {
        let batch = self.batch.borrow();
        let mut out = Vec::with_capacity(answers.len());
        for answered in answers {
            host::at_record(answered.index);
            let Some(record) = batch.get(answered.index as usize) else {
                return Err(Fatal::Protocol(format!("no record at index {}", answered.index)));
            };
            let decision = match answered.answers.first() {
                Some(Answer::Found(Some(pk))) => Decision::Reuse(*pk),
                _ => {
                    let mut values = record.values.clone();
                    if matches!(values.first(), Some(Value::Text(t)) if t == "?random") {
                        let hex = host::random_bytes(8).iter().map(|b| format!("{b:02x}")).collect();
                        values[0] = Value::Text(hex);
                    }
                    Decision::Insert(Row { values, pk: None })
                }
            };
            out.push(Decided { index: answered.index, decision, derived: Vec::new() });
        }
        Ok(out)
    }
}

export!(Plugin);

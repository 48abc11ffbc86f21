//! Test guest for issue #9's hostile plugins: each model `hostile.<mode>`
//! attacks the host in one way, on the record whose text is `go` (others
//! are inserted as given), so that a failure can be blamed on that record.
//!
//! `hostile.target` behaves: it is what the other models point at, and
//! what must still be imported when one of them fails.
//!
//! In `prepare`:
//! - `recurse`: recurses until the stack runs out;
//! - `random_flood`: asks for random bytes forever;
//! - `log_flood`: logs forever;
//! - `print_flood`: prints to stdout forever;
//! - `exit`: calls `exit(0)`, as if the call had succeeded;
//! - `index_flood`: asks about `sentry.user` (another plugin's model) by 63
//!   different column sets, each of which would need an index on its table.
//!
//! In `resolve`, the decision for the `go` record:
//! - `huge_text`: a 48 MiB text value;
//! - `many_decisions`: a million decisions besides the real ones;
//! - `wrong_kind`: an integer in the text column;
//! - `null`: null in the non-null text column;
//! - `wide_row`: a row of three values for a model of two columns;
//! - `fk_unmapped`: `parent` set to a pk the host never gave;
//! - `reuse_unnamed`: reuse of a row no answer named;
//! - `reuse_foreign`: reuse of a pk found in another model's table
//!   (`hostile.target`'s row `one`), as if it were a row of its own;
//! - `derive_foreign`: a derived row of `sentry.email`, another plugin's model;
//! - `derive_undescribed`: a derived row of a model nobody describes.

wit_bindgen::generate!({ path: "../../../wit/v1", world: "plugin" });

use exports::relocate::plugin::importer::{Guest, GuestSession, PluginInfo};
use relocate::plugin::host;
use relocate::plugin::types::*;

struct Plugin;

const MODES: [&str; 17] = [
    "recurse",
    "random_flood",
    "log_flood",
    "print_flood",
    "exit",
    "index_flood",
    "huge_text",
    "many_decisions",
    "wrong_kind",
    "null",
    "wide_row",
    "fk_unmapped",
    "reuse_unnamed",
    "reuse_foreign",
    "derive_foreign",
    "derive_undescribed",
    "target",
];

/// `text` (text, not null) and `parent` (nullable foreign key to
/// `hostile.target`); the target itself has only `text`.
fn model(mode: &str) -> ModelDesc {
    let mut columns = vec![Column { name: "text".into(), kind: ColumnKind::Text, nullable: false, default: None }];
    let mut foreign_keys = vec![];
    if mode != "target" {
        columns.push(Column { name: "parent".into(), kind: ColumnKind::Integer, nullable: true, default: None });
        foreign_keys.push(ForeignKey {
            column: "parent".into(),
            model: "hostile.target".into(),
            kind: FkKind::DefaultForeignKey,
            nullable: true,
            on_missing: OnMissing::SetNull,
        });
    }
    ModelDesc {
        name: format!("hostile.{mode}"),
        table: format!("hostile_{mode}"),
        scopes: vec![Scope::Config],
        silo: Silo::Region,
        columns,
        foreign_keys,
        uniques: vec![],
        relocation_dependencies: vec![],
    }
}

impl Guest for Plugin {
    type Session = Session;

    fn describe() -> PluginInfo {
        PluginInfo { name: "hostile".into(), version: "0.1.0".into(), models: MODES.map(model).into() }
    }
}

struct Session {
    mode: String,
    /// The values of the last batch, by index, for `resolve`.
    batch: std::cell::RefCell<Vec<Vec<Value>>>,
}

fn is_go(values: &[Value]) -> bool {
    matches!(values.first(), Some(Value::Text(t)) if t == "go")
}

/// Recursion the compiler cannot turn into a loop: each frame needs the
/// result of the next, and the depth comes from the record.
#[inline(never)]
fn dive(n: u64) -> u64 {
    if n == 0 {
        return 1;
    }
    dive(n - 1).rotate_left((n % 61) as u32) ^ n
}

/// Every non-empty subset of six text columns of `sentry.user`: 63 `find`s,
/// each on a column set of its own.
fn column_lists() -> Vec<Query> {
    const COLUMNS: [&str; 6] = ["avatar_url", "email", "name", "password", "session_nonce", "username"];
    (1..1u32 << COLUMNS.len())
        .map(|set| {
            let columns: Vec<String> =
                COLUMNS.iter().enumerate().filter(|(i, _)| set & (1 << i) != 0).map(|(_, c)| c.to_string()).collect();
            Query::Find(FindQuery {
                model: "sentry.user".into(),
                values: columns.iter().map(|_| Value::Text("x".into())).collect(),
                columns,
            })
        })
        .collect()
}

impl GuestSession for Session {
    fn new(config: SessionConfig) -> Self {
        let mode = config.model.trim_start_matches("hostile.").to_string();
        Session { mode, batch: Default::default() }
    }

    fn prepare(&self, batch: Vec<InputRecord>) -> Result<Vec<Prepared>, Fatal> {
        for (i, record) in batch.iter().enumerate() {
            host::at_record(i as u32);
            if !is_go(&record.values) {
                continue;
            }
            match self.mode.as_str() {
                "recurse" => {
                    let depth = u64::MAX ^ record.old_pk as u64;
                    host::log(Level::Info, &format!("dived to {}", dive(depth)));
                }
                "random_flood" => loop {
                    std::hint::black_box(host::random_bytes(64 << 10));
                },
                "log_flood" => loop {
                    host::log(Level::Info, "flooding the log");
                },
                "print_flood" => loop {
                    println!("{}", "y".repeat(1000));
                },
                "exit" => std::process::exit(0),
                _ => {}
            }
        }
        *self.batch.borrow_mut() = batch.iter().map(|r| r.values.clone()).collect();
        Ok(batch
            .iter()
            .map(|r| {
                let queries = match self.mode.as_str() {
                    "index_flood" if is_go(&r.values) => column_lists(),
                    "reuse_foreign" if is_go(&r.values) => vec![Query::Find(FindQuery {
                        model: "hostile.target".into(),
                        columns: vec!["text".into()],
                        values: vec![Value::Text("one".into())],
                    })],
                    _ => vec![],
                };
                Prepared::Ready(Ready { scope: None, queries })
            })
            .collect())
    }

    fn resolve(&self, answers: Vec<Answered>) -> Result<Vec<Decided>, Fatal> {
        let batch = self.batch.borrow();
        let mut out = Vec::with_capacity(answers.len());
        for answered in &answers {
            let index = answered.index;
            host::at_record(index);
            let mut values = batch[index as usize].clone();
            let insert = |values| Decision::Insert(Row { values, pk: None });
            let mut derived = vec![];
            let decision = if !is_go(&values) {
                insert(values)
            } else {
                match self.mode.as_str() {
                    "huge_text" => {
                        values[0] = Value::Text("x".repeat(48 << 20));
                        insert(values)
                    }
                    "many_decisions" => {
                        out.extend((0..1_000_000).map(|_| Decided {
                            index,
                            decision: Decision::Skip(String::new()),
                            derived: vec![],
                        }));
                        insert(values)
                    }
                    "wrong_kind" => {
                        values[0] = Value::Integer(7);
                        insert(values)
                    }
                    "null" => {
                        values[0] = Value::Null;
                        insert(values)
                    }
                    "wide_row" => {
                        values.push(Value::Text("one too many".into()));
                        insert(values)
                    }
                    "fk_unmapped" => {
                        values[1] = Value::Integer(987_654);
                        insert(values)
                    }
                    "reuse_unnamed" => Decision::Reuse(4242),
                    "reuse_foreign" => match answered.answers.first() {
                        Some(Answer::Found(Some(pk))) => Decision::Reuse(*pk),
                        _ => Decision::Skip("hostile.target has no row `one`".into()),
                    },
                    "derive_foreign" => {
                        derived.push(DerivedRow {
                            model: "sentry.email".into(),
                            // Its columns: date_added, email.
                            values: vec![
                                Value::Text("2023-06-22T22:59:55.531Z".into()),
                                Value::Text("planted@example.com".into()),
                            ],
                            parent_field: None,
                        });
                        insert(values)
                    }
                    "derive_undescribed" => {
                        derived.push(DerivedRow {
                            model: "hostile.nowhere".into(),
                            values: vec![Value::Text("planted".into())],
                            parent_field: None,
                        });
                        insert(values)
                    }
                    _ => insert(values),
                }
            };
            out.push(Decided { index, decision, derived });
        }
        Ok(out)
    }
}

export!(Plugin);

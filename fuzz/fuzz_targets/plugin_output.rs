//! The host's checks of what a plugin returns, without a wasm component: the
//! very conversions a plugin call goes through (`describe`, `prepare`,
//! `resolve`), then the value checks the engine applies to a decision's row
//! (`engine::record::check_values`), on descriptions, decisions and values
//! built from the fuzzer's bytes (names drawn mostly from a small vocabulary
//! so that they get past the name checks). Whatever is accepted must hold the
//! invariants the engine relies on: indices in range, foreign keys on integer
//! columns, every decision for a record that was asked about, values that fit
//! their columns.

#![no_main]

use std::collections::HashSet;

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use relocate::engine::record::{Problem, check_values, normalize_datetime, values_from_fields};
use relocate::fuzzing::{PluginInfo, decided, describe, prepared, wit};
use relocate::model::{ColumnKind, ModelDesc, OnMissing, Value, column_name_for};
use relocate::plugin::{Answer, Answered, Decision, Prepared, Query};
use relocate_fuzz::pick;

const MODELS: &[&str] = &["test.book", "test.author", "Test.Book", "sentry.user", "book", "test.book.x", ""];
const TABLES: &[&str] = &["test_book", "test_author", "sentry_user", "id", "Book", "1x", ""];
const FIELDS: &[&str] = &["title", "author", "author_id", "id", "isbn", "date_added", "data", "score", "is_active"];
const TEXTS: &[&str] = &[
    "",
    "x",
    "2023-06-22T22:59:55.531Z",
    "2023-06-22T02:00:00+02:00",
    "2023-06-22 00:00:00",
    "yesterday",
    "{\"a\": [1]}",
    "[",
    "null",
];

fn value(u: &mut Unstructured<'_>) -> Result<wit::Value> {
    Ok(match u.int_in_range(0..=5)? {
        0 => wit::Value::Null,
        1 => wit::Value::Integer(u.arbitrary()?),
        2 => wit::Value::Float(u.arbitrary()?),
        3 => wit::Value::Boolean(u.arbitrary()?),
        4 => wit::Value::Text(pick(u, TEXTS)?),
        _ => wit::Value::Json(pick(u, TEXTS)?),
    })
}

/// A value of the column's kind most of the time.
fn value_for(u: &mut Unstructured<'_>, kind: Option<ColumnKind>) -> Result<wit::Value> {
    let Some(kind) = kind.filter(|_| u.ratio(3, 4).unwrap_or(false)) else { return value(u) };
    Ok(match kind {
        ColumnKind::Integer => wit::Value::Integer(u.int_in_range(-2..=4)?),
        ColumnKind::Float => wit::Value::Float(u.arbitrary()?),
        ColumnKind::Boolean => wit::Value::Boolean(u.arbitrary()?),
        ColumnKind::Text | ColumnKind::Datetime => wit::Value::Text(pick(u, TEXTS)?),
        ColumnKind::Json => wit::Value::Json(pick(u, TEXTS)?),
    })
}

fn column_kind(u: &mut Unstructured<'_>) -> Result<wit::ColumnKind> {
    Ok(*u.choose(&[
        wit::ColumnKind::Integer,
        wit::ColumnKind::Float,
        wit::ColumnKind::Boolean,
        wit::ColumnKind::Text,
        wit::ColumnKind::Datetime,
        wit::ColumnKind::Json,
    ])?)
}

fn scope(u: &mut Unstructured<'_>) -> Result<wit::Scope> {
    Ok(*u.choose(&[wit::Scope::User, wit::Scope::Organization, wit::Scope::Config, wit::Scope::Global])?)
}

fn list<T>(
    u: &mut Unstructured<'_>,
    max: usize,
    mut f: impl FnMut(&mut Unstructured<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let n = u.int_in_range(0..=max)?;
    (0..n).map(|_| f(u)).collect()
}

fn model_desc(u: &mut Unstructured<'_>) -> Result<wit::ModelDesc> {
    Ok(wit::ModelDesc {
        name: pick(u, MODELS)?,
        table: pick(u, TABLES)?,
        scopes: list(u, 3, scope)?,
        silo: if u.arbitrary()? { wit::Silo::Control } else { wit::Silo::Region },
        columns: list(u, 6, |u| {
            Ok(wit::Column {
                name: pick(u, FIELDS)?,
                kind: column_kind(u)?,
                nullable: u.arbitrary()?,
                default: if u.ratio(1, 4)? { Some(value(u)?) } else { None },
            })
        })?,
        foreign_keys: list(u, 2, |u| {
            Ok(wit::ForeignKey {
                column: pick(u, FIELDS)?,
                model: pick(u, MODELS)?,
                kind: *u.choose(&[wit::FkKind::FlexibleForeignKey, wit::FkKind::DefaultForeignKey])?,
                nullable: u.arbitrary()?,
                on_missing: if u.arbitrary()? { wit::OnMissing::Drop } else { wit::OnMissing::SetNull },
            })
        })?,
        uniques: list(u, 2, |u| list(u, 3, |u| pick(u, FIELDS)))?,
        relocation_dependencies: list(u, 2, |u| pick(u, MODELS))?,
    })
}

/// What the engine relies on in an accepted description.
fn check_model(m: &ModelDesc) {
    let mut names = HashSet::new();
    let mut fields = HashSet::new();
    for c in &m.columns {
        assert!(names.insert(c.name.clone()) && fields.insert(c.field.clone()), "{m:?}");
        assert_ne!(c.name.as_str(), "id");
    }
    for fk in &m.foreign_keys {
        let c = &m.columns[fk.column];
        assert_eq!(c.kind, ColumnKind::Integer);
        assert_eq!(c.name.as_str(), column_name_for(&c.field, true));
        assert!(fk.on_missing != OnMissing::SetNull || c.nullable);
    }
    assert_eq!(m.foreign_keys.iter().map(|fk| fk.column).collect::<HashSet<_>>().len(), m.foreign_keys.len());
    for set in &m.uniques {
        assert!(!set.is_empty() && set.iter().all(|&i| i < m.columns.len()));
        assert_eq!(set.iter().collect::<HashSet<_>>().len(), set.len());
    }
    // A record that has none of the model's fields gets the defaults, and
    // those the engine must accept back from a plugin (or refuse a null as
    // invalid): a default the description check lets through but the row
    // check refuses would fail an import on a plugin that changes nothing.
    if let Ok(mut values) = values_from_fields(m, serde_json::Map::new())
        && let Err(Problem::Contract(message)) = check_values(m, &mut values)
    {
        panic!("the defaults of {} do not pass the row check: {message}", m.name);
    }
}

/// What the engine relies on in a row that passed `check_values`.
fn check_row(m: &ModelDesc, values: &[Value]) {
    assert_eq!(values.len(), m.columns.len());
    for (c, v) in m.columns.iter().zip(values) {
        match (c.kind, v) {
            (_, Value::Null) => assert!(c.nullable),
            (ColumnKind::Integer, Value::Integer(_))
            | (ColumnKind::Float, Value::Float(_))
            | (ColumnKind::Boolean, Value::Boolean(_))
            | (ColumnKind::Text, Value::Text(_)) => {}
            (ColumnKind::Datetime, Value::Text(s)) => {
                assert_eq!(normalize_datetime(s).as_ref(), Some(s), "a datetime is stored normalized")
            }
            (ColumnKind::Json, Value::Json(s)) => {
                assert!(serde_json::from_str::<Box<serde_json::value::RawValue>>(s).is_ok(), "{s:?}")
            }
            _ => panic!("{v:?} in a {:?} column", c.kind),
        }
    }
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let info = PluginInfo {
        name: pick(u, &["books", "has spaces", ""])?,
        version: pick(u, &["1.0.0", "1.0+x", ""])?,
        models: list(u, 3, model_desc)?,
    };
    let Ok((_, _, models)) = describe(info) else { return Ok(()) };
    assert!(!models.is_empty());
    assert_eq!(models.iter().map(|m| &m.name).collect::<HashSet<_>>().len(), models.len());
    assert_eq!(models.iter().map(|m| &m.table).collect::<HashSet<_>>().len(), models.len());
    models.iter().for_each(check_model);
    let model = u.choose(&models)?;
    let kinds: Vec<ColumnKind> = model.columns.iter().map(|c| c.kind).collect();
    let row = |u: &mut Unstructured<'_>| -> Result<Vec<wit::Value>> {
        let n = if u.ratio(7, 8)? { kinds.len() } else { u.int_in_range(0..=kinds.len() + 1)? };
        (0..n).map(|i| value_for(u, kinds.get(i).copied())).collect()
    };

    // prepare
    let batch_len = u.int_in_range(0..=4usize)?;
    let n = if u.ratio(7, 8)? { batch_len } else { u.int_in_range(0..=5)? };
    let raw = (0..n)
        .map(|_| {
            Ok(match u.int_in_range(0..=2)? {
                0 => wit::Prepared::Ready(wit::Ready {
                    scope: if u.arbitrary()? { Some(scope(u)?) } else { None },
                    queries: list(u, 2, |u| {
                        Ok(if u.arbitrary()? {
                            wit::Query::Find(wit::FindQuery {
                                model: pick(u, MODELS)?,
                                columns: list(u, 2, |u| pick(u, FIELDS))?,
                                values: list(u, 2, value)?,
                            })
                        } else {
                            wit::Query::Taken(wit::TakenQuery {
                                model: pick(u, MODELS)?,
                                column: pick(u, FIELDS)?,
                                base: pick(u, TEXTS)?,
                            })
                        })
                    })?,
                }),
                1 => wit::Prepared::Skip(u.arbitrary()?),
                _ => wit::Prepared::Invalid(list(u, 2, |u| {
                    Ok(wit::FieldError { field: u.arbitrary()?, message: u.arbitrary()? })
                })?),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if let Ok(prepared) = prepared(raw, batch_len, model) {
        assert_eq!(prepared.len(), batch_len);
        for p in &prepared {
            if let Prepared::Ready { scope, queries } = p {
                match scope {
                    Some(s) => assert!(model.scopes.contains(s)),
                    None => assert!(model.scopes.len() <= 1),
                }
                for q in queries {
                    if let Query::Find { columns, values, .. } = q {
                        assert!(!columns.is_empty() && columns.len() == values.len());
                    }
                }
            }
        }
    }

    // resolve: the host asks about distinct records, each with its answers.
    let mut asked = HashSet::new();
    let answers: Vec<Answered> = list(u, 4, |u| {
        Ok(Answered {
            index: u.int_in_range(0..=5)?,
            answers: list(u, 2, |u| {
                Ok(if u.arbitrary()? {
                    Answer::Found(if u.arbitrary()? { Some(u.int_in_range(1..=3)?) } else { None })
                } else {
                    Answer::Taken(list(u, 2, |u| pick(u, TEXTS))?)
                })
            })?,
        })
    })?
    .into_iter()
    .filter(|a| asked.insert(a.index))
    .collect();
    let n = if u.ratio(7, 8)? { answers.len() } else { u.int_in_range(0..=5)? };
    let raw = (0..n)
        .map(|i| {
            let index = match answers.get(i) {
                Some(a) if u.ratio(7, 8)? => a.index as u32,
                _ => u.int_in_range(0..=6)?,
            };
            let decision = match u.int_in_range(0..=4)? {
                0 => wit::Decision::Insert(wit::Row {
                    values: row(u)?,
                    pk: if u.arbitrary()? { Some(u.arbitrary()?) } else { None },
                }),
                1 => wit::Decision::Reuse(u.int_in_range(0..=3)?),
                2 => wit::Decision::Overwrite(wit::Overwrite { pk: u.int_in_range(0..=3)?, values: row(u)? }),
                3 => wit::Decision::Skip(u.arbitrary()?),
                _ => wit::Decision::Invalid(list(u, 2, |u| {
                    Ok(wit::FieldError { field: u.arbitrary()?, message: u.arbitrary()? })
                })?),
            };
            let derived = list(u, 1, |u| {
                Ok(wit::DerivedRow {
                    model: pick(u, MODELS)?,
                    values: list(u, 3, value)?,
                    parent_field: if u.arbitrary()? { Some(pick(u, FIELDS)?) } else { None },
                })
            })?;
            Ok(wit::Decided { index, decision, derived })
        })
        .collect::<Result<Vec<_>>>()?;
    let Ok(decided) = decided(raw, &answers, model) else { return Ok(()) };
    assert_eq!(decided.len(), answers.len());
    assert!(decided.windows(2).all(|w| w[0].index < w[1].index), "in index order, once each");
    for d in decided {
        let answered = answers.iter().find(|a| a.index == d.index).expect("decided only what was asked");
        let found = |pk| answered.answers.contains(&Answer::Found(Some(pk)));
        let mut values = match d.decision {
            Decision::Insert { values, .. } => values,
            Decision::Overwrite { pk, values } => {
                assert!(found(pk));
                values
            }
            Decision::Reuse(pk) => {
                assert!(found(pk));
                continue;
            }
            Decision::Skip(_) | Decision::Invalid(_) => {
                assert!(d.derived.is_empty());
                continue;
            }
        };
        assert_eq!(values.len(), model.columns.len());
        let before = values.clone();
        match check_values(model, &mut values) {
            Ok(()) => {
                check_row(model, &values);
                // Checking a checked row again changes nothing.
                let mut again = values.clone();
                assert!(check_values(model, &mut again).is_ok());
                assert_eq!(format!("{again:?}"), format!("{values:?}"), "NaN-proof: compared as text");
            }
            Err(Problem::Invalid(errors)) => {
                assert!(!errors.is_empty());
                assert!(before.iter().zip(&model.columns).any(|(v, c)| v.is_null() && !c.nullable));
            }
            Err(Problem::Contract(_)) => {}
        }
        for derived in &d.derived {
            if let Some(desc) = models.iter().find(|m| m.name == derived.model) {
                let _ = check_values(desc, &mut derived.values.clone());
            }
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});

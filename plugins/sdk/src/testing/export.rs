//! Running a plugin over a real Sentry export, natively: what the host does
//! with a file, cut down to what a plugin's tests need.

use serde_json::Value as Json;

use super::{Driver, InputRecord, TestHost};
use crate::model::{ModelDesc, OnMissing, Scope};
use crate::outcome::{Decision, Prepared};
use crate::record::{ImportKind, MappedRef};
use crate::runtime::{PluginDef, Runner};
use crate::session::{ImportFlags, Session};
use crate::value::{ColumnKind, Value};

/// Sentry's `MAX_BATCH_SIZE`.
const BATCH: usize = 20;

/// What happened to one record of the export.
#[derive(Clone, Debug, PartialEq)]
pub struct Imported {
    pub model: String,
    pub old_pk: i64,
    pub decision: Decision,
}

/// Imports every record of `export` (a Sentry export: a JSON array of
/// `{model, pk, fields}`) that plugin `P` describes, as the host would.
///
/// Records are taken in file order, in batches of 20 per contiguous run of a
/// model, one session per model. Fields are converted by column kind;
/// unknown fields are ignored and missing ones take the column default.
/// Foreign keys are remapped through the pk map; a missing target drops the
/// record (`Skip`) or nulls the field, as the foreign key says. Models outside
/// the import's scope, or records a plugin puts outside it, are skipped.
///
/// Records of models `P` does not describe count as imported by another
/// plugin under their own pk, so that a plugin can be tested alone.
///
/// Panics when the export does not parse or a value does not fit its column:
/// the fixture or the column table is wrong.
pub fn import_export<P: PluginDef>(
    host: &TestHost,
    scope: Scope,
    flags: ImportFlags,
    export: &str,
) -> crate::Result<Vec<Imported>> {
    let records: Vec<Json> = serde_json::from_str(export).expect("the export is a JSON array");
    let descs: Vec<ModelDesc> = super::plugin_models::<P>();
    let mut drivers: Vec<(String, Driver)> = Vec::new();
    let mut out = Vec::new();

    let mut i = 0;
    while i < records.len() {
        let model = records[i]["model"].as_str().expect("a record has a model").to_string();
        let run_end = records[i..].iter().position(|r| r["model"] != model.as_str()).map_or(records.len(), |n| i + n);
        let run = &records[i..run_end];
        i = run_end;

        let Some(desc) = descs.iter().find(|d| d.name == model) else {
            for r in run {
                let pk = r["pk"].as_i64().expect("an integer pk");
                host.map(&model, pk, pk, ImportKind::Inserted);
            }
            continue;
        };
        if !desc.scopes.iter().any(|s| in_scope(scope, *s)) {
            for r in run {
                out.push(Imported {
                    model: model.clone(),
                    old_pk: pk_of(r),
                    decision: Decision::skip("model out of scope"),
                });
            }
            continue;
        }
        let driver = match drivers.iter().position(|(m, _)| *m == model) {
            Some(d) => &mut drivers[d].1,
            None => {
                let runner = Runner::open(P::MODELS, Session::new(&model, scope, flags, super::STARTED_AT));
                drivers.push((model.clone(), Driver { runner, desc: desc.clone() }));
                &mut drivers.last_mut().expect("just pushed").1
            }
        };
        for (b, chunk) in run.chunks(BATCH).enumerate() {
            let mut batch = Vec::new();
            let mut slots = Vec::new();
            for (n, r) in chunk.iter().enumerate() {
                let ordinal = (b * BATCH + n + 1) as u64;
                match input(host, desc, ordinal, r) {
                    Ok(input) => {
                        slots.push(None);
                        batch.push(input);
                    }
                    Err(reason) => slots.push(Some(Decision::Skip(reason))),
                }
            }
            let old_pks: Vec<i64> = chunk.iter().map(pk_of).collect();
            let mut decisions = driver.run_in_scope(batch, Some(scope))?.into_iter();
            for (slot, old_pk) in slots.into_iter().zip(old_pks) {
                let decision = match slot {
                    Some(skip) => skip,
                    None => decisions.next().expect("one decision per record sent"),
                };
                out.push(Imported { model: model.clone(), old_pk, decision });
            }
        }
    }
    Ok(out)
}

/// Whether a record in `scope` belongs to an import of `import` (Sentry's
/// `ImportScope` values).
pub(crate) fn in_scope(import: Scope, scope: Scope) -> bool {
    match import {
        Scope::User => scope == Scope::User,
        Scope::Organization => matches!(scope, Scope::User | Scope::Organization),
        Scope::Config => matches!(scope, Scope::User | Scope::Config),
        Scope::Global => true,
    }
}

/// Whether a ready record is in the import's scope.
pub(crate) fn ready_in_scope(desc: &ModelDesc, prepared: &Prepared, import: Scope) -> bool {
    match prepared {
        Prepared::Ready { scope: Some(s), .. } => in_scope(import, *s),
        Prepared::Ready { scope: None, .. } => desc.scopes.first().is_some_and(|s| in_scope(import, *s)),
        Prepared::Skip(_) | Prepared::Invalid(_) => true,
    }
}

fn pk_of(record: &Json) -> i64 {
    record["pk"].as_i64().expect("an integer pk")
}

/// The host's view of one exported record, or why it is dropped.
fn input(host: &TestHost, desc: &ModelDesc, ordinal: u64, record: &Json) -> Result<InputRecord, String> {
    let old_pk = pk_of(record);
    let fields = record["fields"].as_object().expect("fields is an object");
    let mut values = Vec::with_capacity(desc.columns.len());
    let mut refs = Vec::new();
    for (i, column) in desc.columns.iter().enumerate() {
        let value = match fields.get(&column.name) {
            None => column.default.clone().unwrap_or(Value::Null),
            Some(v) => convert(&desc.name, &column.name, v, column.kind),
        };
        let value = match (desc.foreign_key_of(&column.name), value) {
            (Some(fk), Value::Integer(target)) => match host.mapping(&fk.model, target) {
                Some(m) => {
                    let column = u32::try_from(i).expect("few columns");
                    refs.push(MappedRef { column, old_pk: target, kind: m.kind });
                    Value::Integer(m.new_pk)
                }
                None if fk.on_missing == OnMissing::SetNull => Value::Null,
                None => return Err(format!("{} {target} was not imported", fk.model)),
            },
            (_, value) => value,
        };
        values.push(value);
    }
    Ok(InputRecord { ordinal, old_pk, values, refs })
}

fn convert(model: &str, field: &str, v: &Json, kind: ColumnKind) -> Value {
    match (v, kind) {
        (Json::Null, _) => Value::Null,
        (v, ColumnKind::Json) => Value::Json(v.to_string()),
        (Json::Bool(b), ColumnKind::Boolean) => Value::Boolean(*b),
        (Json::Number(n), ColumnKind::Integer) if n.is_i64() => Value::Integer(n.as_i64().unwrap_or_default()),
        (Json::Number(n), ColumnKind::Float) => Value::Float(n.as_f64().unwrap_or_default()),
        (Json::String(s), ColumnKind::Text | ColumnKind::Datetime) => Value::Text(s.clone()),
        (v, kind) => panic!("{model}.{field}: {v} does not fit a {kind} column"),
    }
}

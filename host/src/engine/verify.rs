//! `relocate verify`: reads an import's rows back and compares them with the
//! export through the import's pk map, as Sentry's `backup compare` does.
//!
//! What an import is expected to change is not written down anywhere: each
//! plugin decides it in code. So verification asks the plugin. Each record is
//! replayed through its plugin as if the database were empty (no row found,
//! no name taken); a column whose replayed value differs from the exported one
//! is one the plugin rewrites (a scrubbed password, a regenerated hash, a
//! fresh date) and is not compared. Foreign keys are compared through the pk
//! map. A text column in a unique set may carry a collision suffix
//! (`name-xy`) or a regenerated value. Every other column must hold the
//! exported value.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::db::{self, Db};
use crate::model::{ColumnKind, ImportKind, ImportScope, ModelDesc, ModelName, Pk, Value};
use crate::plugin::{self, Answer, Answered, Decision, ImportFlags, InputRecord, PluginHost, Prepared, Query};
use crate::reader::Export;

use super::graph::Registry;
use super::pkmap::PkMap;
use super::{Error, Result, read_values, remap};

/// Records per plugin call and per database read.
const BATCH: usize = 500;

pub struct VerifyOptions {
    pub scope: ImportScope,
    pub import_uuid: uuid::Uuid,
    pub flags: ImportFlags,
    pub seed: u64,
}

/// One difference between the export and the database.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub model: ModelName,
    pub ordinal: u64,
    pub old_pk: Pk,
    pub new_pk: Pk,
    pub kind: FindingKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum FindingKind {
    /// The import mapped the record to a row that is not there.
    MissingRow,
    /// A foreign key does not point where the pk map says.
    ForeignKey { column: String, expected: Option<Pk>, found: Option<String> },
    /// A column the import keeps as exported holds something else.
    Value { column: String, expected: Option<String>, found: Option<String> },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: &Option<String>| v.as_deref().map_or("NULL".to_string(), |s| format!("{s:?}"));
        write!(f, "{} ordinal {} (pk {} → {}): ", self.model, self.ordinal, self.old_pk, self.new_pk)?;
        match &self.kind {
            FindingKind::MissingRow => write!(f, "the row is missing"),
            FindingKind::ForeignKey { column, expected, found } => write!(
                f,
                "{column} is {} in the database; the pk map says {}",
                show(found),
                expected.map_or("NULL".to_string(), |p| p.to_string())
            ),
            FindingKind::Value { column, expected, found } => {
                write!(f, "{column} is {} in the database, {} in the export", show(found), show(expected))
            }
        }
    }
}

/// What verification looked at, per model.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Checked {
    /// Rows compared column by column (inserted and overwritten records).
    pub compared: u64,
    /// Rows only checked to exist (records mapped to an existing row).
    pub existing: u64,
    /// Columns the plugin rewrites, left out of the comparison.
    pub rewritten: Vec<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Verification {
    pub checked: BTreeMap<ModelName, Checked>,
    pub findings: Vec<Finding>,
}

/// Compares the rows of import `opts.import_uuid` with `export`.
pub async fn verify(
    export: &Arc<Export>,
    plugins: &PluginHost,
    registry: &Registry,
    db: &mut Db,
    opts: &VerifyOptions,
) -> Result<Verification> {
    let chunks = if db.existing_tables(&[db::REGION_CHUNKS, db::CONTROL_CHUNKS]).await?.len() == 2 {
        db.load_chunks(&opts.import_uuid).await?
    } else {
        Vec::new()
    };
    if chunks.is_empty() {
        return Err(Error::NoSuchImport(opts.import_uuid));
    }
    let pkmap = Arc::new(PkMap::default());
    for chunk in &chunks {
        pkmap.extend_from_chunk(chunk);
    }
    let started_at = chrono::Utc::now();
    let mut out = Verification::default();
    for model in registry.order()? {
        let Some((plugin_id, desc)) = registry.get(&model) else { continue };
        let records = export.records(&model);
        if records.is_empty() || !desc.in_import(opts.scope) {
            continue;
        }
        let config = plugin::SessionConfig {
            model: model.clone(),
            scope: opts.scope.as_scope(),
            flags: opts.flags,
            started_at,
            seed: opts.seed,
            facts: pkmap.clone(),
        };
        let session = plugins.spawn_session(*plugin_id, config).await?;
        let mut run = ModelCheck { desc, export, pkmap: &pkmap, checked: Checked::default(), findings: Vec::new() };
        for start in (0..records.len()).step_by(BATCH) {
            let end = (start + BATCH).min(records.len());
            run.batch(db, &session, start..end).await?;
        }
        run.checked.rewritten.sort();
        run.checked.rewritten.dedup();
        out.findings.append(&mut run.findings);
        out.checked.insert(model.clone(), run.checked);
    }
    Ok(out)
}

struct ModelCheck<'a> {
    desc: &'a ModelDesc,
    export: &'a Export,
    pkmap: &'a PkMap,
    checked: Checked,
    findings: Vec<Finding>,
}

/// A record of the export the import mapped, with its values as exported
/// (foreign keys remapped).
struct Mapped {
    ordinal: u64,
    old_pk: Pk,
    new_pk: Pk,
    kind: ImportKind,
    values: Vec<Value>,
}

impl ModelCheck<'_> {
    async fn batch(
        &mut self,
        db: &mut Db,
        session: &plugin::SessionThread,
        range: std::ops::Range<usize>,
    ) -> Result<()> {
        let mapped = self.mapped(range)?;
        if mapped.is_empty() {
            return Ok(());
        }
        let replayed = self.replay(session, &mapped).await?;
        let pks: Vec<Pk> = mapped.iter().map(|m| m.new_pk).collect();
        let rows = db.read_rows(self.desc, &pks).await?;
        for (m, replay) in mapped.iter().zip(replayed) {
            let Some(row) = rows.get(&m.new_pk) else {
                self.finding(m, FindingKind::MissingRow);
                continue;
            };
            if m.kind == ImportKind::Existing {
                // The row is someone else's (a merged user): it only has to be there.
                self.checked.existing += 1;
                continue;
            }
            self.checked.compared += 1;
            self.compare(m, replay.as_deref(), row);
        }
        Ok(())
    }

    /// The records of `range` the import mapped, read and remapped.
    fn mapped(&self, range: std::ops::Range<usize>) -> Result<Vec<Mapped>> {
        let mut out = Vec::new();
        let refs = &self.export.records(&self.desc.name)[range.clone()];
        let mut batch = self.export.batch(refs)?;
        for (i, at) in refs.iter().enumerate() {
            let Some(mapping) = self.pkmap.get(&self.desc.name, at.pk) else { continue };
            let ordinal = (range.start + i) as u64 + 1;
            let mut values = read_values(&mut batch, self.desc, at, ordinal)?;
            // A required target that is not mapped: the import dropped the
            // record, so the mapping is the record's own from another run.
            if remap(self.desc, self.pkmap, &mut values).is_err() {
                continue;
            }
            out.push(Mapped { ordinal, old_pk: at.pk, new_pk: mapping.new_pk, kind: mapping.kind, values });
        }
        Ok(out)
    }

    /// What the plugin inserts for each record into an empty database; `None`
    /// where it decides anything else.
    async fn replay(&self, session: &plugin::SessionThread, mapped: &[Mapped]) -> Result<Vec<Option<Vec<Value>>>> {
        let inputs = mapped
            .iter()
            .map(|m| InputRecord { ordinal: m.ordinal, old_pk: m.old_pk, values: m.values.clone(), refs: Vec::new() })
            .collect();
        let prepared = session.prepare(inputs).await?;
        let answered: Vec<Answered> = prepared
            .into_iter()
            .enumerate()
            .filter_map(|(index, p)| match p {
                Prepared::Ready { queries, .. } => Some(Answered {
                    index,
                    answers: queries
                        .iter()
                        .map(|q| match q {
                            Query::Find { .. } => Answer::Found(None),
                            Query::Taken { .. } => Answer::Taken(Vec::new()),
                        })
                        .collect(),
                }),
                Prepared::Skip(_) | Prepared::Invalid(_) => None,
            })
            .collect();
        let mut out = vec![None; mapped.len()];
        for d in session.resolve(answered).await? {
            if let (Decision::Insert { values, .. }, Some(slot)) = (d.decision, out.get_mut(d.index))
                && values.len() == self.desc.columns.len()
            {
                *slot = Some(values);
            }
        }
        Ok(out)
    }

    fn compare(&mut self, m: &Mapped, replay: Option<&[Value]>, row: &[Option<String>]) {
        for (c, column) in self.desc.columns.iter().enumerate() {
            let exported = &m.values[c];
            let found = &row[c];
            if replay.is_some_and(|r| !same(column.kind, &r[c], &canonical(exported))) {
                self.checked.rewritten.push(column.name.to_string());
                continue;
            }
            let fk = self.desc.foreign_keys.iter().find(|fk| fk.column == c && fk.target != self.desc.name);
            if fk.is_some() {
                let expected = match exported {
                    Value::Integer(pk) => Some(*pk),
                    _ => None,
                };
                if found.as_deref().and_then(|s| s.parse::<Pk>().ok()) != expected {
                    let kind =
                        FindingKind::ForeignKey { column: column.name.to_string(), expected, found: found.clone() };
                    self.finding(m, kind);
                }
                continue;
            }
            if same(column.kind, exported, found) {
                continue;
            }
            if self.collision_resolved(c, exported, found) {
                continue;
            }
            let kind = FindingKind::Value {
                column: column.name.to_string(),
                expected: canonical(exported),
                found: found.clone(),
            };
            self.finding(m, kind);
        }
    }

    /// A unique text column may hold a suffixed or regenerated value: that is
    /// how a collision was resolved.
    fn collision_resolved(&self, c: usize, exported: &Value, found: &Option<String>) -> bool {
        let unique = self.desc.uniques.iter().any(|set| set.contains(&c));
        unique && matches!((exported, found), (Value::Text(_), Some(_)))
    }

    fn finding(&mut self, m: &Mapped, kind: FindingKind) {
        let (model, ordinal, old_pk, new_pk) = (self.desc.name.clone(), m.ordinal, m.old_pk, m.new_pk);
        self.findings.push(Finding { model, ordinal, old_pk, new_pk, kind });
    }
}

/// A value as the database reads it back ([`Db::read_rows`]).
fn canonical(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::Integer(i) => Some(i.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Boolean(b) => Some(if *b { "1" } else { "0" }.to_string()),
        Value::Text(s) | Value::Json(s) => Some(s.clone()),
    }
}

/// Whether `value` and the text read back mean the same for a column of `kind`.
fn same(kind: ColumnKind, value: &Value, found: &Option<String>) -> bool {
    let Some(found) = found else { return matches!(value, Value::Null) };
    let Some(expected) = canonical(value) else { return false };
    match kind {
        ColumnKind::Float => match (expected.parse::<f64>(), found.parse::<f64>()) {
            (Ok(a), Ok(b)) => a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()),
            _ => expected == *found,
        },
        ColumnKind::Boolean => truthy(&expected) == truthy(found),
        ColumnKind::Datetime => match (instant(&expected), instant(found)) {
            (Some(a), Some(b)) => a == b,
            _ => expected == *found,
        },
        ColumnKind::Json => match (
            serde_json::from_str::<serde_json::Value>(&expected),
            serde_json::from_str::<serde_json::Value>(found),
        ) {
            (Ok(a), Ok(b)) => a == b,
            _ => expected == *found,
        },
        ColumnKind::Integer | ColumnKind::Text => expected == *found,
    }
}

fn truthy(s: &str) -> bool {
    matches!(s, "1" | "t" | "true" | "TRUE")
}

/// A timestamp in microseconds since the epoch, from ISO 8601 with or without
/// a zone (UTC if none) or PostgreSQL's text form.
fn instant(s: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_micros());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, format) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    chrono::DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%#z").ok().map(|t| t.timestamp_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_compare_as_instants() {
        let exported = Value::Text("2023-06-22T22:54:28.773Z".into());
        assert!(same(ColumnKind::Datetime, &exported, &Some("2023-06-22T22:54:28.773000".into())));
        assert!(same(ColumnKind::Datetime, &exported, &Some("2023-06-22 22:54:28.773+00".into())));
        assert!(!same(ColumnKind::Datetime, &exported, &Some("2023-06-22T22:54:28.774Z".into())));
    }

    #[test]
    fn booleans_json_and_nulls_compare_by_meaning() {
        assert!(same(ColumnKind::Boolean, &Value::Boolean(true), &Some("true".into())));
        assert!(same(ColumnKind::Boolean, &Value::Boolean(false), &Some("0".into())));
        assert!(same(ColumnKind::Json, &Value::Json("{\"a\": 1}".into()), &Some("{\"a\":1}".into())));
        assert!(same(ColumnKind::Text, &Value::Null, &None));
        assert!(!same(ColumnKind::Text, &Value::Text(String::new()), &None));
    }
}

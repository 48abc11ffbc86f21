//! Replaying one batch of one model through its plugin with no database, for
//! `relocate plugin test`: the records are read, typed and remapped, go
//! through `prepare`, the host's checks, `resolve` and the checks of every
//! decision and derived row exactly as in an import (the same functions of
//! [`super::ModelRun`]). Only the database is replaced: questions are
//! answered from rows held in memory, with the database's semantics
//! ([`db::TakenRange`] for `taken`), and new pks are provisional, as in a
//! dry run (the largest pk of the model so far, plus one).

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use super::overlay::Overlay;
use crate::db;
use crate::model::{ImportScope, ModelName, Pk, Value};
use crate::plugin::{self, Answer, ImportFlags, Mapping, PluginHost, Query, Usage};
use crate::reader::Export;

use super::graph::Registry;
use super::pkmap::PkMap;
use super::{
    Commit, Decoder, Detail, Error, Fate, Filters, ImportOptions, ImportState, ModelRun, ModelSummary, Outcome,
    Pending, Result, Written, answered,
};

/// One batch to replay and everything around it an import would have.
pub struct Batch {
    pub model: ModelName,
    pub scope: ImportScope,
    pub flags: ImportFlags,
    pub seed: u64,
    /// The plugins' clock.
    pub started_at: DateTime<Utc>,
    /// Mappings of earlier records (other models' mostly) the batch's
    /// foreign keys and the plugin's `mapping-of` may see.
    pub pk_map: Vec<(ModelName, Pk, Mapping)>,
    /// Rows already in the database, per model: pk and values in column order.
    pub existing: BTreeMap<ModelName, Vec<(Pk, Vec<Value>)>>,
    /// The records: ordinal among the model's records, pk, exported fields.
    pub records: Vec<(u64, Pk, serde_json::Map<String, Json>)>,
}

/// What became of one record.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub ordinal: u64,
    pub old_pk: Pk,
    pub fate: Fate,
    pub new_pk: Option<Pk>,
    pub reason: String,
    /// The values written (inserted or overwritten), after the host's checks.
    pub row: Option<Vec<Value>>,
}

/// A derived row that would be written, with its provisional pk.
#[derive(Clone, Debug, PartialEq)]
pub struct DerivedRow {
    pub model: ModelName,
    pub pk: Pk,
    pub values: Vec<Value>,
}

/// The batch's records (in ordinal order) and derived rows (per model).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Replayed {
    pub records: Vec<Record>,
    pub derived: Vec<DerivedRow>,
}

/// A replay's result and what it cost.
pub struct Run {
    /// The records' fates, or the error the import would stop on.
    pub result: Result<Replayed>,
    /// What the plugin's instance used; default when it never started.
    pub usage: Usage,
    /// Records handed to the plugin's `prepare`.
    pub to_plugin: usize,
    /// The `host` imports the plugin called (when the host records them).
    pub host_calls: Vec<String>,
    pub elapsed: Duration,
}

/// Replays `batch` through the plugin `registry` picks for its model.
pub async fn replay(plugins: &PluginHost, registry: &Registry, batch: Batch) -> Run {
    let clock = Instant::now();
    let mut spent = Spent::default();
    let result = run(plugins, registry, batch, &mut spent).await;
    let Spent { usage, to_plugin, host_calls } = spent;
    Run { result, usage, to_plugin, host_calls, elapsed: clock.elapsed() }
}

/// What a replay measured, whether or not it succeeded.
#[derive(Default)]
struct Spent {
    usage: Usage,
    to_plugin: usize,
    host_calls: Vec<String>,
}

async fn run(plugins: &PluginHost, registry: &Registry, batch: Batch, spent: &mut Spent) -> Result<Replayed> {
    let model = batch.model.clone();
    let Some((plugin_id, desc)) = registry.get(&model) else {
        return Err(Error::Internal(format!("no loaded plugin describes {model}")));
    };
    let pkmap = Arc::new(PkMap::default());
    for (m, old_pk, mapping) in batch.pk_map {
        pkmap.insert(&m, old_pk, mapping);
    }
    if !desc.in_import(batch.scope) {
        let reason = format!("{model} is outside the {} scope of this import", batch.scope.as_scope().as_str());
        let records = batch
            .records
            .iter()
            .map(|(ordinal, old_pk, _)| Record {
                ordinal: *ordinal,
                old_pk: *old_pk,
                fate: Fate::Skipped,
                new_pk: None,
                reason: reason.clone(),
                row: None,
            })
            .collect();
        return Ok(Replayed { records, derived: Vec::new() });
    }
    let export = Arc::new(export_of(&model, &batch.records)?);
    let ordinals: Vec<u64> = batch.records.iter().map(|(o, _, _)| *o).collect();
    let opts = ImportOptions {
        scope: batch.scope,
        import_uuid: uuid::Uuid::nil(),
        flags: batch.flags,
        filters: Filters::default(),
        batch_size: batch.records.len(),
        seed: batch.seed,
        clear_first: false,
        commit: Commit::Never,
    };
    let mut state = ImportState::new(registry, &opts, pkmap.clone(), Detail::All, batch.started_at);
    let config = plugin::SessionConfig {
        model: model.clone(),
        scope: batch.scope.as_scope(),
        flags: batch.flags,
        started_at: batch.started_at,
        seed: batch.seed,
        facts: pkmap.clone(),
    };
    let session = plugins.spawn_session(*plugin_id, config.clone()).await?;
    let plugin_name = plugins.info(*plugin_id).map(|i| format!("{}@{}", i.name, i.version)).unwrap_or_default();
    let decoder = Decoder { export, desc: Arc::new(desc.clone()), pkmap: pkmap.clone(), filter: None };
    let mut stats = ModelSummary::default();
    let mut run = ModelRun {
        state: &mut state,
        desc,
        plugin: &plugin_name,
        session,
        opener: (plugins, *plugin_id, config),
        decoder: decoder.clone(),
        done: Arc::new(BTreeMap::new()),
        stats: &mut stats,
        fates: Vec::new(),
    };
    let mut tables = Tables::new(batch.existing);
    let result = decide(&mut run, &decoder, &ordinals, &mut tables, &mut spent.to_plugin).await;
    spent.usage = run.session.usage().await.unwrap_or_default();
    spent.host_calls = run.session.host_calls().await.unwrap_or_default();
    let (rows, derived) = result?;
    let mut records: Vec<Record> = std::mem::take(&mut run.fates)
        .into_iter()
        .map(|f| Record {
            ordinal: f.ordinal,
            old_pk: f.old_pk,
            fate: f.fate,
            new_pk: f.new_pk,
            reason: f.reason,
            row: rows.get(&f.ordinal).cloned(),
        })
        .collect();
    records.sort_by_key(|r| r.ordinal);
    Ok(Replayed { records, derived })
}

/// The batch through the plugin and the checks; returns the rows written
/// per ordinal and the derived rows.
async fn decide(
    run: &mut ModelRun<'_, '_>,
    decoder: &Decoder,
    ordinals: &[u64],
    tables: &mut Tables,
    to_plugin: &mut usize,
) -> Result<(HashMap<u64, Vec<Value>>, Vec<DerivedRow>)> {
    let mut decoded = decoder.decode(0..ordinals.len(), &run.done).map_err(|e| match e {
        // The export in hand is the batch alone: name the record's own ordinal.
        Error::Deserialization { model, ordinal, pk, errors } => {
            let ordinal = ordinals.get(ordinal as usize - 1).copied().unwrap_or(ordinal);
            Error::Deserialization { model, ordinal, pk, errors }
        }
        e => e,
    })?;
    for (record, ordinal) in decoded.records.iter_mut().zip(ordinals) {
        record.0 = *ordinal;
    }
    run.note_unready(&decoded);
    let (recs, inputs) = run.take_inputs(&mut decoded);
    *to_plugin = recs.len();
    if recs.is_empty() {
        return Ok((HashMap::new(), Vec::new()));
    }
    let prepared = run.session.prepare(inputs).await?;
    let ((pending, queries), skips) = run.questions(&recs, prepared)?;
    run.note_skips(skips);
    if pending.is_empty() {
        run.session.resolve(Vec::new()).await?;
        return Ok((HashMap::new(), Vec::new()));
    }
    let (answers, found) = answer(run, tables, pending, &queries)?;
    let decided = run.session.resolve(answers).await?;
    let decisions = run.decide(&recs, &found, decided)?;

    // Pks as a dry run reserves them: fresh ones first, then the rows go in.
    let fresh = decisions.outcomes.iter().filter(|(_, o)| matches!(o, Outcome::Insert { pk: None, .. })).count();
    let mut reserved = tables.reserve(&run.desc.name, fresh).into_iter();
    let mut new_pks = HashMap::new();
    let mut rows = HashMap::new();
    for (index, outcome) in &decisions.outcomes {
        let ordinal = recs[*index].ordinal;
        match outcome {
            Outcome::Insert { values, pk } => {
                let pk = match pk {
                    Some(pk) => *pk,
                    None => reserved.next().ok_or_else(|| Error::Internal("too few pks reserved".into()))?,
                };
                tables.insert(&run.desc.name, pk, values.clone());
                new_pks.insert(*index, pk);
                rows.insert(ordinal, values.clone());
            }
            Outcome::Overwrite { values, .. } => {
                rows.insert(ordinal, values.clone());
            }
            Outcome::Existing(_) => {}
        }
    }
    let groups = run.derived_rows(decisions.derived, &recs, &decisions.outcomes, &new_pks)?;
    let mut derived = Vec::new();
    let mut derived_written = Vec::new();
    for (desc, values) in groups {
        let pks = tables.reserve(&desc.name, values.len());
        for (pk, values) in pks.iter().zip(values) {
            tables.insert(&desc.name, *pk, values.clone());
            derived.push(DerivedRow { model: desc.name.clone(), pk: *pk, values });
        }
        derived_written.push((desc.name.clone(), pks));
    }
    let mappings = run.mappings(&decisions.outcomes, &new_pks);
    let mappings = decisions.outcomes.iter().zip(mappings).map(|((index, _), m)| (recs[*index], m)).collect();
    run.book(Written { mappings, derived: derived_written });
    Ok((rows, derived))
}

/// The answers for `resolve`, and per record the pks they named.
type Answers = (Vec<plugin::Answered>, HashMap<usize, Vec<Pk>>);

/// Answers the batch's questions from `tables`, as the database would.
fn answer(
    run: &ModelRun<'_, '_>,
    tables: &Tables,
    pending: BTreeMap<usize, Pending>,
    queries: &[(usize, Query)],
) -> Result<Answers> {
    let mut answers = Vec::with_capacity(queries.len());
    let mut rows = tables.overlay();
    for (_, q) in queries {
        let (model, lookup) = run.lookup(q)?;
        let answer = match (q, lookup) {
            (Query::Find { values, .. }, db::Lookup::Equal(columns)) => {
                Answer::Found(rows.find(model, &columns, values, None))
            }
            (Query::Taken { base, .. }, db::Lookup::Folded(column)) => {
                let mut taken = Vec::new();
                rows.taken(model, column, base, &mut taken);
                Answer::Taken(taken)
            }
            _ => return Err(Error::Internal("a question of one kind looked up as another".into())),
        };
        answers.push(Some(answer));
    }
    Ok(answered(pending, queries, answers))
}

/// The rows of the database, in memory: the case's existing rows and what
/// the batch writes.
struct Tables {
    rows: BTreeMap<ModelName, Vec<(Pk, Vec<Value>)>>,
}

impl Tables {
    fn new(rows: BTreeMap<ModelName, Vec<(Pk, Vec<Value>)>>) -> Tables {
        Tables { rows }
    }

    /// Every row, to answer questions from as the database would.
    fn overlay(&self) -> Overlay<'_> {
        let mut overlay = Overlay::default();
        for (model, rows) in &self.rows {
            for (pk, values) in rows {
                overlay.add(model, *pk, values);
            }
        }
        overlay
    }

    /// `n` pks after the largest of `model`, as a dry run takes them.
    fn reserve(&self, model: &ModelName, n: usize) -> Vec<Pk> {
        let max = self.rows.get(model).and_then(|rows| rows.iter().map(|(pk, _)| *pk).max()).unwrap_or(0);
        (1..=n as Pk).map(|i| max + i).collect()
    }

    fn insert(&mut self, model: &ModelName, pk: Pk, values: Vec<Value>) {
        self.rows.entry(model.clone()).or_default().push((pk, values));
    }
}

/// The batch as an export of its own, read by the importer's own reader.
fn export_of(model: &ModelName, records: &[(u64, Pk, serde_json::Map<String, Json>)]) -> Result<Export> {
    let json: Vec<Json> = records
        .iter()
        .map(|(_, pk, fields)| serde_json::json!({"model": model.as_str(), "pk": pk, "fields": fields}))
        .collect();
    let mut file = tempfile::NamedTempFile::new()
        .map_err(|e| Error::Internal(format!("cannot write the batch to a temporary file: {e}")))?;
    serde_json::to_writer(&mut file, &json)
        .map_err(std::io::Error::from)
        .and_then(|()| file.flush())
        .map_err(|e| Error::Internal(format!("cannot write the batch to a temporary file: {e}")))?;
    Ok(Export::open(file.path(), None)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> ModelName {
        ModelName::new(s).unwrap()
    }

    #[test]
    fn taken_and_find_answer_as_the_database_does() {
        let text = |s: &str| vec![Value::Text(s.into())];
        let rows = BTreeMap::from([(
            name("sentry.user"),
            vec![(3, text("ÉLODIE")), (1, text("élodie-x1")), (2, text("élodie2")), (4, text("STRASSE-x1"))],
        )]);
        let tables = Tables::new(rows);
        let user = name("sentry.user");
        let mut answers = tables.overlay();
        let mut taken = |base| {
            let mut found = Vec::new();
            answers.taken(&user, 0, base, &mut found);
            found
        };
        assert_eq!(taken("élodie"), ["ÉLODIE", "élodie-x1"]);
        assert!(taken("straße").is_empty());
        let mut answers = tables.overlay();
        assert_eq!(answers.find(&user, &[0], &text("élodie2"), None), Some(2));
        assert_eq!(answers.find(&user, &[0], &text("élodie"), None), None);
        assert_eq!(answers.find(&user, &[0], &[Value::Null], None), None);
        assert_eq!(tables.reserve(&user, 2), [5, 6]);
        assert_eq!(tables.reserve(&name("sentry.email"), 1), [1]);
    }
}

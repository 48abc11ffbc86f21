//! The import: orders the models, remaps keys, drives each model's plugin
//! batch by batch and writes the results with their import chunks.
//!
//! Per batch: read and type the records, remap their foreign keys (dropping
//! those whose target was not imported), let the plugin `prepare` them,
//! answer its questions from the database, let it `resolve` them, check every
//! decision, then write rows, pk reservations and chunks in one transaction.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use chrono::SubsecRound as _;
use uuid::Uuid;

use crate::db::{self, Chunk, Db, NewRow};
use crate::model::{ColumnKind, Ident, ImportKind, ImportScope, ModelDesc, ModelName, Pk, Scope, Value};
use crate::plugin::{
    self, Answer, Answered, Decision, FieldError, ImportFlags, InputRecord, MappedRef, Mapping, PluginHost, Prepared,
    Query, SessionThread,
};
use crate::reader::{self, Export};

pub mod graph;
pub mod pkmap;
pub mod record;
pub mod replay;
pub mod verify;

mod overlay;

use graph::Registry;
use overlay::Overlay;
use pkmap::PkMap;
use record::Problem;

/// Sentry's `MAX_BATCH_SIZE`: the granularity of import chunks. Batches are
/// whole multiples of it, so chunk rows match Sentry's.
pub const CHUNK_SIZE: usize = 20;

/// The largest batch: every plugin call's records and results must fit in
/// the plugin's memory (64 MiB by default) and the host's hostcall fuel.
pub const MAX_BATCH_SIZE: usize = 10_000;

/// An import failure. Each message carries its cause's text and is printed
/// once; it names the model, record and pk where there is one, and ends with
/// what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Reader(#[from] reader::Error),
    #[error(transparent)]
    Plugin(#[from] plugin::Error),
    #[error(transparent)]
    Graph(#[from] graph::Error),
    #[error(transparent)]
    Db(#[from] db::Error),
    #[error(
        "{model} record #{ordinal} (pk {pk}) cannot be read: {}; fix the record in the export, or filter it out",
        join(.errors)
    )]
    Deserialization { model: ModelName, ordinal: u64, pk: Pk, errors: Vec<FieldError> },
    #[error("{model} record #{ordinal} (pk {pk}) is invalid: {}; fix the record in the export, or filter it out", join(.errors))]
    Invalid { model: ModelName, ordinal: u64, pk: Pk, errors: Vec<FieldError> },
    #[error("{model} records #{first}–#{last}: {error}{}", write_hint(.error))]
    Write { model: ModelName, first: u64, last: u64, error: db::Error },
    #[error(
        "plugin {plugin} on {model} record #{ordinal} (pk {pk}): broke the contract: {message}; \
         this is a bug in the plugin: report it to its authors"
    )]
    Contract { plugin: String, model: ModelName, ordinal: u64, pk: Pk, message: String },
    #[error("the database holds no import {0}: check --import-uuid (`relocate status` lists the imports)")]
    NoSuchImport(Uuid),
    /// A bug in relocate, not in the input, a plugin or the database.
    #[error("internal error: {0}; this is a bug in relocate: please report it")]
    Internal(String),
    /// The reporter asked to stop (a worker shutting down); every batch
    /// before this one is committed, so a rerun resumes here.
    #[error("stopped on request between batches; the import resumes where it stopped")]
    Cancelled,
}

/// What to do after a batch failed to write; nothing for a transient
/// failure, after which the import can be resumed.
fn write_hint(error: &db::Error) -> &'static str {
    match error {
        db::Error::UniqueViolation { .. } => {
            "; the target already holds a row with this unique key (from another import, or its own data)"
        }
        e if e.is_transient() => "",
        _ => {
            "; a record of this batch does not fit the table: rerun with --batch-size 20 to narrow it down, \
             then fix the record or filter it out"
        }
    }
}

fn join(errors: &[FieldError]) -> String {
    errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The `RpcImportErrorKind` Sentry would report (spec §9.1).
    pub fn sentry_kind(&self) -> &'static str {
        match self {
            Error::Reader(reader::Error::Syntax { .. } | reader::Error::Record { .. })
            | Error::Deserialization { .. } => "DeserializationFailed",
            Error::Invalid { .. } => "ValidationError",
            Error::Write { error: db::Error::UniqueViolation { .. }, .. }
            | Error::Db(db::Error::UniqueViolation { .. }) => "IntegrityError",
            Error::Write { .. } | Error::Db(_) => "DatabaseError",
            _ => "Unknown",
        }
    }

    /// Whether rerunning the import with the same UUID can get past this
    /// error: what [`Error::is_retryable`] says, or a plugin ran out of its
    /// time or memory (rerun with a higher limit or a smaller batch). A bad
    /// record, a broken plugin or a refused value would stop the rerun at the
    /// same place.
    pub fn is_resumable(&self) -> bool {
        self.is_retryable()
            || matches!(self, Error::Plugin(plugin::Error::Timeout { .. } | plugin::Error::OutOfMemory { .. }))
    }

    /// A unique key refused a write: another import may have won the race.
    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            Error::Write { error: db::Error::UniqueViolation { .. }, .. }
                | Error::Db(db::Error::UniqueViolation { .. })
        )
    }

    /// Whether running the same import again, unchanged, may succeed where
    /// this run failed: the database was unreachable, lost or busy, or the
    /// run was stopped. A retry resumes from the chunks. (Two imports racing
    /// for one name no longer fail: they take turns, see
    /// [`db::Tx::lock_questions`].)
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Cancelled => true,
            Error::Db(e) | Error::Write { error: e, .. } => e.is_transient(),
            _ => false,
        }
    }

    /// The model and ordinal the error is about, when it is about one record.
    pub fn instance(&self) -> Option<(&ModelName, Option<u64>, Option<Pk>)> {
        match self {
            Error::Deserialization { model, ordinal, pk, .. }
            | Error::Invalid { model, ordinal, pk, .. }
            | Error::Contract { model, ordinal, pk, .. } => Some((model, Some(*ordinal), Some(*pk))),
            Error::Write { model, first, .. } => Some((model, Some(*first), None)),
            Error::Plugin(
                plugin::Error::Trap { model, ordinal, .. }
                | plugin::Error::Timeout { model, ordinal, .. }
                | plugin::Error::OutOfMemory { model, ordinal, .. },
            ) => Some((model, *ordinal, None)),
            _ => None,
        }
    }
}

/// Sentry's allow-list filters (spec §6).
#[derive(Clone, Debug, Default)]
pub struct Filters {
    pub usernames: Option<BTreeSet<String>>,
    pub org_slugs: Option<BTreeSet<String>>,
}

pub struct ImportOptions {
    pub scope: ImportScope,
    pub import_uuid: Uuid,
    pub flags: ImportFlags,
    pub filters: Filters,
    /// Records per plugin call and per transaction; rounded up to a whole
    /// number of chunks.
    pub batch_size: usize,
    pub seed: u64,
    /// Global scope: empty every described model's table first, as Sentry
    /// does (spec §5.10). Never done when resuming an import.
    pub clear_first: bool,
    pub commit: Commit,
}

/// When an import's writes become permanent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Commit {
    /// With each batch, together with its chunk rows: an import that stops
    /// resumes where it stopped.
    #[default]
    EachBatch,
    /// Once, at the end (`--atomic`): an import that stops leaves nothing.
    AtEnd,
    /// Never (`--dry-run`): the whole import runs and is rolled back.
    Never,
}

impl Commit {
    /// A rolled-back rehearsal must not move PostgreSQL's sequences, which
    /// no rollback restores.
    fn sequences(self) -> db::Sequences {
        match self {
            Commit::Never => db::Sequences::Leave,
            Commit::EachBatch | Commit::AtEnd => db::Sequences::Use,
        }
    }
}

/// What became of one record of the export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Inserted,
    /// An existing row stands for it (a merged user, say).
    Existing,
    Overwritten,
    /// A required foreign key pointed at a record that was not imported.
    Dropped,
    /// Left out by a filter, the import's scope, the plugin, or for want of one.
    Skipped,
    /// Written by an earlier run of this import.
    Resumed,
}

impl Fate {
    pub fn as_str(self) -> &'static str {
        match self {
            Fate::Inserted => "inserted",
            Fate::Existing => "existing",
            Fate::Overwritten => "overwritten",
            Fate::Dropped => "dropped",
            Fate::Skipped => "skipped",
            Fate::Resumed => "resumed",
        }
    }
}

/// One record's fate, for a report (`--report`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordFate {
    pub model: ModelName,
    /// 1-based, among the export's records of its model.
    pub ordinal: u64,
    pub old_pk: Pk,
    /// The row that stands for it, where there is one.
    pub new_pk: Option<Pk>,
    pub fate: Fate,
    pub reason: String,
}

/// Which records' fates a [`Reporter`] wants.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Detail {
    /// Counts only.
    #[default]
    None,
    /// Every record that was not inserted.
    NotInserted,
    /// Every record.
    All,
}

impl Detail {
    fn wants(self, fate: Fate) -> bool {
        match self {
            Detail::None => false,
            Detail::NotInserted => fate != Fate::Inserted,
            Detail::All => true,
        }
    }
}

/// Receives progress; every method has a do-nothing default.
pub trait Reporter: Send + Sync {
    /// Records of described models the import will go through.
    fn on_import_start(&self, _records: u64) {}
    fn on_model_start(&self, _model: &ModelName, _records: usize) {}
    /// `done` of the model's records are through (written, or known to need no writing).
    fn on_batch_done(&self, _model: &ModelName, _done: usize) {}
    fn on_model_done(&self, _summary: &ModelSummary) {}
    fn detail(&self) -> Detail {
        Detail::None
    }
    /// Fates as [`Reporter::detail`] asked, after the batch that decided them committed.
    fn on_records(&self, _fates: Vec<RecordFate>) {}
    /// The import stops on `failed`, before anything of it is written.
    fn on_batch_failed(&self, _failed: &FailedBatch<'_>) {}
    /// Asked before each batch: `true` ends the import there with
    /// [`Error::Cancelled`] (with [`Commit::EachBatch`], everything before is kept).
    fn stop_requested(&self) -> bool {
        false
    }
}

/// A batch the import stopped on, with what a replay of it needs
/// (`relocate import --capture-failures`, replayed by `relocate plugin test`).
pub struct FailedBatch<'a> {
    pub desc: &'a ModelDesc,
    /// `name@version` of the plugin that imports the model.
    pub plugin: &'a str,
    /// Ordinal and old pk of each record of the batch that was not resumed
    /// or left out by a filter, in order.
    pub records: &'a [(u64, Pk)],
    /// What the import had mapped before the batch.
    pub pkmap: &'a PkMap,
    /// The plugins' clock.
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub error: &'a Error,
}

pub struct NoopReporter;
impl Reporter for NoopReporter {}

/// What happened to one model's records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelSummary {
    pub model: String,
    pub inserted: u64,
    pub existing: u64,
    pub overwritten: u64,
    /// A non-null foreign key pointed at a record that was not imported.
    pub dropped: u64,
    /// Left out by a filter, the import's scope or the plugin.
    pub skipped: u64,
    /// Already written by an earlier run with the same import UUID.
    pub resumed: u64,
    /// Time spent on this model.
    pub elapsed: std::time::Duration,
}

impl ModelSummary {
    fn count(&mut self, fate: Fate) {
        *match fate {
            Fate::Inserted => &mut self.inserted,
            Fate::Existing => &mut self.existing,
            Fate::Overwritten => &mut self.overwritten,
            Fate::Dropped => &mut self.dropped,
            Fate::Skipped => &mut self.skipped,
            Fate::Resumed => &mut self.resumed,
        } += 1;
    }

    /// Records of the export this model went through.
    pub fn records(&self) -> u64 {
        self.inserted + self.existing + self.overwritten + self.dropped + self.skipped + self.resumed
    }
}

#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub import_uuid: Uuid,
    pub models: Vec<ModelSummary>,
    /// Models in the export that no plugin describes, with their counts.
    pub unknown: Vec<(String, u64)>,
    /// Rows plugins wrote along with records (Sentry's signals), per model.
    pub derived: BTreeMap<String, u64>,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub elapsed: std::time::Duration,
    /// How the writes were kept: per batch, at the end, or not at all.
    pub commit: Commit,
}

/// Checks that every model the plugins describe has its table, creating the
/// whole schema when the database has none of it. Returns whether it created.
pub async fn ensure_schema(db: &mut Db, registry: &Registry) -> Result<bool> {
    let order = registry.order()?;
    let descs: Vec<&ModelDesc> = order.iter().filter_map(|m| registry.desc(m)).collect();
    let mut tables: Vec<&str> = descs.iter().map(|d| d.table.as_str()).collect();
    tables.extend([db::REGION_CHUNKS, db::CONTROL_CHUNKS, db::CONTROL_CHUNK_REPLICAS]);
    let existing = db.existing_tables(&tables).await?;
    if existing.is_empty() {
        if let Err(e) = db.create_schema(&descs).await {
            // Another import into the same empty database may have created
            // the schema first (PostgreSQL refuses the second CREATE TABLE
            // of a race even with IF NOT EXISTS); then there is nothing to do.
            if db.existing_tables(&tables).await?.len() < tables.len() {
                return Err(e.into());
            }
        }
        return Ok(true);
    }
    for table in tables {
        if !existing.iter().any(|t| t == table) {
            let model = descs.iter().find(|d| d.table.as_str() == table).map(|d| d.name.clone());
            let model = model.unwrap_or_else(|| ModelName::new("relocate.importchunk").expect("a valid literal name"));
            let table = crate::model::Ident::new(table).map_err(|e| db::Error::Corrupt(e.to_string()))?;
            return Err(db::Error::MissingTable { model, table }.into());
        }
    }
    Ok(false)
}

/// Rows a Global import would delete first: zero when the database is empty
/// or the import resumes (its chunks exist).
pub async fn rows_to_clear(db: &mut Db, registry: &Registry, import_uuid: &Uuid) -> Result<i64> {
    let order = registry.order()?;
    let tables: Vec<&str> = order.iter().filter_map(|m| registry.desc(m)).map(|d| d.table.as_str()).collect();
    let existing = db.existing_tables(&tables).await?;
    let chunk_tables = db.existing_tables(&[db::REGION_CHUNKS, db::CONTROL_CHUNKS]).await?;
    if chunk_tables.len() == 2 && !db.load_chunks(import_uuid).await?.is_empty() {
        return Ok(0);
    }
    let tables: Vec<&Ident> = order
        .iter()
        .filter_map(|m| registry.desc(m))
        .map(|d| &d.table)
        .filter(|t| existing.iter().any(|e| e == t.as_str()))
        .collect();
    Ok(db.count(&tables).await?)
}

/// Deletes every described model's rows, dependents first, and every
/// import chunk, in one transaction (Sentry deletes the rows of every model
/// it knows, its import chunks included).
async fn clear_tables(db: &mut Db, registry: &Registry, order: &[ModelName], seq: db::Sequences) -> Result<()> {
    let mut tx = db.begin().await?;
    let models: Vec<&ModelDesc> = order.iter().rev().filter_map(|m| registry.desc(m)).collect();
    tx.clear(&models, seq).await?;
    tx.commit().await?;
    Ok(())
}

/// Imports `export` into `db`.
///
/// Per model, batch by batch: the next batch is read, typed and remapped on
/// a blocking thread while the current one goes through its plugin (on the
/// session's own thread) and the database. With [`Commit::AtEnd`] or
/// [`Commit::Never`] the whole import is one transaction and each batch's is
/// a savepoint in it.
pub async fn import(
    export: &Arc<Export>,
    plugins: &PluginHost,
    registry: &Registry,
    db: &mut Db,
    opts: &ImportOptions,
    reporter: &dyn Reporter,
) -> Result<Summary> {
    if opts.commit == Commit::EachBatch {
        return import_models(export, plugins, registry, db, opts, reporter).await;
    }
    db.begin_outer().await?;
    let result = import_models(export, plugins, registry, db, opts, reporter).await;
    let commit = opts.commit == Commit::AtEnd && result.is_ok();
    let ended = db.end_outer(commit).await;
    let summary = result?;
    ended?;
    Ok(summary)
}

async fn import_models(
    export: &Arc<Export>,
    plugins: &PluginHost,
    registry: &Registry,
    db: &mut Db,
    opts: &ImportOptions,
    reporter: &dyn Reporter,
) -> Result<Summary> {
    let clock = std::time::Instant::now();
    let order = registry.order()?;
    ensure_schema(db, registry).await?;

    let pkmap = Arc::new(PkMap::default());
    let mut done: HashMap<ModelName, BTreeMap<i64, i64>> = HashMap::new();
    let chunks = db.load_chunks(&opts.import_uuid).await?;
    // A resumed import gives plugins the clock its first run did, so that the
    // dates it writes are the ones an uninterrupted import would have.
    let started_at = Chunk::import_start(&chunks).unwrap_or_else(|| chrono::Utc::now().trunc_subsecs(3));
    if opts.clear_first && chunks.is_empty() {
        clear_tables(db, registry, &order, opts.commit.sequences()).await?;
    }
    for chunk in chunks {
        pkmap.extend_from_chunk(&chunk);
        done.entry(chunk.model.clone()).or_default().insert(chunk.min_ordinal, chunk.max_ordinal);
    }

    let mut filters = build_filters(export, &opts.filters)?;
    let mut state = ImportState::new(registry, opts, pkmap.clone(), reporter.detail(), started_at);
    let batch_size = opts.batch_size.clamp(1, MAX_BATCH_SIZE).div_ceil(CHUNK_SIZE) * CHUNK_SIZE;
    let mut summary = Summary { import_uuid: opts.import_uuid, started_at, commit: opts.commit, ..Summary::default() };

    for (model, records) in export.models() {
        if registry.get(model).is_none() {
            summary.unknown.push((model.to_string(), records.len() as u64));
            let reason = || format!("no plugin describes {model}");
            report_all(export, model, reason, state.detail, reporter);
        }
    }
    reporter.on_import_start(
        order.iter().filter(|m| registry.get(m).is_some()).map(|m| export.records(m).len() as u64).sum(),
    );

    for model in &order {
        let count = export.records(model).len();
        if count == 0 {
            continue;
        }
        let Some((plugin_id, desc)) = registry.get(model) else {
            continue;
        };
        let model_clock = std::time::Instant::now();
        let mut stats = ModelSummary { model: model.to_string(), ..ModelSummary::default() };
        reporter.on_model_start(model, count);
        if !desc.in_import(opts.scope) {
            stats.skipped = count as u64;
            let reason = || format!("{model} is outside the {} scope of this import", opts.scope.as_scope().as_str());
            report_all(export, model, reason, state.detail, reporter);
            reporter.on_batch_done(model, count);
            reporter.on_model_done(&stats);
            summary.models.push(stats);
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
        let session = plugins.spawn_session(*plugin_id, config.clone()).await?;
        let plugin_name = plugins.info(*plugin_id).map(|i| format!("{}@{}", i.name, i.version)).unwrap_or_default();
        let decoder = Decoder {
            export: export.clone(),
            desc: Arc::new(desc.clone()),
            pkmap: pkmap.clone(),
            filter: filters.remove(model).map(Arc::new),
        };
        let mut run = ModelRun {
            state: &mut state,
            desc,
            plugin: &plugin_name,
            session,
            opener: (plugins, *plugin_id, config),
            decoder: decoder.clone(),
            done: Arc::new(done.remove(model).unwrap_or_default()),
            stats: &mut stats,
            fates: Vec::new(),
        };
        // Reading runs on blocking threads up to three batches ahead; the
        // plugin resolves batch b + 1 and prepares b + 2 while batch b is
        // written and committed (see `ModelRun::try_batch`).
        let batches = count.div_ceil(batch_size);
        let spawn = |b: usize, done: &Arc<BTreeMap<i64, i64>>| {
            let range = b * batch_size..((b + 1) * batch_size).min(count);
            let (decoder, done) = (decoder.clone(), done.clone());
            tokio::task::spawn_blocking(move || decoder.decode(range, &done))
        };
        let read = |handle: tokio::task::JoinHandle<Result<Decoded>>| async move {
            handle.await.map_err(|e| Error::Internal(format!("reading {model} stopped: {e}")))?
        };
        let mut reading: VecDeque<_> = (0..batches.min(4)).map(|b| spawn(b, &run.done)).collect();
        let mut spawned = reading.len();
        // This batch and the two after it, each with what a capture of it
        // would need (a lost race reads a batch again, but the same records).
        let mut window: VecDeque<(Decoded, Vec<(u64, Pk)>)> = VecDeque::with_capacity(3);
        let mut ahead: Option<Ahead> = None;
        for b in 0..batches {
            if reporter.stop_requested() {
                return Err(Error::Cancelled);
            }
            while window.len() < 3 {
                let Some(handle) = reading.pop_front() else {
                    break;
                };
                let d = read(handle).await?;
                let records = d.replayable();
                window.push_back((d, records));
                if spawned < batches {
                    reading.push_back(spawn(spawned, &run.done));
                    spawned += 1;
                }
            }
            let (decoded, this_records) = window.pop_front().ok_or_else(|| Error::Internal("no batch read".into()))?;
            // With the next batch prepared ahead, a failure may be the next batch's.
            let next_records = window.front().map(|(_, r)| r.clone());
            let mut following = window.iter_mut().map(|(d, _)| d);
            let (next, after) = (following.next(), following.next());
            match run.batch(db, decoded, ahead.take(), next, after).await {
                Ok(prepped) => ahead = prepped,
                Err(Failed { error, committed, .. }) => {
                    let records = match next_records {
                        Some(n) if committed => {
                            // This batch committed before the next one failed.
                            reporter.on_records(std::mem::take(&mut run.fates));
                            n
                        }
                        _ => this_records,
                    };
                    let (pkmap, plugin) = (&*pkmap, &*plugin_name);
                    reporter.on_batch_failed(&FailedBatch {
                        desc,
                        plugin,
                        records: &records,
                        pkmap,
                        started_at,
                        error: &error,
                    });
                    return Err(error);
                }
            }
            if !run.fates.is_empty() {
                reporter.on_records(std::mem::take(&mut run.fates));
            }
            reporter.on_batch_done(model, (b * batch_size + batch_size).min(count));
        }
        stats.elapsed = model_clock.elapsed();
        reporter.on_model_done(&stats);
        summary.models.push(stats);
    }
    summary.derived = state.derived;
    summary.elapsed = clock.elapsed();
    Ok(summary)
}

/// Reports every record of `model` as skipped for `reason`: models no plugin
/// describes and models outside the import's scope.
fn report_all(
    export: &Export,
    model: &ModelName,
    reason: impl Fn() -> String,
    detail: Detail,
    reporter: &dyn Reporter,
) {
    if !detail.wants(Fate::Skipped) {
        return;
    }
    let fates = export
        .records(model)
        .iter()
        .enumerate()
        .map(|(i, at)| RecordFate {
            model: model.clone(),
            ordinal: i as u64 + 1,
            old_pk: at.pk,
            new_pk: None,
            fate: Fate::Skipped,
            reason: reason(),
        })
        .collect();
    reporter.on_records(fates);
}

/// What every model's run shares over one import.
struct ImportState<'a> {
    registry: &'a Registry,
    opts: &'a ImportOptions,
    pkmap: Arc<PkMap>,
    /// Rows plugins derived, per model.
    derived: BTreeMap<String, u64>,
    /// Whether another connection wrote between two batches of this import:
    /// from then on batches are answered in their own transactions, which
    /// hold the write lock for less time (see `ModelRun::answer_ahead`).
    contended: bool,
    /// The lookups already known to be served by an index.
    indexed: HashSet<(ModelName, db::Lookup)>,
    /// Which records' fates the reporter wants.
    detail: Detail,
    /// When the import began: the plugins' clock and its chunks' `date_added`.
    started_at: chrono::DateTime<chrono::Utc>,
}

impl<'a> ImportState<'a> {
    /// The state of an import that has written nothing yet.
    fn new(
        registry: &'a Registry,
        opts: &'a ImportOptions,
        pkmap: Arc<PkMap>,
        detail: Detail,
        started_at: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        ImportState {
            registry,
            opts,
            pkmap,
            derived: BTreeMap::new(),
            contended: false,
            indexed: HashSet::new(),
            detail,
            started_at,
        }
    }
}

/// Reads, types, filters and remaps one batch of a model's records; runs on
/// a blocking thread, ahead of the batch being written.
#[derive(Clone)]
struct Decoder {
    export: Arc<Export>,
    desc: Arc<ModelDesc>,
    pkmap: Arc<PkMap>,
    filter: Option<Arc<Filter>>,
}

/// One batch, read: every record's ordinal and what became of it so far.
struct Decoded {
    /// Which of the model's records (indexes into the export's list).
    range: std::ops::Range<usize>,
    records: Vec<(u64, Pk, Read)>,
}

impl Decoded {
    /// Ordinal and old pk of each record a replay of the batch needs: those
    /// neither resumed nor left out by a filter.
    fn replayable(&self) -> Vec<(u64, Pk)> {
        self.records
            .iter()
            .filter(|(_, _, read)| matches!(read, Read::Ready { .. } | Read::Dropped { .. }))
            .map(|(ordinal, pk, _)| (*ordinal, *pk))
            .collect()
    }
}

enum Read {
    /// Its chunk was written by an earlier run of this import.
    Resumed,
    /// Left out by a filter, for this reason.
    Filtered(&'static str),
    /// The required foreign key in `column` pointed at `target`, which was
    /// not imported.
    Dropped {
        column: usize,
        target: Pk,
    },
    Ready {
        values: Vec<Value>,
        refs: Vec<MappedRef>,
    },
}

impl Decoder {
    fn decode(&self, range: std::ops::Range<usize>, done: &BTreeMap<i64, i64>) -> Result<Decoded> {
        let refs = &self.export.records(&self.desc.name)[range.clone()];
        let mut records = Vec::with_capacity(refs.len());
        let mut batch = self.export.batch(refs)?;
        for (i, at) in refs.iter().enumerate() {
            let ordinal = (range.start + i) as u64 + 1;
            if done.contains_key(&chunk_start(ordinal)) {
                records.push((ordinal, at.pk, Read::Resumed));
                continue;
            }
            let mut values = read_values(&mut batch, &self.desc, at, ordinal)?;
            let read = match self.filter.as_deref() {
                Some(filter) if !filter.passes(&self.desc, at.pk, &values) => Read::Filtered(filter.reason),
                _ => match remap(&self.desc, &self.pkmap, &mut values) {
                    Ok(refs) => Read::Ready { values, refs },
                    Err((column, target)) => Read::Dropped { column, target },
                },
            };
            records.push((ordinal, at.pk, read));
        }
        Ok(Decoded { range, records })
    }
}

impl Filter {
    /// Whether a record passes the filter.
    fn passes(&self, desc: &ModelDesc, pk: Pk, values: &[Value]) -> bool {
        let value = if self.field == "pk" {
            FilterValue::Pk(pk)
        } else {
            match desc.column_index(&self.field).map(|c| &values[c]) {
                Some(Value::Text(s)) => FilterValue::Text(s.clone()),
                Some(Value::Integer(i)) => FilterValue::Pk(*i),
                _ => return false,
            }
        };
        self.values.contains(&value)
    }
}

/// The typed values of the record `at`, the `ordinal`th of `desc`'s model.
fn read_values(
    batch: &mut reader::Batch<'_>,
    desc: &ModelDesc,
    at: &reader::RecordRef,
    ordinal: u64,
) -> Result<Vec<Value>> {
    let values = batch.read_with(at, |bytes| record::values_from_record(desc, bytes))?;
    values.map_err(|errors| Error::Deserialization { model: desc.name.clone(), ordinal, pk: at.pk, errors })
}

/// Rewrites foreign keys to new pks. An error drops the record: the
/// required foreign key in that column points at a pk that was not imported
/// (spec §4.3).
fn remap(desc: &ModelDesc, pkmap: &PkMap, values: &mut [Value]) -> std::result::Result<Vec<MappedRef>, (usize, Pk)> {
    let mut refs = Vec::new();
    for fk in &desc.foreign_keys {
        let Value::Integer(old) = values[fk.column] else {
            continue;
        };
        // A self-reference is not remapped, as in Sentry.
        if fk.target == desc.name {
            continue;
        }
        match pkmap.new_pk(&fk.target, old) {
            Some((new_pk, kind)) => {
                values[fk.column] = Value::Integer(new_pk);
                refs.push(MappedRef { column: fk.column, old_pk: old, kind });
            }
            None => match fk.on_missing {
                crate::model::OnMissing::SetNull => values[fk.column] = Value::Null,
                crate::model::OnMissing::Drop => return Err((fk.column, old)),
            },
        }
    }
    Ok(refs)
}

/// Why a record was dropped: the required foreign key in `column` points at
/// `target`, which was not imported.
fn dropped_reason(desc: &ModelDesc, column: usize, target: Pk) -> String {
    let fk = desc.foreign_keys.iter().find(|fk| fk.column == column);
    let target_model = fk.map_or("its target".to_string(), |fk| fk.target.to_string());
    format!(
        "its required foreign key {} points at {target_model} pk {target}, which was not imported",
        desc.columns[column].name
    )
}

/// The first ordinal of the chunk `ordinal` falls in.
fn chunk_start(ordinal: u64) -> i64 {
    ((ordinal - 1) / CHUNK_SIZE as u64 * CHUNK_SIZE as u64 + 1) as i64
}

/// A filter on one model: the allowed values of one field (`pk` is the old pk).
struct Filter {
    field: String,
    values: HashSet<FilterValue>,
    /// Why a record it leaves out is left out, for `--report`.
    reason: &'static str,
}

#[derive(PartialEq, Eq, Hash)]
enum FilterValue {
    Text(String),
    Pk(Pk),
}

fn sentry_model(name: &str) -> ModelName {
    ModelName::new(name).expect("a valid literal model name")
}

/// Sentry's filter propagation (spec §6): an org-slug filter keeps the users
/// who are members of the selected orgs, and a user filter keeps the emails
/// of the kept users. Needs one look at the users and members of the export.
fn build_filters(export: &Export, filters: &Filters) -> Result<HashMap<ModelName, Filter>> {
    let mut out = HashMap::new();
    let (user, email, org, member) = (
        sentry_model("sentry.user"),
        sentry_model("sentry.email"),
        sentry_model("sentry.organization"),
        sentry_model("sentry.organizationmember"),
    );
    let mut buf = Vec::new();
    let mut kept_user_pks: Option<HashSet<Pk>> = None;
    if let Some(names) = &filters.usernames {
        out.insert(
            user.clone(),
            Filter {
                field: "username".into(),
                values: names.iter().cloned().map(FilterValue::Text).collect(),
                reason: "its username is not in --filter-usernames",
            },
        );
        let mut pks = HashSet::new();
        for at in export.records(&user) {
            let rec = export.read(at, &mut buf)?;
            if rec.fields.get("username").and_then(|u| u.as_str()).is_some_and(|u| names.contains(u)) {
                pks.insert(at.pk);
            }
        }
        kept_user_pks = Some(pks);
    }
    if let Some(slugs) = &filters.org_slugs {
        out.insert(
            org.clone(),
            Filter {
                field: "slug".into(),
                values: slugs.iter().cloned().map(FilterValue::Text).collect(),
                reason: "its slug is not in --filter-org-slugs",
            },
        );
        let mut orgs = HashSet::new();
        for at in export.records(&org) {
            let rec = export.read(at, &mut buf)?;
            if rec.fields.get("slug").and_then(|s| s.as_str()).is_some_and(|s| slugs.contains(s)) {
                orgs.insert(at.pk);
            }
        }
        let mut users = HashSet::new();
        for at in export.records(&member) {
            let rec = export.read(at, &mut buf)?;
            let org_pk = rec.fields.get("organization").and_then(|o| o.as_i64());
            if org_pk.is_some_and(|o| orgs.contains(&o)) {
                users.extend(rec.fields.get("user_id").and_then(|u| u.as_i64()));
            }
        }
        let users = match kept_user_pks {
            Some(by_name) => by_name.intersection(&users).copied().collect(),
            None => users,
        };
        out.insert(
            user.clone(),
            Filter {
                field: "pk".into(),
                values: users.iter().copied().map(FilterValue::Pk).collect(),
                reason: "the user is not a member of an organization in --filter-org-slugs (or not in --filter-usernames)",
            },
        );
        kept_user_pks = Some(users);
    }
    if let Some(pks) = kept_user_pks {
        let mut emails = HashSet::new();
        for at in export.records(&user) {
            if pks.contains(&at.pk) {
                let rec = export.read(at, &mut buf)?;
                if let Some(e) = rec.fields.get("email").and_then(|e| e.as_str()) {
                    emails.insert(FilterValue::Text(e.to_string()));
                }
            }
        }
        let reason = "no user kept by the filters has this email";
        out.insert(email, Filter { field: "email".into(), values: emails, reason });
    }
    Ok(out)
}

/// One model's import in progress.
struct ModelRun<'a, 's> {
    state: &'a mut ImportState<'s>,
    desc: &'a ModelDesc,
    plugin: &'a str,
    session: SessionThread,
    /// What opens the session again ([`ModelRun::fresh_session`]).
    opener: (&'a PluginHost, plugin::PluginId, plugin::SessionConfig),
    /// Reads a batch again after a lost race.
    decoder: Decoder,
    /// Chunks already written by this import: min ordinal → max ordinal.
    done: Arc<BTreeMap<i64, i64>>,
    stats: &'a mut ModelSummary,
    /// Fates of the batch in progress, for the reporter.
    fates: Vec<RecordFate>,
}

/// Which record of the batch: its ordinal and its pk in the export.
#[derive(Clone, Copy)]
struct Rec {
    ordinal: u64,
    old_pk: Pk,
}

/// A batch's records as `prepare` saw them, and what it returned.
struct Prepped {
    recs: Vec<Rec>,
    prepared: Vec<Prepared>,
}

/// The next batch, as far as it got while the batch before was written.
enum Ahead {
    /// Its `prepare` handed to the plugin, not waited for yet.
    Preparing(Following),
    /// Prepared; its questions are answered in its own transaction.
    Prepared(Prepped),
    /// Answered and handed to `resolve` already ([`ModelRun::answer_ahead`]).
    Resolving(Box<Resolving>),
    /// What `prepare` returned is wrong: the import stops there.
    Invalid(Error),
}

/// A batch whose questions were answered in the transaction of the batch
/// before it, from the database as it was before that batch's writes and
/// from its rows held in memory ([`overlay`]); `resolve` ran while those
/// rows were written. Its [`db::Hold`] keeps the answers true: locks on its
/// names (PostgreSQL), or the `data_version` that tells whether anybody else
/// wrote since (SQLite; if one did, the batch starts over).
struct Resolving {
    recs: Vec<Rec>,
    skips: Skips,
    found: HashMap<usize, Vec<Pk>>,
    decided: plugin::Pending<Vec<plugin::Decided>>,
    hold: db::Hold,
    /// The batch after it, its `prepare` queued behind this `resolve`.
    following: Option<Following>,
}

/// A batch whose `prepare` was handed to the plugin (`None`: nothing in it
/// for the plugin).
struct Following {
    recs: Vec<Rec>,
    prepared: Option<plugin::Pending<Vec<Prepared>>>,
}

impl Following {
    /// Starts `prepare` of the records of `decoded` still to import.
    fn start(run: &ModelRun<'_, '_>, decoded: &mut Decoded) -> Following {
        let (recs, inputs) = run.take_inputs(decoded);
        let prepared = (!inputs.is_empty()).then(|| run.session.start_prepare(inputs));
        Following { recs, prepared }
    }

    /// Waits for its `prepare`, whatever it returns.
    async fn settle(self) {
        let _ = self.wait().await;
    }

    async fn wait(self) -> Result<Prepped> {
        let prepared = match self.prepared {
            Some(p) => p.wait().await?,
            None => Vec::new(),
        };
        Ok(Prepped { recs: self.recs, prepared })
    }
}

impl Ahead {
    /// The failure of the batch before `ahead`, once the plugin is done with
    /// what it was doing ahead.
    async fn abandon(ahead: Option<Ahead>, error: Error) -> Failed {
        if let Some(a) = ahead {
            a.settle().await;
        }
        Failed { error, committed: false }
    }

    /// Waits for a `prepare` still running; its error apart.
    async fn prepared(ahead: Option<Ahead>) -> (Option<Ahead>, Option<Error>) {
        match ahead {
            Some(Ahead::Preparing(f)) => match f.wait().await {
                Ok(p) => (Some(Ahead::Prepared(p)), None),
                Err(e) => (None, Some(e)),
            },
            other => (other, None),
        }
    }

    /// Waits for whatever the plugin is doing for this batch and the one
    /// after it.
    async fn settle(self) {
        match self {
            Ahead::Preparing(f) => f.settle().await,
            Ahead::Prepared(_) | Ahead::Invalid(_) => {}
            Ahead::Resolving(r) => {
                let _ = r.decided.wait().await;
                if let Some(f) = r.following {
                    f.settle().await;
                }
            }
        }
    }
}

/// How a batch went that did not fail.
enum Step {
    /// Written and committed; what the next batch got to meanwhile.
    Done(Option<Ahead>),
    /// Its answers went stale (another connection wrote): read it again.
    Stale,
}

/// A batch that failed; `committed` when the batch itself committed and the
/// next one's `prepare` failed.
struct Failed {
    error: Error,
    committed: bool,
}

impl<E: Into<Error>> From<E> for Failed {
    fn from(error: E) -> Self {
        Failed { error: error.into(), committed: false }
    }
}

/// A ready record waiting for its answers.
struct Pending {
    answers: Vec<Answer>,
}

/// The ready records of a batch, by index, and their questions.
type Questions = (BTreeMap<usize, Pending>, Vec<(usize, Query)>);

/// Records `prepare` or the import's scope left out, and why.
type Skips = Vec<(Rec, Skip)>;

/// Why a ready-to-be record was left out; put in words only for a reporter
/// that wants skipped records.
enum Skip {
    /// The plugin's reason.
    Plugin(String),
    /// The record's own scope, outside the import's.
    Scope(Scope),
}

/// The derived rows of one model, ready to insert.
type DerivedGroup<'d> = (&'d ModelDesc, Vec<Vec<Value>>);

/// A record's final outcome, to be written.
enum Outcome {
    Insert { values: Vec<Value>, pk: Option<Pk> },
    Existing(Pk),
    Overwrite { pk: Pk, values: Vec<Value> },
}

/// A batch decided and checked, ready to write.
struct Decisions {
    /// Batch index → outcome, in index order.
    outcomes: Vec<(usize, Outcome)>,
    derived: Vec<(usize, plugin::DerivedRow)>,
}

/// A batch's rows with their pks, ready to write ([`ModelRun::stage`]).
struct Staged<'s> {
    outcomes: Vec<(usize, Outcome)>,
    /// Batch index → pk, for every inserted record.
    new_pks: HashMap<usize, Pk>,
    /// Whether a plugin kept a pk of its own, which moves the sequence.
    explicit: bool,
    derived: Vec<DerivedRows<'s>>,
}

/// Derived rows of one model; `pks` reserved already unless they wait for
/// the batch's own rows.
struct DerivedRows<'s> {
    desc: &'s ModelDesc,
    pks: Option<Vec<Pk>>,
    rows: Vec<Vec<Value>>,
}

impl<'s> Staged<'s> {
    /// Whether [`Self::overlay`] holds everything the batch changes: no
    /// overwrite (a changed row would still answer with its old values) and
    /// every pk known.
    fn overlaid(&self) -> bool {
        self.outcomes.iter().all(|(_, o)| !matches!(o, Outcome::Overwrite { .. }))
            && self.derived.iter().all(|d| d.pks.is_some())
    }

    /// The rows the batch inserts, for answering the next batch's questions.
    fn overlay<'r>(&'r self, desc: &'r ModelDesc) -> Overlay<'r> {
        let mut overlay = Overlay::default();
        for (index, outcome) in &self.outcomes {
            if let (Outcome::Insert { values, .. }, Some(pk)) = (outcome, self.new_pks.get(index)) {
                overlay.add(&desc.name, *pk, values);
            }
        }
        for d in &self.derived {
            for (pk, values) in d.pks.iter().flatten().zip(&d.rows) {
                overlay.add(&d.desc.name, *pk, values);
            }
        }
        overlay
    }
}

/// What a batch wrote, to book once it committed.
struct Written {
    mappings: Vec<(Rec, Mapping)>,
    derived: Vec<(ModelName, Vec<Pk>)>,
}

impl<'s> ModelRun<'_, 's> {
    /// Imports one batch, given what `prepare` made of it if the plugin saw
    /// it already, and the next batch, which the plugin prepares while this
    /// one is written; returns the next batch and what `prepare` made of it.
    ///
    /// Another process importing under the same UUID may write some of this
    /// batch's chunks first (Sentry's racing imports, spec §8.3): the write
    /// then fails on a unique key, and the batch takes the winner's chunks as
    /// resumed and retries whatever is left, with a plugin session that
    /// never saw the lost records ([`Self::fresh_session`]).
    async fn batch(
        &mut self,
        db: &mut Db,
        mut decoded: Decoded,
        mut prepped: Option<Ahead>,
        mut next: Option<&mut Decoded>,
        mut after: Option<&mut Decoded>,
    ) -> std::result::Result<Option<Ahead>, Failed> {
        loop {
            let before = (self.stats.clone(), self.fates.len());
            self.note_unready(&decoded);
            let this = match prepped.take() {
                Some(p) => p,
                None => Ahead::Prepared(self.prepare(&mut decoded).await?),
            };
            let failed = match self.try_batch(db, this, next.as_deref_mut(), after.as_deref_mut()).await {
                Ok(Step::Done(ahead)) => return Ok(ahead),
                Ok(Step::Stale) => {
                    self.fresh_session().await?;
                    *self.stats = before.0;
                    self.fates.truncate(before.1);
                    // The plugin took the records' values: read them again.
                    for d in std::iter::once(&mut decoded).chain(next.as_deref_mut()) {
                        *d = self.decoder.decode(d.range.clone(), &self.done)?;
                    }
                    continue;
                }
                Err(f) => {
                    // What was held for the batches answered ahead goes with them.
                    db.release_all().await;
                    if !f.error.is_unique_violation() || f.committed {
                        return Err(f);
                    }
                    f
                }
            };
            let starts: BTreeSet<i64> = decoded.records.iter().map(|(o, _, _)| chunk_start(*o)).collect();
            let won: Vec<Chunk> = db
                .load_chunks(&self.state.opts.import_uuid)
                .await?
                .into_iter()
                .filter(|c| {
                    c.model == self.desc.name
                        && starts.contains(&c.min_ordinal)
                        && !self.done.contains_key(&c.min_ordinal)
                })
                .collect();
            if won.is_empty() {
                return Err(failed);
            }
            self.fresh_session().await?;
            *self.stats = before.0;
            self.fates.truncate(before.1);
            let done = Arc::make_mut(&mut self.done);
            for chunk in won {
                self.state.pkmap.extend_from_chunk(&chunk);
                done.insert(chunk.min_ordinal, chunk.max_ordinal);
            }
            // The plugin took the records' values: read them again.
            for d in std::iter::once(&mut decoded).chain(next.as_deref_mut()).chain(after.as_deref_mut()) {
                *d = self.decoder.decode(d.range.clone(), &self.done)?;
            }
        }
    }

    /// Opens the plugin's session again, before a batch the plugin resolved
    /// but nobody wrote (a lost race, stale answers) is resolved again: the
    /// old session would count the names it gave out to those records as
    /// taken and rename them. What committed batches gave out is in the
    /// database, where the new session's questions find it, as a resumed
    /// import's do.
    async fn fresh_session(&mut self) -> Result<()> {
        let (plugins, id, config) = &self.opener;
        self.session = plugins.spawn_session(*id, config.clone()).await?;
        Ok(())
    }

    /// The stages of one prepared batch, each its own function: the
    /// questions, their answers, `resolve`, the checks; then, while the
    /// plugin prepares the next batch, the rows with their pks; the next
    /// batch's answers and its `resolve` started when they can be
    /// ([`Self::answer_ahead`]); the writes and the commit; the bookkeeping.
    async fn try_batch(
        &mut self,
        db: &mut Db,
        this: Ahead,
        next: Option<&mut Decoded>,
        after: Option<&mut Decoded>,
    ) -> std::result::Result<Step, Failed> {
        let (recs, mut tx, found, decided, following, hold) = match this {
            Ahead::Invalid(error) => return Err(error.into()),
            // `try_batch` waits for the next batch's `prepare` before it returns.
            Ahead::Preparing(_) => return Err(Error::Internal("a batch still preparing".into()).into()),
            Ahead::Prepared(Prepped { recs, prepared }) => {
                if recs.is_empty() {
                    return Ok(Step::Done(None));
                }
                let ((pending, queries), skips) = self.questions(&recs, prepared)?;
                self.note_skips(skips);
                if pending.is_empty() {
                    // The plugin still expects its `resolve` call after `prepare`.
                    self.session.resolve(Vec::new()).await?;
                    return Ok(Step::Done(None));
                }
                self.ensure_indexes(db, &queries).await?;
                let mut tx = db.begin().await?;
                let write_err = self.write_err(&recs);
                let (answered, found) = self.answer(&mut tx, pending, queries, None).await.map_err(&write_err)?;
                let decided = self.session.resolve(answered).await?;
                (recs, tx, found, decided, None, None)
            }
            Ahead::Resolving(mut r) => {
                let mut tx = db.begin().await?;
                let holds = tx.still_holds(&r.hold).await.map_err(self.write_err(&r.recs));
                // The session takes no other call before this one is done.
                let decided = r.decided.wait().await;
                if !holds? {
                    drop(tx);
                    self.state.contended = true;
                    if let Some(f) = r.following.take() {
                        f.settle().await;
                    }
                    return Ok(Step::Stale);
                }
                self.note_skips(r.skips);
                (r.recs, tx, r.found, decided?, r.following, Some(r.hold))
            }
        };
        let decisions = self.decide(&recs, &found, decided)?;

        let write_err = self.write_err(&recs);
        let db_err = |e| match e {
            Error::Db(error) => write_err(error),
            e => e,
        };
        // The next batch's `prepare` runs while this batch is staged and
        // written (it was queued already if this batch was resolved ahead).
        let mut ahead = match following {
            Some(f) => Some(Ahead::Preparing(f)),
            None => next.map(|n| Ahead::Preparing(Following::start(self, n))),
        };
        let mut prepare_failed = None;
        let staged = self.stage(&mut tx, &recs, decisions).await.map_err(db_err);
        // Answering ahead needs the next batch prepared before this one is
        // written; otherwise `prepare` goes on during the write.
        let answering_ahead = tx.can_hold(self.state.opts.commit == Commit::EachBatch)
            && !self.state.contended
            && staged.as_ref().is_ok_and(Staged::overlaid);
        if answering_ahead {
            (ahead, prepare_failed) = Ahead::prepared(ahead).await;
        }
        let staged = match staged {
            Ok(staged) => staged,
            Err(error) => return Err(Ahead::abandon(ahead, error).await),
        };
        let ahead = match ahead {
            Some(Ahead::Prepared(p)) if answering_ahead => match self.answer_ahead(&mut tx, &staged, p, after).await {
                Ok(a) => Some(a),
                Err(e) => return Err(Failed { error: write_err(e), committed: false }),
            },
            other => other,
        };
        let stored = async {
            let written = self.execute(&mut tx, &recs, staged).await.map_err(db_err)?;
            tx.commit().await.map_err(&write_err)?;
            Ok::<_, Error>(written)
        }
        .await;
        let written = match stored {
            Ok(written) => written,
            Err(error) => return Err(Ahead::abandon(ahead, error).await),
        };
        self.book(written);
        if let Some(hold) = hold
            && let Err(error) = db.release(hold).await
        {
            let failed = Ahead::abandon(ahead, write_err(error)).await;
            return Err(Failed { committed: true, ..failed });
        }
        let (ahead, failed) = Ahead::prepared(ahead).await;
        match prepare_failed.or(failed) {
            Some(error) => Err(Failed { error, committed: true }),
            None => Ok(Step::Done(ahead)),
        }
    }

    /// How a database error of the batch of `recs` reads.
    fn write_err(&self, recs: &[Rec]) -> impl Fn(db::Error) -> Error + use<> {
        let model = self.desc.name.clone();
        let (first, last) = (recs.first().map_or(0, |r| r.ordinal), recs.last().map_or(0, |r| r.ordinal));
        move |error| Error::Write { model: model.clone(), first, last, error }
    }

    /// Answers the next batch's questions in this batch's transaction before
    /// its writes, adding this batch's rows held in memory, and starts its
    /// `resolve`, which then runs while this batch is written. Only where
    /// the answers can be held true ([`db::Tx::hold`]: no other import holds
    /// the names, no other connection wrote on SQLite), when this batch
    /// overwrites no row and reserves every pk up front, and for questions
    /// with an index already and [`Overlay::answers`]' kinds of values.
    /// Otherwise the batch comes back as it was, to be answered in its own
    /// transaction.
    async fn answer_ahead(
        &self,
        tx: &mut db::Tx<'_>,
        staged: &Staged<'_>,
        next: Prepped,
        after: Option<&mut Decoded>,
    ) -> db::Result<Ahead> {
        if self.state.contended || next.recs.is_empty() || !staged.overlaid() || !self.can_answer_ahead(&next.prepared)
        {
            return Ok(Ahead::Prepared(next));
        }
        let keys = if tx.locks_questions() {
            let lock = |q| self.lookup(q).ok().map(|(model, lookup)| question_lock(model, &lookup, q));
            prepared_queries(&next.prepared).filter_map(lock).collect()
        } else {
            Vec::new()
        };
        let Some(hold) = tx.hold(keys).await? else {
            return Ok(Ahead::Prepared(next));
        };
        let Prepped { recs, prepared } = next;
        let ((pending, queries), skips) = match self.questions(&recs, prepared) {
            Ok(q) => q,
            Err(error) => return Ok(Ahead::Invalid(error)),
        };
        let mut overlay = staged.overlay(self.desc);
        let (answered, found) = self.answer(tx, pending, queries, Some(&mut overlay)).await?;
        let decided = self.session.start_resolve(answered);
        // Queued behind `resolve`: the plugin goes on to the batch after.
        let following = after.map(|a| Following::start(self, a));
        Ok(Ahead::Resolving(Box::new(Resolving { recs, skips, found, decided, hold, following })))
    }

    /// Whether every question of a prepared batch has its index and values
    /// [`Overlay`] compares as the database does.
    fn can_answer_ahead(&self, prepared: &[Prepared]) -> bool {
        for q in prepared_queries(prepared) {
            let Ok((model, lookup)) = self.lookup(q) else {
                return false;
            };
            let key = (model.clone(), lookup);
            if !self.state.indexed.contains(&key) {
                return false;
            }
            if let (Query::Find { values, .. }, db::Lookup::Equal(columns)) = (q, &key.1) {
                match self.state.registry.desc(model) {
                    Some(desc) if Overlay::answers(desc, columns, values) => {}
                    _ => return false,
                }
            }
        }
        true
    }

    /// Runs `prepare` over the batch's records still to import.
    async fn prepare(&mut self, decoded: &mut Decoded) -> Result<Prepped> {
        let (recs, inputs) = self.take_inputs(decoded);
        if inputs.is_empty() {
            return Ok(Prepped { recs, prepared: Vec::new() });
        }
        let prepared = self.session.prepare(inputs).await?;
        Ok(Prepped { recs, prepared })
    }

    /// Whether an earlier run of this import wrote the record.
    fn is_resumed(&self, ordinal: u64, read: &Read) -> bool {
        matches!(read, Read::Resumed) || self.done.contains_key(&chunk_start(ordinal))
    }

    /// The batch's records still to import, as the plugin gets them: their
    /// values move to the plugin (a retry reads them again).
    fn take_inputs(&self, decoded: &mut Decoded) -> (Vec<Rec>, Vec<InputRecord>) {
        let mut recs = Vec::with_capacity(decoded.records.len());
        let mut inputs = Vec::with_capacity(decoded.records.len());
        for (ordinal, old_pk, read) in &mut decoded.records {
            if self.is_resumed(*ordinal, read) {
                continue;
            }
            if let Read::Ready { values, refs } = read {
                let (ordinal, old_pk) = (*ordinal, *old_pk);
                recs.push(Rec { ordinal, old_pk });
                let (values, refs) = (std::mem::take(values), std::mem::take(refs));
                inputs.push(InputRecord { ordinal, old_pk, values, refs });
            }
        }
        (recs, inputs)
    }

    /// Counts the batch's records that do not go to the plugin: resumed,
    /// filtered out and dropped.
    fn note_unready(&mut self, decoded: &Decoded) {
        for (ordinal, old_pk, read) in &decoded.records {
            let rec = Rec { ordinal: *ordinal, old_pk: *old_pk };
            if self.is_resumed(rec.ordinal, read) {
                let new_pk = self.state.pkmap.new_pk(&self.desc.name, rec.old_pk).map(|(pk, _)| pk);
                self.note(rec, Fate::Resumed, new_pk, || "written by an earlier run of this import".into());
                continue;
            }
            match read {
                Read::Resumed | Read::Ready { .. } => {}
                Read::Filtered(reason) => {
                    let reason = *reason;
                    self.note(rec, Fate::Skipped, None, || reason.into());
                }
                Read::Dropped { column, target } => {
                    let (column, target) = (*column, *target);
                    let desc = self.desc;
                    self.note(rec, Fate::Dropped, None, || dropped_reason(desc, column, target));
                }
            }
        }
    }

    /// Checks what `prepare` returned: the ready records and their
    /// questions, and the records skipped (to [`note_skips`](Self::note_skips)
    /// once the batch before has been booked).
    fn questions(&self, recs: &[Rec], prepared: Vec<Prepared>) -> Result<(Questions, Skips)> {
        let mut pending = BTreeMap::new();
        let mut queries = Vec::new();
        let mut skips = Vec::new();
        for (index, (rec, prep)) in recs.iter().zip(prepared).enumerate() {
            match prep {
                Prepared::Skip(reason) => skips.push((*rec, Skip::Plugin(reason))),
                Prepared::Invalid(errors) => return Err(self.invalid(rec, errors)),
                Prepared::Ready { scope, queries: qs } => {
                    let scope = self.record_scope(scope, rec)?;
                    if !self.state.opts.scope.accepts(scope) {
                        skips.push((*rec, Skip::Scope(scope)));
                        continue;
                    }
                    for q in qs {
                        self.check_query(&q, rec)?;
                        queries.push((index, q));
                    }
                    pending.insert(index, Pending { answers: Vec::new() });
                }
            }
        }
        Ok(((pending, queries), skips))
    }

    fn note_skips(&mut self, skips: Skips) {
        let (plugin, import) = (self.plugin, self.state.opts.scope.as_scope());
        for (rec, skip) in skips {
            self.note(rec, Fate::Skipped, None, || match skip {
                Skip::Plugin(reason) => format!("{plugin}: {reason}"),
                Skip::Scope(scope) => {
                    format!("its scope {} is outside the {} scope of this import", scope.as_str(), import.as_str())
                }
            });
        }
    }

    /// Makes sure an index serves every kind of question of the batch,
    /// once per import, outside the batch's transaction.
    async fn ensure_indexes(&mut self, db: &mut Db, queries: &[(usize, Query)]) -> Result<()> {
        for (_, q) in queries {
            let (model, lookup) = self.lookup(q)?;
            let key = (model.clone(), lookup);
            if self.state.indexed.contains(&key) {
                continue;
            }
            let desc =
                self.state.registry.desc(&key.0).ok_or_else(|| Error::Internal(format!("no model {}", key.0)))?;
            db.ensure_index(desc, &key.1).await?;
            self.state.indexed.insert(key);
        }
        Ok(())
    }

    /// The model a question is about and the index it needs.
    fn lookup<'q>(&self, q: &'q Query) -> Result<(&'q ModelName, db::Lookup)> {
        let no_column = |model: &ModelName, column: &str| Error::Internal(format!("no column {model}.{column}"));
        match q {
            Query::Find { model, columns, .. } => {
                let desc =
                    self.state.registry.desc(model).ok_or_else(|| Error::Internal(format!("no model {model}")))?;
                let cols = columns
                    .iter()
                    .map(|c| desc.column_index(c).ok_or_else(|| no_column(model, c)))
                    .collect::<Result<_>>()?;
                Ok((model, db::Lookup::Equal(cols)))
            }
            Query::Taken { model, column, .. } => {
                let desc =
                    self.state.registry.desc(model).ok_or_else(|| Error::Internal(format!("no model {model}")))?;
                Ok((model, db::Lookup::Folded(desc.column_index(column).ok_or_else(|| no_column(model, column))?)))
            }
        }
    }

    /// Answers all questions of a batch with one statement per kind of
    /// question, adding the rows of `overlay`; returns the answers for
    /// `resolve` and, per record, the pks they named (the only rows it may
    /// reuse or overwrite).
    async fn answer(
        &self,
        tx: &mut db::Tx<'_>,
        pending: BTreeMap<usize, Pending>,
        queries: Vec<(usize, Query)>,
        mut overlay: Option<&mut Overlay<'_>>,
    ) -> db::Result<(Vec<Answered>, HashMap<usize, Vec<Pk>>)> {
        let registry: &'s Registry = self.state.registry;
        let mut finds: BTreeMap<(ModelName, Vec<usize>), Vec<usize>> = BTreeMap::new();
        let mut takens: BTreeMap<(ModelName, usize), Vec<usize>> = BTreeMap::new();
        let mut locks = Vec::new();
        // Answers given ahead are kept true by their batch's `db::Hold`.
        let locking = tx.locks_questions() && overlay.is_none();
        for (n, (_, q)) in queries.iter().enumerate() {
            let (model, lookup) = self.lookup(q).map_err(|e| db::Error::Corrupt(e.to_string()))?;
            if locking {
                locks.push(question_lock(model, &lookup, q));
            }
            match lookup {
                db::Lookup::Equal(cols) => finds.entry((model.clone(), cols)).or_default().push(n),
                db::Lookup::Folded(col) => takens.entry((model.clone(), col)).or_default().push(n),
            }
        }
        tx.lock_questions(locks).await?;
        let mut answers: Vec<Option<Answer>> = vec![None; queries.len()];
        for ((model, cols), ns) in finds {
            let desc = registry.desc(&model).ok_or_else(|| db::Error::Corrupt(format!("no model {model}")))?;
            let keys: Vec<&[Value]> = ns
                .iter()
                .map(|&n| match &queries[n].1 {
                    Query::Find { values, .. } => values.as_slice(),
                    Query::Taken { .. } => &[],
                })
                .collect();
            for ((n, key), pk) in ns.iter().zip(&keys).zip(tx.find(desc, &cols, &keys).await?) {
                let pk = match overlay.as_deref_mut() {
                    Some(o) => o.find(&desc.name, &cols, key, pk),
                    None => pk,
                };
                answers[*n] = Some(Answer::Found(pk));
            }
        }
        for ((model, col), ns) in takens {
            let desc = registry.desc(&model).ok_or_else(|| db::Error::Corrupt(format!("no model {model}")))?;
            let bases: Vec<&str> = ns
                .iter()
                .map(|&n| match &queries[n].1 {
                    Query::Taken { base, .. } => base.as_str(),
                    Query::Find { .. } => "",
                })
                .collect();
            for ((n, base), mut found) in ns.iter().zip(&bases).zip(tx.taken(desc, col, &bases).await?) {
                if let Some(o) = overlay.as_deref_mut() {
                    o.taken(&desc.name, col, base, &mut found);
                }
                answers[*n] = Some(Answer::Taken(found));
            }
        }
        Ok(answered(pending, &queries, answers))
    }

    /// Checks every decision of `resolve`; counts skips.
    fn decide(
        &mut self,
        recs: &[Rec],
        found: &HashMap<usize, Vec<Pk>>,
        decided: Vec<plugin::Decided>,
    ) -> Result<Decisions> {
        let mut outcomes = Vec::with_capacity(decided.len());
        let mut derived = Vec::new();
        for d in decided {
            let Some(known) = found.get(&d.index) else {
                continue;
            };
            let rec = &recs[d.index];
            derived.extend(d.derived.into_iter().map(|r| (d.index, r)));
            let outcome = match d.decision {
                Decision::Skip(reason) => {
                    let plugin = self.plugin;
                    self.note(*rec, Fate::Skipped, None, || format!("{plugin}: {reason}"));
                    continue;
                }
                Decision::Invalid(errors) => return Err(self.invalid(rec, errors)),
                Decision::Insert { mut values, pk } => {
                    self.check_row(rec, &mut values)?;
                    Outcome::Insert { values, pk }
                }
                Decision::Reuse(pk) => {
                    self.check_known_pk(rec, known, pk)?;
                    Outcome::Existing(pk)
                }
                Decision::Overwrite { pk, mut values } => {
                    self.check_known_pk(rec, known, pk)?;
                    self.check_row(rec, &mut values)?;
                    Outcome::Overwrite { pk, values }
                }
            };
            outcomes.push((d.index, outcome));
        }
        Ok(Decisions { outcomes, derived })
    }

    /// Gives the batch's rows their pks (new pks reserved) and checks the
    /// rows plugins derived: everything [`Self::execute`] writes, held in
    /// memory first so that the next batch can be answered against it.
    async fn stage(&self, tx: &mut db::Tx<'_>, recs: &[Rec], decisions: Decisions) -> Result<Staged<'s>> {
        let Decisions { outcomes, derived } = decisions;
        let sequences = self.state.opts.commit.sequences();
        let fresh = outcomes.iter().filter(|(_, o)| matches!(o, Outcome::Insert { pk: None, .. })).count();
        let mut reserved = tx.reserve_pks(self.desc, fresh, sequences).await?.into_iter();
        let mut explicit = false;
        let mut new_pks = HashMap::with_capacity(outcomes.len());
        for (index, outcome) in &outcomes {
            if let Outcome::Insert { pk, .. } = outcome {
                let new = match pk {
                    Some(p) => {
                        explicit = true;
                        *p
                    }
                    None => reserved.next().ok_or_else(|| db::Error::Corrupt("too few pks reserved".into()))?,
                };
                new_pks.insert(*index, new);
            }
        }
        let mut groups = Vec::new();
        for (desc, rows) in self.derived_rows(derived, recs, &outcomes, &new_pks)? {
            // Rows of the model being imported take their pks after its
            // own rows are in (SQLite counts from the largest pk).
            let pks = match desc.name == self.desc.name {
                true => None,
                false => Some(tx.reserve_pks(desc, rows.len(), sequences).await?),
            };
            groups.push(DerivedRows { desc, pks, rows });
        }
        Ok(Staged { outcomes, new_pks, explicit, derived: groups })
    }

    /// Writes rows, overwrites, derived rows and chunks in `tx`.
    async fn execute(&self, tx: &mut db::Tx<'_>, recs: &[Rec], staged: Staged<'s>) -> Result<Written> {
        let Staged { outcomes, new_pks, explicit, derived } = staged;
        let sequences = self.state.opts.commit.sequences();
        let rows: Vec<NewRow> = outcomes
            .iter()
            .filter_map(|(index, o)| match o {
                Outcome::Insert { values, .. } => Some(NewRow { pk: new_pks[index], values }),
                _ => None,
            })
            .collect();
        // The pk map's and the ledger's side of the batch is worked out
        // while the database loads its rows.
        let keep_ledger = self.state.opts.commit != Commit::Never;
        let (mappings, chunks) = tx
            .insert_then(self.desc, &rows, || {
                let mappings = self.mappings(&outcomes, &new_pks);
                let chunks = if keep_ledger { self.chunks(recs, &outcomes, &mappings) } else { Vec::new() };
                (mappings, chunks)
            })
            .await?;
        if explicit {
            tx.sync_sequence(self.desc, sequences).await?;
        }
        let overwrites: Vec<NewRow> = outcomes
            .iter()
            .filter_map(|(_, o)| match o {
                Outcome::Overwrite { pk, values } => Some(NewRow { pk: *pk, values }),
                _ => None,
            })
            .collect();
        tx.update(self.desc, &overwrites).await?;
        let mut derived_written = Vec::with_capacity(derived.len());
        for DerivedRows { desc, pks, rows } in derived {
            let pks = match pks {
                Some(pks) => pks,
                None => tx.reserve_pks(desc, rows.len(), sequences).await?,
            };
            let rows: Vec<NewRow> = pks.iter().zip(&rows).map(|(pk, values)| NewRow { pk: *pk, values }).collect();
            tx.insert(desc, &rows).await?;
            derived_written.push((desc.name.clone(), pks));
        }
        // A rehearsal keeps no ledger: chunk rows take their ids from
        // sequences, which no rollback restores, and nothing will resume it.
        if keep_ledger {
            tx.insert_chunks(&chunks).await?;
        }
        let mappings = outcomes.iter().zip(mappings).map(|((index, _), m)| (recs[*index], m)).collect();
        Ok(Written { mappings, derived: derived_written })
    }

    /// Each outcome's mapping, in the order of `outcomes`.
    fn mappings(&self, outcomes: &[(usize, Outcome)], new_pks: &HashMap<usize, Pk>) -> Vec<Mapping> {
        let slug_col = self.desc.slug_column();
        let slug = |values: &[Value]| slug_col.and_then(|c| values[c].as_text().map(str::to_string));
        outcomes
            .iter()
            .map(|(index, o)| match o {
                Outcome::Insert { values, .. } => {
                    Mapping { new_pk: new_pks[index], kind: ImportKind::Inserted, slug: slug(values) }
                }
                Outcome::Existing(pk) => Mapping { new_pk: *pk, kind: ImportKind::Existing, slug: None },
                // Filling in a row that hangs off a record this import
                // inserted (Sentry's signal-made primary UserEmail of a new
                // user) is how Sentry inserts: it reports it so. Such a row
                // cannot predate the import, and the pk map says so as well
                // after a resume as in one run.
                Outcome::Overwrite { pk, values } => {
                    let kind =
                        if self.hangs_off_inserted(values) { ImportKind::Inserted } else { ImportKind::Overwrite };
                    Mapping { new_pk: *pk, kind, slug: slug(values) }
                }
            })
            .collect()
    }

    /// Whether a foreign key of `values` names a row this import inserted.
    fn hangs_off_inserted(&self, values: &[Value]) -> bool {
        self.desc.foreign_keys.iter().any(|fk| {
            fk.target != self.desc.name
                && matches!(values[fk.column], Value::Integer(pk) if self.state.pkmap.is_inserted(&fk.target, pk))
        })
    }

    /// One chunk per run of [`CHUNK_SIZE`] ordinals that holds a mapped record.
    fn chunks(&self, recs: &[Rec], outcomes: &[(usize, Outcome)], mappings: &[Mapping]) -> Vec<Chunk> {
        let mut chunks: BTreeMap<i64, Chunk> = BTreeMap::new();
        for ((index, _), mapping) in outcomes.iter().zip(mappings) {
            let rec = recs[*index];
            let start = chunk_start(rec.ordinal);
            let chunk = chunks.entry(start).or_insert_with(|| Chunk {
                silo: self.desc.silo,
                import_uuid: self.state.opts.import_uuid,
                model: self.desc.name.clone(),
                min_ordinal: start,
                max_ordinal: start - 1,
                min_source_pk: rec.old_pk,
                max_source_pk: rec.old_pk,
                min_inserted_pk: None,
                max_inserted_pk: None,
                inserted_map: BTreeMap::new(),
                existing_map: BTreeMap::new(),
                overwrite_map: BTreeMap::new(),
                inserted_identifiers: BTreeMap::new(),
                date_added: self.state.started_at,
            });
            chunk.max_ordinal += 1;
            chunk.max_source_pk = chunk.max_source_pk.max(rec.old_pk);
            match mapping.kind {
                ImportKind::Inserted => {
                    chunk.inserted_map.insert(rec.old_pk, mapping.new_pk);
                    chunk.min_inserted_pk =
                        Some(chunk.min_inserted_pk.map_or(mapping.new_pk, |m| m.min(mapping.new_pk)));
                    chunk.max_inserted_pk =
                        Some(chunk.max_inserted_pk.map_or(mapping.new_pk, |m| m.max(mapping.new_pk)));
                    if let Some(s) = &mapping.slug {
                        chunk.inserted_identifiers.insert(rec.old_pk, s.clone());
                    }
                }
                ImportKind::Existing => {
                    chunk.existing_map.insert(rec.old_pk, mapping.new_pk);
                }
                ImportKind::Overwrite => {
                    chunk.overwrite_map.insert(rec.old_pk, mapping.new_pk);
                }
            }
        }
        chunks.into_values().collect()
    }

    /// After the commit: counts and the pk map.
    fn book(&mut self, written: Written) {
        for (model, pks) in written.derived {
            *self.state.derived.entry(model.to_string()).or_default() += pks.len() as u64;
        }
        for (rec, mapping) in &written.mappings {
            let (fate, reason) = match mapping.kind {
                ImportKind::Inserted => (Fate::Inserted, "inserted"),
                ImportKind::Existing => (Fate::Existing, "an existing row stands for it"),
                ImportKind::Overwrite => (Fate::Overwritten, "it overwrote an existing row"),
            };
            self.note(*rec, fate, Some(mapping.new_pk), || reason.into());
        }
        self.state
            .pkmap
            .extend(&self.desc.name, written.mappings.into_iter().map(|(rec, mapping)| (rec.old_pk, mapping)));
    }

    /// Counts a record's fate, and keeps it for the reporter if it wants it.
    fn note(&mut self, rec: Rec, fate: Fate, new_pk: Option<Pk>, reason: impl FnOnce() -> String) {
        self.stats.count(fate);
        if self.state.detail.wants(fate) {
            let (model, ordinal, old_pk) = (self.desc.name.clone(), rec.ordinal, rec.old_pk);
            self.fates.push(RecordFate { model, ordinal, old_pk, new_pk, fate, reason: reason() });
        }
    }

    /// Checks the rows plugins derived and fills in their parent's pk;
    /// grouped per model, ready to insert.
    fn derived_rows(
        &self,
        rows: Vec<(usize, plugin::DerivedRow)>,
        recs: &[Rec],
        outcomes: &[(usize, Outcome)],
        new_pks: &HashMap<usize, Pk>,
    ) -> Result<Vec<DerivedGroup<'s>>> {
        let parents: HashMap<usize, Pk> = outcomes
            .iter()
            .map(|(i, o)| match o {
                Outcome::Insert { .. } => (*i, new_pks.get(i).copied().unwrap_or_default()),
                Outcome::Existing(pk) | Outcome::Overwrite { pk, .. } => (*i, *pk),
            })
            .collect();
        let mut grouped: BTreeMap<ModelName, (&ModelDesc, Vec<Vec<Value>>)> = BTreeMap::new();
        for (index, row) in rows {
            let rec = &recs[index];
            let Some(desc) = self.state.registry.desc(&row.model) else {
                return Err(self.contract(rec, format!("derived a row of {}, which no plugin describes", row.model)));
            };
            let parent_pk = parents.get(&index).copied();
            let mut values = row.values;
            if values.len() != desc.columns.len() {
                return Err(self.contract(
                    rec,
                    format!(
                        "derived a {} row of {} values for {} columns",
                        desc.name,
                        values.len(),
                        desc.columns.len()
                    ),
                ));
            }
            if let Some(field) = &row.parent_field {
                let column = desc.column_index(field);
                let is_parent_fk = column
                    .is_some_and(|c| desc.foreign_keys.iter().any(|fk| fk.column == c && fk.target == self.desc.name));
                match (column, parent_pk) {
                    (Some(c), Some(pk)) if is_parent_fk => values[c] = Value::Integer(pk),
                    _ => {
                        return Err(self.contract(
                            rec,
                            format!(
                                "derived a {} row whose parent field `{field}` is no foreign key to {}",
                                desc.name, self.desc.name
                            ),
                        ));
                    }
                }
            }
            match record::check_values(desc, &mut values) {
                Ok(()) => {}
                Err(Problem::Contract(m)) => {
                    return Err(self.contract(rec, format!("derived {} row: {m}", desc.name)));
                }
                Err(Problem::Invalid(errors)) => {
                    return Err(self.contract(rec, format!("derived {} row: {}", desc.name, join(&errors))));
                }
            }
            for fk in &desc.foreign_keys {
                let Value::Integer(pk) = values[fk.column] else {
                    continue;
                };
                let is_parent = row.parent_field.as_deref() == Some(desc.columns[fk.column].field.as_str());
                if !is_parent
                    && self.state.registry.desc(&fk.target).is_some()
                    && !self.state.pkmap.is_mapped_target(&fk.target, pk)
                {
                    let field = &desc.columns[fk.column].field;
                    return Err(self.contract(
                        rec,
                        format!(
                            "derived a {} row whose `{field}` is {pk}, no {} this import mapped",
                            desc.name, fk.target
                        ),
                    ));
                }
            }
            grouped.entry(desc.name.clone()).or_insert_with(|| (desc, Vec::new())).1.push(values);
        }
        Ok(grouped.into_values().collect())
    }

    fn record_scope(&self, scope: Option<Scope>, rec: &Rec) -> Result<Scope> {
        match (scope, self.desc.scopes.as_slice()) {
            (Some(s), scopes) if scopes.contains(&s) => Ok(s),
            (None, [only]) => Ok(*only),
            (Some(s), _) => Err(self.contract(rec, format!("gave scope {s:?}, which the model does not have"))),
            (None, _) => Err(self.contract(rec, "did not say which of the model's scopes the record is in".into())),
        }
    }

    fn check_query(&self, q: &Query, rec: &Rec) -> Result<()> {
        let (target, columns): (&ModelName, Vec<&str>) = match q {
            Query::Find { model, columns, values } => {
                if columns.is_empty() || columns.len() != values.len() {
                    return Err(self.contract(
                        rec,
                        format!("asked a find on {model} with {} columns and {} values", columns.len(), values.len()),
                    ));
                }
                (model, columns.iter().map(String::as_str).collect())
            }
            Query::Taken { model, column, .. } => (model, vec![column.as_str()]),
        };
        let Some(desc) = self.state.registry.desc(target) else {
            return Err(self.contract(rec, format!("asked about {target}, which no plugin describes")));
        };
        for (n, name) in columns.iter().enumerate() {
            let Some(c) = desc.column_index(name) else {
                return Err(self.contract(rec, format!("asked about {target}.{name}, which is not a column")));
            };
            let kind = desc.columns[c].kind;
            let fits = match q {
                Query::Find { values, .. } => value_fits(kind, &values[n]),
                Query::Taken { .. } => kind == ColumnKind::Text,
            };
            if !fits {
                return Err(self.contract(rec, format!("asked about {target}.{name} with a value of the wrong kind")));
            }
        }
        Ok(())
    }

    /// A decision's values: right shape, and foreign keys only to rows this
    /// import mapped (or null where allowed).
    fn check_row(&self, rec: &Rec, values: &mut [Value]) -> Result<()> {
        match record::check_values(self.desc, values) {
            Ok(()) => {}
            Err(Problem::Contract(message)) => return Err(self.contract(rec, message)),
            Err(Problem::Invalid(errors)) => return Err(self.invalid(rec, errors)),
        }
        for fk in &self.desc.foreign_keys {
            if fk.target == self.desc.name || self.state.registry.desc(&fk.target).is_none() {
                continue;
            }
            if let Value::Integer(pk) = values[fk.column]
                && !self.state.pkmap.is_mapped_target(&fk.target, pk)
            {
                let field = &self.desc.columns[fk.column].field;
                return Err(
                    self.contract(rec, format!("set `{field}` to {pk}, which is no {} this import mapped", fk.target))
                );
            }
        }
        Ok(())
    }

    /// A plugin may only reuse or overwrite a row the host told it about.
    fn check_known_pk(&self, rec: &Rec, known: &[Pk], pk: Pk) -> Result<()> {
        if known.contains(&pk) {
            Ok(())
        } else {
            Err(self.contract(rec, format!("chose existing row {pk}, which no answer named")))
        }
    }

    fn invalid(&self, rec: &Rec, errors: Vec<FieldError>) -> Error {
        Error::Invalid { model: self.desc.name.clone(), ordinal: rec.ordinal, pk: rec.old_pk, errors }
    }

    fn contract(&self, rec: &Rec, message: String) -> Error {
        Error::Contract {
            plugin: self.plugin.to_string(),
            model: self.desc.name.clone(),
            ordinal: rec.ordinal,
            pk: rec.old_pk,
            message,
        }
    }
}

/// Gives each ready record its answers, in the order it asked; returns the
/// answers for `resolve` and, per record, the pks they named (the only rows
/// it may reuse or overwrite).
fn answered(
    mut pending: BTreeMap<usize, Pending>,
    queries: &[(usize, Query)],
    answers: Vec<Option<Answer>>,
) -> (Vec<Answered>, HashMap<usize, Vec<Pk>>) {
    for ((index, _), answer) in queries.iter().zip(answers) {
        if let (Some(p), Some(a)) = (pending.get_mut(index), answer) {
            p.answers.push(a);
        }
    }
    let mut found = HashMap::new();
    let answered = pending
        .into_iter()
        .map(|(index, p)| {
            let pks: Vec<Pk> = p
                .answers
                .iter()
                .filter_map(|a| if let Answer::Found(Some(pk)) = a { Some(*pk) } else { None })
                .collect();
            found.insert(index, pks);
            Answered { index, answers: p.answers }
        })
        .collect();
    (answered, found)
}

/// The questions of a prepared batch.
fn prepared_queries(prepared: &[Prepared]) -> impl Iterator<Item = &Query> {
    prepared.iter().flat_map(|p| match p {
        Prepared::Ready { queries, .. } => queries.as_slice(),
        _ => &[],
    })
}

/// The advisory lock of a question about `model` ([`db::question_lock`]).
fn question_lock(model: &ModelName, lookup: &db::Lookup, q: &Query) -> i64 {
    match q {
        Query::Find { values, .. } => db::question_lock(model, lookup, values),
        Query::Taken { base, .. } => match lookup {
            db::Lookup::Folded(c) => db::taken_lock(model, *c, base),
            // `lookup` makes every `taken` a folded lookup; this keeps the same key if not.
            db::Lookup::Equal(_) => db::question_lock(model, lookup, &[Value::Text(base.clone())]),
        },
    }
}

fn value_fits(kind: ColumnKind, value: &Value) -> bool {
    matches!(
        (kind, value),
        (_, Value::Null)
            | (ColumnKind::Integer, Value::Integer(_))
            | (ColumnKind::Float, Value::Float(_) | Value::Integer(_))
            | (ColumnKind::Boolean, Value::Boolean(_))
            | (ColumnKind::Text | ColumnKind::Datetime, Value::Text(_))
            | (ColumnKind::Json, Value::Json(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_fall_in_chunks_of_twenty() {
        assert_eq!([1, 20, 21, 40, 41].map(chunk_start), [1, 1, 21, 21, 41]);
    }

    #[test]
    fn retryable_errors_are_the_database_s_and_stops() {
        let model = ModelName::new("sentry.user").expect("a valid name");
        let unique = db::Error::UniqueViolation { context: "insert".into(), message: "duplicate key".into() };
        let lost = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        // A unique violation is no lost race any more (imports take turns per name): it would recur.
        assert!(!Error::Write { model: model.clone(), first: 1, last: 20, error: unique }.is_retryable());
        assert!(Error::Db(db::Error::Query { context: "insert".into(), error: lost }).is_retryable());
        assert!(Error::Cancelled.is_retryable());
        assert!(!Error::Db(db::Error::Corrupt("x".into())).is_retryable());
        assert!(!Error::Internal("x".into()).is_retryable());
        let invalid = Error::Invalid { model, ordinal: 1, pk: 1, errors: Vec::new() };
        assert!(!invalid.is_retryable());
    }

    #[test]
    fn only_unique_violations_can_be_a_lost_race() {
        let model = ModelName::new("sentry.user").expect("a valid name");
        let unique = || db::Error::UniqueViolation { context: "insert".into(), message: "duplicate key".into() };
        assert!(Error::Write { model: model.clone(), first: 1, last: 20, error: unique() }.is_unique_violation());
        assert!(Error::Db(unique()).is_unique_violation());
        assert!(
            !Error::Write { model, first: 1, last: 20, error: db::Error::Corrupt("x".into()) }.is_unique_violation()
        );
    }

    #[test]
    fn only_errors_a_rerun_can_get_past_are_resumable() {
        let model = ModelName::new("sentry.user").expect("a valid name");
        let lost = || db::Error::Query {
            context: "insert sentry.user rows".into(),
            error: sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
        };
        let refused =
            || db::Error::Query { context: "insert sentry.user rows".into(), error: sqlx::Error::RowNotFound };
        let write = |error| Error::Write { model: model.clone(), first: 1, last: 20, error };
        assert!(write(lost()).is_resumable());
        assert!(Error::Db(lost()).is_resumable());
        assert!(!write(refused()).is_resumable());
        assert!(!write(db::Error::UniqueViolation { context: "insert".into(), message: "dup".into() }).is_resumable());
        let timeout = plugin::Error::Timeout {
            plugin: "p".into(),
            model: model.clone(),
            ordinal: Some(2),
            limit: std::time::Duration::from_secs(1),
        };
        assert!(Error::Plugin(timeout).is_resumable());
        let trap =
            plugin::Error::Trap { plugin: "p".into(), model: model.clone(), ordinal: Some(2), message: "x".into() };
        assert!(!Error::Plugin(trap).is_resumable());
        assert!(!Error::Invalid { model: model.clone(), ordinal: 2, pk: 2, errors: Vec::new() }.is_resumable());
    }
}

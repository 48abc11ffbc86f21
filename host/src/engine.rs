//! The import: orders the models, remaps keys, drives each model's plugin
//! batch by batch and writes the results with their import chunks.
//!
//! Per batch: read and type the records, remap their foreign keys (dropping
//! those whose target was not imported), let the plugin `prepare` them,
//! answer its questions from the database, let it `resolve` them, check every
//! decision, then write rows, pk reservations and chunks in one transaction.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use crate::db::{self, Chunk, Db, NewRow};
use crate::model::{ColumnKind, ImportKind, ImportScope, ModelDesc, ModelName, Pk, Scope, Value};
use crate::plugin::{self, Answer, Answered, Decision, FieldError, ImportFlags, InputRecord, MappedRef, Mapping, PluginHost, Prepared, Query};
use crate::reader::{self, Export, RecordRef};

pub mod graph;
pub mod pkmap;
pub mod record;

use graph::Registry;
use pkmap::PkMap;
use record::Problem;

/// Sentry's `MAX_BATCH_SIZE`: the granularity of import chunks. Batches are
/// whole multiples of it, so chunk rows match Sentry's.
pub const CHUNK_SIZE: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Reader(#[from] reader::Error),
    #[error(transparent)]
    Plugin(#[from] plugin::Error),
    #[error(transparent)]
    Graph(#[from] graph::Error),
    #[error("database: {0}")]
    Db(#[from] db::Error),
    #[error("{model} record #{ordinal} (pk {pk}) cannot be read: {}", join(.errors))]
    Deserialization { model: ModelName, ordinal: u64, pk: Pk, errors: Vec<FieldError> },
    #[error("{model} record #{ordinal} (pk {pk}) is invalid: {}", join(.errors))]
    Invalid { model: ModelName, ordinal: u64, pk: Pk, errors: Vec<FieldError> },
    #[error("{model} records #{first}–#{last}: {source}")]
    Write { model: ModelName, first: u64, last: u64, source: db::Error },
    #[error("plugin {plugin} on {model} record #{ordinal} (pk {pk}): broke the contract: {message}")]
    Contract { plugin: String, model: ModelName, ordinal: u64, pk: Pk, message: String },
}

fn join(errors: &[FieldError]) -> String {
    errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The `RpcImportErrorKind` Sentry would report (spec §9.1).
    pub fn sentry_kind(&self) -> &'static str {
        match self {
            Error::Reader(reader::Error::Syntax { .. } | reader::Error::Record { .. }) | Error::Deserialization { .. } => "DeserializationFailed",
            Error::Invalid { .. } => "ValidationError",
            Error::Write { source: db::Error::UniqueViolation { .. }, .. } | Error::Db(db::Error::UniqueViolation { .. }) => "IntegrityError",
            Error::Write { .. } | Error::Db(_) => "DatabaseError",
            _ => "Unknown",
        }
    }

    /// A unique key refused a write: another import may have won the race.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, Error::Write { source: db::Error::UniqueViolation { .. }, .. } | Error::Db(db::Error::UniqueViolation { .. }))
    }

    /// The model and ordinal the error is about, when it is about one record.
    pub fn instance(&self) -> Option<(&ModelName, Option<u64>, Option<Pk>)> {
        match self {
            Error::Deserialization { model, ordinal, pk, .. } | Error::Invalid { model, ordinal, pk, .. } | Error::Contract { model, ordinal, pk, .. } => {
                Some((model, Some(*ordinal), Some(*pk)))
            }
            Error::Write { model, first, .. } => Some((model, Some(*first), None)),
            Error::Plugin(
                plugin::Error::Trap { model, ordinal, .. } | plugin::Error::Timeout { model, ordinal, .. } | plugin::Error::OutOfMemory { model, ordinal, .. },
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
    pub import_uuid: String,
    pub flags: ImportFlags,
    pub filters: Filters,
    /// Records per plugin call and per transaction; rounded up to a whole
    /// number of chunks.
    pub batch_size: usize,
    pub seed: u64,
    /// Global scope: empty every described model's table first, as Sentry
    /// does (spec §5.10). Never done when resuming an import.
    pub clear_first: bool,
}

/// Receives progress; every method has a do-nothing default.
pub trait Reporter: Send + Sync {
    fn on_model_start(&self, _model: &ModelName, _records: usize) {}
    fn on_batch_done(&self, _model: &ModelName, _done: usize) {}
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
}

#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub import_uuid: String,
    pub models: Vec<ModelSummary>,
    /// Models in the export that no plugin describes, with their counts.
    pub unknown: Vec<(String, u64)>,
    /// Rows plugins wrote along with records (Sentry's signals), per model.
    pub derived: BTreeMap<String, u64>,
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
pub async fn rows_to_clear(db: &mut Db, registry: &Registry, import_uuid: &str) -> Result<i64> {
    let order = registry.order()?;
    let tables: Vec<&str> = order.iter().filter_map(|m| registry.desc(m)).map(|d| d.table.as_str()).collect();
    let existing = db.existing_tables(&tables).await?;
    let chunk_tables = db.existing_tables(&[db::REGION_CHUNKS, db::CONTROL_CHUNKS]).await?;
    if chunk_tables.len() == 2 && !db.load_chunks(import_uuid).await?.is_empty() {
        return Ok(0);
    }
    let mut rows = 0;
    for desc in order.iter().filter_map(|m| registry.desc(m)) {
        if existing.iter().any(|t| t == desc.table.as_str()) {
            rows += db.count(&desc.table).await?;
        }
    }
    Ok(rows)
}

/// Deletes every described model's rows, dependents first, and every
/// import chunk, in one transaction (Sentry deletes the rows of every model
/// it knows, its import chunks included).
async fn clear_tables(db: &mut Db, registry: &Registry, order: &[ModelName]) -> Result<()> {
    let mut tx = db.begin().await?;
    for desc in order.iter().rev().filter_map(|m| registry.desc(m)) {
        tx.clear(desc).await?;
    }
    tx.clear_chunks().await?;
    tx.commit().await?;
    Ok(())
}

/// Imports `export` into `db`.
pub async fn import(
    export: &Export,
    plugins: &PluginHost,
    registry: &Registry,
    db: &mut Db,
    opts: &ImportOptions,
    reporter: &dyn Reporter,
) -> Result<Summary> {
    let order = registry.order()?;
    ensure_schema(db, registry).await?;

    let pkmap = Arc::new(PkMap::default());
    let mut done: HashMap<ModelName, BTreeMap<i64, i64>> = HashMap::new();
    let chunks = db.load_chunks(&opts.import_uuid).await?;
    if opts.clear_first && chunks.is_empty() {
        clear_tables(db, registry, &order).await?;
    }
    for chunk in chunks {
        pkmap.extend_from_chunk(&chunk);
        done.entry(chunk.model.clone()).or_default().insert(chunk.min_ordinal, chunk.max_ordinal);
    }

    let filters = build_filters(export, &opts.filters)?;
    // Rows plugins derived in this run, per model: an exported record that
    // fills one in was inserted by this import, not overwritten.
    let mut derived_pks: HashMap<ModelName, pkmap::PkRanges> = HashMap::new();
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let batch_size = opts.batch_size.max(1).div_ceil(CHUNK_SIZE) * CHUNK_SIZE;
    let mut summary = Summary { import_uuid: opts.import_uuid.clone(), ..Summary::default() };

    for (model, records) in export.models() {
        if registry.get(model).is_none() {
            summary.unknown.push((model.to_string(), records.len() as u64));
        }
    }

    for model in &order {
        let records = export.records(model);
        if records.is_empty() {
            continue;
        }
        let Some((plugin_id, desc)) = registry.get(model) else { continue };
        let mut stats = ModelSummary { model: model.to_string(), ..ModelSummary::default() };
        if !desc.in_import(opts.scope) {
            stats.skipped = records.len() as u64;
            summary.models.push(stats);
            continue;
        }
        reporter.on_model_start(model, records.len());
        let config = plugin::SessionConfig {
            model: model.clone(),
            scope: opts.scope.as_scope(),
            flags: opts.flags,
            started_at: started_at.clone(),
            seed: opts.seed,
            facts: pkmap.clone(),
        };
        let mut session = plugins.open_session(*plugin_id, config)?;
        let plugin_name = plugins.info(*plugin_id).map(|i| format!("{}@{}", i.name, i.version)).unwrap_or_default();
        let mut model_run = ModelRun {
            export,
            registry,
            desc,
            plugin: &plugin_name,
            pkmap: &pkmap,
            opts,
            filter: filters.get(model),
            done: done.remove(model).unwrap_or_default(),
            stats: &mut stats,
            derived: &mut summary.derived,
            derived_pks: &mut derived_pks,
        };
        for (b, batch) in records.chunks(batch_size).enumerate() {
            let first_ordinal = (b * batch_size) as u64 + 1;
            model_run.batch(&mut session, db, batch, first_ordinal).await?;
            reporter.on_batch_done(model, b * batch_size + batch.len());
        }
        summary.models.push(stats);
    }
    Ok(summary)
}

/// A filter on one model: the allowed values of one field (`pk` is the old pk).
struct Filter {
    field: String,
    values: HashSet<FilterValue>,
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
    let (user, email, org, member) =
        (sentry_model("sentry.user"), sentry_model("sentry.email"), sentry_model("sentry.organization"), sentry_model("sentry.organizationmember"));
    let mut buf = Vec::new();
    let mut kept_user_pks: Option<HashSet<Pk>> = None;
    if let Some(names) = &filters.usernames {
        out.insert(user.clone(), Filter { field: "username".into(), values: names.iter().cloned().map(FilterValue::Text).collect() });
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
        out.insert(org.clone(), Filter { field: "slug".into(), values: slugs.iter().cloned().map(FilterValue::Text).collect() });
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
        out.insert(user.clone(), Filter { field: "pk".into(), values: users.iter().copied().map(FilterValue::Pk).collect() });
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
        out.insert(email, Filter { field: "email".into(), values: emails });
    }
    Ok(out)
}

/// One model's import in progress.
struct ModelRun<'a> {
    export: &'a Export,
    registry: &'a Registry,
    desc: &'a ModelDesc,
    plugin: &'a str,
    pkmap: &'a Arc<PkMap>,
    opts: &'a ImportOptions,
    filter: Option<&'a Filter>,
    /// Chunks already written by this import: min ordinal → max ordinal.
    done: BTreeMap<i64, i64>,
    stats: &'a mut ModelSummary,
    derived: &'a mut BTreeMap<String, u64>,
    derived_pks: &'a mut HashMap<ModelName, pkmap::PkRanges>,
}

/// A record on its way through one batch.
struct Pending {
    ordinal: u64,
    old_pk: Pk,
    answers: Vec<Answer>,
}

/// A record's final outcome, to be written.
enum Outcome {
    Insert { values: Vec<Value>, pk: Option<Pk> },
    Existing(Pk),
    Overwrite { pk: Pk, values: Vec<Value> },
}

impl ModelRun<'_> {
    /// Imports one batch. Another process importing under the same UUID
    /// may write some of its chunks first (Sentry's racing imports, spec
    /// §8.3): the write then fails on a unique key, and the batch takes the
    /// winner's chunks as resumed and retries whatever is left. The plugin
    /// has seen the lost records; what it remembers of them (names it gave
    /// out, say) can only make its later choices more cautious.
    async fn batch(&mut self, session: &mut plugin::Session, db: &mut Db, batch: &[RecordRef], first_ordinal: u64) -> Result<()> {
        loop {
            let before = self.stats.clone();
            let err = match self.try_batch(session, db, batch, first_ordinal).await {
                Err(e) if e.is_unique_violation() => e,
                other => return other,
            };
            let starts = chunk_starts(first_ordinal, batch.len());
            let won: Vec<Chunk> = db
                .load_chunks(&self.opts.import_uuid)
                .await?
                .into_iter()
                .filter(|c| c.model == self.desc.name && starts.contains(&c.min_ordinal) && !self.done.contains_key(&c.min_ordinal))
                .collect();
            if won.is_empty() {
                return Err(err);
            }
            *self.stats = before;
            for chunk in won {
                self.pkmap.extend_from_chunk(&chunk);
                self.done.insert(chunk.min_ordinal, chunk.max_ordinal);
            }
        }
    }

    async fn try_batch(&mut self, session: &mut plugin::Session, db: &mut Db, batch: &[RecordRef], first_ordinal: u64) -> Result<()> {
        let model = &self.desc.name;
        let mut inputs = Vec::with_capacity(batch.len());
        let mut buf = Vec::new();
        for (i, at) in batch.iter().enumerate() {
            let ordinal = first_ordinal + i as u64;
            let chunk_start = ((ordinal - 1) / CHUNK_SIZE as u64 * CHUNK_SIZE as u64 + 1) as i64;
            if self.done.contains_key(&chunk_start) {
                self.stats.resumed += 1;
                continue;
            }
            let raw = self.export.read(at, &mut buf)?;
            let mut values = record::values_from_fields(self.desc, &raw.fields)
                .map_err(|errors| Error::Deserialization { model: model.clone(), ordinal, pk: at.pk, errors })?;
            if !self.passes_filter(at.pk, &values) {
                self.stats.skipped += 1;
                continue;
            }
            match self.remap(&mut values) {
                Some(refs) => inputs.push(InputRecord { ordinal, old_pk: at.pk, values, refs }),
                None => self.stats.dropped += 1,
            }
        }
        if inputs.is_empty() {
            return Ok(());
        }

        let prepared = session.prepare(&inputs)?;
        let mut pending: BTreeMap<usize, Pending> = BTreeMap::new();
        let mut queries: Vec<(usize, Query)> = Vec::new();
        for (index, (input, prep)) in inputs.iter().zip(prepared).enumerate() {
            match prep {
                Prepared::Skip(_) => self.stats.skipped += 1,
                Prepared::Invalid(errors) => return Err(self.invalid(input, errors)),
                Prepared::Ready { scope, queries: qs } => {
                    let scope = self.record_scope(scope, input)?;
                    if !self.opts.scope.accepts(scope) {
                        self.stats.skipped += 1;
                        continue;
                    }
                    for q in qs {
                        self.check_query(&q, input)?;
                        queries.push((index, q));
                    }
                    pending.insert(index, Pending { ordinal: input.ordinal, old_pk: input.old_pk, answers: Vec::new() });
                }
            }
        }
        if pending.is_empty() {
            // The plugin still expects its `resolve` call after `prepare`.
            session.resolve(&[])?;
            return Ok(());
        }

        let first = inputs[0].ordinal;
        let last = inputs[inputs.len() - 1].ordinal;
        let write_err = |source| Error::Write { model: model.clone(), first, last, source };
        let mut tx = db.begin().await?;
        for (index, answer) in self.answer(&mut tx, &queries).await.map_err(write_err)? {
            if let Some(p) = pending.get_mut(&index) {
                p.answers.push(answer);
            }
        }
        let answered: Vec<Answered> = pending.iter().map(|(&index, p)| Answered { index, answers: p.answers.clone() }).collect();
        let decided = session.resolve(&answered)?;

        let mut outcomes: Vec<(usize, Outcome)> = Vec::with_capacity(decided.len());
        let mut derived_rows: Vec<(usize, plugin::DerivedRow)> = Vec::new();
        for d in decided {
            let Some(p) = pending.get(&d.index) else { continue };
            derived_rows.extend(d.derived.into_iter().map(|r| (d.index, r)));
            let input = &inputs[d.index];
            let outcome = match d.decision {
                Decision::Skip(_) => {
                    self.stats.skipped += 1;
                    continue;
                }
                Decision::Invalid(errors) => return Err(self.invalid(input, errors)),
                Decision::Insert { mut values, pk } => {
                    self.check_row(input, &mut values)?;
                    Outcome::Insert { values, pk }
                }
                Decision::Reuse(pk) => {
                    self.check_known_pk(p, pk)?;
                    Outcome::Existing(pk)
                }
                Decision::Overwrite { pk, mut values } => {
                    self.check_known_pk(p, pk)?;
                    self.check_row(input, &mut values)?;
                    Outcome::Overwrite { pk, values }
                }
            };
            outcomes.push((d.index, outcome));
        }

        // Write: fresh pks for inserts that do not keep theirs, then rows.
        let fresh = outcomes.iter().filter(|(_, o)| matches!(o, Outcome::Insert { pk: None, .. })).count();
        let mut reserved = tx.reserve_pks(self.desc, fresh).await.map_err(write_err)?.into_iter();
        let mut explicit = false;
        let mut new_pks = HashMap::new();
        for (index, outcome) in &outcomes {
            if let Outcome::Insert { pk, .. } = outcome {
                let new = match pk {
                    Some(p) => {
                        explicit = true;
                        *p
                    }
                    None => reserved.next().ok_or_else(|| write_err(db::Error::Corrupt("too few pks reserved".into())))?,
                };
                new_pks.insert(*index, new);
            }
        }
        let rows: Vec<NewRow> = outcomes
            .iter()
            .filter_map(|(index, o)| match o {
                Outcome::Insert { values, .. } => Some(NewRow { pk: new_pks[index], values }),
                _ => None,
            })
            .collect();
        tx.insert(self.desc, &rows).await.map_err(write_err)?;
        for (_, o) in &outcomes {
            if let Outcome::Overwrite { pk, values } = o {
                tx.update(self.desc, *pk, values).await.map_err(write_err)?;
            }
        }
        if explicit {
            tx.sync_sequence(self.desc).await.map_err(write_err)?;
        }
        let derived = self.derived_rows(derived_rows, &outcomes, &new_pks, &inputs)?;
        let mut derived_counts = Vec::with_capacity(derived.len());
        let mut derived_written = Vec::with_capacity(derived.len());
        for (desc, rows) in &derived {
            let pks = tx.reserve_pks(desc, rows.len()).await.map_err(write_err)?;
            let rows: Vec<NewRow> = pks.iter().zip(rows).map(|(pk, values)| NewRow { pk: *pk, values }).collect();
            tx.insert(desc, &rows).await.map_err(write_err)?;
            derived_counts.push((desc.name.to_string(), rows.len() as u64));
            derived_written.push((desc.name.clone(), pks));
        }
        drop(derived);

        // Bookkeeping: mappings and one chunk per run of CHUNK_SIZE ordinals.
        let slug_col = self.desc.slug_column();
        let mut mappings = Vec::with_capacity(outcomes.len());
        let mut chunks: BTreeMap<i64, Chunk> = BTreeMap::new();
        for (index, o) in &outcomes {
            let p = &pending[index];
            let slug = |values: &[Value]| slug_col.and_then(|c| values[c].as_text().map(str::to_string));
            let mapping = match o {
                Outcome::Insert { values, .. } => Mapping { new_pk: new_pks[index], kind: ImportKind::Inserted, slug: slug(values) },
                Outcome::Existing(pk) => Mapping { new_pk: *pk, kind: ImportKind::Existing, slug: None },
                // Filling in a row this import derived (Sentry's signal-made
                // primary UserEmail) is how Sentry inserts: it reports it so.
                Outcome::Overwrite { pk, values } => {
                    let derived_here = self.derived_pks.get(&self.desc.name).is_some_and(|pks| pks.contains(*pk));
                    let kind = if derived_here { ImportKind::Inserted } else { ImportKind::Overwrite };
                    Mapping { new_pk: *pk, kind, slug: slug(values) }
                }
            };
            let start = ((p.ordinal - 1) / CHUNK_SIZE as u64 * CHUNK_SIZE as u64 + 1) as i64;
            let chunk = chunks.entry(start).or_insert_with(|| Chunk {
                silo: self.desc.silo,
                import_uuid: self.opts.import_uuid.clone(),
                model: self.desc.name.clone(),
                min_ordinal: start,
                max_ordinal: start - 1,
                min_source_pk: p.old_pk,
                max_source_pk: p.old_pk,
                min_inserted_pk: None,
                max_inserted_pk: None,
                inserted_map: BTreeMap::new(),
                existing_map: BTreeMap::new(),
                overwrite_map: BTreeMap::new(),
                inserted_identifiers: BTreeMap::new(),
            });
            chunk.max_ordinal += 1;
            chunk.max_source_pk = chunk.max_source_pk.max(p.old_pk);
            match mapping.kind {
                ImportKind::Inserted => {
                    chunk.inserted_map.insert(p.old_pk, mapping.new_pk);
                    chunk.min_inserted_pk = Some(chunk.min_inserted_pk.map_or(mapping.new_pk, |m| m.min(mapping.new_pk)));
                    chunk.max_inserted_pk = Some(chunk.max_inserted_pk.map_or(mapping.new_pk, |m| m.max(mapping.new_pk)));
                    if let Some(s) = &mapping.slug {
                        chunk.inserted_identifiers.insert(p.old_pk, s.clone());
                    }
                }
                ImportKind::Existing => {
                    chunk.existing_map.insert(p.old_pk, mapping.new_pk);
                }
                ImportKind::Overwrite => {
                    chunk.overwrite_map.insert(p.old_pk, mapping.new_pk);
                }
            }
            mappings.push((p.old_pk, mapping));
        }
        let chunks: Vec<Chunk> = chunks.into_values().collect();
        tx.insert_chunks(&chunks).await.map_err(write_err)?;
        tx.commit().await.map_err(write_err)?;

        for (model, count) in derived_counts {
            *self.derived.entry(model).or_default() += count;
        }
        for (model, pks) in derived_written {
            let ranges = self.derived_pks.entry(model).or_default();
            for pk in pks {
                ranges.insert(pk);
            }
        }
        for (old, mapping) in mappings {
            match mapping.kind {
                ImportKind::Inserted => self.stats.inserted += 1,
                ImportKind::Existing => self.stats.existing += 1,
                ImportKind::Overwrite => self.stats.overwritten += 1,
            }
            self.pkmap.insert(&self.desc.name, old, mapping);
        }
        Ok(())
    }

    /// Checks the rows plugins derived and fills in their parent's pk;
    /// grouped per model, ready to insert.
    fn derived_rows(
        &self,
        rows: Vec<(usize, plugin::DerivedRow)>,
        outcomes: &[(usize, Outcome)],
        new_pks: &HashMap<usize, Pk>,
        inputs: &[InputRecord],
    ) -> Result<Vec<(&ModelDesc, Vec<Vec<Value>>)>> {
        let mut grouped: BTreeMap<ModelName, (&ModelDesc, Vec<Vec<Value>>)> = BTreeMap::new();
        for (index, row) in rows {
            let input = &inputs[index];
            let Some(desc) = self.registry.desc(&row.model) else {
                return Err(self.contract(input, format!("derived a row of {}, which no plugin describes", row.model)));
            };
            let parent_pk = outcomes.iter().find(|(i, _)| *i == index).map(|(_, o)| match o {
                Outcome::Insert { .. } => new_pks.get(&index).copied().unwrap_or_default(),
                Outcome::Existing(pk) | Outcome::Overwrite { pk, .. } => *pk,
            });
            let mut values = row.values;
            if values.len() != desc.columns.len() {
                return Err(self.contract(input, format!("derived a {} row of {} values for {} columns", desc.name, values.len(), desc.columns.len())));
            }
            if let Some(field) = &row.parent_field {
                let column = desc.column_index(field);
                let is_parent_fk = column.is_some_and(|c| desc.foreign_keys.iter().any(|fk| fk.column == c && fk.target == self.desc.name));
                match (column, parent_pk) {
                    (Some(c), Some(pk)) if is_parent_fk => values[c] = Value::Integer(pk),
                    _ => {
                        return Err(self.contract(
                            input,
                            format!("derived a {} row whose parent field `{field}` is no foreign key to {}", desc.name, self.desc.name),
                        ));
                    }
                }
            }
            match record::check_values(desc, &mut values) {
                Ok(()) => {}
                Err(Problem::Contract(m)) => return Err(self.contract(input, format!("derived {} row: {m}", desc.name))),
                Err(Problem::Invalid(errors)) => {
                    return Err(self.contract(input, format!("derived {} row: {}", desc.name, join(&errors))));
                }
            }
            for fk in &desc.foreign_keys {
                let Value::Integer(pk) = values[fk.column] else { continue };
                let is_parent = row.parent_field.as_deref() == Some(desc.columns[fk.column].field.as_str());
                if !is_parent && self.registry.desc(&fk.target).is_some() && !self.pkmap.is_mapped_target(&fk.target, pk) {
                    let field = &desc.columns[fk.column].field;
                    return Err(self.contract(input, format!("derived a {} row whose `{field}` is {pk}, no {} this import mapped", desc.name, fk.target)));
                }
            }
            grouped.entry(desc.name.clone()).or_insert_with(|| (desc, Vec::new())).1.push(values);
        }
        Ok(grouped.into_values().collect())
    }

    fn passes_filter(&self, pk: Pk, values: &[Value]) -> bool {
        let Some(filter) = self.filter else { return true };
        let value = if filter.field == "pk" {
            FilterValue::Pk(pk)
        } else {
            match self.desc.column_index(&filter.field).map(|c| &values[c]) {
                Some(Value::Text(s)) => FilterValue::Text(s.clone()),
                Some(Value::Integer(i)) => FilterValue::Pk(*i),
                _ => return false,
            }
        };
        filter.values.contains(&value)
    }

    /// Rewrites foreign keys to new pks. `None` drops the record: a required
    /// target was not imported (spec §4.3).
    fn remap(&self, values: &mut [Value]) -> Option<Vec<MappedRef>> {
        let mut refs = Vec::new();
        for fk in &self.desc.foreign_keys {
            let Value::Integer(old) = values[fk.column] else { continue };
            // A self-reference is not remapped, as in Sentry.
            if fk.target == self.desc.name {
                continue;
            }
            match self.pkmap.get(&fk.target, old) {
                Some(m) => {
                    values[fk.column] = Value::Integer(m.new_pk);
                    refs.push(MappedRef { column: fk.column, old_pk: old, kind: m.kind });
                }
                None => match fk.on_missing {
                    crate::model::OnMissing::SetNull => values[fk.column] = Value::Null,
                    crate::model::OnMissing::Drop => return None,
                },
            }
        }
        Some(refs)
    }

    fn record_scope(&self, scope: Option<Scope>, input: &InputRecord) -> Result<Scope> {
        match (scope, self.desc.scopes.as_slice()) {
            (Some(s), scopes) if scopes.contains(&s) => Ok(s),
            (None, [only]) => Ok(*only),
            (Some(s), _) => Err(self.contract(input, format!("gave scope {s:?}, which the model does not have"))),
            (None, _) => Err(self.contract(input, "did not say which of the model's scopes the record is in".into())),
        }
    }

    fn check_query(&self, q: &Query, input: &InputRecord) -> Result<()> {
        let (target, columns): (&ModelName, Vec<&str>) = match q {
            Query::Find { model, columns, values } => {
                if columns.is_empty() || columns.len() != values.len() {
                    return Err(self.contract(input, format!("asked a find on {model} with {} columns and {} values", columns.len(), values.len())));
                }
                (model, columns.iter().map(String::as_str).collect())
            }
            Query::Taken { model, column, .. } => (model, vec![column.as_str()]),
        };
        let Some(desc) = self.registry.desc(target) else {
            return Err(self.contract(input, format!("asked about {target}, which no plugin describes")));
        };
        for (n, name) in columns.iter().enumerate() {
            let Some(c) = desc.column_index(name) else {
                return Err(self.contract(input, format!("asked about {target}.{name}, which is not a column")));
            };
            let kind = desc.columns[c].kind;
            let fits = match q {
                Query::Find { values, .. } => value_fits(kind, &values[n]),
                Query::Taken { .. } => kind == ColumnKind::Text,
            };
            if !fits {
                return Err(self.contract(input, format!("asked about {target}.{name} with a value of the wrong kind")));
            }
        }
        Ok(())
    }

    /// Answers all queries of a batch with one statement per kind of query.
    async fn answer(&self, tx: &mut db::Tx<'_>, queries: &[(usize, Query)]) -> db::Result<Vec<(usize, Answer)>> {
        let mut finds: BTreeMap<(ModelName, Vec<usize>), Vec<usize>> = BTreeMap::new();
        let mut takens: BTreeMap<(ModelName, usize), Vec<usize>> = BTreeMap::new();
        for (n, (_, q)) in queries.iter().enumerate() {
            match q {
                Query::Find { model, columns, .. } => {
                    let desc = self.registry.desc(model).ok_or_else(|| db::Error::Corrupt(format!("no model {model}")))?;
                    let cols = columns.iter().filter_map(|c| desc.column_index(c)).collect();
                    finds.entry((model.clone(), cols)).or_default().push(n);
                }
                Query::Taken { model, column, .. } => {
                    let desc = self.registry.desc(model).ok_or_else(|| db::Error::Corrupt(format!("no model {model}")))?;
                    let col = desc.column_index(column).ok_or_else(|| db::Error::Corrupt(format!("no column {column}")))?;
                    takens.entry((model.clone(), col)).or_default().push(n);
                }
            }
        }
        let mut answers: Vec<Option<Answer>> = vec![None; queries.len()];
        for ((model, cols), ns) in finds {
            let desc = self.registry.desc(&model).ok_or_else(|| db::Error::Corrupt(format!("no model {model}")))?;
            let keys: Vec<Vec<Value>> = ns
                .iter()
                .map(|&n| match &queries[n].1 {
                    Query::Find { values, .. } => values.clone(),
                    Query::Taken { .. } => Vec::new(),
                })
                .collect();
            for (n, pk) in ns.iter().zip(tx.find(desc, &cols, &keys).await?) {
                answers[*n] = Some(Answer::Found(pk));
            }
        }
        for ((model, col), ns) in takens {
            let desc = self.registry.desc(&model).ok_or_else(|| db::Error::Corrupt(format!("no model {model}")))?;
            let bases: Vec<String> = ns
                .iter()
                .map(|&n| match &queries[n].1 {
                    Query::Taken { base, .. } => base.clone(),
                    Query::Find { .. } => String::new(),
                })
                .collect();
            for (n, found) in ns.iter().zip(tx.taken(desc, col, &bases).await?) {
                answers[*n] = Some(Answer::Taken(found));
            }
        }
        Ok(queries.iter().zip(answers).filter_map(|((index, _), a)| a.map(|a| (*index, a))).collect())
    }

    /// A decision's values: right shape, and foreign keys only to rows this
    /// import mapped (or null where allowed).
    fn check_row(&self, input: &InputRecord, values: &mut [Value]) -> Result<()> {
        match record::check_values(self.desc, values) {
            Ok(()) => {}
            Err(Problem::Contract(message)) => return Err(self.contract(input, message)),
            Err(Problem::Invalid(errors)) => return Err(self.invalid(input, errors)),
        }
        for fk in &self.desc.foreign_keys {
            if fk.target == self.desc.name || self.registry.desc(&fk.target).is_none() {
                continue;
            }
            if let Value::Integer(pk) = values[fk.column] {
                if !self.pkmap.is_mapped_target(&fk.target, pk) {
                    let field = &self.desc.columns[fk.column].field;
                    return Err(self.contract(input, format!("set `{field}` to {pk}, which is no {} this import mapped", fk.target)));
                }
            }
        }
        Ok(())
    }

    /// A plugin may only reuse or overwrite a row the host told it about.
    fn check_known_pk(&self, p: &Pending, pk: Pk) -> Result<()> {
        if p.answers.iter().any(|a| *a == Answer::Found(Some(pk))) {
            Ok(())
        } else {
            Err(Error::Contract {
                plugin: self.plugin.to_string(),
                model: self.desc.name.clone(),
                ordinal: p.ordinal,
                pk: p.old_pk,
                message: format!("chose existing row {pk}, which no answer named"),
            })
        }
    }

    fn invalid(&self, input: &InputRecord, errors: Vec<FieldError>) -> Error {
        Error::Invalid { model: self.desc.name.clone(), ordinal: input.ordinal, pk: input.old_pk, errors }
    }

    fn contract(&self, input: &InputRecord, message: String) -> Error {
        Error::Contract { plugin: self.plugin.to_string(), model: self.desc.name.clone(), ordinal: input.ordinal, pk: input.old_pk, message }
    }
}

/// The first ordinals of the chunks a batch of `len` records from
/// `first_ordinal` falls into.
fn chunk_starts(first_ordinal: u64, len: usize) -> BTreeSet<i64> {
    (first_ordinal..first_ordinal + len as u64).map(|o| ((o - 1) / CHUNK_SIZE as u64 * CHUNK_SIZE as u64 + 1) as i64).collect()
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
    fn a_batch_spans_the_chunks_of_its_ordinals() {
        assert_eq!(chunk_starts(1, 20), BTreeSet::from([1]));
        assert_eq!(chunk_starts(1, 21), BTreeSet::from([1, 21]));
        assert_eq!(chunk_starts(21, 40), BTreeSet::from([21, 41]));
        assert!(chunk_starts(41, 0).is_empty());
    }

    #[test]
    fn only_unique_violations_can_be_a_lost_race() {
        let model = ModelName::new("sentry.user").expect("a valid name");
        let unique = || db::Error::UniqueViolation { context: "insert".into(), message: "duplicate key".into() };
        assert!(Error::Write { model: model.clone(), first: 1, last: 20, source: unique() }.is_unique_violation());
        assert!(Error::Db(unique()).is_unique_violation());
        assert!(!Error::Write { model, first: 1, last: 20, source: db::Error::Corrupt("x".into()) }.is_unique_violation());
    }
}

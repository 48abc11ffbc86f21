//! The target database: SQLite (the embedded default) or PostgreSQL.
//!
//! Everything the engine writes goes through a [`Tx`], in bulk: one statement
//! per batch for inserts, one per kind of question for lookups. The dialect
//! modules hold the SQL under the same function names.

use std::collections::BTreeMap;

use crate::model::{ColumnKind, Ident, ModelDesc, ModelName, Pk, Silo, Value};

mod postgres;
mod sqlite;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open database {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("`{0}` is not a database URL: use sqlite:PATH or postgres://…")]
    BadUrl(String),
    #[error("{context}: {source}")]
    Query { context: String, source: sqlx::Error },
    #[error("{context}: a unique constraint was violated: {message}")]
    UniqueViolation { context: String, message: String },
    #[error("table {table} (model {model}) does not exist in the target database; run `relocate db init` first")]
    MissingTable { model: ModelName, table: Ident },
    #[error("{0}")]
    Corrupt(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The database could not be reached or gave up on the statement for
    /// reasons of its own (connection lost, shutting down, out of
    /// resources, deadlock, serialization failure, SQLite busy): the same
    /// statement may well succeed later.
    pub fn is_transient(&self) -> bool {
        let source = match self {
            Error::Connect { .. } => return true,
            Error::Query { source, .. } => source,
            Error::BadUrl(_) | Error::UniqueViolation { .. } | Error::MissingTable { .. } | Error::Corrupt(_) => {
                return false;
            }
        };
        match source {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
                true
            }
            // SQLSTATE classes 08 (connection), 40 (rollback: deadlock,
            // serialization), 53 (resources), 57P0x (shutting down); SQLite's
            // BUSY (5) and LOCKED (6), whose extended codes keep them in the low byte.
            sqlx::Error::Database(e) => match e.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                Some(pg) => ["08", "40", "53", "57P"].iter().any(|class| pg.code().starts_with(class)),
                None => e.code().and_then(|c| c.parse::<i32>().ok()).is_some_and(|c| matches!(c & 0xff, 5 | 6)),
            },
            _ => false,
        }
    }
}

/// Wraps a sqlx error with what we were doing, singling out unique violations.
pub(crate) fn query_error(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> Error {
    let context = context.into();
    move |source| match source.as_database_error() {
        Some(db) if db.is_unique_violation() => Error::UniqueViolation { context, message: db.message().to_string() },
        _ => Error::Query { context, source },
    }
}

/// One open connection to the target.
pub enum Db {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

/// A transaction; dropped without [`Tx::commit`] it rolls back.
pub enum Tx<'c> {
    Sqlite(sqlx::Transaction<'c, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'c, sqlx::Postgres>),
}

/// Whether an import may move PostgreSQL's pk sequences. They are not
/// transactional: a rollback leaves them moved. A rehearsal (`--dry-run`)
/// leaves them and takes `MAX(id) + 1`, as SQLite always does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sequences {
    #[default]
    Use,
    Leave,
}

/// Sentry's import-chunk record of one run of up to 20 records (spec §8.1).
#[derive(Clone, Debug, PartialEq)]
pub struct Chunk {
    pub silo: Silo,
    pub import_uuid: uuid::Uuid,
    pub model: ModelName,
    pub min_ordinal: i64,
    pub max_ordinal: i64,
    pub min_source_pk: Pk,
    pub max_source_pk: Pk,
    pub min_inserted_pk: Option<Pk>,
    pub max_inserted_pk: Option<Pk>,
    pub inserted_map: BTreeMap<Pk, Pk>,
    pub existing_map: BTreeMap<Pk, Pk>,
    pub overwrite_map: BTreeMap<Pk, Pk>,
    pub inserted_identifiers: BTreeMap<Pk, String>,
}

/// The chunk tables; a control model's chunk also gets a replica (spec §8.3).
pub const REGION_CHUNKS: &str = "sentry_regionimportchunk";
pub const CONTROL_CHUNKS: &str = "sentry_controlimportchunk";
pub const CONTROL_CHUNK_REPLICAS: &str = "sentry_controlimportchunkreplica";

/// A row to insert: its new pk and values in column order.
pub struct NewRow<'a> {
    pub pk: Pk,
    pub values: &'a [Value],
}

/// The file a `sqlite:` URL names; `None` for other URLs and in-memory databases.
pub fn sqlite_file(url: &str) -> Option<&std::path::Path> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then(|| std::path::Path::new(path))
}

impl Db {
    /// Connects to `sqlite:PATH` (created if missing) or `postgres://…`.
    pub async fn connect(url: &str) -> Result<Db> {
        if url.starts_with("sqlite:") {
            sqlite::connect(url).await.map(Db::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            postgres::connect(url).await.map(Db::Postgres)
        } else {
            Err(Error::BadUrl(url.to_string()))
        }
    }

    /// The tables that exist, among `tables`.
    pub async fn existing_tables(&mut self, tables: &[&str]) -> Result<Vec<String>> {
        match self {
            Db::Sqlite(c) => sqlite::existing_tables(c, tables).await,
            Db::Postgres(c) => postgres::existing_tables(c, tables).await,
        }
    }

    /// Creates the tables of `models` (given in dependency order) and the
    /// chunk tables, skipping those that exist.
    pub async fn create_schema(&mut self, models: &[&ModelDesc]) -> Result<()> {
        let mut statements = Vec::new();
        let dialect = self.dialect();
        let known: Vec<&ModelName> = models.iter().map(|m| &m.name).collect();
        for model in models {
            statements.extend(table_ddl(dialect, model, |target| {
                known
                    .contains(&target)
                    .then(|| models.iter().find(|m| &m.name == target).map(|m| m.table.clone()))
                    .flatten()
            }));
        }
        for table in [REGION_CHUNKS, CONTROL_CHUNKS, CONTROL_CHUNK_REPLICAS] {
            statements.extend(chunk_table_ddl(dialect, table));
        }
        let mut tx = self.begin().await?;
        for sql in statements {
            tx.execute(&sql).await?;
        }
        tx.commit().await
    }

    /// Makes sure an index serves `lookup` on `model`'s table, creating one
    /// when no index leads with the lookup's columns. Existing schemas
    /// (Sentry's own) get the index too, once.
    pub async fn ensure_index(&mut self, model: &ModelDesc, lookup: &Lookup) -> Result<()> {
        if let Lookup::Equal(columns) = lookup {
            let wanted: std::collections::BTreeSet<&str> =
                columns.iter().map(|&c| model.columns[c].name.as_str()).collect();
            let indexes = match self {
                Db::Sqlite(c) => sqlite::index_columns(c, &model.table).await?,
                Db::Postgres(c) => postgres::index_columns(c, &model.table).await?,
            };
            let covered = indexes.iter().any(|index| {
                index.len() >= wanted.len()
                    && index[..wanted.len()].iter().all(|c| c.as_deref().is_some_and(|c| wanted.contains(c)))
            });
            if covered {
                return Ok(());
            }
        }
        let name = lookup.index_name(model);
        let element = match lookup {
            Lookup::Equal(columns) => {
                columns.iter().map(|&c| model.columns[c].name.quoted()).collect::<Vec<_>>().join(", ")
            }
            Lookup::Folded(c) => match self.dialect() {
                Dialect::Sqlite => format!("{SQLITE_FOLD}({})", model.columns[*c].name.quoted()),
                Dialect::Postgres => format!("({PG_FOLD}({})) COLLATE \"C\"", model.columns[*c].name.quoted()),
            },
        };
        let sql = format!("CREATE INDEX IF NOT EXISTS {name} ON {} ({element})", model.table);
        let created = async {
            let mut tx = self.begin().await?;
            tx.execute(&sql).await?;
            tx.commit().await
        }
        .await;
        match created {
            Ok(()) => Ok(()),
            // Another import created it at the same moment.
            Err(e) => match self {
                Db::Postgres(c) => {
                    if postgres::relation_exists(c, &name).await? {
                        Ok(())
                    } else {
                        Err(e)
                    }
                }
                Db::Sqlite(_) => Err(e),
            },
        }
    }

    /// All chunks already written by the import `uuid`.
    pub async fn load_chunks(&mut self, uuid: &uuid::Uuid) -> Result<Vec<Chunk>> {
        match self {
            Db::Sqlite(c) => sqlite::load_chunks(c, uuid).await,
            Db::Postgres(c) => postgres::load_chunks(c, uuid).await,
        }
    }

    pub async fn begin(&mut self) -> Result<Tx<'_>> {
        match self {
            Db::Sqlite(c) => sqlite::begin(c).await.map(Tx::Sqlite),
            Db::Postgres(c) => postgres::begin(c).await.map(Tx::Postgres),
        }
    }

    /// Opens one transaction for a whole import (`--atomic`, `--dry-run`):
    /// every later [`Db::begin`] is a savepoint inside it, so that nothing
    /// is visible to others, or kept, before [`Db::end_outer`].
    pub async fn begin_outer(&mut self) -> Result<()> {
        match self {
            Db::Sqlite(c) => sqlite::begin_outer(c).await,
            Db::Postgres(c) => postgres::begin_outer(c).await,
        }
    }

    /// Commits or rolls back the transaction of [`Db::begin_outer`].
    pub async fn end_outer(&mut self, commit: bool) -> Result<()> {
        match self {
            Db::Sqlite(c) => sqlite::end_outer(c, commit).await,
            Db::Postgres(c) => postgres::end_outer(c, commit).await,
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Db::Sqlite(_) => Dialect::Sqlite,
            Db::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Row count of a table (for summaries and tests).
    pub async fn count(&mut self, table: &Ident) -> Result<i64> {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        match self {
            Db::Sqlite(c) => sqlite::scalar_i64(c, &sql).await,
            Db::Postgres(c) => postgres::scalar_i64(c, &sql).await,
        }
    }
}

impl Tx<'_> {
    pub async fn execute(&mut self, sql: &str) -> Result<()> {
        match self {
            Tx::Sqlite(t) => sqlite::execute(t, sql).await,
            Tx::Postgres(t) => postgres::execute(t, sql).await,
        }
    }

    pub async fn commit(self) -> Result<()> {
        match self {
            Tx::Sqlite(t) => t.commit().await.map_err(query_error("commit")),
            Tx::Postgres(t) => t.commit().await.map_err(query_error("commit")),
        }
    }

    /// For each key, the lowest pk of a row of `model` whose `columns` equal
    /// it. NULL never matches.
    pub async fn find(&mut self, model: &ModelDesc, columns: &[usize], keys: &[&[Value]]) -> Result<Vec<Option<Pk>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Tx::Sqlite(t) => sqlite::find(t, model, columns, keys).await,
            Tx::Postgres(t) => postgres::find(t, model, columns, keys).await,
        }
    }

    /// For each base, the values of text `column` equal to it or starting
    /// with `base-`, ignoring case. Served by the folded-column index
    /// ([`Lookup::Folded`]) as one bounded range per base.
    pub async fn taken(&mut self, model: &ModelDesc, column: usize, bases: &[&str]) -> Result<Vec<Vec<String>>> {
        if bases.is_empty() {
            return Ok(Vec::new());
        }
        let dialect = self.dialect();
        let ranges: Vec<TakenRange> = bases.iter().map(|b| TakenRange::new(dialect, b)).collect();
        match self {
            Tx::Sqlite(t) => sqlite::taken(t, model, column, &ranges).await,
            Tx::Postgres(t) => postgres::taken(t, model, column, &ranges).await,
        }
    }

    fn dialect(&self) -> Dialect {
        match self {
            Tx::Sqlite(_) => Dialect::Sqlite,
            Tx::Postgres(_) => Dialect::Postgres,
        }
    }

    /// `n` fresh pks for `model`, never handed out before.
    pub async fn reserve_pks(&mut self, model: &ModelDesc, n: usize, sequences: Sequences) -> Result<Vec<Pk>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        match (self, sequences) {
            (Tx::Sqlite(t), _) => sqlite::reserve_pks(t, model, n).await,
            (Tx::Postgres(t), Sequences::Use) => postgres::reserve_pks(t, model, n).await,
            (Tx::Postgres(t), Sequences::Leave) => postgres::pks_after_max(t, model, n).await,
        }
    }

    /// Inserts rows with the given pks in one statement per few hundred rows.
    pub async fn insert(&mut self, model: &ModelDesc, rows: &[NewRow<'_>]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        match self {
            Tx::Sqlite(t) => sqlite::insert(t, model, rows).await,
            Tx::Postgres(t) => postgres::insert(t, model, rows).await,
        }
    }

    /// Moves the pk sequence past rows inserted with explicit pks.
    pub async fn sync_sequence(&mut self, model: &ModelDesc, sequences: Sequences) -> Result<()> {
        match (self, sequences) {
            (Tx::Sqlite(_), _) => Ok(()), // SQLite hands out MAX(id) + 1 anyway.
            (Tx::Postgres(_), Sequences::Leave) => Ok(()),
            (Tx::Postgres(t), Sequences::Use) => postgres::sync_sequence(t, model).await,
        }
    }

    pub async fn update(&mut self, model: &ModelDesc, pk: Pk, values: &[Value]) -> Result<()> {
        match self {
            Tx::Sqlite(t) => sqlite::update(t, model, pk, values).await,
            Tx::Postgres(t) => postgres::update(t, model, pk, values).await,
        }
    }

    /// Deletes every row of `model`'s table and restarts its pk sequence.
    pub async fn clear(&mut self, model: &ModelDesc, sequences: Sequences) -> Result<()> {
        self.clear_table(model.table.as_str(), sequences).await
    }

    /// Deletes every import chunk (and replica) of every import: a Global
    /// import empties all of Sentry's tables, these included, so that no
    /// chunk maps pks to rows that are gone.
    pub async fn clear_chunks(&mut self, sequences: Sequences) -> Result<()> {
        for table in [CONTROL_CHUNK_REPLICAS, CONTROL_CHUNKS, REGION_CHUNKS] {
            self.clear_table(table, sequences).await?;
        }
        Ok(())
    }

    async fn clear_table(&mut self, table: &str, sequences: Sequences) -> Result<()> {
        self.execute(&format!("DELETE FROM {table}")).await?;
        match (self, sequences) {
            (Tx::Sqlite(_), _) => Ok(()), // SQLite hands out MAX(id) + 1: nothing to reset.
            (Tx::Postgres(_), Sequences::Leave) => Ok(()),
            (Tx::Postgres(t), Sequences::Use) => postgres::reset_sequence(t, table).await,
        }
    }

    pub async fn insert_chunks(&mut self, chunks: &[Chunk]) -> Result<()> {
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
        let region: Vec<&Chunk> = chunks.iter().filter(|c| c.silo == Silo::Region).collect();
        let control: Vec<&Chunk> = chunks.iter().filter(|c| c.silo == Silo::Control).collect();
        for (table, chunks) in
            [(REGION_CHUNKS, &region), (CONTROL_CHUNKS, &control), (CONTROL_CHUNK_REPLICAS, &control)]
        {
            for part in chunks.chunks(CHUNKS_PER_STATEMENT) {
                match self {
                    Tx::Sqlite(t) => sqlite::insert_chunks(t, table, part, &now).await?,
                    Tx::Postgres(t) => postgres::insert_chunks(t, table, part, &now).await?,
                }
            }
        }
        Ok(())
    }
}

/// The SQL function both the folded-column index and `taken` apply, per
/// dialect. SQLite's `lower` folds ASCII only, as its `LIKE` does.
const SQLITE_FOLD: &str = "lower";
const PG_FOLD: &str = "lower";

/// Folds a base the way the dialect's [`SQLITE_FOLD`] / [`PG_FOLD`] folds
/// stored values, so that the range below finds them.
fn fold(dialect: Dialect, s: &str) -> String {
    match dialect {
        Dialect::Sqlite => s.to_ascii_lowercase(),
        Dialect::Postgres => s.to_lowercase(),
    }
}

/// A `taken` base as an index range: every folded value equal to `base` or
/// starting with `base-` lies in `[base, base + ".")` in byte order, because
/// `-` is the byte before `.`; `pattern` then keeps exactly those.
pub(crate) struct TakenRange {
    base: String,
    upper: String,
    pattern: String,
}

impl TakenRange {
    fn new(dialect: Dialect, base: &str) -> TakenRange {
        let base = fold(dialect, base);
        TakenRange { upper: format!("{base}."), pattern: format!("{}-%", like_escape(&base)), base }
    }
}

/// The kind of index a question needs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Lookup {
    /// `find`: equality on these columns (indexes into the model's columns).
    Equal(Vec<usize>),
    /// `taken`: a range over this text column, folded to lower case.
    Folded(usize),
}

impl Lookup {
    /// The name relocate gives the index it creates for this lookup.
    fn index_name(&self, model: &ModelDesc) -> String {
        let (kind, columns) = match self {
            Lookup::Equal(columns) => ("eq", columns.clone()),
            Lookup::Folded(column) => ("fold", vec![*column]),
        };
        let names: Vec<&str> = columns.iter().map(|&c| model.columns[c].name.as_str()).collect();
        let name = format!("{}_relocate_{kind}_{}", model.table, names.join("_"));
        if name.len() <= 63 {
            return name;
        }
        // PostgreSQL cuts names at 63 bytes; keep them distinct with a hash.
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(name.as_bytes());
        let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        format!("{}_{hash}", &name[..54])
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

fn sql_type(dialect: Dialect, kind: ColumnKind) -> &'static str {
    match (dialect, kind) {
        (Dialect::Sqlite, ColumnKind::Integer | ColumnKind::Boolean) => "INTEGER",
        (Dialect::Sqlite, ColumnKind::Float) => "REAL",
        (Dialect::Sqlite, _) => "TEXT",
        (Dialect::Postgres, ColumnKind::Integer) => "BIGINT",
        (Dialect::Postgres, ColumnKind::Float) => "DOUBLE PRECISION",
        (Dialect::Postgres, ColumnKind::Boolean) => "BOOLEAN",
        (Dialect::Postgres, ColumnKind::Datetime) => "TIMESTAMPTZ",
        (Dialect::Postgres, ColumnKind::Text | ColumnKind::Json) => "TEXT",
    }
}

/// `CREATE TABLE` and its unique indexes. Foreign keys get a constraint only
/// where Sentry's schema has one and the target table is ours to name.
fn table_ddl(dialect: Dialect, model: &ModelDesc, table_of: impl Fn(&ModelName) -> Option<Ident>) -> Vec<String> {
    let pk = match dialect {
        Dialect::Sqlite => "id INTEGER PRIMARY KEY",
        Dialect::Postgres => "id BIGSERIAL PRIMARY KEY",
    };
    let mut columns = vec![pk.to_string()];
    for (i, column) in model.columns.iter().enumerate() {
        let mut def = format!("{} {}", column.name.quoted(), sql_type(dialect, column.kind));
        if !column.nullable {
            def.push_str(" NOT NULL");
        }
        let fk = model.foreign_keys.iter().find(|fk| fk.column == i);
        if let Some(fk) = fk.filter(|fk| fk.kind.has_constraint() && fk.target != model.name)
            && let Some(target) = table_of(&fk.target)
        {
            def.push_str(&format!(" REFERENCES {target}(id) DEFERRABLE INITIALLY DEFERRED"));
        }
        columns.push(def);
    }
    let mut out = vec![format!("CREATE TABLE IF NOT EXISTS {} (\n  {}\n)", model.table, columns.join(",\n  "))];
    for (n, unique) in model.uniques.iter().enumerate() {
        let cols: Vec<String> = unique.iter().map(|&i| model.columns[i].name.quoted()).collect();
        out.push(format!(
            "CREATE UNIQUE INDEX IF NOT EXISTS {}_uniq_{n} ON {} ({})",
            model.table,
            model.table,
            cols.join(", ")
        ));
    }
    out
}

fn chunk_table_ddl(dialect: Dialect, table: &str) -> Vec<String> {
    let (pk, uuid, json, ts) = match dialect {
        Dialect::Sqlite => ("id INTEGER PRIMARY KEY", "TEXT", "TEXT", "TEXT"),
        Dialect::Postgres => ("id BIGSERIAL PRIMARY KEY", "UUID", "JSONB", "TIMESTAMPTZ"),
    };
    vec![format!(
        "CREATE TABLE IF NOT EXISTS {table} (
  {pk},
  import_uuid {uuid} NOT NULL,
  model VARCHAR(64) NOT NULL,
  min_ordinal BIGINT NOT NULL,
  max_ordinal BIGINT NOT NULL,
  min_source_pk BIGINT NOT NULL,
  max_source_pk BIGINT NOT NULL,
  min_inserted_pk BIGINT,
  max_inserted_pk BIGINT,
  inserted_map {json} NOT NULL,
  existing_map {json} NOT NULL,
  overwrite_map {json} NOT NULL,
  inserted_identifiers {json} NOT NULL,
  date_added {ts} NOT NULL,
  date_updated {ts} NOT NULL,
  UNIQUE (import_uuid, model, min_ordinal)
)"
    )]
}

/// Chunk rows per `INSERT`: 12 parameters each, far under either
/// database's parameter limit.
const CHUNKS_PER_STATEMENT: usize = 1000;

/// `INSERT` of `rows` chunk rows in one statement. Parameter 1 is the time
/// (`date_added` and `date_updated`); row `r` takes the 12 after it, bound by
/// [`bind_chunk!`] in order. `placeholder` writes parameter `n` in the
/// dialect, with its cast.
fn chunk_insert(table: &str, rows: usize, placeholder: impl Fn(usize, ChunkParam) -> String) -> String {
    let now = placeholder(1, ChunkParam::Time);
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let mut params: Vec<String> = (0..12)
                .map(|k| {
                    let kind = match k {
                        0 => ChunkParam::Uuid,
                        8..=11 => ChunkParam::Json,
                        _ => ChunkParam::Plain,
                    };
                    placeholder(2 + r * 12 + k, kind)
                })
                .collect();
            params.push(now.clone());
            params.push(now.clone());
            format!("({})", params.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO {table} (import_uuid, model, min_ordinal, max_ordinal, min_source_pk, max_source_pk, \
         min_inserted_pk, max_inserted_pk, inserted_map, existing_map, overwrite_map, inserted_identifiers, \
         date_added, date_updated) VALUES {}",
        values.join(", ")
    )
}

/// What a chunk parameter holds, for the dialects that cast.
#[derive(Clone, Copy)]
enum ChunkParam {
    Plain,
    Uuid,
    Json,
    Time,
}

/// Binds one chunk's 12 values in the order of [`chunk_insert`]'s parameters.
macro_rules! bind_chunk {
    ($query:expr, $chunk:expr) => {
        $query
            .bind($chunk.import_uuid.hyphenated().to_string())
            .bind($chunk.model.as_str())
            .bind($chunk.min_ordinal)
            .bind($chunk.max_ordinal)
            .bind($chunk.min_source_pk)
            .bind($chunk.max_source_pk)
            .bind($chunk.min_inserted_pk)
            .bind($chunk.max_inserted_pk)
            .bind($crate::db::map_to_json(&$chunk.inserted_map))
            .bind($crate::db::map_to_json(&$chunk.existing_map))
            .bind($crate::db::map_to_json(&$chunk.overwrite_map))
            .bind($crate::db::map_to_json(&$chunk.inserted_identifiers))
    };
}
use bind_chunk;

/// The chunk columns `load_chunks` selects, in the order `chunk_from_row` reads
/// them; each dialect casts the JSON maps to text its own way.
fn chunk_select(table: &str, json_as_text: &str, uuid_param: &str) -> String {
    let maps: Vec<String> = ["inserted_map", "existing_map", "overwrite_map", "inserted_identifiers"]
        .iter()
        .map(|m| format!("{m}{json_as_text}"))
        .collect();
    format!(
        "SELECT model, min_ordinal, max_ordinal, min_source_pk, max_source_pk, min_inserted_pk, max_inserted_pk, {} \
         FROM {table} WHERE import_uuid = {uuid_param} ORDER BY model, min_ordinal",
        maps.join(", ")
    )
}

/// A chunk from a row selected by [`chunk_select`], on either database.
fn chunk_from_row<R>(row: &R, silo: Silo, uuid: &uuid::Uuid) -> Result<Chunk>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let get_i64 = |i: usize| row.try_get::<i64, _>(i);
    let get_opt = |i: usize| row.try_get::<Option<i64>, _>(i);
    let get_text = |i: usize| row.try_get::<String, _>(i);
    let decode = |e: sqlx::Error| Error::Corrupt(format!("an import chunk cannot be read: {e}"));
    let model: String = get_text(0).map_err(decode)?;
    Ok(Chunk {
        silo,
        import_uuid: *uuid,
        model: ModelName::new(&model).map_err(|e| Error::Corrupt(format!("import chunk: {e}")))?,
        min_ordinal: get_i64(1).map_err(decode)?,
        max_ordinal: get_i64(2).map_err(decode)?,
        min_source_pk: get_i64(3).map_err(decode)?,
        max_source_pk: get_i64(4).map_err(decode)?,
        min_inserted_pk: get_opt(5).map_err(decode)?,
        max_inserted_pk: get_opt(6).map_err(decode)?,
        inserted_map: map_from_json(&get_text(7).map_err(decode)?)?,
        existing_map: map_from_json(&get_text(8).map_err(decode)?)?,
        overwrite_map: map_from_json(&get_text(9).map_err(decode)?)?,
        inserted_identifiers: map_from_json(&get_text(10).map_err(decode)?)?,
    })
}

/// `(index, column)` rows in index order → each index's columns.
fn group_index_columns<K: PartialEq>(rows: impl IntoIterator<Item = (K, Option<String>)>) -> Vec<Vec<Option<String>>> {
    let mut out: Vec<(K, Vec<Option<String>>)> = Vec::new();
    for (index, column) in rows {
        match out.last_mut() {
            Some((last, columns)) if *last == index => columns.push(column),
            _ => out.push((index, vec![column])),
        }
    }
    out.into_iter().map(|(_, columns)| columns).collect()
}

/// Sentry stores the pk maps as JSON objects with string keys.
fn map_to_json<V: serde::Serialize>(map: &BTreeMap<Pk, V>) -> String {
    let object: serde_json::Map<String, serde_json::Value> =
        map.iter().map(|(k, v)| (k.to_string(), serde_json::to_value(v).unwrap_or(serde_json::Value::Null))).collect();
    serde_json::Value::Object(object).to_string()
}

fn map_from_json<V: serde::de::DeserializeOwned>(text: &str) -> Result<BTreeMap<Pk, V>> {
    let raw: BTreeMap<String, V> = serde_json::from_str(text)
        .map_err(|e| Error::Corrupt(format!("an import chunk holds a malformed map: {e}")))?;
    raw.into_iter()
        .map(|(k, v)| {
            k.parse()
                .map(|k| (k, v))
                .map_err(|_| Error::Corrupt(format!("an import chunk map has a non-integer key `{k}`")))
        })
        .collect()
}

/// Escapes `%`, `_` and `\` for a LIKE pattern with `ESCAPE '\'`.
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_are_escaped() {
        assert_eq!(like_escape("a_b%c\\"), "a\\_b\\%c\\\\");
    }

    #[test]
    fn chunk_maps_round_trip_with_string_keys() {
        let map: BTreeMap<Pk, Pk> = [(12, 1), (13, 2)].into();
        let json = map_to_json(&map);
        assert_eq!(json, r#"{"12":1,"13":2}"#);
        assert_eq!(map_from_json::<Pk>(&json).unwrap(), map);
        assert!(map_from_json::<Pk>(r#"{"x":1}"#).is_err());
    }
}

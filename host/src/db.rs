//! The target database: SQLite (the embedded default) or PostgreSQL.
//!
//! Everything the engine writes goes through a [`Tx`], a batch at a time:
//! on PostgreSQL one statement per batch for inserts and overwrites and one
//! per kind of question for lookups; on SQLite, which runs in this process,
//! one prepared statement stepped per row, all on the calling thread. The
//! dialect modules hold the SQL under the same function names.

use std::collections::{BTreeMap, HashMap};

use crate::model::{ColumnKind, Ident, ModelDesc, ModelName, Pk, Silo, Value};

mod postgres;
mod sqlite;

pub use postgres::no_delay;

/// A database failure. Each message carries its cause's text (no
/// `source()`), so it is printed once, and ends with what to do when there
/// is something to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open database {url}: {}; {hint}", message(.error))]
    Connect { url: String, error: sqlx::Error, hint: ConnectHint },
    #[error(
        "PostgreSQL database \"{name}\" does not exist: create it with: createdb {createdb} \
         (or CREATE DATABASE \"{name}\"), then rerun"
    )]
    NoDatabase { name: String, createdb: String },
    #[error("`{0}` is not a database URL: use sqlite:PATH or postgres://USER@HOST/DB")]
    BadUrl(String),
    #[error("{url} names no file, so nothing would outlive this command: use sqlite:PATH")]
    NoFile { url: String },
    #[error("database: {context}: {}", message(.error))]
    Query { context: String, error: sqlx::Error },
    /// A statement run through rusqlite on sqlx's SQLite handle.
    #[error("database: {context}: {error}")]
    Sqlite { context: String, error: rusqlite::Error },
    #[error("database: {context}: a unique constraint was violated: {message}")]
    UniqueViolation { context: String, message: String },
    // These two quote their cause rather than chain it: what matters is
    // said, and the CLI prints every error of a chain.
    #[error("{context}: the connection to the database was lost ({cause}); its open transaction was rolled back")]
    ConnectionLost { context: String, cause: sqlx::Error },
    #[error(
        "{context}: another connection holds the SQLite database's write lock and did not release it within \
         {}s ({cause})", sqlite::BUSY_TIMEOUT.as_secs()
    )]
    Locked { context: String, cause: String },
    #[error("table {table} (model {model}) does not exist in the target database; run `relocate db init` first")]
    MissingTable { model: ModelName, table: Ident },
    #[error("{0}")]
    Corrupt(String),
    #[error(
        "PostgreSQL has no ICU collation \"{collation}\" (a server built without ICU, or a database not in UTF8): \
         relocate needs it to compare usernames and slugs ignoring case as Sentry does, whatever the database's locale"
    )]
    NoFold { collation: &'static str },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether the same statement could succeed later: the connection was
    /// lost, the server was busy, locked, out of resources or shutting down.
    /// A refused value or a violated constraint is not: it would be refused
    /// again.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::ConnectionLost { .. } | Error::Locked { .. } => true,
            // A server that is down or restarting may be back for a retry
            // (a queued job's); a missing database is its own variant.
            Error::Connect { .. } => true,
            Error::Query { error, .. } => is_transient(error),
            Error::Sqlite { error, .. } => error.sqlite_error_code().is_some_and(sqlite::is_transient_code),
            _ => false,
        }
    }
}

fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            match db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                // SQLSTATE classes: connection exception, transaction
                // rollback (serialization, deadlock), insufficient resources,
                // operator intervention (shutdown, cancel), system error; and
                // a lock not available.
                Some(_) => {
                    ["08", "40", "53", "57", "58"].iter().any(|class| code.starts_with(class)) || code == "55P03"
                }
                // SQLite's primary result code is the low byte of the extended
                // one: BUSY, LOCKED, NOMEM, IOERR, FULL, PROTOCOL.
                None => {
                    code.parse::<i32>().is_ok_and(|c| sqlite::is_transient_code(libsqlite3_sys::Error::new(c).code))
                }
            }
        }
        _ => false,
    }
}

/// A statement's first line, cut short: what an error says it was running.
fn short(sql: &str) -> String {
    let line = sql.lines().next().unwrap_or(sql);
    line.chars().take(80).collect()
}

/// A sqlx error's text without sqlx's own prefix, with PostgreSQL's detail
/// (which key, which value) when there is one.
fn message(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(db) => match db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
            Some(pg) => match pg.detail() {
                Some(detail) => format!("{} ({detail})", pg.message()),
                None => pg.message().to_string(),
            },
            None => db.message().to_string(),
        },
        sqlx::Error::Io(e) => e.to_string(),
        e => e.to_string(),
    }
}

/// What to check when a database cannot be opened (a small enum, not a
/// string, to keep [`Error`] small).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectHint {
    Url,
    SqliteDirectory,
    SqliteFile,
    PgListening,
    PgReachable,
    PgCredentials,
}

impl std::fmt::Display for ConnectHint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConnectHint::Url => "check the --db URL",
            ConnectHint::SqliteDirectory => "check that its directory exists and is writable",
            ConnectHint::SqliteFile => "check the path: it must name an existing database file",
            ConnectHint::PgListening => "is PostgreSQL running and listening at that host and port?",
            ConnectHint::PgReachable => "check the host and port in the --db URL and that the server is reachable",
            ConnectHint::PgCredentials => "check the user and password in the --db URL",
        })
    }
}

/// Wraps a sqlx error with what we were doing, singling out unique
/// violations, a lost connection and a lock held too long: the last two
/// mean "try again" (the same `--import-uuid` resumes), not a bad record.
pub(crate) fn query_error(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> Error {
    let context = context.into();
    move |error| {
        let code = error.as_database_error().and_then(|db| db.code()).map(|c| c.into_owned());
        match (&error, code.as_deref()) {
            (sqlx::Error::Database(db), _) if db.is_unique_violation() => {
                Error::UniqueViolation { context, message: db.message().to_string() }
            }
            // PostgreSQL: the server ended the session (`pg_terminate_backend`,
            // a shutdown) or a connection exception (class 08).
            (sqlx::Error::Database(db), Some(code))
                if db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some()
                    && (code.starts_with("57P") || code.starts_with("08")) =>
            {
                Error::ConnectionLost { context, cause: error }
            }
            (sqlx::Error::Database(_), _) if sqlite::is_busy(&error) => {
                Error::Locked { context, cause: message(&error) }
            }
            (sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed, _) => {
                Error::ConnectionLost { context, cause: error }
            }
            _ => Error::Query { context, error },
        }
    }
}

/// Refuses a `--db` relocate cannot use, before anything connects: an
/// unknown scheme, or SQLite without a file (sqlx would open a temporary or
/// in-memory database, gone with everything imported when relocate exits).
pub fn check_url(url: &str) -> Result<()> {
    if url.starts_with("sqlite:") {
        match sqlite_file(url) {
            Some(_) => Ok(()),
            None => Err(Error::NoFile { url: url.to_string() }),
        }
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(())
    } else {
        Err(Error::BadUrl(url.to_string()))
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
    /// When the import began (its first run, for a resumed one): the one
    /// clock its plugins see. Stored as every chunk's `date_added`, so that a
    /// resumed import finds it again and writes the dates an uninterrupted
    /// one would; `date_updated` is when the chunk was written.
    pub date_added: chrono::DateTime<chrono::Utc>,
}

impl Chunk {
    /// The start of the import these chunks of it record, if any: what a
    /// resumed import must give its plugins again.
    pub fn import_start<'c>(chunks: impl IntoIterator<Item = &'c Chunk>) -> Option<chrono::DateTime<chrono::Utc>> {
        chunks.into_iter().map(|c| c.date_added).min()
    }
}

/// A chunk's `date_added` or `date_updated` as written (microseconds, UTC).
fn chunk_time(time: &chrono::DateTime<chrono::Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// One model's import chunks of one import, added up: what a rerun with
/// that import's UUID skips.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerEntry {
    pub import_uuid: uuid::Uuid,
    pub model: String,
    pub silo: Silo,
    pub chunks: i64,
    /// Records the chunks cover: Sentry's chunks span the records that were
    /// written or reused, so skipped and dropped ones are not counted.
    pub records: i64,
    pub inserted: i64,
    pub existing: i64,
    pub overwritten: i64,
    /// When the first and the last chunk were written (ISO 8601, UTC).
    pub first_written: String,
    pub last_written: String,
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

/// The file a `sqlite:` URL names; `None` for other URLs, an empty path and
/// in-memory databases.
pub fn sqlite_file(url: &str) -> Option<&std::path::Path> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, params) = rest.split_once('?').unwrap_or((rest, ""));
    let in_memory = path == ":memory:" || params.split('&').any(|p| p == "mode=memory");
    (!path.is_empty() && !in_memory).then(|| std::path::Path::new(path))
}

impl Db {
    /// Connects to `sqlite:PATH` (created if missing) or `postgres://…`.
    pub async fn connect(url: &str) -> Result<Db> {
        Self::open(url, true).await
    }

    /// An empty SQLite database in memory, gone when dropped: what a dry
    /// run rehearses against when its target file does not exist yet.
    pub async fn empty_in_memory() -> Result<Db> {
        sqlite::connect("sqlite::memory:", true).await.map(Db::Sqlite)
    }

    /// Connects to an existing database only: a SQLite file that is not
    /// there is an error, not a new empty database.
    pub async fn connect_existing(url: &str) -> Result<Db> {
        Self::open(url, false).await
    }

    async fn open(url: &str, create: bool) -> Result<Db> {
        check_url(url)?;
        if url.starts_with("sqlite:") {
            sqlite::connect(url, create).await.map(Db::Sqlite)
        } else {
            postgres::connect(url).await.map(Db::Postgres)
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
        // One round trip for the whole schema (hundreds of statements).
        let mut tx = self.begin().await?;
        tx.execute_script(&statements, "create relocate's tables").await?;
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
            Lookup::Folded(c) => folded(self.dialect(), &model.columns[*c].name.quoted()),
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
            Err(e) => match self {
                Db::Postgres(c) => {
                    if postgres::relation_exists(c, &name).await? {
                        // Another import created it at the same moment.
                        Ok(())
                    } else if matches!(lookup, Lookup::Folded(_)) && !postgres::has_collation(c, PG_FOLD).await? {
                        Err(Error::NoFold { collation: PG_FOLD })
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

    /// The chunks of every import (or of `uuid`'s), per import and model;
    /// `None` when the database has no chunk tables.
    pub async fn import_ledger(&mut self, uuid: Option<&uuid::Uuid>) -> Result<Option<Vec<LedgerEntry>>> {
        let tables = self.existing_tables(&[REGION_CHUNKS, CONTROL_CHUNKS]).await?;
        if tables.is_empty() {
            return Ok(None);
        }
        let mut out = Vec::new();
        for (table, silo) in [(REGION_CHUNKS, Silo::Region), (CONTROL_CHUNKS, Silo::Control)] {
            if tables.iter().any(|t| t == table) {
                out.extend(match self {
                    Db::Sqlite(c) => sqlite::import_ledger(c, table, silo, uuid).await?,
                    Db::Postgres(c) => postgres::import_ledger(c, table, silo, uuid).await?,
                });
            }
        }
        Ok(Some(out))
    }

    pub async fn begin(&mut self) -> Result<Tx<'_>> {
        match self {
            Db::Sqlite(c) => sqlite::begin(c).await.map(Tx::Sqlite),
            Db::Postgres(c) => postgres::begin(c).await.map(Tx::Postgres),
        }
    }

    /// Lets go of a [`Hold`] once its batch committed.
    pub async fn release(&mut self, hold: Hold) -> Result<()> {
        match (self, hold) {
            (Db::Postgres(c), Hold::Locks(keys)) if !keys.is_empty() => postgres::session_unlock(c, &keys).await,
            _ => Ok(()),
        }
    }

    /// Lets go of every [`Hold`] after a failed batch: those of the batches
    /// answered ahead of it go with it. A connection that was lost let go of
    /// them already.
    pub async fn release_all(&mut self) {
        if let Db::Postgres(c) = self {
            let _ = postgres::session_unlock_all(c).await;
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

    /// The rows of `model` with these pks, each column read back as text in
    /// one form per kind whatever the dialect: integers and floats in
    /// decimal, booleans `1`/`0`, datetimes ISO 8601 in UTC, text and JSON as
    /// stored.
    pub async fn read_rows(&mut self, model: &ModelDesc, pks: &[Pk]) -> Result<HashMap<Pk, Vec<Option<String>>>> {
        let dialect = self.dialect();
        let columns: Vec<String> = model
            .columns
            .iter()
            .map(|c| {
                let col = c.name.quoted();
                match (dialect, c.kind) {
                    (Dialect::Sqlite, _) => format!("CAST({col} AS TEXT)"),
                    (Dialect::Postgres, ColumnKind::Boolean) => format!("CAST(CAST({col} AS INTEGER) AS TEXT)"),
                    (Dialect::Postgres, ColumnKind::Datetime) => {
                        format!("to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US')")
                    }
                    (Dialect::Postgres, _) => format!("CAST({col} AS TEXT)"),
                }
            })
            .collect();
        let select = format!("SELECT id, {} FROM {}", columns.join(", "), model.table);
        let context = format!("read back rows of {}", model.name);
        match self {
            Db::Sqlite(c) => sqlite::read_rows(c, &select, pks, &context).await,
            Db::Postgres(c) => postgres::read_rows(c, &select, pks, &context).await,
        }
    }

    /// The rows of all of `tables` together, in one query (for the Global
    /// import's prompt, summaries and tests).
    pub async fn count(&mut self, tables: &[&Ident]) -> Result<i64> {
        if tables.is_empty() {
            return Ok(0);
        }
        let counts: Vec<String> = tables.iter().map(|t| format!("(SELECT COUNT(*) FROM {t})")).collect();
        let sql = format!("SELECT {}", counts.join(" + "));
        match self {
            Db::Sqlite(c) => sqlite::scalar_i64(c, &sql).await,
            Db::Postgres(c) => postgres::scalar_i64(c, &sql).await,
        }
    }
}

impl Tx<'_> {
    pub async fn execute(&mut self, sql: &str) -> Result<()> {
        self.run(sql, short(sql)).await
    }

    /// Runs `statements` as one script, in one round trip; a failure is
    /// reported as `context`'s.
    pub async fn execute_script(&mut self, statements: &[String], context: &str) -> Result<()> {
        self.run(&statements.join(";\n"), context.to_string()).await
    }

    async fn run(&mut self, sql: &str, context: String) -> Result<()> {
        match self {
            Tx::Sqlite(t) => sqlite::execute(t, sql, context).await,
            Tx::Postgres(t) => postgres::execute(t, sql, context).await,
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
    /// with `base-`, ignoring case as [`fold`] does. Served by the
    /// folded-column index ([`Lookup::Folded`]) as one bounded range per base.
    pub async fn taken(&mut self, model: &ModelDesc, column: usize, bases: &[&str]) -> Result<Vec<Vec<String>>> {
        if bases.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Tx::Sqlite(t) => {
                let ranges: Vec<TakenRange> = bases.iter().map(|b| TakenRange::new(b)).collect();
                sqlite::taken(t, model, column, &ranges).await
            }
            Tx::Postgres(t) => postgres::taken(t, model, column, bases).await,
        }
    }

    /// Whether answers given in this transaction can be kept true into a
    /// later one ([`Tx::hold`]): on SQLite always; on PostgreSQL when each
    /// batch commits on its own, since its hold on the names is let go of
    /// after the batch's commit, which inside an import-wide transaction
    /// would come before its rows are visible.
    pub fn can_hold(&self, commit_each_batch: bool) -> bool {
        matches!(self, Tx::Sqlite(_)) || commit_each_batch
    }

    /// Takes what keeps answers given now about the names `keys` lock
    /// ([`question_lock`]) true until a later transaction writes and
    /// commits their batch: SQLite's `data_version`, which changes when
    /// another connection commits; PostgreSQL session-level advisory locks,
    /// held past this transaction's commit until [`Db::release`]. `None`
    /// when another import holds one of the names: the locks are tried,
    /// never waited for, since the caller holds this batch's locks already
    /// and waiting out of order could deadlock.
    pub async fn hold(&mut self, keys: Vec<i64>) -> Result<Option<Hold>> {
        match self {
            Tx::Sqlite(t) => sqlite::data_version(t).await.map(|v| Some(Hold::Version(v))),
            Tx::Postgres(t) => {
                let keys = lock_buckets(keys);
                if keys.is_empty() {
                    return Ok(Some(Hold::Locks(keys)));
                }
                let (taken, refused): (Vec<_>, Vec<_>) =
                    postgres::try_session_locks(t, &keys).await?.into_iter().partition(|(_, ok)| *ok);
                let taken: Vec<i64> = taken.into_iter().map(|(k, _)| k).collect();
                if refused.is_empty() {
                    return Ok(Some(Hold::Locks(taken)));
                }
                postgres::session_unlock(t, &taken).await?;
                Ok(None)
            }
        }
    }

    /// Whether answers given under `hold` are still true: on SQLite, whether
    /// no other connection committed since; locks held are.
    pub async fn still_holds(&mut self, hold: &Hold) -> Result<bool> {
        match (self, hold) {
            (Tx::Sqlite(t), Hold::Version(v)) => Ok(sqlite::data_version(t).await? == *v),
            (_, Hold::Locks(_)) => Ok(true),
            (Tx::Postgres(_), Hold::Version(_)) => Ok(false),
        }
    }

    /// Whether [`Tx::lock_questions`] takes locks: whether computing the
    /// keys is worth it.
    pub fn locks_questions(&self) -> bool {
        matches!(self, Tx::Postgres(_))
    }

    /// Makes concurrent imports that ask about the same names take turns,
    /// as Sentry's per-name locks do: on PostgreSQL, a transaction-level
    /// advisory lock per question ([`question_lock`]), so that the second
    /// import's question sees the first one's committed row and its plugin
    /// picks a free suffix instead of failing on a unique key. Taken in
    /// ascending order in one statement, so two batches never wait on each
    /// other in a cycle. SQLite's `BEGIN IMMEDIATE` serializes writers already.
    pub async fn lock_questions(&mut self, keys: Vec<i64>) -> Result<()> {
        if !self.locks_questions() {
            return Ok(());
        }
        let keys = lock_buckets(keys);
        match self {
            Tx::Postgres(t) if !keys.is_empty() => postgres::advisory_locks(t, &keys).await,
            Tx::Postgres(_) | Tx::Sqlite(_) => Ok(()),
        }
    }

    /// `n` fresh pks for `model`, never handed out before.
    pub async fn reserve_pks(&mut self, model: &ModelDesc, n: usize, sequences: Sequences) -> Result<Vec<Pk>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        match (self, sequences) {
            (Tx::Postgres(t), Sequences::Use) => postgres::reserve_pks(t, model, n).await,
            // SQLite's writers are serialized, so MAX(id) + 1 stays ours; a
            // rehearsal's pks are provisional anyway.
            (tx, _) => {
                let sql = format!("SELECT COALESCE(MAX(id), 0) FROM {}", model.table);
                let max = match tx {
                    Tx::Sqlite(t) => sqlite::scalar_i64(t, &sql).await?,
                    Tx::Postgres(t) => postgres::scalar_i64(t, &sql).await?,
                };
                Ok((1..=n as i64).map(|i| max + i).collect())
            }
        }
    }

    /// Inserts rows with the given pks: one `COPY` on PostgreSQL, one
    /// prepared statement stepped per row on SQLite.
    pub async fn insert(&mut self, model: &ModelDesc, rows: &[NewRow<'_>]) -> Result<()> {
        self.insert_then(model, rows, || ()).await
    }

    /// [`Tx::insert`], running `meanwhile` while PostgreSQL works through
    /// the rows (after the last of them went out, before its answer), so
    /// that the caller's next work overlaps the server's.
    pub async fn insert_then<T>(
        &mut self,
        model: &ModelDesc,
        rows: &[NewRow<'_>],
        meanwhile: impl FnOnce() -> T,
    ) -> Result<T> {
        if rows.is_empty() {
            return Ok(meanwhile());
        }
        match self {
            Tx::Sqlite(t) => sqlite::insert(t, model, rows).await.map(|()| meanwhile()),
            Tx::Postgres(t) => postgres::insert(t, model, rows, meanwhile).await,
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

    /// Overwrites the rows with these pks, in order.
    pub async fn update(&mut self, model: &ModelDesc, rows: &[NewRow<'_>]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        match self {
            Tx::Sqlite(t) => sqlite::update(t, model, rows).await,
            Tx::Postgres(t) => postgres::update(t, model, rows).await,
        }
    }

    /// Deletes every row of `models`' tables, in order, and then every
    /// import chunk (and replica) of every import: a Global import empties
    /// all of Sentry's tables, these included, so that no chunk maps pks to
    /// rows that are gone. With [`Sequences::Use`], each table's pk sequence
    /// restarts. One script, one round trip: a statement each for Sentry's
    /// 250 tables had taken 50 ms on PostgreSQL.
    pub async fn clear(&mut self, models: &[&ModelDesc], sequences: Sequences) -> Result<()> {
        let tables =
            models.iter().map(|m| m.table.as_str()).chain([CONTROL_CHUNK_REPLICAS, CONTROL_CHUNKS, REGION_CHUNKS]);
        let restart = matches!((&*self, sequences), (Tx::Postgres(_), Sequences::Use));
        let mut statements = Vec::new();
        for table in tables {
            statements.push(format!("DELETE FROM {table}"));
            // SQLite hands out MAX(id) + 1: it has nothing to restart.
            if restart {
                statements.push(format!("SELECT setval(pg_get_serial_sequence('{table}', 'id'), 1, false)"));
            }
        }
        self.execute_script(&statements, "clear the tables before a Global import").await
    }

    pub async fn insert_chunks(&mut self, chunks: &[Chunk]) -> Result<()> {
        let now = chunk_time(&chrono::Utc::now());
        for silo in [Silo::Region, Silo::Control] {
            let of_silo: Vec<&Chunk> = chunks.iter().filter(|c| c.silo == silo).collect();
            let Some(first) = of_silo.first() else { continue };
            let context = format!("record the import chunks of {} from ordinal {}", first.model, first.min_ordinal);
            // Worked out once: a control chunk is written twice (spec §8.3).
            let rows: Vec<ChunkRow> = of_silo.iter().map(|c| chunk_values(c)).collect();
            let tables: &[&str] = match silo {
                Silo::Region => &[REGION_CHUNKS],
                Silo::Control => &[CONTROL_CHUNKS, CONTROL_CHUNK_REPLICAS],
            };
            for table in tables {
                match self {
                    Tx::Sqlite(t) => sqlite::insert_chunks(t, table, &now, &rows, &context).await?,
                    Tx::Postgres(t) => postgres::insert_chunks(t, table, &now, &rows, context.clone()).await?,
                }
            }
        }
        Ok(())
    }
}

/// The one rule for every case-insensitive question (`taken`: username and
/// slug collisions): two values are the same name when they are equal once
/// lower-cased by Python's `str.lower()`, which is what Sentry's Python
/// compares (Django's `iexact`, and its own `.lower()` in
/// `unique_db_instance`). `Élodie` and `élodie` are one name; so are `ÖZİL`
/// and `özi̇l` (`İ` lower-cases to `i` + U+0307); `STRASSE` and `straße` are
/// two (`str.lower()` keeps `ß`; only `casefold()` would make it `ss`).
///
/// Rust's [`str::to_lowercase`] is that mapping: Unicode's full lower-case
/// mapping with the final-sigma rule (`ΟΔΟΣ` → `οδος`), like Python's. They
/// differ only where their Unicode versions do (a few scripts added since
/// the Python at hand). The plugins compare names with the same function.
///
/// SQLite applies it through the function [`SQLITE_FOLD`], which relocate
/// registers on every connection; PostgreSQL through ICU's root-locale
/// `lower()` ([`PG_FOLD`]), which implements the same Unicode mapping and,
/// unlike plain `lower()`, does not depend on the database's `LC_CTYPE` (a
/// `C` ctype folds ASCII only). Checked code point by code point: ICU 72
/// and Python 3.11 agree on all of them.
pub fn fold(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) { s.into() } else { s.to_lowercase().into() }
}

/// The SQL function SQLite applies [`fold`] with, for the folded-column
/// index and `taken` alike. An index on a function, unlike one under a
/// custom collation, leaves the table readable (`COUNT(*)` included) by
/// programs that lack it; only writing the indexed column, and `VACUUM`,
/// need it.
pub(crate) const SQLITE_FOLD: &str = "relocate_lower";

/// PostgreSQL's [`fold`]: `lower()` under ICU's root locale, compared in
/// byte order (`COLLATE "C"`). `und-x-icu` exists on every server built with
/// ICU (all the usual packages); without it the import stops with
/// [`Error::NoFold`] rather than compare names by the wrong rule.
const PG_FOLD: &str = "und-x-icu";

/// The SQL of `column` (a quoted, maybe qualified, name) folded by [`fold`],
/// in byte order: the same text is the folded-column index's element and
/// what `taken` compares, so the index serves the question.
fn folded(dialect: Dialect, column: &str) -> String {
    match dialect {
        Dialect::Sqlite => format!("{SQLITE_FOLD}({column})"),
        Dialect::Postgres => format!("(lower({column} COLLATE \"{PG_FOLD}\")) COLLATE \"C\""),
    }
}

/// A `taken` base as an index range. Under [`fold`] in byte order, every
/// value equal to `base` or starting with `base-` lies in `[base, base.)`,
/// because `-` is the byte before `.`; of those, the ones `>= base-` are
/// exactly the ones starting with `base-`. SQLite gets the bounds folded
/// here; PostgreSQL folds the base itself, with the function that folds
/// the values (see `postgres::taken`).
pub(crate) struct TakenRange {
    base: String,
    upper: String,
    suffixed: String,
}

impl TakenRange {
    pub(crate) fn new(base: &str) -> TakenRange {
        let base = fold(base).into_owned();
        TakenRange { upper: format!("{base}."), suffixed: format!("{base}-"), base }
    }

    /// Whether a value that [`fold`]s to `folded` is taken for this base:
    /// what the databases' `taken` statement selects, for values held in
    /// memory (the engine's overlay of rows not written yet).
    pub(crate) fn holds(&self, folded: &str) -> bool {
        folded >= self.base.as_str()
            && folded < self.upper.as_str()
            && (folded == self.base || folded >= self.suffixed.as_str())
    }
}

/// How many advisory locks the questions of all imports share.
const QUESTION_LOCK_BUCKETS: i64 = 256;

/// The advisory locks that stand for `keys`, ascending. A bounded number
/// per batch: PostgreSQL's lock table is shared and small (64 per
/// connection by default), and a batch may ask 10,000 questions. Two names
/// in one bucket only take turns.
fn lock_buckets(keys: Vec<i64>) -> Vec<i64> {
    let mut keys: Vec<i64> = keys.into_iter().map(|k| k.rem_euclid(QUESTION_LOCK_BUCKETS)).collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// What keeps a batch's answers, given in the transaction of the batch
/// before it, true until its own transaction commits ([`Tx::hold`]).
#[derive(Debug)]
pub enum Hold {
    /// SQLite's `data_version` when the answers were given.
    Version(i64),
    /// PostgreSQL session-level advisory locks (bucketed keys) on the
    /// batch's names, until [`Db::release`].
    Locks(Vec<i64>),
}

/// The advisory lock a question about `key` takes ([`Tx::lock_questions`]):
/// the same for every import asking about the same model, column(s) and
/// value, folded as the question folds it, on any machine.
pub fn question_lock(model: &ModelName, lookup: &Lookup, key: &[Value]) -> i64 {
    match lookup {
        Lookup::Folded(c) => taken_lock(model, *c, key.first().and_then(Value::as_text).unwrap_or_default()),
        Lookup::Equal(cols) => {
            let mut hash = LockHash::new(model);
            for (c, v) in cols.iter().zip(key) {
                hash.write(format_args!("\0{c}={v:?}"));
            }
            hash.key()
        }
    }
}

/// [`question_lock`] of a `taken` question about `base` in text `column`.
pub fn taken_lock(model: &ModelName, column: usize, base: &str) -> i64 {
    let mut hash = LockHash::new(model);
    hash.write(format_args!("\0{column}~{}", fold(base)));
    hash.key()
}

/// The SHA-256 a question lock's key is the first 8 bytes of. The text is
/// hashed as it is formatted (no `String` per question: there is one per
/// record); the bytes, and so the keys, are those every relocate version
/// since v1 hashes.
struct LockHash(sha2::Sha256);

impl LockHash {
    fn new(model: &ModelName) -> LockHash {
        use sha2::Digest as _;
        let mut hash = sha2::Sha256::new();
        hash.update(b"relocate question lock v1\0");
        hash.update(model.as_str().as_bytes());
        LockHash(hash)
    }

    fn write(&mut self, args: std::fmt::Arguments<'_>) {
        // Writing into a hash cannot fail.
        let _ = std::fmt::Write::write_fmt(self, args);
    }

    fn key(self) -> i64 {
        use sha2::Digest as _;
        let digest = self.0.finalize();
        i64::from_le_bytes(digest[..8].try_into().unwrap_or([0; 8]))
    }
}

impl std::fmt::Write for LockHash {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        sha2::Digest::update(&mut self.0, s.as_bytes());
        Ok(())
    }
}

/// The kind of index a question needs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Lookup {
    /// `find`: equality on these columns (indexes into the model's columns).
    Equal(Vec<usize>),
    /// `taken`: a range over this text column, folded by [`fold`].
    Folded(usize),
}

impl Lookup {
    /// The name relocate gives the index it creates for this lookup.
    fn index_name(&self, model: &ModelDesc) -> String {
        let (kind, columns) = match self {
            Lookup::Equal(columns) => ("eq", columns.clone()),
            // Not `fold`: that name was a plain `lower()` index, which
            // folds ASCII only on SQLite and under a `C` ctype.
            Lookup::Folded(column) => ("lower", vec![*column]),
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

/// The chunk tables' columns a chunk row is written with: those of
/// [`chunk_values`], then `date_updated`, the time of writing.
const CHUNK_COLUMNS: &str = "import_uuid, model, min_ordinal, max_ordinal, min_source_pk, max_source_pk, \
     min_inserted_pk, max_inserted_pk, inserted_map, existing_map, overwrite_map, inserted_identifiers, \
     date_added, date_updated";

/// Values of one chunk row but `date_updated`.
const CHUNK_VALUES: usize = 13;

/// A chunk's values in [`CHUNK_COLUMNS`]' order, `date_updated` apart.
type ChunkRow = [ChunkValue; CHUNK_VALUES];

/// One chunk's values: integers (`None` for NULL) and text (the pk maps as
/// JSON).
fn chunk_values(c: &Chunk) -> ChunkRow {
    use ChunkValue::{Int, Text};
    [
        Text(c.import_uuid.hyphenated().to_string()),
        Text(c.model.as_str().to_string()),
        Int(Some(c.min_ordinal)),
        Int(Some(c.max_ordinal)),
        Int(Some(c.min_source_pk)),
        Int(Some(c.max_source_pk)),
        Int(c.min_inserted_pk),
        Int(c.max_inserted_pk),
        Text(map_to_json(&c.inserted_map)),
        Text(map_to_json(&c.existing_map)),
        Text(map_to_json(&c.overwrite_map)),
        Text(map_to_json(&c.inserted_identifiers)),
        Text(chunk_time(&c.date_added)),
    ]
}

/// A value of a chunk row.
enum ChunkValue {
    Int(Option<i64>),
    Text(String),
}

/// The chunk columns `load_chunks` selects, in the order `chunk_from_row` reads
/// them; each dialect casts the JSON maps to text its own way, and writes
/// `date_added` as [`chunk_time`] does.
fn chunk_select(table: &str, json_as_text: &str, date_added: &str, uuid_param: &str) -> String {
    let maps: Vec<String> = ["inserted_map", "existing_map", "overwrite_map", "inserted_identifiers"]
        .iter()
        .map(|m| format!("{m}{json_as_text}"))
        .collect();
    format!(
        "SELECT model, min_ordinal, max_ordinal, min_source_pk, max_source_pk, min_inserted_pk, max_inserted_pk, {}, \
         {date_added} FROM {table} WHERE import_uuid = {uuid_param} ORDER BY model, min_ordinal",
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
        date_added: chrono::DateTime::parse_from_rfc3339(&get_text(11).map_err(decode)?)
            .map_err(|e| Error::Corrupt(format!("an import chunk's date_added cannot be read: {e}")))?
            .to_utc(),
    })
}

/// The ledger of one chunk table, per import and model. Each dialect says
/// how to read the UUID as text, count a JSON map's keys, and write a time
/// as ISO 8601 text; `filter` is the UUID parameter, if any.
fn ledger_select(
    table: &str,
    uuid_text: &str,
    count_keys: impl Fn(&str) -> String,
    time_text: impl Fn(&str) -> String,
    filter: Option<&str>,
) -> String {
    let filter = filter.map(|p| format!(" WHERE import_uuid = {p}")).unwrap_or_default();
    format!(
        "SELECT {uuid_text}, model, COUNT(*), CAST(SUM(max_ordinal - min_ordinal + 1) AS BIGINT), \
         CAST(SUM({}) AS BIGINT), CAST(SUM({}) AS BIGINT), CAST(SUM({}) AS BIGINT), {}, {} \
         FROM {table}{filter} GROUP BY import_uuid, model",
        count_keys("inserted_map"),
        count_keys("existing_map"),
        count_keys("overwrite_map"),
        time_text("MIN(date_added)"),
        time_text("MAX(date_updated)"),
    )
}

/// A ledger entry from a row selected by [`ledger_select`], on either database.
fn ledger_from_row<R>(row: &R, silo: Silo) -> Result<LedgerEntry>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let decode = |e: sqlx::Error| Error::Corrupt(format!("an import chunk cannot be read: {e}"));
    let get_i64 = |i: usize| row.try_get::<i64, _>(i).map_err(decode);
    let get_text = |i: usize| row.try_get::<String, _>(i).map_err(decode);
    let uuid = get_text(0)?;
    Ok(LedgerEntry {
        import_uuid: uuid
            .parse()
            .map_err(|_| Error::Corrupt(format!("an import chunk has an import_uuid that is not a UUID: `{uuid}`")))?,
        model: get_text(1)?,
        silo,
        chunks: get_i64(2)?,
        records: get_i64(3)?,
        inserted: get_i64(4)?,
        existing: get_i64(5)?,
        overwritten: get_i64(6)?,
        first_written: get_text(7)?,
        last_written: get_text(8)?,
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

/// Sentry stores the pk maps as JSON objects with string keys, which is how
/// serde_json writes integer keys; written straight from the map, in pk order.
fn map_to_json<V: serde::Serialize>(map: &BTreeMap<Pk, V>) -> String {
    // Integer keys and the maps' values (pks, strings) cannot fail to serialize.
    serde_json::to_string(map).unwrap_or_else(|_| "{}".to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_maps_round_trip_with_string_keys() {
        let map: BTreeMap<Pk, Pk> = [(12, 1), (9, 3), (13, 2)].into();
        let json = map_to_json(&map);
        assert_eq!(json, r#"{"9":3,"12":1,"13":2}"#);
        assert_eq!(map_from_json::<Pk>(&json).unwrap(), map);
        assert!(map_from_json::<Pk>(r#"{"x":1}"#).is_err());
    }

    /// What Python's `str.lower()` gives for each (Python 3.11).
    #[test]
    fn fold_is_pythons_lower() {
        for (name, python) in [
            ("élodie", "élodie"),
            ("Élodie", "élodie"),
            ("ÖZİL", "özi\u{307}l"),
            ("STRASSE", "strasse"),
            ("straße", "straße"),
            ("STRAẞE", "straße"),
            ("ΟΔΟΣ ΟΔΟΣ", "οδος οδος"),
            ("ǅ", "ǆ"),
            ("ﬃ", "ﬃ"),
            ("Kelvin \u{212a}", "kelvin k"),
        ] {
            assert_eq!(fold(name), python, "{name}");
        }
        assert!(matches!(fold("plain-ascii_42"), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn taken_ranges_hold_the_base_and_its_suffixes_only() {
        let range = TakenRange::new("Élodie");
        let inside = |v: &str| {
            let v = fold(v);
            let v = v.as_ref();
            v >= range.base.as_str() && v < range.upper.as_str() && (v == range.base || v >= range.suffixed.as_str())
        };
        for v in ["élodie", "ÉLODIE", "élodie-x1", "Élodie-", "ÉLODIE-ABC"] {
            assert!(inside(v), "{v}");
        }
        for v in ["elodie", "élodie.", "élodie x", "élodie_x", "élodiex", "élodi", "élodie!"] {
            assert!(!inside(v), "{v}");
        }
    }

    fn users() -> ModelDesc {
        let text = |name: &str| crate::model::Column {
            field: name.into(),
            name: Ident::new(name).expect("an identifier"),
            kind: ColumnKind::Text,
            nullable: false,
            default: None,
        };
        ModelDesc {
            name: ModelName::new("test.user").expect("a model name"),
            table: Ident::new("test_user").expect("an identifier"),
            scopes: vec![crate::model::Scope::User],
            silo: Silo::Control,
            columns: vec![text("username")],
            foreign_keys: Vec::new(),
            uniques: vec![vec![0]],
            relocation_dependencies: Vec::new(),
        }
    }

    /// Runs `test` on a fresh database of each kind: SQLite in a temp dir,
    /// PostgreSQL a new database on the test server (`RELOCATE_TEST_PG`, as
    /// for the e2e suite), dropped afterwards.
    async fn on_both<F: AsyncFnMut(&str, Db)>(mut test: F) {
        use sqlx::Connection as _;
        let dir = tempfile::tempdir().expect("a temp dir");
        let admin =
            std::env::var("RELOCATE_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("relocate_t_{}", uuid::Uuid::new_v4().simple());
        let mut c = sqlx::PgConnection::connect(&admin).await.expect("PostgreSQL for the test");
        let run = |sql: String| sqlx::query(sqlx::AssertSqlSafe(sql));
        run(format!("CREATE DATABASE {name}")).execute(&mut c).await.expect("a database");
        let pg = format!("{}/{name}", admin.rsplit_once('/').expect("a URL ending in /DATABASE").0);
        let sqlite = format!("sqlite:{}", dir.path().join("t.db").display());
        for url in [sqlite, pg] {
            test(&url, Db::connect(&url).await.expect("open")).await;
        }
        run(format!("DROP DATABASE {name} WITH (FORCE)")).execute(&mut c).await.expect("drop the database");
    }

    /// Overwriting a batch: in order, so a pk given twice keeps the values
    /// it was given last, on both databases.
    #[tokio::test]
    async fn overwrites_of_one_pk_in_a_batch_keep_the_last() {
        let model = users();
        on_both(async |url, mut db| {
            db.create_schema(&[&model]).await.expect("schema");
            let text = |s: &str| [Value::Text(s.into())];
            let (a, b, c, d, e) = (text("a"), text("b"), text("c"), text("d"), text("e"));
            let mut tx = db.begin().await.expect("begin");
            tx.insert(&model, &[NewRow { pk: 1, values: &a }, NewRow { pk: 2, values: &b }]).await.expect("insert");
            let rows = [NewRow { pk: 1, values: &c }, NewRow { pk: 2, values: &d }, NewRow { pk: 1, values: &e }];
            tx.update(&model, &rows).await.expect("update");
            tx.commit().await.expect("commit");
            let read = db.read_rows(&model, &[1, 2]).await.expect("read back");
            assert_eq!(read[&1], [Some("e".to_string())], "{url}");
            assert_eq!(read[&2], [Some("d".to_string())], "{url}");
        })
        .await;
    }

    /// Text goes in as written, whatever COPY's text format gives a meaning.
    #[tokio::test]
    async fn inserts_keep_text_as_written() {
        let model = users();
        on_both(async |url, mut db| {
            db.create_schema(&[&model]).await.expect("schema");
            let names = ["tab\there", "two\nlines", "back\\slash", "\\N", "cr\r", "\\.", "", "élodie ÖZİL"];
            let values: Vec<[Value; 1]> = names.iter().map(|n| [Value::Text(n.to_string())]).collect();
            let rows: Vec<NewRow> =
                values.iter().enumerate().map(|(i, v)| NewRow { pk: i as Pk + 1, values: v.as_slice() }).collect();
            let mut tx = db.begin().await.expect("begin");
            tx.insert(&model, &rows).await.expect("insert");
            tx.commit().await.expect("commit");
            let pks: Vec<Pk> = (1..=names.len() as Pk).collect();
            let read = db.read_rows(&model, &pks).await.expect("read back");
            for (pk, name) in pks.iter().zip(names) {
                assert_eq!(read[pk], [Some(name.to_string())], "{url}");
            }
        })
        .await;
    }

    /// Chunk rows read back as written, on both databases: NULL inserted
    /// pks of a chunk that inserted nothing, and identifiers with what
    /// `COPY`'s text format and JSON escape (backslash, tab, newline, quote).
    #[tokio::test]
    async fn chunks_read_back_as_written() {
        let model = users();
        on_both(async |url, mut db| {
            db.create_schema(&[&model]).await.expect("schema");
            let uuid = uuid::Uuid::new_v4();
            let date_added = chrono::DateTime::from_timestamp_micros(1_700_000_000_123_456).expect("a time");
            let chunk = |min_ordinal: i64, inserted: &[(Pk, Pk, &str)], existing: &[(Pk, Pk)]| Chunk {
                silo: Silo::Control,
                import_uuid: uuid,
                model: model.name.clone(),
                min_ordinal,
                max_ordinal: min_ordinal + 19,
                min_source_pk: 1,
                max_source_pk: 40,
                min_inserted_pk: inserted.iter().map(|i| i.1).min(),
                max_inserted_pk: inserted.iter().map(|i| i.1).max(),
                inserted_map: inserted.iter().map(|i| (i.0, i.1)).collect(),
                existing_map: existing.iter().copied().collect(),
                overwrite_map: BTreeMap::new(),
                inserted_identifiers: inserted.iter().map(|i| (i.0, i.2.to_string())).collect(),
                date_added,
            };
            let chunks = vec![
                chunk(0, &[(1, 101, "a\\b\tc\nd\"e\\N"), (2, 102, "ñandú")], &[(3, 7)]),
                chunk(20, &[], &[(21, 8)]),
            ];
            let mut tx = db.begin().await.expect("begin");
            tx.insert_chunks(&chunks).await.expect("insert chunks");
            tx.commit().await.expect("commit");
            assert_eq!(db.load_chunks(&uuid).await.expect("load"), chunks, "{url}");
        })
        .await;
    }

    /// Question locks are a contract between concurrent imports, whatever
    /// relocate version runs each: their keys never change.
    #[test]
    fn question_locks_keep_their_keys() {
        let user = ModelName::new("sentry.user").expect("a model name");
        let text = |s: &str| Value::Text(s.into());
        assert_eq!(question_lock(&user, &Lookup::Equal(vec![3]), &[text("Élodie")]), 7950729728880012309);
        let pair = [Value::Integer(42), Value::Boolean(true)];
        assert_eq!(question_lock(&user, &Lookup::Equal(vec![1, 4]), &pair), -4084165416744366136);
        assert_eq!(question_lock(&user, &Lookup::Folded(3), &[text("ÖZİL")]), -1329613265523349802);
        assert_eq!(taken_lock(&user, 3, "özi̇l"), -1329613265523349802, "folded as the question folds");
    }

    /// Reserved pks are as many as asked for, ascending, and never handed
    /// out twice, even when the first reservation's rows are not written yet.
    #[tokio::test]
    async fn reserved_pks_are_fresh_and_ascending() {
        let model = users();
        on_both(async |url, mut db| {
            db.create_schema(&[&model]).await.expect("schema");
            let mut tx = db.begin().await.expect("begin");
            let first = tx.reserve_pks(&model, 3, Sequences::Use).await.expect("reserve");
            let rows: Vec<[Value; 1]> = first.iter().map(|pk| [Value::Text(format!("u{pk}"))]).collect();
            let new: Vec<NewRow> = first.iter().zip(&rows).map(|(pk, values)| NewRow { pk: *pk, values }).collect();
            tx.insert(&model, &new).await.expect("insert");
            let second = tx.reserve_pks(&model, 1000, Sequences::Use).await.expect("reserve");
            tx.commit().await.expect("commit");
            assert_eq!((first.len(), second.len()), (3, 1000), "{url}");
            let all: Vec<Pk> = first.iter().chain(&second).copied().collect();
            assert!(all.windows(2).all(|w| w[0] < w[1]), "{url}: {all:?}");
        })
        .await;
    }

    /// A hold on PostgreSQL outlives its transaction until released, and a
    /// hold that meets another connection's is refused and keeps nothing.
    #[tokio::test]
    async fn postgres_holds_last_until_released() {
        on_both(async |url, mut a| {
            if !url.starts_with("postgres") {
                return;
            }
            let mut b = Db::connect(url).await.expect("open");
            let mut c = Db::connect(url).await.expect("open");
            let hold = async |db: &mut Db, keys: Vec<i64>| {
                let mut tx = db.begin().await.expect("begin");
                let hold = tx.hold(keys).await.expect("hold");
                tx.commit().await.expect("commit");
                hold
            };
            let held = hold(&mut a, vec![7]).await.expect("nobody holds 7");
            assert!(hold(&mut b, vec![3, 7]).await.is_none(), "7 is held past its transaction");
            let three = hold(&mut c, vec![3]).await.expect("the refused hold kept 3");
            c.release(three).await.expect("release");
            a.release(held).await.expect("release");
            let both = hold(&mut b, vec![3, 7]).await.expect("both are free again");
            b.release(both).await.expect("release");
        })
        .await;
    }

    /// Nagle's algorithm is off on relocate's PostgreSQL sockets, as libpq
    /// has it (sqlx 0.9.0 leaves it on).
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn postgres_sockets_send_at_once() {
        use nix::sys::socket::{getsockopt, sockopt::TcpNoDelay};
        use std::os::fd::BorrowedFd;
        on_both(async |url, mut db| {
            let Db::Postgres(c) = &mut db else { return };
            let port: i32 = sqlx::query_scalar("SELECT inet_client_port()").fetch_one(&mut *c).await.expect("port");
            let fds = postgres::sockets_on_local_port(u16::try_from(port).expect("a port"));
            let found = !fds.is_empty();
            for fd in fds {
                // SAFETY: the connection's socket, which `c` keeps open.
                #[allow(unsafe_code)]
                let socket = unsafe { BorrowedFd::borrow_raw(fd) };
                assert!(getsockopt(&socket, TcpNoDelay).expect("TCP_NODELAY"), "{url}");
            }
            assert!(found, "the connection's socket, port {port}");
        })
        .await;
    }

    /// SQLite folds non-ASCII letters too, and the folded-column index
    /// serves `taken` as a range scan.
    #[tokio::test]
    async fn sqlite_taken_folds_by_the_rule_through_its_index() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let url = format!("sqlite:{}", dir.path().join("t.db").display());
        let mut db = Db::connect(&url).await.expect("open");
        let model = users();
        db.create_schema(&[&model]).await.expect("schema");
        db.ensure_index(&model, &Lookup::Folded(0)).await.expect("index");
        let names = ["Élodie", "ÉLODIE-x1", "elodie", "ÖZİL", "STRASSE", "élodie.", "élodie x"];
        let mut tx = db.begin().await.expect("begin");
        let values: Vec<[Value; 1]> = names.iter().map(|n| [Value::Text(n.to_string())]).collect();
        let rows: Vec<NewRow> =
            values.iter().enumerate().map(|(i, v)| NewRow { pk: i as Pk + 1, values: v.as_slice() }).collect();
        tx.insert(&model, &rows).await.expect("insert");
        let taken = tx.taken(&model, 0, &["élodie", "özi\u{307}l", "straße", "özil"]).await.expect("taken");
        assert_eq!(taken, [vec!["Élodie", "ÉLODIE-x1"], vec!["ÖZİL"], vec![], vec![]]);

        let Tx::Sqlite(t) = &mut tx else { unreachable!("a SQLite transaction") };
        let explain = format!("EXPLAIN QUERY PLAN {}", sqlite::taken_sql(&model, 0));
        let rows = sqlx::query(sqlx::AssertSqlSafe(explain))
            .bind("a")
            .bind("a.")
            .bind("a-")
            .fetch_all(&mut **t)
            .await
            .expect("explain");
        let plan: Vec<String> = rows.iter().map(|r| sqlx::Row::get::<String, _>(r, 3)).collect();
        assert!(
            plan.iter().any(|line| line.contains("test_user_relocate_lower_username") && line.contains('<')),
            "{plan:?}"
        );
    }
}

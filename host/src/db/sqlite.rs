//! SQLite: `BEGIN IMMEDIATE` transactions through sqlx; a batch's rows and
//! questions through rusqlite on the same handle ([`with_handle`]), one
//! prepared statement stepped per row.

use std::ffi::c_int;
use std::str::FromStr;
use std::time::Duration;

use libsqlite3_sys as ffi;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous, SqliteTransactionManager};
use sqlx::{AssertSqlSafe, Connection, Row, SqlSafeStr, SqliteConnection, Transaction};
use sqlx_core::transaction::TransactionManager;

use super::{
    Chunk, ChunkRow, ChunkValue, ConnectHint, Error, LedgerEntry, NewRow, Result, TakenRange, query_error, short,
};
use crate::model::{Ident, ModelDesc, Pk, Silo, Value};

type Tx<'c> = Transaction<'c, sqlx::Sqlite>;

/// How long a statement waits for another connection's write lock before
/// it fails with "database is locked".
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn connect(url: &str, create: bool) -> Result<SqliteConnection> {
    let hint = if create { ConnectHint::SqliteDirectory } else { ConnectHint::SqliteFile };
    let err = |error| Error::Connect { url: url.to_string(), error, hint };
    let options = SqliteConnectOptions::from_str(url)
        .map_err(err)?
        .create_if_missing(create)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT)
        // A bulk load touches every index page again and again: a page cache
        // of 32 MiB (SQLite's default is 2 MiB) keeps them in memory rather
        // than reading them back from the file, and a checkpoint every
        // 16k pages rather than 1k writes each hot page to the file less often.
        .pragma("cache_size", "-32768")
        .pragma("wal_autocheckpoint", "16384");
    let mut c = connect_when_free(&options).await.map_err(err)?;
    // Every connection that writes a table with a folded-column index needs
    // the function; relocate's own connections all have it.
    register_fold(&mut c).await.map_err(err)?;
    Ok(c)
}

/// Opens the connection, trying again for up to [`BUSY_TIMEOUT`] while
/// another connection holds a lock: switching a file to WAL, which opening
/// does, fails at once rather than waiting for the busy timeout while
/// another process creates the same new database (two imports racing into
/// one new file).
async fn connect_when_free(options: &SqliteConnectOptions) -> Result<SqliteConnection, sqlx::Error> {
    let started = std::time::Instant::now();
    loop {
        match SqliteConnection::connect_with(options).await {
            Err(e) if is_busy(&e) && started.elapsed() < BUSY_TIMEOUT => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
}

/// Whether SQLite answered SQLITE_BUSY or SQLITE_LOCKED (plain or extended).
pub(super) fn is_busy(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() => {
            db.code().and_then(|c| c.parse::<i32>().ok()).is_some_and(|c| matches!(c & 0xff, 5 | 6))
        }
        _ => false,
    }
}

/// Registers [`super::SQLITE_FOLD`] on `c`: deterministic, so that an
/// index may use it, and innocuous, so that it works with
/// `trusted_schema` off. sqlx has no safe way to add a scalar function.
#[allow(unsafe_code)]
async fn register_fold(c: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    let name = std::ffi::CString::new(super::SQLITE_FOLD).map_err(|e| sqlx::Error::Configuration(e.into()))?;
    let mut handle = c.lock_handle().await?;
    let db = handle.as_raw_handle().as_ptr();
    // SAFETY: `db` is this connection's handle, which the lock keeps from
    // every other thread while we use it. The name is a NUL-terminated
    // string SQLite copies. `fold_sql` is a plain function that stays valid
    // for the life of the process, and there is no user data to free.
    let rc = unsafe {
        ffi::sqlite3_create_function_v2(
            db,
            name.as_ptr(),
            1,
            ffi::SQLITE_UTF8 | ffi::SQLITE_DETERMINISTIC | ffi::SQLITE_INNOCUOUS,
            std::ptr::null_mut(),
            Some(fold_sql),
            None,
            None,
            None,
        )
    };
    if rc == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(sqlx::Error::Configuration(
            format!("cannot add the SQL function {}: SQLite error {rc}", super::SQLITE_FOLD).into(),
        ))
    }
}

/// `relocate_lower(text)`: [`super::fold`] of its UTF-8 text; NULL for
/// NULL; bytes that are not UTF-8 unchanged.
#[allow(unsafe_code)]
unsafe extern "C" fn fold_sql(ctx: *mut ffi::sqlite3_context, argc: c_int, argv: *mut *mut ffi::sqlite3_value) {
    // SAFETY: SQLite calls this with `argc` valid values (1, as registered)
    // in `argv` and a live `ctx`; the text pointer it returns is valid for
    // `sqlite3_value_bytes` bytes until the value changes, and we read it
    // before that. SQLITE_TRANSIENT makes SQLite copy the result.
    unsafe {
        if argc != 1 || ffi::sqlite3_value_type(*argv) == ffi::SQLITE_NULL {
            ffi::sqlite3_result_null(ctx);
            return;
        }
        let text = ffi::sqlite3_value_text(*argv);
        let len = usize::try_from(ffi::sqlite3_value_bytes(*argv)).unwrap_or(0);
        if text.is_null() {
            ffi::sqlite3_result_error_nomem(ctx);
            return;
        }
        let bytes = std::slice::from_raw_parts(text, len);
        let folded = match std::str::from_utf8(bytes) {
            Ok(s) => match super::fold(s) {
                std::borrow::Cow::Owned(s) => std::borrow::Cow::Owned(s.into_bytes()),
                std::borrow::Cow::Borrowed(_) => std::borrow::Cow::Borrowed(bytes),
            },
            Err(_) => std::borrow::Cow::Borrowed(bytes),
        };
        let len = c_int::try_from(folded.len()).unwrap_or(c_int::MAX);
        ffi::sqlite3_result_text(ctx, folded.as_ptr().cast(), len, ffi::SQLITE_TRANSIENT());
    }
}

pub async fn begin(c: &mut SqliteConnection) -> Result<Tx<'_>> {
    // Inside an import-wide transaction, a batch's is a savepoint; the outer
    // one holds the write lock.
    if c.is_in_transaction() {
        return c.begin().await.map_err(query_error("begin a savepoint"));
    }
    // IMMEDIATE takes the write lock up front, so MAX(id) + 1 stays ours.
    c.begin_with("BEGIN IMMEDIATE").await.map_err(query_error("begin a transaction"))
}

pub async fn begin_outer(c: &mut SqliteConnection) -> Result<()> {
    SqliteTransactionManager::begin(c, Some("BEGIN IMMEDIATE".into_sql_str()))
        .await
        .map_err(query_error("begin the import's transaction"))
}

pub async fn end_outer(c: &mut SqliteConnection, commit: bool) -> Result<()> {
    if commit {
        SqliteTransactionManager::commit(c).await.map_err(query_error("commit the import's transaction"))
    } else {
        SqliteTransactionManager::rollback(c).await.map_err(query_error("roll back the import's transaction"))
    }
}

pub async fn execute(t: &mut Tx<'_>, sql: &str, context: String) -> Result<()> {
    sqlx::query(AssertSqlSafe(sql.to_string())).execute(&mut **t).await.map_err(query_error(context))?;
    Ok(())
}

/// `PRAGMA data_version`: it changes when another connection commits.
pub async fn data_version(c: &mut SqliteConnection) -> Result<i64> {
    scalar_i64(c, "PRAGMA data_version").await
}

/// One integer, on a connection or in a transaction (`&mut **tx`).
pub async fn scalar_i64(c: &mut SqliteConnection, sql: &str) -> Result<i64> {
    sqlx::query_scalar(AssertSqlSafe(sql.to_string())).fetch_one(c).await.map_err(query_error(short(sql)))
}

pub async fn existing_tables(c: &mut SqliteConnection, tables: &[&str]) -> Result<Vec<String>> {
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
        .fetch_all(c)
        .await
        .map_err(query_error("list tables"))?;
    Ok(names.into_iter().filter(|n| tables.contains(&n.as_str())).collect())
}

fn placeholders(n: usize) -> String {
    let mut s = String::with_capacity(n * 2 + 2);
    s.push('(');
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        s.push('?');
    }
    s.push(')');
    s
}

/// The column names of each (non-partial) index of `table`, in index order;
/// `None` for an expression.
pub async fn index_columns(c: &mut SqliteConnection, table: &Ident) -> Result<Vec<Vec<Option<String>>>> {
    let rows = sqlx::query(
        "SELECT il.name, ii.name FROM pragma_index_list(?1) AS il, pragma_index_info(il.name) AS ii \
         WHERE il.partial = 0 ORDER BY il.name, ii.seqno",
    )
    .bind(table.as_str())
    .fetch_all(c)
    .await
    .map_err(query_error(format!("list the indexes of {table}")))?;
    Ok(super::group_index_columns(rows.iter().map(|row| (row.get::<String, _>(0), row.get(1)))))
}

/// One index probe per key, each a step of one prepared statement.
pub async fn find(t: &mut Tx<'_>, model: &ModelDesc, columns: &[usize], keys: &[&[Value]]) -> Result<Vec<Option<Pk>>> {
    let conditions: Vec<String> =
        columns.iter().enumerate().map(|(i, &c)| format!("{} = ?{}", model.columns[c].name.quoted(), i + 1)).collect();
    let sql = format!("SELECT MIN(id) FROM {} WHERE {}", model.table, conditions.join(" AND "));
    with_handle(t, &format!("look up {} rows", model.name), |conn| {
        let mut find = conn.prepare(&sql)?;
        keys.iter()
            .map(|key| {
                for (i, value) in key.iter().enumerate() {
                    find.raw_bind_parameter(i + 1, value)?;
                }
                let mut rows = find.raw_query();
                match rows.next()? {
                    Some(row) => row.get::<_, Option<Pk>>(0),
                    None => Ok(None),
                }
            })
            .collect()
    })
    .await
}

/// One range scan of the folded-column index per base.
pub async fn taken(t: &mut Tx<'_>, model: &ModelDesc, column: usize, bases: &[TakenRange]) -> Result<Vec<Vec<String>>> {
    let sql = taken_sql(model, column);
    with_handle(t, &format!("look up taken {} values", model.name), |conn| {
        let mut taken = conn.prepare(&sql)?;
        bases
            .iter()
            .map(|range| {
                taken.raw_bind_parameter(1, range.base.as_str())?;
                taken.raw_bind_parameter(2, range.upper.as_str())?;
                taken.raw_bind_parameter(3, range.suffixed.as_str())?;
                let mut rows = taken.raw_query();
                let mut values = Vec::new();
                while let Some(row) = rows.next()? {
                    values.push(row.get(0)?);
                }
                Ok(values)
            })
            .collect()
    })
    .await
}

/// `taken` for one range, bound as (base, upper, suffixed).
pub(super) fn taken_sql(model: &ModelDesc, column: usize) -> String {
    let col = model.columns[column].name.quoted();
    let folded = super::folded(super::Dialect::Sqlite, &format!("t.{col}"));
    format!(
        "SELECT t.{col} FROM {table} t WHERE {folded} >= ?1 AND {folded} < ?2 AND ({folded} = ?1 OR {folded} >= ?3)",
        table = model.table
    )
}

/// Chunk rows, each a step of one prepared single-row statement; `now` is
/// every row's `date_updated`.
pub async fn insert_chunks(t: &mut Tx<'_>, table: &str, now: &str, rows: &[ChunkRow], context: &str) -> Result<()> {
    let placeholders: Vec<String> = (1..=super::CHUNK_VALUES + 1).map(|n| format!("?{n}")).collect();
    let sql = format!("INSERT INTO {table} ({}) VALUES ({})", super::CHUNK_COLUMNS, placeholders.join(", "));
    with_handle(t, context, |conn| {
        let mut insert = conn.prepare(&sql)?;
        insert.raw_bind_parameter(super::CHUNK_VALUES + 1, now)?;
        for row in rows {
            for (i, value) in row.iter().enumerate() {
                match value {
                    ChunkValue::Int(v) => insert.raw_bind_parameter(i + 1, v)?,
                    ChunkValue::Text(v) => insert.raw_bind_parameter(i + 1, v)?,
                }
            }
            insert.raw_execute()?;
        }
        Ok(())
    })
    .await
}

/// One prepared single-row statement stepped per row, as SQLite's own bulk
/// loads do: no SQL text or parameter list grows with the batch.
pub async fn insert(t: &mut Tx<'_>, model: &ModelDesc, rows: &[NewRow<'_>]) -> Result<()> {
    let cols: Vec<String> =
        std::iter::once("id".to_string()).chain(model.columns.iter().map(|c| c.name.quoted())).collect();
    let sql = format!("INSERT INTO {} ({}) VALUES {}", model.table, cols.join(", "), placeholders(cols.len()));
    with_handle(t, &format!("insert {} rows", model.name), |conn| {
        let mut insert = conn.prepare(&sql)?;
        for row in rows {
            insert.raw_bind_parameter(1, row.pk)?;
            for (i, value) in row.values.iter().enumerate() {
                insert.raw_bind_parameter(i + 2, value)?;
            }
            insert.raw_execute()?;
        }
        Ok(())
    })
    .await
}

/// Overwrites rows in place, in order (a pk given twice ends with its last
/// values).
pub async fn update(t: &mut Tx<'_>, model: &ModelDesc, rows: &[NewRow<'_>]) -> Result<()> {
    let sets: Vec<String> = model.columns.iter().map(|c| format!("{} = ?", c.name.quoted())).collect();
    let sql = format!("UPDATE {} SET {} WHERE id = ?", model.table, sets.join(", "));
    with_handle(t, &format!("overwrite {} rows", model.name), |conn| {
        let mut update = conn.prepare(&sql)?;
        for row in rows {
            for (i, value) in row.values.iter().enumerate() {
                update.raw_bind_parameter(i + 1, value)?;
            }
            update.raw_bind_parameter(row.values.len() + 1, row.pk)?;
            update.raw_execute()?;
        }
        Ok(())
    })
    .await
}

/// Runs `f` through rusqlite on the transaction's connection, on this
/// thread, while sqlx's worker thread waits: a batch's rows then cost one
/// hand-off between threads, not one per statement and per row returned,
/// and bind without sqlx's per-parameter lookups. The transaction stays
/// sqlx's: `f` only runs statements inside it.
#[allow(unsafe_code)]
async fn with_handle<T>(
    t: &mut Tx<'_>,
    context: &str,
    f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
) -> Result<T> {
    let mut handle = t.lock_handle().await.map_err(query_error(context))?;
    let db = handle.as_raw_handle().as_ptr();
    // SAFETY: `db` is this connection's open handle, and the lock keeps
    // every other thread (sqlx's worker) off it until `handle` drops, after
    // `conn`. A connection made by `from_handle` never closes the handle;
    // dropping it finalizes the statements it prepared.
    let conn = unsafe { rusqlite::Connection::from_handle(db) }.map_err(raw_error(context))?;
    let out = f(&conn).map_err(raw_error(context));
    drop(conn);
    drop(handle);
    out
}

/// Sorts a rusqlite failure as [`query_error`] sorts sqlx's.
fn raw_error(context: &str) -> impl FnOnce(rusqlite::Error) -> Error {
    let context = context.to_string();
    move |error| match error.sqlite_error() {
        Some(e)
            if e.extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE
                || e.extended_code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            Error::UniqueViolation { context, message: error.to_string() }
        }
        Some(e) if matches!(e.code, ffi::ErrorCode::DatabaseBusy | ffi::ErrorCode::DatabaseLocked) => {
            Error::Locked { context, cause: error.to_string() }
        }
        _ => Error::Sqlite { context, error },
    }
}

/// SQLite's result codes after which the same statement may succeed later:
/// busy, locked, out of memory, I/O error, disk full, locking protocol.
pub(super) fn is_transient_code(code: ffi::ErrorCode) -> bool {
    use ffi::ErrorCode::*;
    matches!(code, DatabaseBusy | DatabaseLocked | OutOfMemory | SystemIoFailure | DiskFull | FileLockingProtocolFailed)
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Integer(i) => ValueRef::Integer(*i),
            Value::Float(f) => ValueRef::Real(*f),
            Value::Boolean(b) => ValueRef::Integer(i64::from(*b)),
            Value::Text(s) | Value::Json(s) => ValueRef::Text(s.as_bytes()),
        }))
    }
}

pub async fn load_chunks(c: &mut SqliteConnection, uuid: &uuid::Uuid) -> Result<Vec<Chunk>> {
    let mut out = Vec::new();
    for (table, silo) in [(super::REGION_CHUNKS, Silo::Region), (super::CONTROL_CHUNKS, Silo::Control)] {
        let sql = super::chunk_select(table, "", "date_added", "?");
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(uuid.hyphenated().to_string())
            .fetch_all(&mut *c)
            .await
            .map_err(query_error("read import chunks"))?;
        for row in &rows {
            out.push(super::chunk_from_row(row, silo, uuid)?);
        }
    }
    Ok(out)
}

/// Rows by pk for [`super::Db::read_rows`]: `select` reads the id, then text columns.
pub async fn read_rows(
    c: &mut SqliteConnection,
    select: &str,
    pks: &[Pk],
    context: &str,
) -> Result<std::collections::HashMap<Pk, Vec<Option<String>>>> {
    let sql = format!("{select} WHERE id IN (SELECT value FROM json_each(?))");
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(serde_json::to_string(pks).unwrap_or_default())
        .fetch_all(&mut *c)
        .await
        .map_err(query_error(context))?;
    let mut out = std::collections::HashMap::with_capacity(rows.len());
    for row in rows {
        let pk: Pk = row.try_get(0).map_err(query_error(context))?;
        let values = (1..row.len()).map(|i| row.try_get::<Option<String>, _>(i)).collect::<Result<Vec<_>, _>>();
        out.insert(pk, values.map_err(query_error(context))?);
    }
    Ok(out)
}

pub async fn import_ledger(
    c: &mut SqliteConnection,
    table: &str,
    silo: Silo,
    uuid: Option<&uuid::Uuid>,
) -> Result<Vec<LedgerEntry>> {
    // Times are stored as ISO 8601 text already.
    let count_keys = |map: &str| format!("(SELECT COUNT(*) FROM json_each({map}))");
    let sql = super::ledger_select(table, "import_uuid", count_keys, str::to_string, uuid.map(|_| "?"));
    let mut query = sqlx::query(AssertSqlSafe(sql));
    if let Some(uuid) = uuid {
        query = query.bind(uuid.hyphenated().to_string());
    }
    let rows = query.fetch_all(c).await.map_err(query_error(format!("read {table}")))?;
    rows.iter().map(|row| super::ledger_from_row(row, silo)).collect()
}

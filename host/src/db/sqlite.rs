//! SQLite: multi-row `VALUES` statements, `BEGIN IMMEDIATE` transactions.

use std::ffi::c_int;
use std::str::FromStr;
use std::time::Duration;

use libsqlite3_sys as ffi;

use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous, SqliteTransactionManager,
};
use sqlx::{Arguments, AssertSqlSafe, Connection, Row, SqlSafeStr, SqliteConnection, Transaction};
use sqlx_core::transaction::TransactionManager;

use super::{Chunk, ConnectHint, Error, LedgerEntry, NewRow, Result, TakenRange, query_error};
use crate::model::{Ident, ModelDesc, Pk, Silo, Value};

type Tx<'c> = Transaction<'c, sqlx::Sqlite>;

/// SQLite's default cap on bound parameters per statement is 32766.
const MAX_PARAMS: usize = 32_000;
const MAX_ROWS_PER_STATEMENT: usize = 500;

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
        .busy_timeout(BUSY_TIMEOUT);
    let mut c = SqliteConnection::connect_with(&options).await.map_err(err)?;
    // Every connection that writes a table with a folded-column index needs
    // the function; relocate's own connections all have it.
    register_fold(&mut c).await.map_err(err)?;
    Ok(c)
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

pub async fn execute(t: &mut Tx<'_>, sql: &str) -> Result<()> {
    sqlx::query(AssertSqlSafe(sql.to_string())).execute(&mut **t).await.map_err(query_error(short(sql)))?;
    Ok(())
}

/// One integer, on a connection or in a transaction (`&mut **tx`).
pub async fn scalar_i64(c: &mut SqliteConnection, sql: &str) -> Result<i64> {
    sqlx::query_scalar(AssertSqlSafe(sql.to_string())).fetch_one(c).await.map_err(query_error(short(sql)))
}

fn short(sql: &str) -> String {
    let line = sql.lines().next().unwrap_or(sql);
    line.chars().take(80).collect()
}

pub async fn existing_tables(c: &mut SqliteConnection, tables: &[&str]) -> Result<Vec<String>> {
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
        .fetch_all(c)
        .await
        .map_err(query_error("list tables"))?;
    Ok(names.into_iter().filter(|n| tables.contains(&n.as_str())).collect())
}

fn bind(args: &mut SqliteArguments, value: &Value) -> Result<()> {
    let r = match value {
        Value::Null => args.add(Option::<i64>::None),
        Value::Integer(i) => args.add(*i),
        Value::Float(f) => args.add(*f),
        Value::Boolean(b) => args.add(*b),
        Value::Text(s) | Value::Json(s) => args.add(s.clone()),
    };
    r.map_err(|e| Error::Query { context: "bind a value".into(), error: sqlx::Error::Encode(e) })
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

/// `CROSS JOIN` makes the keys the outer loop, so each is one index probe.
pub async fn find(t: &mut Tx<'_>, model: &ModelDesc, columns: &[usize], keys: &[&[Value]]) -> Result<Vec<Option<Pk>>> {
    let mut out = vec![None; keys.len()];
    let per = (MAX_PARAMS / (columns.len() + 1)).clamp(1, MAX_ROWS_PER_STATEMENT);
    let names: Vec<String> = (0..columns.len()).map(|i| format!("c{i}")).collect();
    let join: Vec<String> =
        columns.iter().zip(&names).map(|(&c, n)| format!("t.{} = u.{n}", model.columns[c].name.quoted())).collect();
    for (base, part) in keys.chunks(per).enumerate() {
        let rows = vec![placeholders(columns.len() + 1); part.len()].join(",");
        let sql = format!(
            "WITH u(i, {}) AS (VALUES {rows}) SELECT u.i, MIN(t.id) FROM u CROSS JOIN {} t ON {} GROUP BY u.i",
            names.join(", "),
            model.table,
            join.join(" AND ")
        );
        let mut args = SqliteArguments::default();
        for (i, key) in part.iter().enumerate() {
            bind(&mut args, &Value::Integer((base * per + i) as i64))?;
            for v in *key {
                bind(&mut args, v)?;
            }
        }
        let found = sqlx::query_with(AssertSqlSafe(sql), args)
            .fetch_all(&mut **t)
            .await
            .map_err(query_error(format!("look up {} rows", model.name)))?;
        for row in found {
            let (i, pk): (i64, i64) = (row.get(0), row.get(1));
            if let Some(slot) = out.get_mut(i as usize) {
                *slot = Some(pk);
            }
        }
    }
    Ok(out)
}

/// One range scan of the folded-column index per base.
pub async fn taken(t: &mut Tx<'_>, model: &ModelDesc, column: usize, bases: &[TakenRange]) -> Result<Vec<Vec<String>>> {
    let mut out = vec![Vec::new(); bases.len()];
    let per = (MAX_PARAMS / 4).min(MAX_ROWS_PER_STATEMENT);
    for (base, part) in bases.chunks(per).enumerate() {
        let mut args = SqliteArguments::default();
        for (i, range) in part.iter().enumerate() {
            bind(&mut args, &Value::Integer((base * per + i) as i64))?;
            for text in [&range.base, &range.upper, &range.suffixed] {
                args.add(text.as_str())
                    .map_err(|e| Error::Query { context: "bind a value".into(), error: sqlx::Error::Encode(e) })?;
            }
        }
        let found = sqlx::query_with(AssertSqlSafe(taken_sql(model, column, part.len())), args)
            .fetch_all(&mut **t)
            .await
            .map_err(query_error(format!("look up taken {} values", model.name)))?;
        for row in found {
            let (i, value): (i64, String) = (row.get(0), row.get(1));
            if let Some(slot) = out.get_mut(i as usize) {
                slot.push(value);
            }
        }
    }
    Ok(out)
}

/// `taken` for `rows` ranges, each bound as (index, base, upper, suffixed).
pub(super) fn taken_sql(model: &ModelDesc, column: usize, rows: usize) -> String {
    let col = model.columns[column].name.quoted();
    let folded = super::folded(super::Dialect::Sqlite, &format!("t.{col}"));
    format!(
        "WITH u(i, b, hi, s) AS (VALUES {}) SELECT u.i, t.{col} FROM u CROSS JOIN {table} t \
         ON {folded} >= u.b AND {folded} < u.hi WHERE {folded} = u.b OR {folded} >= u.s",
        vec!["(?,?,?,?)"; rows].join(","),
        table = model.table
    )
}

pub async fn insert(t: &mut Tx<'_>, model: &ModelDesc, rows: &[NewRow<'_>]) -> Result<()> {
    let width = model.columns.len() + 1;
    let per = (MAX_PARAMS / width).clamp(1, MAX_ROWS_PER_STATEMENT);
    let cols: Vec<String> =
        std::iter::once("id".to_string()).chain(model.columns.iter().map(|c| c.name.quoted())).collect();
    let head = format!("INSERT INTO {} ({}) VALUES ", model.table, cols.join(", "));
    let row_sql = placeholders(width);
    for part in rows.chunks(per) {
        let mut sql = String::with_capacity(head.len() + part.len() * (row_sql.len() + 1));
        sql.push_str(&head);
        let mut args = SqliteArguments::default();
        for (i, row) in part.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&row_sql);
            bind(&mut args, &Value::Integer(row.pk))?;
            for v in row.values {
                bind(&mut args, v)?;
            }
        }
        sqlx::query_with(AssertSqlSafe(sql), args)
            .execute(&mut **t)
            .await
            .map_err(query_error(format!("insert {} rows", model.name)))?;
    }
    Ok(())
}

pub async fn update(t: &mut Tx<'_>, model: &ModelDesc, pk: Pk, values: &[Value]) -> Result<()> {
    let sets: Vec<String> = model.columns.iter().map(|c| format!("{} = ?", c.name.quoted())).collect();
    let sql = format!("UPDATE {} SET {} WHERE id = ?", model.table, sets.join(", "));
    let mut args = SqliteArguments::default();
    for v in values {
        bind(&mut args, v)?;
    }
    bind(&mut args, &Value::Integer(pk))?;
    sqlx::query_with(AssertSqlSafe(sql), args)
        .execute(&mut **t)
        .await
        .map_err(query_error(format!("overwrite {} row {pk}", model.name)))?;
    Ok(())
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

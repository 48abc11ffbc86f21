//! PostgreSQL: inserts by `COPY … FROM STDIN`; lookups and overwrites by one
//! `UNNEST` of typed arrays per batch, so a statement's size does not grow
//! with its rows and no bind-parameter limit applies.

use std::collections::HashMap;
use std::str::FromStr;

use sqlx::postgres::{PgArguments, PgConnectOptions, PgTransactionManager};
use sqlx::{Arguments, AssertSqlSafe, Connection, PgConnection, Row, Transaction};
use sqlx_core::transaction::TransactionManager;

use super::{Chunk, ChunkRow, ChunkValue, ConnectHint, Error, LedgerEntry, NewRow, Result, query_error, short};
use crate::model::{ColumnKind, Ident, ModelDesc, Pk, Silo, Value};

type Tx<'c> = Transaction<'c, sqlx::Postgres>;

pub async fn connect(url: &str) -> Result<PgConnection> {
    let err = |hint| move |error| Error::Connect { url: url.to_string(), error, hint };
    let options = PgConnectOptions::from_str(url).map_err(err(ConnectHint::Url))?;
    let mut c = PgConnection::connect_with(&options).await.map_err(|e| connect_error(url, &options, e))?;
    no_delay(&mut c).await.map_err(err(ConnectHint::Url))?;
    // The schema's messages should not drown the user's output.
    sqlx::query("SET client_min_messages = warning").execute(&mut c).await.map_err(err(ConnectHint::Url))?;
    Ok(c)
}

/// Turns off Nagle's algorithm on the connection's TCP socket, as libpq
/// does and sqlx 0.9.0 no longer does (sqlx#4335, fixed after 0.9.0).
/// With it on, a message that leaves in two writes (COPY's data, then its
/// `CopyDone`) waits for the server's delayed ACK, about 40 ms. sqlx does
/// not hand out its socket, so it is found among the process's descriptors
/// by its local port, which the server reports.
pub async fn no_delay(c: &mut PgConnection) -> sqlx::Result<()> {
    // NULL over a Unix socket, which has no Nagle's algorithm.
    let port: Option<i32> = sqlx::query_scalar("SELECT inet_client_port()").fetch_one(&mut *c).await?;
    if let Some(port) = port.and_then(|p| u16::try_from(p).ok()) {
        set_no_delay_on_local_port(port);
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn set_no_delay_on_local_port(port: u16) {
    use nix::sys::socket::{setsockopt, sockopt::TcpNoDelay};
    use std::os::fd::BorrowedFd;

    for fd in sockets_on_local_port(port) {
        // SAFETY: the descriptor is the socket of the connection the caller
        // holds mutably, so nothing closes it during the call.
        #[allow(unsafe_code)]
        let socket = unsafe { BorrowedFd::borrow_raw(fd) };
        // A socket that refuses the option keeps working, only slower.
        let _ = setsockopt(&socket, TcpNoDelay, &true);
    }
}

#[cfg(not(target_os = "linux"))]
fn set_no_delay_on_local_port(_port: u16) {}

/// This process's TCP sockets bound to local `port`.
#[cfg(target_os = "linux")]
pub(super) fn sockets_on_local_port(port: u16) -> Vec<std::os::fd::RawFd> {
    use nix::sys::socket::{SockaddrStorage, getsockname};

    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else { return Vec::new() };
    fds.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&fd| {
            let Ok(local) = getsockname::<SockaddrStorage>(fd) else { return false };
            let local_port =
                local.as_sockaddr_in().map(|a| a.port()).or_else(|| local.as_sockaddr_in6().map(|a| a.port()));
            local_port == Some(port)
        })
        .collect()
}

/// A failed connection, with what to do about the usual causes.
fn connect_error(url: &str, options: &PgConnectOptions, error: sqlx::Error) -> Error {
    let code = error.as_database_error().and_then(|e| e.code()).unwrap_or_default().into_owned();
    let user = options.get_username();
    if code == "3D000" {
        // invalid_catalog_name: the server is there, the database is not.
        let name = options.get_database().unwrap_or(user).to_string();
        let createdb = format!("-h {} -p {} -U {user} {name}", options.get_host(), options.get_port());
        return Error::NoDatabase { name, createdb };
    }
    let hint = match &error {
        sqlx::Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => ConnectHint::PgListening,
        sqlx::Error::Io(_) => ConnectHint::PgReachable,
        // invalid_authorization_specification, invalid_password
        _ if code.starts_with("28") => ConnectHint::PgCredentials,
        _ => ConnectHint::Url,
    };
    Error::Connect { url: url.to_string(), error, hint }
}

pub async fn begin(c: &mut PgConnection) -> Result<Tx<'_>> {
    c.begin().await.map_err(query_error("begin a transaction"))
}

pub async fn begin_outer(c: &mut PgConnection) -> Result<()> {
    PgTransactionManager::begin(c, None).await.map_err(query_error("begin the import's transaction"))
}

pub async fn end_outer(c: &mut PgConnection, commit: bool) -> Result<()> {
    if commit {
        PgTransactionManager::commit(c).await.map_err(query_error("commit the import's transaction"))
    } else {
        PgTransactionManager::rollback(c).await.map_err(query_error("roll back the import's transaction"))
    }
}

/// A statement without parameters, run once (DDL, `DELETE`): sent as a
/// simple query, so not prepared and cached as sqlx does every query.
pub async fn execute(t: &mut Tx<'_>, sql: &str, context: String) -> Result<()> {
    sqlx::raw_sql(AssertSqlSafe(sql.to_string())).execute(&mut **t).await.map_err(query_error(context))?;
    Ok(())
}

/// One integer, on a connection or in a transaction (`&mut **tx`).
pub async fn scalar_i64(c: &mut PgConnection, sql: &str) -> Result<i64> {
    sqlx::query_scalar(AssertSqlSafe(sql.to_string())).fetch_one(c).await.map_err(query_error(short(sql)))
}

pub async fn existing_tables(c: &mut PgConnection, tables: &[&str]) -> Result<Vec<String>> {
    let wanted: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
    sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() AND tablename = ANY($1)",
    )
    .bind(wanted)
    .fetch_all(c)
    .await
    .map_err(query_error("list tables"))
}

/// The column names of each (non-partial) index of `table`, in index order;
/// `None` for an expression.
pub async fn index_columns(c: &mut PgConnection, table: &Ident) -> Result<Vec<Vec<Option<String>>>> {
    let rows = sqlx::query(
        "SELECT i.indexrelid::bigint, a.attname::text FROM pg_index i \
         CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
         LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum AND k.attnum > 0 \
         WHERE i.indrelid = to_regclass($1) AND i.indpred IS NULL ORDER BY 1, k.ord",
    )
    .bind(table.as_str())
    .fetch_all(c)
    .await
    .map_err(query_error(format!("list the indexes of {table}")))?;
    Ok(super::group_index_columns(rows.iter().map(|row| (row.get::<i64, _>(0), row.get(1)))))
}

pub async fn has_collation(c: &mut PgConnection, name: &str) -> Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_collation WHERE collname = $1)")
        .bind(name)
        .fetch_one(c)
        .await
        .map_err(query_error(format!("look for collation {name}")))
}

pub async fn relation_exists(c: &mut PgConnection, name: &str) -> Result<bool> {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(name)
        .fetch_one(c)
        .await
        .map_err(query_error(format!("look for {name}")))
}

/// One column of values as a typed array parameter.
enum Array {
    Int(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Bool(Vec<Option<bool>>),
    Text(Vec<Option<String>>),
}

impl Array {
    fn new(kind: ColumnKind, capacity: usize) -> Array {
        match kind {
            ColumnKind::Integer => Array::Int(Vec::with_capacity(capacity)),
            ColumnKind::Float => Array::Float(Vec::with_capacity(capacity)),
            ColumnKind::Boolean => Array::Bool(Vec::with_capacity(capacity)),
            ColumnKind::Text | ColumnKind::Datetime | ColumnKind::Json => Array::Text(Vec::with_capacity(capacity)),
        }
    }

    /// Values were checked against the column kind by the engine; a stray
    /// kind is stored as NULL rather than panicking.
    fn push(&mut self, value: &Value) {
        match (self, value) {
            (Array::Int(v), Value::Integer(i)) => v.push(Some(*i)),
            (Array::Float(v), Value::Float(f)) => v.push(Some(*f)),
            (Array::Float(v), Value::Integer(i)) => v.push(Some(*i as f64)),
            (Array::Bool(v), Value::Boolean(b)) => v.push(Some(*b)),
            (Array::Text(v), Value::Text(s) | Value::Json(s)) => v.push(Some(s.clone())),
            (Array::Int(v), _) => v.push(None),
            (Array::Float(v), _) => v.push(None),
            (Array::Bool(v), _) => v.push(None),
            (Array::Text(v), _) => v.push(None),
        }
    }

    fn bind(self, args: &mut PgArguments) -> Result<()> {
        let r = match self {
            Array::Int(v) => args.add(v),
            Array::Float(v) => args.add(v),
            Array::Bool(v) => args.add(v),
            Array::Text(v) => args.add(v),
        };
        r.map_err(|e| Error::Query { context: "bind an array".into(), error: sqlx::Error::Encode(e) })
    }
}

fn array_type(kind: ColumnKind) -> &'static str {
    match kind {
        ColumnKind::Integer => "int8[]",
        ColumnKind::Float => "float8[]",
        ColumnKind::Boolean => "bool[]",
        ColumnKind::Text | ColumnKind::Datetime | ColumnKind::Json => "text[]",
    }
}

/// How an unnested text value becomes the column's type.
fn cast(kind: ColumnKind) -> &'static str {
    match kind {
        ColumnKind::Datetime => "::timestamptz",
        _ => "",
    }
}

/// One index probe per key: a `LATERAL` subquery per unnested key, so the
/// planner cannot pick a hash join that scans the whole table.
pub async fn find(t: &mut Tx<'_>, model: &ModelDesc, columns: &[usize], keys: &[&[Value]]) -> Result<Vec<Option<Pk>>> {
    let mut args = PgArguments::default();
    let mut params = Vec::new();
    let mut conditions = Vec::new();
    for (n, &c) in columns.iter().enumerate() {
        let column = &model.columns[c];
        let mut array = Array::new(column.kind, keys.len());
        for key in keys {
            array.push(&key[n]);
        }
        array.bind(&mut args)?;
        params.push(format!("${}::{}", n + 1, array_type(column.kind)));
        conditions.push(format!("t.{} = u.c{n}{}", column.name.quoted(), cast(column.kind)));
    }
    let names: Vec<String> = (0..columns.len()).map(|n| format!("c{n}")).collect();
    let sql = format!(
        "SELECT u.i, f.id FROM UNNEST({}) WITH ORDINALITY AS u({}, i) \
         CROSS JOIN LATERAL (SELECT MIN(t.id) AS id FROM {} t WHERE {}) f WHERE f.id IS NOT NULL",
        params.join(", "),
        names.join(", "),
        model.table,
        conditions.join(" AND ")
    );
    let rows = sqlx::query_with(AssertSqlSafe(sql), args)
        .fetch_all(&mut **t)
        .await
        .map_err(query_error(format!("look up {} rows", model.name)))?;
    let mut out = vec![None; keys.len()];
    for row in rows {
        let (i, pk): (i64, i64) = (row.get(0), row.get(1));
        if let Some(slot) = out.get_mut((i - 1) as usize) {
            *slot = Some(pk);
        }
    }
    Ok(out)
}

/// One bounded range scan of the folded-column index per base. The bases
/// are folded here by the function that folds the stored values, so the
/// bounds and the index agree whatever the Unicode version of either side.
pub async fn taken(t: &mut Tx<'_>, model: &ModelDesc, column: usize, bases: &[&str]) -> Result<Vec<Vec<String>>> {
    let col = model.columns[column].name.quoted();
    let folded = super::folded(super::Dialect::Postgres, &format!("t.{col}"));
    let base = super::folded(super::Dialect::Postgres, "u.base");
    let sql = format!(
        "SELECT u.i, f.v FROM UNNEST($1::text[]) WITH ORDINALITY AS u(base, i) \
         CROSS JOIN LATERAL (SELECT {base} AS b) k \
         CROSS JOIN LATERAL (SELECT t.{col} AS v FROM {table} t WHERE {folded} >= k.b AND {folded} < k.b || '.' \
         AND ({folded} = k.b OR {folded} >= k.b || '-')) f",
        table = model.table
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(bases)
        .fetch_all(&mut **t)
        .await
        .map_err(query_error(format!("look up taken {} values", model.name)))?;
    let mut out = vec![Vec::new(); bases.len()];
    for row in rows {
        let (i, value): (i64, String) = (row.get(0), row.get(1));
        if let Some(slot) = out.get_mut((i - 1) as usize) {
            slot.push(value);
        }
    }
    Ok(out)
}

pub async fn reserve_pks(t: &mut Tx<'_>, model: &ModelDesc, n: usize) -> Result<Vec<Pk>> {
    // The sequence is looked up once: in the select list, PostgreSQL would
    // call `pg_get_serial_sequence` for every row (6.6 µs each, against
    // 0.8 for `nextval` itself). One array comes back, not a row per pk.
    sqlx::query_scalar(
        "WITH s AS MATERIALIZED (SELECT pg_get_serial_sequence($1, 'id')::regclass AS seq) \
         SELECT array_agg(v ORDER BY v) FROM (SELECT nextval(s.seq) AS v FROM s, generate_series(1, $2)) n",
    )
    .bind(model.table.as_str())
    .bind(n as i64)
    .fetch_one(&mut **t)
    .await
    .map_err(query_error(format!("reserve pks for {}", model.name)))
}

pub async fn sync_sequence(t: &mut Tx<'_>, model: &ModelDesc) -> Result<()> {
    let sql = format!(
        "SELECT setval(pg_get_serial_sequence($1, 'id'), GREATEST((SELECT COALESCE(MAX(id), 1) FROM {}), \
         COALESCE(pg_sequence_last_value(pg_get_serial_sequence($1, 'id')::regclass), 1)))",
        model.table
    );
    sqlx::query(AssertSqlSafe(sql))
        .bind(model.table.as_str())
        .execute(&mut **t)
        .await
        .map_err(query_error(format!("move the pk sequence of {}", model.name)))?;
    Ok(())
}

/// `COPY … FROM STDIN` in text format, PostgreSQL's own bulk-load path:
/// a batch's rows go out as one buffer, with no array built per column.
/// `meanwhile` runs once they are all sent, while the server loads them.
pub async fn insert<T>(
    t: &mut Tx<'_>,
    model: &ModelDesc,
    rows: &[NewRow<'_>],
    meanwhile: impl FnOnce() -> T,
) -> Result<T> {
    let mut columns = vec!["id".to_string()];
    columns.extend(model.columns.iter().map(|c| c.name.quoted()));
    let statement = format!("COPY {} ({}) FROM STDIN", model.table, columns.join(", "));
    let context = || format!("insert {} rows", model.name);
    let mut buf = Vec::with_capacity(COPY_BUFFER.min(rows.len() * 256) + 4096);
    let mut copy = (**t).copy_in_raw(&statement).await.map_err(query_error(context()))?;
    for row in rows {
        copy_row(&mut buf, model, row);
        if buf.len() >= COPY_BUFFER {
            copy.send(buf.as_slice()).await.map_err(query_error(context()))?;
            buf.clear();
        }
    }
    if !buf.is_empty() {
        copy.send(buf).await.map_err(query_error(context()))?;
    }
    // `finish` sends `CopyDone` on its first poll, then waits for the server.
    let (done, value) = tokio::join!(copy.finish(), async { meanwhile() });
    done.map_err(query_error(context()))?;
    Ok(value)
}

/// Bytes of COPY data per message.
const COPY_BUFFER: usize = 1 << 20;

/// One row of COPY's text format: tab-separated, `\N` for NULL. A value
/// whose kind does not fit its column (the engine checked them all) is
/// NULL, as with the other statements.
fn copy_row(buf: &mut Vec<u8>, model: &ModelDesc, row: &NewRow<'_>) {
    use std::io::Write as _;
    let _ = write!(buf, "{}", row.pk);
    for (column, value) in model.columns.iter().zip(row.values) {
        buf.push(b'\t');
        match (column.kind, value) {
            (ColumnKind::Integer, Value::Integer(i)) => {
                let _ = write!(buf, "{i}");
            }
            (ColumnKind::Float, Value::Float(f)) => copy_float(buf, *f),
            (ColumnKind::Float, Value::Integer(i)) => {
                let _ = write!(buf, "{i}");
            }
            (ColumnKind::Boolean, Value::Boolean(b)) => buf.push(if *b { b't' } else { b'f' }),
            (ColumnKind::Text | ColumnKind::Datetime | ColumnKind::Json, Value::Text(s) | Value::Json(s)) => {
                copy_text(buf, s)
            }
            _ => buf.extend_from_slice(b"\\N"),
        }
    }
    buf.push(b'\n');
}

fn copy_float(buf: &mut Vec<u8>, f: f64) {
    use std::io::Write as _;
    if f.is_nan() {
        buf.extend_from_slice(b"NaN");
    } else if f.is_infinite() {
        buf.extend_from_slice(if f > 0.0 { b"Infinity" } else { b"-Infinity" });
    } else {
        // `{:?}` is the shortest text that reads back as the same f64.
        let _ = write!(buf, "{f:?}");
    }
}

/// Escapes what COPY's text format gives a meaning: the backslash and the
/// row and column separators.
fn copy_text(buf: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            _ => continue,
        };
        buf.extend_from_slice(&bytes[from..i]);
        buf.extend_from_slice(escaped);
        from = i + 1;
    }
    buf.extend_from_slice(&bytes[from..]);
}

/// Overwrites rows in one statement. `UPDATE … FROM` applies one row per
/// pk, so a pk given twice takes its last values, as one `UPDATE` per row
/// in order would leave it.
pub async fn update(t: &mut Tx<'_>, model: &ModelDesc, rows: &[NewRow<'_>]) -> Result<()> {
    let last: HashMap<Pk, usize> = rows.iter().enumerate().map(|(i, r)| (r.pk, i)).collect();
    let kept = rows.iter().enumerate().filter(|(i, r)| last[&r.pk] == *i).map(|(_, r)| r);
    let (args, unnest) = unnest(model, kept)?;
    let sets: Vec<String> = model
        .columns
        .iter()
        .enumerate()
        .map(|(n, c)| format!("{} = u.c{n}{}", c.name.quoted(), cast(c.kind)))
        .collect();
    let sql = format!("UPDATE {} AS t SET {} FROM {unnest} WHERE t.id = u.id", model.table, sets.join(", "));
    sqlx::query_with(AssertSqlSafe(sql), args)
        .execute(&mut **t)
        .await
        .map_err(query_error(format!("overwrite {} rows", model.name)))?;
    Ok(())
}

/// The rows as one typed array parameter per column, and the
/// `UNNEST(…) AS u(id, c0, c1, …)` that turns them back into rows.
fn unnest<'r>(model: &ModelDesc, rows: impl Iterator<Item = &'r NewRow<'r>> + Clone) -> Result<(PgArguments, String)> {
    let mut args = PgArguments::default();
    let pks: Vec<i64> = rows.clone().map(|r| r.pk).collect();
    let len = pks.len();
    args.add(pks).map_err(|e| Error::Query { context: "bind pks".into(), error: sqlx::Error::Encode(e) })?;
    let mut params = vec!["$1::int8[]".to_string()];
    let mut names = vec!["id".to_string()];
    for (n, column) in model.columns.iter().enumerate() {
        let mut array = Array::new(column.kind, len);
        for row in rows.clone() {
            array.push(&row.values[n]);
        }
        array.bind(&mut args)?;
        params.push(format!("${}::{}", n + 2, array_type(column.kind)));
        names.push(format!("c{n}"));
    }
    Ok((args, format!("UNNEST({}) AS u({})", params.join(", "), names.join(", "))))
}

/// Chunk rows in one `COPY`, as a batch's own rows go in; `now` is every
/// row's `date_updated`.
pub async fn insert_chunks(t: &mut Tx<'_>, table: &str, now: &str, rows: &[ChunkRow], context: String) -> Result<()> {
    use std::io::Write as _;
    let mut buf = Vec::with_capacity(rows.len() * 512);
    for row in rows {
        for value in row {
            match value {
                ChunkValue::Int(Some(i)) => {
                    let _ = write!(buf, "{i}");
                }
                ChunkValue::Int(None) => buf.extend_from_slice(b"\\N"),
                ChunkValue::Text(s) => copy_text(&mut buf, s),
            }
            buf.push(b'\t');
        }
        copy_text(&mut buf, now);
        buf.push(b'\n');
    }
    let statement = format!("COPY {table} ({}) FROM STDIN", super::CHUNK_COLUMNS);
    let mut copy = (**t).copy_in_raw(&statement).await.map_err(query_error(context.clone()))?;
    copy.send(buf).await.map_err(query_error(context.clone()))?;
    copy.finish().await.map_err(query_error(context))?;
    Ok(())
}

pub async fn load_chunks(c: &mut PgConnection, uuid: &uuid::Uuid) -> Result<Vec<Chunk>> {
    let mut out = Vec::new();
    for (table, silo) in [(super::REGION_CHUNKS, Silo::Region), (super::CONTROL_CHUNKS, Silo::Control)] {
        let date_added = "to_char(date_added AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')";
        let sql = super::chunk_select(table, "::text", date_added, "$1::uuid");
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
    c: &mut PgConnection,
    select: &str,
    pks: &[Pk],
    context: &str,
) -> Result<std::collections::HashMap<Pk, Vec<Option<String>>>> {
    let sql = format!("{select} WHERE id = ANY($1)");
    let rows =
        sqlx::query(AssertSqlSafe(sql)).bind(pks.to_vec()).fetch_all(&mut *c).await.map_err(query_error(context))?;
    let mut out = std::collections::HashMap::with_capacity(rows.len());
    for row in rows {
        let pk: Pk = row.try_get(0).map_err(query_error(context))?;
        let values = (1..row.len()).map(|i| row.try_get::<Option<String>, _>(i)).collect::<Result<Vec<_>, _>>();
        out.insert(pk, values.map_err(query_error(context))?);
    }
    Ok(out)
}

/// The first key of relocate's advisory locks ("RELO"): the two-key form
/// shares no lock with an application's one-key advisory locks.
const LOCK_CLASS: i32 = 1380273231;

/// Takes the advisory locks `keys` (sorted) for the rest of the transaction.
pub async fn advisory_locks(t: &mut Tx<'_>, keys: &[i64]) -> Result<()> {
    // The subquery's order is the order the locks are taken in.
    sqlx::query("SELECT count(pg_advisory_xact_lock($2, k::int4)) FROM (SELECT unnest($1::int8[]) AS k ORDER BY 1) s")
        .bind(keys)
        .bind(LOCK_CLASS)
        .execute(&mut **t)
        .await
        .map_err(query_error("lock the names this batch asks about"))?;
    Ok(())
}

/// Tries the session-level advisory locks `keys` without waiting: each
/// key with whether it was taken.
pub async fn try_session_locks(t: &mut Tx<'_>, keys: &[i64]) -> Result<Vec<(i64, bool)>> {
    sqlx::query_as("SELECT k, pg_try_advisory_lock($2, k::int4) FROM unnest($1::int8[]) AS k")
        .bind(keys)
        .bind(LOCK_CLASS)
        .fetch_all(&mut **t)
        .await
        .map_err(query_error("lock the names the next batch asks about"))
}

/// Releases session-level advisory locks `keys`, each taken once.
pub async fn session_unlock(c: &mut PgConnection, keys: &[i64]) -> Result<()> {
    sqlx::query("SELECT count(pg_advisory_unlock($2, k::int4)) FROM unnest($1::int8[]) AS k")
        .bind(keys)
        .bind(LOCK_CLASS)
        .execute(c)
        .await
        .map_err(query_error("release the names a batch asked about"))?;
    Ok(())
}

pub async fn session_unlock_all(c: &mut PgConnection) -> Result<()> {
    sqlx::query("SELECT pg_advisory_unlock_all()")
        .execute(c)
        .await
        .map_err(query_error("release the names batches asked about"))?;
    Ok(())
}

pub async fn import_ledger(
    c: &mut PgConnection,
    table: &str,
    silo: Silo,
    uuid: Option<&uuid::Uuid>,
) -> Result<Vec<LedgerEntry>> {
    let count_keys = |map: &str| format!("(SELECT COUNT(*) FROM jsonb_object_keys({map}::jsonb))");
    // The same text as SQLite's: relocate writes that format there.
    let time_text = |time: &str| format!("to_char({time} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')");
    let sql = super::ledger_select(table, "import_uuid::text", count_keys, time_text, uuid.map(|_| "$1::uuid"));
    let mut query = sqlx::query(AssertSqlSafe(sql));
    if let Some(uuid) = uuid {
        query = query.bind(uuid.hyphenated().to_string());
    }
    let rows = query.fetch_all(c).await.map_err(query_error(format!("read {table}")))?;
    rows.iter().map(|row| super::ledger_from_row(row, silo)).collect()
}

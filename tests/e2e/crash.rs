//! Nothing lost, nothing half-written: an import killed at any point and
//! rerun with the same `--import-uuid` (and `--seed`) until it succeeds
//! leaves the database row for row as an uninterrupted import does: every
//! column of every table, derived rows and import chunks included.
//!
//! Each test imports a generated base export, then an export whose
//! usernames and slugs partly collide with it (Organization scope, so users
//! are renamed, their passwords made unusable and password-reset hashes
//! written: all drawn from the seeded generator), in batches of 20. The
//! reference database gets the second import uninterrupted; each trial
//! database starts as a copy of the base and gets the same import, killed
//! (`SIGKILL`) after a random delay or once a random number of chunk rows
//! exist, rerun, killed again, until a run finishes. Then the two are
//! compared. What may differ, and how the comparison allows for it:
//!
//! - `date_updated` of a chunk row is when it was written: left out;
//! - the import's start (its plugins' clock, every chunk's `date_added`)
//!   is when each database's first run began: each database's own start
//!   stands for it, so the comparison still proves one start per import;
//! - PostgreSQL's sequences are not transactional: pks a killed transaction
//!   drew are never handed out again, so ids there are compared by rank
//!   within their table, foreign keys and chunk maps by the rank of the row
//!   they name. SQLite's ids are compared as they are.
//!
//! `RELOCATE_CRASH_KILLS` (default 25) sets the kills per database;
//! `RELOCATE_CRASH_SEED` replays a run's choices of kill points.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use relocate::synth::{self, Config};
use sqlx::{AssertSqlSafe, Connection};

use crate::support::{Conn, Kind, Target, command};

const SEED: &str = "4242";
const BASE_UUID: &str = "0f6a4b0e-6c2b-4b3f-9a57-0a0e1b2c3d01";
const UUID: &str = "0f6a4b0e-6c2b-4b3f-9a57-0a0e1b2c3d02";
const CHUNK_TABLES: [&str; 3] =
    ["sentry_regionimportchunk", "sentry_controlimportchunk", "sentry_controlimportchunkreplica"];
/// Kills in one trial before its import may finish.
const KILLS_PER_TRIAL: usize = 4;

fn kills_wanted() -> usize {
    std::env::var("RELOCATE_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(25)
}

/// The exports, a database holding the base import to copy, and the
/// reference: the copy with the second import run uninterrupted.
struct Setup {
    export: PathBuf,
    template: Target,
    reference: Target,
    /// How long the reference's import took.
    duration: Duration,
    /// Chunk rows the import writes.
    chunks: i64,
}

impl Setup {
    async fn new(kind: Kind) -> Setup {
        let template = Target::new(kind).await;
        let dir = template.dir.path();
        let base = dir.join("base.json");
        synth::write(&Config { records: 400, seed: 0, ..Config::default() }, &base).expect("generate the base");
        let export = dir.join("colliding.json");
        let config = Config { records: 1500, seed: 1, collide_fraction: 0.5, collide_with: 0, encrypt_to: None };
        synth::write(&config, &export).expect("generate the colliding export");
        import(&template, &base, BASE_UUID).success();
        let reference = copy(&template, kind).await;
        let started = Instant::now();
        import(&reference, &export, UUID).success();
        let duration = started.elapsed();
        let chunks = chunk_rows(&mut reference.connect().await).await;
        assert!(chunks > 10, "the import writes many chunks ({chunks})");
        Setup { export, template, reference, duration, chunks }
    }
}

fn args<'a>(t: &'a Target, export: &'a Path, uuid: &'a str) -> Vec<&'a str> {
    let export = export.to_str().expect("a UTF-8 path");
    vec![
        "import",
        "organizations",
        export,
        "--seed",
        SEED,
        "--import-uuid",
        uuid,
        "--batch-size",
        "20",
        "--no-prompt",
        "--silent",
        "--db",
        &t.url,
    ]
}

fn import(t: &Target, export: &Path, uuid: &str) -> crate::support::Run {
    crate::support::relocate(&args(t, export, uuid))
}

/// A new database holding what `template` holds.
async fn copy(template: &Target, kind: Kind) -> Target {
    match kind {
        Kind::Sqlite => {
            let t = Target::new(Kind::Sqlite).await;
            // relocate is not running: its write-ahead log, if any, goes along.
            let from = template.url.trim_start_matches("sqlite:");
            let to = t.url.trim_start_matches("sqlite:");
            std::fs::copy(from, to).expect("copy the database");
            let wal = format!("{from}-wal");
            if Path::new(&wal).exists() {
                std::fs::copy(&wal, format!("{to}-wal")).expect("copy the write-ahead log");
            }
            t
        }
        Kind::Postgres => {
            let name = template.url.rsplit('/').next().expect("a database name");
            Target::postgres_with(&format!("TEMPLATE {name}")).await
        }
    }
}

/// Chunk rows of the import under test.
async fn chunk_rows(c: &mut Conn) -> i64 {
    let mut total = 0;
    for table in &CHUNK_TABLES[..2] {
        let uuid = match c {
            Conn::Sqlite(_) => format!("'{UUID}'"),
            Conn::Postgres(_) => format!("'{UUID}'::uuid"),
        };
        total += c.i64s(&format!("SELECT COUNT(*) FROM {table} WHERE import_uuid = {uuid}")).await[0];
    }
    total
}

/// When to kill a run.
#[derive(Clone, Copy, Debug)]
enum KillAt {
    Delay(Duration),
    Chunks(i64),
}

/// What happened to one run of the import.
#[derive(Debug)]
enum Ended {
    Killed(KillAt),
    Exited,
}

/// Runs the import on `t` and kills it at `kill`, unless it ends first.
async fn run(t: &Target, export: &Path, kill: Option<KillAt>, log: &Path) -> Ended {
    let stderr = std::fs::File::create(log).expect("create the run's log");
    let mut child =
        command(&args(t, export, UUID)).stdout(Stdio::null()).stderr(stderr).spawn().expect("start relocate");
    let started = Instant::now();
    let mut watcher = match kill {
        Some(KillAt::Chunks(_)) => Some(t.connect().await),
        _ => None,
    };
    loop {
        if let Some(status) = child.try_wait().expect("poll relocate") {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            assert!(status.success(), "relocate failed ({status}) with no kill due:\n{log}");
            return Ended::Exited;
        }
        let due = match kill {
            Some(KillAt::Delay(d)) => started.elapsed() >= d,
            Some(KillAt::Chunks(n)) => match &mut watcher {
                Some(c) => chunk_rows_if_any(c).await >= n,
                None => false,
            },
            None => false,
        };
        if let (true, Some(at)) = (due, kill) {
            kill_now(&mut child);
            return Ended::Killed(at);
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
}

/// [`chunk_rows`], or 0 before the import created the schema.
async fn chunk_rows_if_any(c: &mut Conn) -> i64 {
    if c.has_table(CHUNK_TABLES[1]).await && c.has_table(CHUNK_TABLES[0]).await { chunk_rows(c).await } else { 0 }
}

fn kill_now(child: &mut Child) {
    // `Child::kill` is SIGKILL on Unix: no destructor, no rollback of ours.
    let _ = child.kill();
    let _ = child.wait();
}

/// Kills the import on copies of the base until `kills_wanted()` kills
/// landed, comparing each finished copy with the reference.
async fn killed_imports_equal_an_uninterrupted_one(kind: Kind) {
    let started = Instant::now();
    let setup = Setup::new(kind).await;
    let seed = std::env::var("RELOCATE_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(rand::random);
    eprintln!(
        "crash {kind:?}: RELOCATE_CRASH_SEED={seed}; uninterrupted import {:?}, {} chunk rows",
        setup.duration, setup.chunks
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let schema = Schema::load();
    let want = dump(&setup.reference, &schema).await;
    let (mut kills, mut trials) = (0, 0);
    while kills < kills_wanted() {
        trials += 1;
        let t = copy(&setup.template, kind).await;
        let mut history = Vec::new();
        loop {
            let kill = (history.len() < KILLS_PER_TRIAL && kills < kills_wanted()).then(|| {
                // Half after a delay (anywhere: start-up, mid-transaction,
                // between batches), half once some chunks committed.
                if rng.gen_bool(0.5) {
                    KillAt::Delay(setup.duration.mul_f64(rng.gen_range(0.0..1.1)))
                } else {
                    KillAt::Chunks(rng.gen_range(1..setup.chunks))
                }
            });
            let log = t.dir.path().join(format!("run{}.log", history.len()));
            match run(&t, &setup.export, kill, &log).await {
                Ended::Killed(at) => {
                    kills += 1;
                    history.push(at);
                }
                Ended::Exited => break,
            }
        }
        let got = dump(&t, &schema).await;
        if let Some(difference) = first_difference(&want, &got) {
            panic!("trial {trials} (RELOCATE_CRASH_SEED={seed}), killed at {history:?}: {difference}");
        }
    }
    eprintln!("crash {kind:?}: {kills} kills in {trials} trials, all equal, in {:?}", started.elapsed());
}

#[tokio::test]
async fn sqlite_killed_imports_equal_an_uninterrupted_one() {
    killed_imports_equal_an_uninterrupted_one(Kind::Sqlite).await;
}

#[tokio::test]
async fn postgres_killed_imports_equal_an_uninterrupted_one() {
    killed_imports_equal_an_uninterrupted_one(Kind::Postgres).await;
}

/// Starts the import on a copy of the base and returns once it committed
/// a few chunks, still running.
async fn import_under_way(setup: &Setup, kind: Kind) -> (Target, Child, PathBuf) {
    let t = copy(&setup.template, kind).await;
    let log = t.dir.path().join("run.log");
    let stderr = std::fs::File::create(&log).expect("create the run's log");
    let child =
        command(&args(&t, &setup.export, UUID)).stdout(Stdio::null()).stderr(stderr).spawn().expect("start relocate");
    let mut c = t.connect().await;
    while chunk_rows_if_any(&mut c).await < 3 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    close(c).await;
    (t, child, log)
}

async fn close(c: Conn) {
    match c {
        Conn::Sqlite(c) => c.close().await.expect("close"),
        Conn::Postgres(c) => c.close().await.expect("close"),
    }
}

/// Waits for `child` to exit, at most `limit`; its status and stderr.
async fn exited(mut child: Child, log: &Path, limit: Duration) -> (std::process::ExitStatus, String) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("poll relocate") {
            return (status, std::fs::read_to_string(log).unwrap_or_default());
        }
        if started.elapsed() > limit {
            kill_now(&mut child);
            panic!("relocate still ran after {limit:?}:\n{}", std::fs::read_to_string(log).unwrap_or_default());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The server ends the import's session mid-import: the import stops with
/// a clear error, and a rerun with the same UUID completes it.
#[tokio::test]
async fn postgres_connection_terminated_mid_import_is_resumable() {
    let setup = Setup::new(Kind::Postgres).await;
    let (t, child, log) = import_under_way(&setup, Kind::Postgres).await;
    let name = t.url.rsplit('/').next().expect("a database name").to_string();
    let mut admin = sqlx::PgConnection::connect(&crate::support::pg_admin_url()).await.expect("connect");
    let terminated: Vec<bool> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' \
         AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
    )))
    .fetch_all(&mut admin)
    .await
    .expect("terminate the import's connection");
    assert_eq!(terminated, [true], "one connection, the import's, was ended");
    let (status, stderr) = exited(child, &log, Duration::from_secs(60)).await;
    eprintln!("{status}: {stderr}");
    assert_eq!(status.code(), Some(6), "the database's doing (exit 6):\n{stderr}");
    assert!(stderr.contains("the connection to the database was lost"), "{stderr}");
    assert!(stderr.contains(&format!("rerun with --import-uuid {UUID}")), "{stderr}");
    import(&t, &setup.export, UUID).success();
    let schema = Schema::load();
    let (want, got) = (dump(&setup.reference, &schema).await, dump(&t, &schema).await);
    if let Some(difference) = first_difference(&want, &got) {
        panic!("resumed after the connection was ended: {difference}");
    }
}

/// Another program holds SQLite's write lock: the import gives up with a
/// clear error after the busy timeout (it does not hang), and once the lock
/// is gone a rerun with the same UUID completes it.
#[tokio::test]
async fn sqlite_locked_by_another_writer_is_resumable() {
    let setup = Setup::new(Kind::Sqlite).await;
    let (t, child, log) = import_under_way(&setup, Kind::Sqlite).await;
    let Conn::Sqlite(mut locker) = t.connect().await else { unreachable!("a SQLite target") };
    sqlx::query("BEGIN EXCLUSIVE").execute(&mut locker).await.expect("take the write lock");
    let (status, stderr) = exited(child, &log, Duration::from_secs(120)).await;
    eprintln!("{status}: {stderr}");
    assert_eq!(status.code(), Some(6), "the database's doing (exit 6):\n{stderr}");
    assert!(
        stderr.contains("another connection holds the SQLite database's write lock and did not release it"),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("rerun with --import-uuid {UUID}")), "{stderr}");
    sqlx::query("ROLLBACK").execute(&mut locker).await.expect("release the lock");
    locker.close().await.expect("close");
    import(&t, &setup.export, UUID).success();
    let schema = Schema::load();
    let (want, got) = (dump(&setup.reference, &schema).await, dump(&t, &schema).await);
    if let Some(difference) = first_difference(&want, &got) {
        panic!("resumed after the lock was released: {difference}");
    }
}

/// What the comparison needs of the schema: each model's table and the
/// tables its foreign keys point at (by column), from the first-party
/// plugins' descriptions.
struct Schema {
    table_of: HashMap<String, String>,
    /// table → (column, target table); self-references are left out (they
    /// keep exported pks, as in Sentry).
    foreign_keys: HashMap<String, Vec<(String, String)>>,
}

impl Schema {
    fn load() -> Schema {
        let config = relocate::plugin::RuntimeConfig {
            cache_dir: Some(crate::support::cache_home().join("relocate").join("components")),
            ..relocate::plugin::RuntimeConfig::default()
        };
        let mut host = relocate::plugin::PluginHost::new(config).expect("a plugin host");
        relocate::builtin::load(&mut host).expect("the first-party plugins");
        let mut table_of = HashMap::new();
        let mut models = Vec::new();
        for (_, info) in host.plugins() {
            for model in &info.models {
                table_of.insert(model.name.to_string(), model.table.to_string());
                models.push(model.clone());
            }
        }
        let mut foreign_keys: HashMap<String, Vec<(String, String)>> = HashMap::new();
        for model in &models {
            for fk in model.foreign_keys.iter().filter(|fk| fk.target != model.name) {
                if let Some(target) = table_of.get(fk.target.as_str()) {
                    let column = model.columns[fk.column].name.to_string();
                    foreign_keys.entry(model.table.to_string()).or_default().push((column, target.clone()));
                }
            }
        }
        Schema { table_of, foreign_keys }
    }
}

/// Every table's rows in id order, as text, normalized as the module says.
type Dump = BTreeMap<String, (Vec<String>, Vec<Vec<Option<String>>>)>;

async fn dump(t: &Target, schema: &Schema) -> Dump {
    let mut c = t.connect().await;
    let postgres = matches!(c, Conn::Postgres(_));
    if let Conn::Postgres(pg) = &mut c {
        sqlx::query("SET TimeZone = 'UTC'").execute(pg).await.expect("set the time zone");
    }
    let tables = c
        .strings(if postgres {
            "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1"
        } else {
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY 1"
        })
        .await;
    let start = import_start(&mut c).await;
    let mut out = Dump::new();
    for table in tables.into_iter().flatten() {
        let columns: Vec<String> = c
            .strings(&if postgres {
                format!(
                    "SELECT column_name::text FROM information_schema.columns WHERE table_schema = current_schema() \
                     AND table_name = '{table}' ORDER BY ordinal_position"
                )
            } else {
                format!("SELECT name FROM pragma_table_info('{table}') ORDER BY cid")
            })
            .await
            .into_iter()
            .flatten()
            .filter(|c| !(CHUNK_TABLES.contains(&table.as_str()) && c == "date_updated"))
            .collect();
        let select: Vec<String> = columns
            .iter()
            // Qualified, so that `ORDER BY t.id` sorts the number, not its text.
            .map(|c| if postgres { format!("t.\"{c}\"::text") } else { format!("CAST(t.\"{c}\" AS TEXT)") })
            .collect();
        let rows =
            text_rows(&mut c, &format!("SELECT {} FROM {table} t ORDER BY t.id", select.join(", ")), columns.len())
                .await;
        let rows = rows
            .into_iter()
            .map(|row| {
                row.into_iter().map(|v| v.map(|v| if start.contains(&v) { "<start>".into() } else { v })).collect()
            })
            .collect();
        out.insert(table, (columns, rows));
    }
    if postgres {
        by_rank(&mut out, schema);
    }
    out
}

/// The import's start as each kind of column holds it: the chunks' text
/// (SQLite), the plugins' ISO 8601 with milliseconds, PostgreSQL's text.
async fn import_start(c: &mut Conn) -> Vec<String> {
    let sql = match c {
        Conn::Sqlite(_) => format!("SELECT MIN(date_added) FROM {} WHERE import_uuid = '{UUID}'", CHUNK_TABLES[1]),
        Conn::Postgres(_) => format!(
            "SELECT MIN(date_added)::text FROM {} WHERE import_uuid = '{UUID}'::uuid \
             UNION ALL SELECT to_char(MIN(date_added), 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM {} \
             WHERE import_uuid = '{UUID}'::uuid",
            CHUNK_TABLES[1], CHUNK_TABLES[1]
        ),
    };
    let found: Vec<String> = c.strings(&sql).await.into_iter().flatten().collect();
    let mut forms = found.clone();
    for text in &found {
        if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
            forms.push(time.to_utc().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        }
    }
    assert!(!forms.is_empty(), "the import wrote control chunks");
    forms
}

async fn text_rows(c: &mut Conn, sql: &str, width: usize) -> Vec<Vec<Option<String>>> {
    use sqlx::Row as _;
    match c {
        Conn::Sqlite(c) => {
            let rows = sqlx::query(AssertSqlSafe(sql.to_string())).fetch_all(c).await.expect(sql);
            rows.iter().map(|r| (0..width).map(|i| r.get::<Option<String>, _>(i)).collect()).collect()
        }
        Conn::Postgres(c) => {
            let rows = sqlx::query(AssertSqlSafe(sql.to_string())).fetch_all(c).await.expect(sql);
            rows.iter().map(|r| (0..width).map(|i| r.get::<Option<String>, _>(i)).collect()).collect()
        }
    }
}

/// Replaces every id by its rank in its table, and every foreign key and
/// chunk-map pk by the rank of the row it names (PostgreSQL).
fn by_rank(dump: &mut Dump, schema: &Schema) {
    let ranks: HashMap<String, HashMap<String, String>> = dump
        .iter()
        .map(|(table, (columns, rows))| {
            let id = columns.iter().position(|c| c == "id").expect("an id column");
            let ids = rows.iter().enumerate().filter_map(|(rank, r)| Some((r[id].clone()?, format!("#{}", rank + 1))));
            (table.clone(), ids.collect())
        })
        .collect();
    let rank = |table: &str, pk: &str| ranks.get(table).and_then(|r| r.get(pk)).cloned();
    for (table, (columns, rows)) in dump.iter_mut() {
        let col = |name: &str| columns.iter().position(|c| c == name);
        let id = col("id").expect("an id column");
        let fks: Vec<(usize, &str)> = schema
            .foreign_keys
            .get(table)
            .map(|fks| fks.iter().filter_map(|(c, target)| Some((col(c)?, target.as_str()))).collect())
            .unwrap_or_default();
        let chunk = CHUNK_TABLES.contains(&table.as_str());
        for row in rows.iter_mut() {
            row[id] = rank(table, row[id].as_deref().unwrap_or_default());
            for &(c, target) in &fks {
                if let Some(pk) = &row[c] {
                    row[c] = Some(rank(target, pk).unwrap_or_else(|| pk.clone()));
                }
            }
            if !chunk {
                continue;
            }
            let model = row[col("model").expect("a model column")].clone().unwrap_or_default();
            let Some(target) = schema.table_of.get(&model) else { continue };
            for name in ["min_inserted_pk", "max_inserted_pk"] {
                let c = col(name).expect("a chunk column");
                if let Some(pk) = &row[c] {
                    row[c] = Some(rank(target, pk).unwrap_or_else(|| pk.clone()));
                }
            }
            for name in ["inserted_map", "existing_map", "overwrite_map"] {
                let c = col(name).expect("a chunk column");
                let Some(text) = &row[c] else { continue };
                let map: BTreeMap<String, i64> = serde_json::from_str(text).expect("a chunk map");
                let ranked: BTreeMap<String, String> = map
                    .into_iter()
                    .map(|(k, v)| (k, rank(target, &v.to_string()).unwrap_or_else(|| v.to_string())))
                    .collect();
                row[c] = Some(serde_json::to_string(&ranked).expect("serialize"));
            }
        }
    }
}

/// The first way `got` differs from `want`, described.
fn first_difference(want: &Dump, got: &Dump) -> Option<String> {
    let tables = |d: &Dump| d.keys().cloned().collect::<Vec<_>>();
    if tables(want) != tables(got) {
        return Some(format!("tables differ: {:?} vs {:?}", tables(want), tables(got)));
    }
    for (table, (columns, rows)) in want {
        let (got_columns, got_rows) = &got[table];
        if columns != got_columns {
            return Some(format!("{table}: columns {columns:?} vs {got_columns:?}"));
        }
        if rows.len() != got_rows.len() {
            return Some(format!("{table}: {} rows vs {}", rows.len(), got_rows.len()));
        }
        for (n, (a, b)) in rows.iter().zip(got_rows).enumerate() {
            if a != b {
                let cells: Vec<String> = columns
                    .iter()
                    .zip(a.iter().zip(b))
                    .filter(|(_, (x, y))| x != y)
                    .map(|(c, (x, y))| format!("{c}: {x:?} vs {y:?}"))
                    .collect();
                return Some(format!("{table} row {n} (in id order) differs: {}", cells.join("; ")));
            }
        }
    }
    None
}

//! End-to-end import at scale, against the databases' own bulk load.
//!
//! ```sh
//! cargo bench --bench scale -- [--records N] [--db sqlite|postgres|both] [--no-4n] [--no-encrypted]
//! cargo bench --bench scale -- --records 1000000        # the issue's 1M-record run
//! ```
//!
//! The default N is 20,000. Numbers from one run compare with each other (same
//! machine, same load), not across machines.
//!
//! Generates Sentry-shaped exports with `relocate::synth` (N and 4N records,
//! plain, and N encrypted), then runs the release `relocate` binary as a child
//! process on each database:
//! - `global N`: a Global import into a fresh database that has relocate's
//!   schema (`relocate db init`, timed apart and printed: the baseline's load
//!   starts from a schema too, and a relocation's target has one);
//! - `collide N`: the same export again, under another import UUID, into that
//!   database, in Organization scope (a Global import would empty the tables
//!   first): every username and slug collides;
//! - `global 4N`: a Global import of 4N records into a fresh database, for the
//!   per-record time ratio;
//! - `encrypted N`: a Global import of the encrypted export, for its peak RSS.
//!
//! After each Global import it times the database's own bulk load of the rows
//! the import left (every non-empty table, derived and import-chunk rows too)
//! into a fresh `relocate db init` database, same indexes and constraints:
//! PostgreSQL's `COPY ... FROM STDIN` of all tables in one transaction, in
//! foreign-key order; SQLite's one transaction with one prepared single-row
//! INSERT per table executed per row (rusqlite, with relocate's pragmas).
//!
//! Peak RSS is the importer's own: each child runs under a copy of this
//! binary that reads `getrusage(RUSAGE_CHILDREN)` once its only child ends.
//! PostgreSQL is `RELOCATE_TEST_PG` or `postgres://postgres@127.0.0.1:5432/postgres`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use futures_util::TryStreamExt;
use relocate::synth::{self, Config, Generated};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

const RELOCATE: &str = env!("CARGO_BIN_EXE_relocate");
/// Marks the re-executed copy of this binary that measures one child.
const MEASURE: &str = "__measure-child";

#[derive(Parser)]
#[command(about = "relocate end to end at scale, against COPY and a prepared-statement insert")]
struct Args {
    /// Records in the N export (4N is four times as many). The default
    /// finishes in a few minutes at today's speed.
    #[arg(long, default_value_t = 20_000)]
    records: u64,
    #[arg(long, value_enum, default_value_t = Dbs::Both)]
    db: Dbs,
    /// Skip the 4N import (and the per-record time ratio).
    #[arg(long)]
    no_4n: bool,
    /// Skip the encrypted import.
    #[arg(long)]
    no_encrypted: bool,
    /// Keep the exports and SQLite files here instead of a temp dir.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// What `cargo bench` passes to every bench binary.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Dbs {
    Sqlite,
    Postgres,
    Both,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sqlite,
    Postgres,
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some(MEASURE) {
        return measure_child(&argv[2..]);
    }
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scale bench failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `MEASURE OUT PROGRAM ARGS...`: runs PROGRAM (its output to ours), then
/// writes its wall time and peak RSS to OUT and exits with its exit code.
fn measure_child(args: &[String]) -> ExitCode {
    let [out, program, rest @ ..] = args else {
        return ExitCode::from(2);
    };
    let started = Instant::now();
    let status = match Command::new(program).args(rest).status() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot run {program}: {e}");
            return ExitCode::from(2);
        }
    };
    let secs = started.elapsed().as_secs_f64();
    // Only one child ever ran under this process, so this is its peak (KiB on Linux).
    let max_rss_kib =
        nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).map_or(0, |u| u.max_rss());
    if std::fs::write(out, format!("{secs} {max_rss_kib}")).is_err() {
        return ExitCode::from(2);
    }
    ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8)
}

/// One run of the importer.
struct Measured {
    secs: f64,
    rss_mb: f64,
    stdout: String,
}

fn relocate(args: &[&str], work: &Path) -> Result<Measured> {
    let rss_file = work.join("rss.txt");
    let output = Command::new(std::env::current_exe()?)
        .arg(MEASURE)
        .arg(&rss_file)
        .arg(RELOCATE)
        .args(args)
        .env("XDG_CACHE_HOME", work.join("cache"))
        .stdin(Stdio::null())
        .output()
        .context("run relocate")?;
    ensure!(
        output.status.success(),
        "relocate {} failed ({})\n{}\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let measured = std::fs::read_to_string(&rss_file)?;
    let (secs, kib) = measured.split_once(' ').context("measurement file")?;
    Ok(Measured {
        secs: secs.parse()?,
        rss_mb: kib.parse::<f64>()? / 1024.0,
        stdout: String::from_utf8_lossy(&output.stdout).into(),
    })
}

/// The totals of relocate's `--json` summary: inserted, existing, overwritten, dropped, skipped, resumed.
fn totals(stdout: &str) -> Vec<u64> {
    let Ok(json) = serde_json::from_str::<serde_json::Value>(stdout) else { return Vec::new() };
    ["inserted", "existing", "overwritten", "dropped", "skipped", "resumed"]
        .iter()
        .filter_map(|k| json["totals"][k].as_u64())
        .collect()
}

fn run(args: Args) -> Result<()> {
    let temp = tempfile::tempdir()?;
    let work = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => temp.path().to_path_buf(),
    };
    let n = args.records;
    println!("relocate scale bench: {} (release binary {RELOCATE})", chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"));
    let started = Instant::now();
    let plain = generate(&work, "n.json", Config { records: n, ..Config::default() })?;
    let big = if args.no_4n {
        None
    } else {
        Some(generate(&work, "4n.json", Config { records: 4 * n, ..Config::default() })?)
    };
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let encrypted = if args.no_encrypted {
        None
    } else {
        let config =
            Config { records: n, encrypt_to: Some(examples.join("fresh-install.pub.pem")), ..Config::default() };
        Some(generate(&work, "n.tar", config)?)
    };
    println!("generated in {:.1} s", started.elapsed().as_secs_f64());
    // Every run after this one finds the plugins compiled, as a user's second run does.
    let warm = relocate(&["plugins", "list"], &work)?;
    println!("plugins compiled and cached in {:.1} s\n", warm.secs);

    let kinds: &[Kind] = match args.db {
        Dbs::Sqlite => &[Kind::Sqlite],
        Dbs::Postgres => &[Kind::Postgres],
        Dbs::Both => &[Kind::Sqlite, Kind::Postgres],
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut report = Vec::new();
    for &kind in kinds {
        let label = match kind {
            Kind::Sqlite => "sqlite",
            Kind::Postgres => "postgres",
        };
        let mut rows = Vec::new();
        let mut per_record = Vec::new();
        // Each import's database gets relocate's schema before its timed
        // import, as the baseline's does before its load.
        let mut schema = Vec::new();

        let db = rt.block_on(Target::new(kind, &work, "n"))?;
        schema.push(db.init(&work)?);
        let global = import(&db, "global", &plain, &work, &[])?;
        let base = rt.block_on(baseline(&db, &work))?;
        per_record.push(global.secs / plain.0.records as f64);
        rows.push(Row::new("global N", &plain.0, &global).baseline(base));
        let collide = import(&db, "organizations", &plain, &work, &[])?;
        rows.push(Row::new("collide N (org scope, same export)", &plain.0, &collide));
        rt.block_on(db.drop_db());

        if let Some(big) = &big {
            let db = rt.block_on(Target::new(kind, &work, "4n"))?;
            schema.push(db.init(&work)?);
            let global = import(&db, "global", big, &work, &[])?;
            let base = rt.block_on(baseline(&db, &work))?;
            per_record.push(global.secs / big.0.records as f64);
            rows.push(Row::new("global 4N", &big.0, &global).baseline(base));
            rt.block_on(db.drop_db());
        }
        if let Some(enc) = &encrypted {
            let db = rt.block_on(Target::new(kind, &work, "enc"))?;
            schema.push(db.init(&work)?);
            let key = examples.join("fresh-install.key.pem").to_string_lossy().into_owned();
            let run = import(&db, "global", enc, &work, &["--decrypt-with", key.as_str()])?;
            rows.push(Row::new("encrypted N", &enc.0, &run));
            rt.block_on(db.drop_db());
        }
        report.push(Report { kind, label, rows, per_record, schema });
    }
    print_report(&report);
    Ok(())
}

fn generate(work: &Path, name: &str, config: Config) -> Result<(Generated, PathBuf)> {
    let path = work.join(name);
    let generated = synth::write(&config, &path)?;
    println!(
        "export {name}: {} records, {} organizations, {:.1} MB JSON, {:.1} MB on disk",
        generated.records,
        generated.tenants,
        generated.json_bytes as f64 / 1e6,
        generated.bytes as f64 / 1e6
    );
    Ok((generated, path))
}

/// `relocate import SCOPE` of an export into `db`, checked against the export's counts.
fn import(db: &Target, scope: &str, export: &(Generated, PathBuf), work: &Path, extra: &[&str]) -> Result<Measured> {
    let src = export.1.to_string_lossy().into_owned();
    let mut args = vec!["import", scope, src.as_str(), "--db", db.url.as_str(), "--no-prompt", "--seed", "1", "--json"];
    args.extend_from_slice(extra);
    let run = relocate(&args, work)?;
    let t = totals(&run.stdout);
    ensure!(t.len() == 6, "no summary from relocate:\n{}", run.stdout);
    let written = t[0] + t[1] + t[2];
    // Outside the Global scope, the instance's options are skipped.
    let skipped_ok = if scope == "global" { 0 } else { export.0.count("sentry.option") };
    ensure!(
        written + skipped_ok == export.0.records && t[3] == 0,
        "relocate import {scope} wrote {written} of {} records, dropped {}:\n{}",
        export.0.records,
        t[3],
        run.stdout
    );
    Ok(run)
}

struct Row {
    name: &'static str,
    records: u64,
    json_mb: f64,
    run_secs: f64,
    rss_mb: f64,
    baseline: Option<Baseline>,
}

impl Row {
    fn new(name: &'static str, export: &Generated, run: &Measured) -> Row {
        Row {
            name,
            records: export.records,
            json_mb: export.bytes as f64 / 1e6,
            run_secs: run.secs,
            rss_mb: run.rss_mb,
            baseline: None,
        }
    }

    fn baseline(mut self, b: Baseline) -> Row {
        self.baseline = Some(b);
        self
    }

    fn rate(&self) -> f64 {
        self.records as f64 / self.run_secs
    }
}

/// The database's own load of the rows an import left.
struct Baseline {
    rows: u64,
    secs: f64,
}

/// One database's runs.
struct Report {
    kind: Kind,
    label: &'static str,
    rows: Vec<Row>,
    per_record: Vec<f64>,
    /// `relocate db init` before each import, in seconds.
    schema: Vec<f64>,
}

fn print_report(report: &[Report]) {
    println!();
    println!(
        "{:<44} {:>9} {:>8} {:>10} {:>7} {:>8} {:>10} {:>10} {:>7}  target",
        "run", "records", "MB", "records/s", "MB/s", "RSS MB", "base rows", "base s", "e2e/base"
    );
    for Report { kind, label, rows, per_record, schema } in report {
        for row in rows {
            let (base_rows, base_secs, ratio) = match &row.baseline {
                Some(b) => (b.rows.to_string(), format!("{:.2}", b.secs), format!("{:.1}x", row.run_secs / b.secs)),
                None => ("-".into(), "-".into(), "-".into()),
            };
            let target = match (kind, row.name) {
                (Kind::Sqlite, n) if n.starts_with("global") => {
                    format!("e2e/base <= 2.0x, >= 300000 rec/s ({:.2}x of it)", row.rate() / 300_000.0)
                }
                (Kind::Postgres, n) if n.starts_with("global") => "e2e/base <= 2.0x (>= 0.5x COPY's rate)".into(),
                (_, n) if n.starts_with("collide") => {
                    format!(">= 100000 rec/s ({:.2}x of it)", row.rate() / 100_000.0)
                }
                _ => format!("RSS < 400 MB for a 1 GB export ({:.0} MB here)", row.json_mb),
            };
            println!(
                "{:<44} {:>9} {:>8.1} {:>10.0} {:>7.2} {:>8.0} {:>10} {:>10} {:>7}  {target}",
                format!("{label} {}", row.name),
                row.records,
                row.json_mb,
                row.rate(),
                row.json_mb / row.run_secs,
                row.rss_mb,
                base_rows,
                base_secs,
                ratio
            );
        }
        if let [n, n4] = per_record[..] {
            println!("{label} N -> 4N per-record time: {:.2}x (target <= 1.25x)", n4 / n);
        }
        let schema: Vec<String> = schema.iter().map(|s| format!("{s:.2}")).collect();
        println!(
            "{label} schema: `relocate db init` before each import, not in its time (as for the baseline): {} s",
            schema.join(" / ")
        );
    }
    println!(
        "baselines: postgres = COPY FROM STDIN of every table in one transaction; sqlite = one transaction, one prepared single-row INSERT per table (rusqlite)"
    );
}

/// A fresh, empty database; PostgreSQL's is dropped by `drop_db`.
struct Target {
    kind: Kind,
    url: String,
    pg_name: Option<String>,
}

impl Target {
    async fn new(kind: Kind, work: &Path, name: &str) -> Result<Target> {
        match kind {
            Kind::Sqlite => {
                let path = work.join(format!("{name}-{}.db", uuid::Uuid::new_v4().simple()));
                Ok(Target { kind, url: format!("sqlite:{}", path.display()), pg_name: None })
            }
            Kind::Postgres => {
                let db = format!("relocate_bench_{name}_{}", uuid::Uuid::new_v4().simple());
                let admin = pg_admin();
                let mut c = PgConnection::connect(&admin).await.with_context(|| format!("PostgreSQL at {admin}"))?;
                sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {db}"))).execute(&mut c).await?;
                let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
                Ok(Target { kind, url: format!("{base}/{db}"), pg_name: Some(db) })
            }
        }
    }

    /// Creates relocate's schema with `relocate db init`; its time.
    fn init(&self, work: &Path) -> Result<f64> {
        let started = Instant::now();
        let init = Command::new(RELOCATE)
            .args(["db", "init", "--db", &self.url])
            .env("XDG_CACHE_HOME", work.join("cache"))
            .output()?;
        ensure!(init.status.success(), "relocate db init: {}", String::from_utf8_lossy(&init.stderr));
        Ok(started.elapsed().as_secs_f64())
    }

    fn sqlite_path(&self) -> &str {
        self.url.trim_start_matches("sqlite:")
    }

    async fn drop_db(&self) {
        match &self.pg_name {
            Some(db) => {
                if let Ok(mut c) = PgConnection::connect(&pg_admin()).await {
                    let _ = sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")))
                        .execute(&mut c)
                        .await;
                }
            }
            None => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", self.sqlite_path()));
                }
            }
        }
    }
}

fn pg_admin() -> String {
    std::env::var("RELOCATE_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Loads the rows `source` holds into a fresh `relocate db init` database
/// with the database's own bulk path; returns the rows and the load time.
async fn baseline(source: &Target, work: &Path) -> Result<Baseline> {
    let fresh = Target::new(source.kind, work, "baseline").await?;
    fresh.init(work)?;
    let result = match source.kind {
        Kind::Postgres => copy_baseline(&source.url, &fresh.url, work).await,
        Kind::Sqlite => sqlite_baseline(source.sqlite_path(), fresh.sqlite_path()),
    };
    fresh.drop_db().await;
    result
}

/// Orders tables so that every foreign key points to an earlier one.
fn dependency_order(tables: &[String], edges: &[(String, String)]) -> Result<Vec<String>> {
    let mut deps: BTreeMap<&str, BTreeSet<&str>> = tables.iter().map(|t| (t.as_str(), BTreeSet::new())).collect();
    for (from, to) in edges {
        if from != to
            && deps.contains_key(to.as_str())
            && let Some(d) = deps.get_mut(from.as_str())
        {
            d.insert(to.as_str());
        }
    }
    let mut order = Vec::new();
    while !deps.is_empty() {
        let ready: Vec<&str> = deps.iter().filter(|(_, d)| d.is_empty()).map(|(t, _)| *t).collect();
        if ready.is_empty() {
            bail!("foreign-key cycle among {:?}", deps.keys().collect::<Vec<_>>());
        }
        for t in ready {
            deps.remove(t);
            deps.values_mut().for_each(|d| {
                d.remove(t);
            });
            order.push(t.to_string());
        }
    }
    Ok(order)
}

async fn copy_baseline(source: &str, fresh: &str, work: &Path) -> Result<Baseline> {
    let mut src = PgConnection::connect(source).await?;
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema()")
            .fetch_all(&mut src)
            .await?;
    let edges: Vec<(String, String)> = sqlx::query_as(
        "SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint
         WHERE contype = 'f' AND connamespace = current_schema()::regnamespace",
    )
    .fetch_all(&mut src)
    .await?;
    let mut dumped = Vec::new();
    let mut rows = 0;
    for table in dependency_order(&tables, &edges)? {
        let count: i64 =
            sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM \"{table}\""))).fetch_one(&mut src).await?;
        if count == 0 {
            continue;
        }
        rows += count as u64;
        let path = work.join(format!("copy-{table}.txt"));
        let mut file = BufWriter::new(File::create(&path)?);
        let mut stream = src.copy_out_raw(&format!("COPY \"{table}\" TO STDOUT")).await?;
        while let Some(bytes) = stream.try_next().await? {
            file.write_all(&bytes)?;
        }
        drop(stream);
        file.flush()?;
        dumped.push((table, path));
    }
    src.close().await?;

    let mut dst = PgConnection::connect(fresh).await?;
    // As relocate's own connections: without it every COPY's end waits
    // for the server's delayed ACK.
    relocate::db::no_delay(&mut dst).await?;
    let mut buf = vec![0u8; 1 << 20];
    let started = Instant::now();
    sqlx::query("BEGIN").execute(&mut dst).await?;
    for (table, path) in &dumped {
        let mut copy = dst.copy_in_raw(&format!("COPY \"{table}\" FROM STDIN")).await?;
        let mut file = File::open(path)?;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            copy.send(&buf[..n]).await?;
        }
        copy.finish().await.with_context(|| format!("COPY {table}"))?;
    }
    sqlx::query("COMMIT").execute(&mut dst).await?;
    let secs = started.elapsed().as_secs_f64();
    for (_, path) in &dumped {
        let _ = std::fs::remove_file(path);
    }
    Ok(Baseline { rows, secs })
}

fn sqlite_baseline(source: &str, fresh: &str) -> Result<Baseline> {
    use rusqlite::types::Value;
    let src = rusqlite::Connection::open_with_flags(source, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let tables: Vec<String> = src
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut edges = Vec::new();
    for t in &tables {
        let mut stmt = src.prepare("SELECT \"table\" FROM pragma_foreign_key_list(?1)")?;
        for to in stmt.query_map([t], |r| r.get::<_, String>(0))? {
            edges.push((t.clone(), to?));
        }
    }
    let mut dst = rusqlite::Connection::open(fresh)?;
    // relocate's own connection settings (host/src/db/sqlite.rs).
    dst.pragma_update(None, "journal_mode", "WAL")?;
    dst.pragma_update(None, "synchronous", "NORMAL")?;
    dst.pragma_update(None, "foreign_keys", true)?;
    let mut rows = 0;
    let mut secs = 0.0;
    let tx = dst.transaction()?;
    for table in dependency_order(&tables, &edges)? {
        // Read outside the clock; only the inserts count.
        let mut select = src.prepare(&format!("SELECT * FROM \"{table}\""))?;
        let columns: Vec<String> = select.column_names().into_iter().map(String::from).collect();
        let width = columns.len();
        let data: Vec<Vec<Value>> =
            select.query_map([], |r| (0..width).map(|i| r.get::<_, Value>(i)).collect())?.collect::<Result<_, _>>()?;
        if data.is_empty() {
            continue;
        }
        rows += data.len() as u64;
        let started = Instant::now();
        let names = columns.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", ");
        let marks = vec!["?"; width].join(", ");
        let mut insert = tx.prepare(&format!("INSERT INTO \"{table}\" ({names}) VALUES ({marks})"))?;
        for row in &data {
            insert.execute(rusqlite::params_from_iter(row.iter()))?;
        }
        secs += started.elapsed().as_secs_f64();
    }
    let started = Instant::now();
    tx.commit()?;
    secs += started.elapsed().as_secs_f64();
    Ok(Baseline { rows, secs })
}

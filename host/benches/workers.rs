//! Scale-out: jobs per hour and records per second for 1, 2 and 3
//! `relocate worker`s importing queued jobs into one PostgreSQL database.
//!
//! ```sh
//! cargo bench --bench workers -- [--jobs J] [--records N] [--workers 1,2,3] [--collide F]
//! ```
//!
//! Generates J Sentry-shaped exports of N records (`relocate::synth`, seeds
//! 1..J; by default their names do not collide, so no job loses a race and
//! retries), then per worker count: a fresh queue (its own `--nats-prefix`)
//! and a fresh database, J `relocate submit`s in Organization scope, and W
//! release `relocate worker` processes started at once. The clock runs from
//! the workers' start until every job's state is final; then the workers
//! get SIGTERM. The default (6 jobs of 5,000 records) takes about a minute.
//! NATS is `RELOCATE_TEST_NATS` (default `nats://127.0.0.1:4222`),
//! PostgreSQL `RELOCATE_TEST_PG` (default `postgres://postgres@127.0.0.1:5432/postgres`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use relocate::jobs::Status;
use relocate::jobs::queue::{Queue, Settings};
use relocate::synth::{self, Config};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

const RELOCATE: &str = env!("CARGO_BIN_EXE_relocate");

#[derive(Parser)]
#[command(about = "relocate workers on NATS JetStream: jobs/hour and records/s against one PostgreSQL")]
struct Args {
    /// Jobs (exports) per run.
    #[arg(long, default_value_t = 6)]
    jobs: u64,
    /// Records per export.
    #[arg(long, default_value_t = 5_000)]
    records: u64,
    /// Worker counts to run, one run each.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    workers: Vec<usize>,
    /// Fraction of usernames and slugs every export shares with the others
    /// (lost races then retry, as in production).
    #[arg(long, default_value_t = 0.0)]
    collide: f64,
    /// Records per batch (as `relocate submit --batch-size`).
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// What `cargo bench` passes to every bench binary.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("workers bench failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn nats_url() -> String {
    std::env::var("RELOCATE_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

fn pg_admin() -> String {
    std::env::var("RELOCATE_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// One run's figures.
struct Measured {
    workers: usize,
    secs: f64,
    records: u64,
    jobs: u64,
    retries: u64,
}

fn run(args: Args) -> Result<()> {
    let work = tempfile::tempdir()?;
    let work = work.path();
    println!("relocate workers bench: {} (release binary {RELOCATE})", chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"));
    let mut exports = Vec::new();
    let mut records = 0;
    for n in 1..=args.jobs {
        let path = work.join(format!("export-{n}.json"));
        let config = Config {
            records: args.records,
            seed: n,
            collide_fraction: args.collide,
            collide_with: 0,
            encrypt_to: None,
        };
        records += synth::write(&config, &path)?.records;
        exports.push(path);
    }
    println!("{} exports, {records} records in all", args.jobs);
    // Every worker finds the plugins compiled, as on a machine's second run.
    let status = Command::new(RELOCATE)
        .args(["plugins", "list"])
        .env("XDG_CACHE_HOME", work.join("cache"))
        .stdout(Stdio::null())
        .status()?;
    ensure!(status.success(), "relocate plugins list failed");

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let mut results = Vec::new();
    for &workers in &args.workers {
        let m = rt.block_on(run_once(&args, workers, &exports, records, work))?;
        println!("{} worker(s): {} jobs in {:.1} s, {} retries", m.workers, m.jobs, m.secs, m.retries);
        results.push(m);
    }
    println!("\n| workers | jobs | records | seconds | jobs/hour | records/s | retries |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for m in &results {
        println!(
            "| {} | {} | {} | {:.1} | {:.0} | {:.0} | {} |",
            m.workers,
            m.jobs,
            m.records,
            m.secs,
            m.jobs as f64 * 3600.0 / m.secs,
            m.records as f64 / m.secs,
            m.retries
        );
    }
    Ok(())
}

async fn run_once(args: &Args, workers: usize, exports: &[PathBuf], records: u64, work: &Path) -> Result<Measured> {
    let prefix = format!("bench{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let queue = Queue::connect(&nats_url(), &Settings { prefix: prefix.clone(), ..Settings::default() })
        .await
        .with_context(|| format!("NATS at {}", nats_url()))?;
    let db = format!("relocate_bench_w{workers}_{}", uuid::Uuid::new_v4().simple());
    let admin = pg_admin();
    let mut c = PgConnection::connect(&admin).await.with_context(|| format!("PostgreSQL at {admin}"))?;
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {db}"))).execute(&mut c).await?;
    let url = format!("{}/{db}", admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b));
    let nats = nats_url();

    let result = async {
        let batch = args.batch_size.to_string();
        // A seed per job: two imports with one seed generate the same keys and tokens.
        for (n, export) in exports.iter().enumerate() {
            let (export, seed) = (export.to_string_lossy(), (n + 1).to_string());
            let out = Command::new(RELOCATE)
                .args(["submit", &export, "--scope", "organizations", "--seed", &seed, "--batch-size", &batch])
                .args(["--nats", &nats, "--nats-prefix", &prefix])
                .output()?;
            ensure!(out.status.success(), "submit: {}", String::from_utf8_lossy(&out.stderr));
        }
        let started = Instant::now();
        let mut children: Vec<Child> = (0..workers)
            .map(|w| {
                Command::new(RELOCATE)
                    .args(["worker", "--db", &url, "--nats", &nats, "--nats-prefix", &prefix])
                    .args(["--worker-id", &format!("w{w}")])
                    .env("XDG_CACHE_HOME", work.join("cache"))
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
            })
            .collect::<std::io::Result<_>>()?;
        let states = loop {
            let states = queue.states().await?;
            if states.len() == exports.len() && states.iter().all(|s| s.status.is_final()) {
                break states;
            }
            if started.elapsed() > Duration::from_secs(3600) {
                bail!("jobs not done after an hour");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let secs = started.elapsed().as_secs_f64();
        for child in &mut children {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        for child in &mut children {
            child.wait()?;
        }
        let failed: Vec<_> = states.iter().filter(|s| s.status != Status::Done).collect();
        ensure!(failed.is_empty(), "jobs failed: {failed:#?}");
        let retries = states.iter().map(|s| u64::from(s.attempts.saturating_sub(1))).sum();
        Ok(Measured { workers, secs, records, jobs: exports.len() as u64, retries })
    }
    .await;
    let _ = sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))).execute(&mut c).await;
    let _ = queue.destroy().await;
    result
}

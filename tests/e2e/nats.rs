//! Scale-out on NATS JetStream: `relocate submit`, `worker` and `jobs`
//! against the real NATS server and PostgreSQL, with real worker processes
//! that are killed and stopped mid-import.
//!
//! NATS is `RELOCATE_TEST_NATS` (default `nats://127.0.0.1:4222`, JetStream
//! on); each test has a queue of its own (`--nats-prefix`), deleted at the end.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use relocate::jobs::queue::{Names, Queue, Settings};
use relocate::jobs::{JobState, Outcome, Progress, Status};
use relocate::synth::{self, Config};

use crate::support::{Kind, Target, fixture, relocate};

pub fn nats_url() -> String {
    std::env::var("RELOCATE_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// Seconds a worker may be silent before its job goes to another: short, so
/// that a killed worker's job comes back soon.
const ACK_WAIT: &str = "4";

/// A queue of the test's own, deleted when the test ends.
struct TestQueue {
    prefix: String,
    queue: Queue,
}

impl TestQueue {
    async fn new() -> TestQueue {
        let prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let settings = Settings {
            prefix: prefix.clone(),
            ack_wait: Duration::from_secs(4),
            max_deliver: 5,
            ..Settings::default()
        };
        let queue = Queue::connect(&nats_url(), &settings).await.unwrap_or_else(|e| {
            panic!(
                "NATS with JetStream is not reachable at {} ({e}): run scripts/setup or set RELOCATE_TEST_NATS",
                nats_url()
            )
        });
        TestQueue { prefix, queue }
    }

    fn args<'a>(&'a self, url: &'a str) -> [&'a str; 6] {
        ["--nats", url, "--nats-prefix", &self.prefix, "--ack-wait", ACK_WAIT]
    }

    /// `relocate submit`; returns the import UUID it printed.
    fn submit(&self, src: &Path, extra: &[&str]) -> uuid::Uuid {
        let url = nats_url();
        let mut args = vec!["submit", src.to_str().unwrap(), "--scope", "organizations"];
        args.extend(extra);
        args.extend(self.args(&url));
        let run = relocate(&args);
        run.success();
        uuid::Uuid::parse_str(run.stdout.trim()).expect("submit prints the import UUID")
    }

    fn worker(&self, db: &str, id: &str, extra: &[&str], logs: &Path) -> Worker {
        let url = nats_url();
        let log = logs.join(format!("{id}.log"));
        let out = std::fs::File::create(&log).expect("a log file");
        let child = Command::new(env!("CARGO_BIN_EXE_relocate"))
            .args(["worker", "--db", db, "--worker-id", id])
            .args(self.args(&url))
            .args(extra)
            .env("XDG_CACHE_HOME", Path::new(env!("CARGO_TARGET_TMPDIR")).join("cache"))
            .env_remove("RELOCATE_DB")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("a log file"))
            .stderr(out)
            .spawn()
            .expect("start a worker");
        Worker { id: id.into(), child, log }
    }

    async fn states(&self) -> BTreeMap<uuid::Uuid, JobState> {
        self.queue.states().await.expect("the job states").into_iter().map(|s| (s.import_uuid, s)).collect()
    }

    /// Waits until every job in `uuids` is done or failed.
    async fn wait_final(
        &self,
        uuids: &[uuid::Uuid],
        timeout: Duration,
        workers: &[&Worker],
    ) -> BTreeMap<uuid::Uuid, JobState> {
        let started = Instant::now();
        loop {
            let states = self.states().await;
            if uuids.iter().all(|u| states.get(u).is_some_and(|s| s.status.is_final())) {
                return states;
            }
            assert!(started.elapsed() < timeout, "jobs not finished after {timeout:?}: {states:#?}\n{}", logs(workers));
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    async fn subscribe(&self, subject: String) -> async_nats::Subscriber {
        self.queue.client().subscribe(subject).await.expect("subscribe")
    }

    /// Messages waiting in the jobs stream.
    async fn jobs_in_stream(&self) -> u64 {
        let js = async_nats::jetstream::new(self.queue.client().clone());
        let mut stream = js.get_stream(Names::new(&self.prefix).unwrap().stream()).await.expect("the jobs stream");
        stream.info().await.expect("stream info").state.messages
    }
}

impl Drop for TestQueue {
    fn drop(&mut self) {
        let streams = Names::new(&self.prefix).unwrap().streams();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let js = async_nats::jetstream::new(async_nats::connect(nats_url()).await.ok()?);
                for name in streams {
                    let _ = js.delete_stream(&name).await;
                }
                Some(())
            })
        })
        .join();
    }
}

/// A `relocate worker` process, killed if still running when dropped.
struct Worker {
    id: String,
    child: Child,
    log: PathBuf,
}

impl Worker {
    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal the worker");
    }

    /// Waits for the worker to exit; its exit code.
    fn wait(&mut self, timeout: Duration) -> i32 {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the worker") {
                return status.code().unwrap_or(-1);
            }
            assert!(
                started.elapsed() < timeout,
                "worker {} still running after {timeout:?}\n{}",
                self.id,
                logs(&[self])
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn logs(workers: &[&Worker]) -> String {
    workers.iter().map(|w| format!("--- worker {}\n{}", w.id, w.log())).collect()
}

/// Waits for a progress message some way into an import (a batch or more
/// committed, some left); returns it.
async fn mid_import(progress: &mut async_nats::Subscriber, workers: &[&Worker]) -> Progress {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, progress.next()).await;
        let Ok(Some(message)) = message else {
            panic!("no progress in the middle of an import\n{}", logs(workers));
        };
        let p: Progress = serde_json::from_slice(&message.payload).expect("a progress message");
        if p.total > 0 && p.done >= p.total / 3 && p.done + 100 < p.total {
            return p;
        }
    }
}

/// Every table's row count.
async fn table_counts(t: &Target) -> BTreeMap<String, i64> {
    let tables = t.strings("SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema()").await;
    let mut counts = BTreeMap::new();
    for table in tables.into_iter().flatten() {
        counts.insert(table.clone(), t.count(&table).await);
    }
    counts
}

/// Every chunk as `uuid model min..max`, in order.
async fn chunks(t: &Target) -> Vec<(String, String, i64, i64)> {
    let mut all = Vec::new();
    for table in ["sentry_regionimportchunk", "sentry_controlimportchunk"] {
        let keys = t
            .strings(&format!(
                "SELECT import_uuid::text || ' ' || model FROM {table} ORDER BY import_uuid, model, min_ordinal"
            ))
            .await;
        let mins = t.i64s(&format!("SELECT min_ordinal FROM {table} ORDER BY import_uuid, model, min_ordinal")).await;
        let maxs = t.i64s(&format!("SELECT max_ordinal FROM {table} ORDER BY import_uuid, model, min_ordinal")).await;
        for ((key, min), max) in keys.into_iter().zip(mins).zip(maxs) {
            let key = key.expect("a key");
            let (uuid, model) = key.split_once(' ').expect("uuid and model");
            all.push((uuid.to_string(), model.to_string(), min, max));
        }
    }
    all.sort();
    all
}

/// Every unique index's columns hold no value twice, and usernames and
/// slugs are distinct ignoring case (as the plugins' questions see them).
async fn assert_unique(t: &Target) {
    let indexes = t
        .strings(
            "SELECT quote_ident(c.relname) || ':' || string_agg(quote_ident(a.attname), ',' ORDER BY k.ord) \
             FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema() \
             CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum \
             WHERE i.indisunique GROUP BY i.indexrelid, c.relname",
        )
        .await;
    assert!(indexes.len() > 10, "unique indexes: {indexes:?}");
    for index in indexes.into_iter().flatten() {
        let (table, columns) = index.split_once(':').expect("table:columns");
        // A unique index lets NULLs repeat.
        let not_null = columns.split(',').map(|c| format!("{c} IS NOT NULL")).collect::<Vec<_>>().join(" AND ");
        let sql = format!(
            "SELECT COUNT(*) FROM (SELECT {columns} FROM {table} WHERE {not_null} GROUP BY {columns} HAVING COUNT(*) > 1) d"
        );
        assert_eq!(t.i64s(&sql).await, [0], "{table} ({columns}) holds a value twice");
    }
    for (table, column) in [("auth_user", "username"), ("sentry_organization", "slug")] {
        let sql = format!("SELECT COUNT(*) - COUNT(DISTINCT lower({column})) FROM {table}");
        assert_eq!(t.i64s(&sql).await, [0], "{table}.{column} holds a value twice, ignoring case");
    }
}

/// Six exports whose usernames and slugs collide, imported by three workers
/// into one PostgreSQL database while one of them is killed: every job
/// ends done, and the database holds what importing the six one after
/// another holds, chunk for chunk.
#[tokio::test]
async fn workers_import_colliding_exports_exactly_once_despite_a_kill() {
    let queue = TestQueue::new().await;
    let shared = Target::new(Kind::Postgres).await;
    let serial = Target::new(Kind::Postgres).await;
    let dir = shared.dir.path();
    let mut exports = Vec::new();
    for n in 1..=6u64 {
        let path = dir.join(format!("export-{n}.json"));
        let config = Config { records: 1000, seed: n, collide_fraction: 0.5, collide_with: 0, encrypt_to: None };
        synth::write(&config, &path).expect("generate an export");
        exports.push(path);
    }
    let mut progress = queue.subscribe(format!("{}.imports.*.progress", queue.prefix)).await;
    // A seed per import: two imports with one seed generate the same keys
    // and tokens (a project key's, say), which collide.
    let seeds: Vec<String> = (1..=exports.len()).map(|n| n.to_string()).collect();
    let uuids: Vec<uuid::Uuid> =
        exports.iter().zip(&seeds).map(|(p, seed)| queue.submit(p, &["--batch-size", "20", "--seed", seed])).collect();
    let started = Instant::now();
    let mut workers: Vec<Worker> =
        ["w1", "w2", "w3"].iter().map(|id| queue.worker(&shared.url, id, &[], dir)).collect();

    // Kill a worker that is a third or more into an import.
    let refs: Vec<&Worker> = workers.iter().collect();
    let p = mid_import(&mut progress, &refs).await;
    let victim = workers.iter().position(|w| w.id == p.worker).expect("a known worker");
    workers[victim].child.kill().expect("kill the worker");
    workers[victim].wait(Duration::from_secs(10));
    let killed = p.import_uuid;

    let refs: Vec<&Worker> = workers.iter().collect();
    let states = queue.wait_final(&uuids, Duration::from_secs(100), &refs).await;
    let took = started.elapsed();
    for uuid in &uuids {
        let s = &states[uuid];
        assert_eq!(s.status, Status::Done, "{s:#?}\n{}", logs(&refs));
        assert!(s.summary.is_some() && s.finished_at.is_some(), "{s:#?}");
    }
    let resumed = &states[&killed];
    assert!(resumed.attempts >= 2, "the killed worker's job ran again: {resumed:#?}");
    assert!(
        resumed.summary.as_ref().unwrap()["totals"]["resumed"].as_u64().unwrap() > 0,
        "the retry resumed the killed run's batches: {resumed:#?}"
    );
    assert_eq!(queue.jobs_in_stream().await, 0, "every job acked");

    // The survivors stop on SIGTERM while idle.
    for w in workers.iter_mut().filter(|w| w.id != p.worker) {
        w.signal(nix::sys::signal::Signal::SIGTERM);
        assert_eq!(w.wait(Duration::from_secs(15)), 0, "{}", w.log());
    }
    let all_logs = logs(&workers.iter().collect::<Vec<_>>());
    eprintln!("{} jobs in {took:?}\n{all_logs}", uuids.len());

    // The same six, one after another, in one process, same UUIDs and seeds.
    for ((path, uuid), seed) in exports.iter().zip(&uuids).zip(&seeds) {
        let uuid = uuid.to_string();
        serial
            .relocate(&[
                "import",
                "organizations",
                path.to_str().unwrap(),
                "--import-uuid",
                &uuid,
                "--seed",
                seed,
                "--batch-size",
                "20",
                "--silent",
            ])
            .success();
    }
    let (got, want) = (table_counts(&shared).await, table_counts(&serial).await);
    assert_eq!(got, want, "per-table rows: workers vs one process\n{all_logs}");
    assert!(want["auth_user"] > 0 && want["sentry_organization"] > 0);
    assert_unique(&shared).await;

    let (got, want) = (chunks(&shared).await, chunks(&serial).await);
    for pair in got.windows(2) {
        let ((u1, m1, _, max1), (u2, m2, min2, _)) = (&pair[0], &pair[1]);
        assert!(u1 != u2 || m1 != m2 || max1 < min2, "overlapping chunks: {pair:?}");
    }
    assert_eq!(got, want, "each import's chunks cover its records once, as in one process");

    // `relocate jobs` sees them all done.
    let url = nats_url();
    let mut args = vec!["jobs", "--json"];
    args.extend(queue.args(&url));
    let run = relocate(&args);
    run.success();
    let listed: Vec<JobState> = serde_json::from_str(&run.stdout).expect("jobs --json");
    assert_eq!(listed.len(), 6);
    assert!(listed.iter().all(|s| s.status == Status::Done), "{listed:#?}");
}

/// A job that can never succeed (the worker's key does not open the
/// tarball) is terminated on its first attempt, its findings published on
/// its result subject and kept in its state.
#[tokio::test]
async fn a_job_with_the_wrong_key_fails_once_with_its_findings() {
    let queue = TestQueue::new().await;
    let target = Target::new(Kind::Postgres).await;
    let uuid = uuid::Uuid::new_v4();
    let mut result = queue.subscribe(Names::new(&queue.prefix).unwrap().result(uuid)).await;
    queue.submit(&fixture("crypto/fresh-install.tar"), &["--import-uuid", &uuid.to_string()]);
    let wrong_key = fixture("crypto/other-private.pem");
    let mut worker =
        queue.worker(&target.url, "w1", &["--decrypt-with", wrong_key.to_str().unwrap()], target.dir.path());

    let message = tokio::time::timeout(Duration::from_secs(60), result.next()).await;
    let Ok(Some(message)) = message else { panic!("no result\n{}", worker.log()) };
    let outcome: Outcome = serde_json::from_slice(&message.payload).expect("an outcome");
    assert_eq!((outcome.status, outcome.attempts), (Status::Failed, 1), "{outcome:#?}");
    let findings = outcome.findings.expect("findings");
    let reason = findings[0]["reason"].as_str().expect("a reason");
    assert!(reason.contains("does not match"), "{findings:#}");
    assert_eq!(findings[0]["finding"], "RpcImportError");

    let state = queue.queue.state(uuid).await.expect("read the state").expect("a state");
    assert_eq!((state.status, state.attempts), (Status::Failed, 1), "{state:#?}");
    assert_eq!(state.findings.as_ref(), Some(&findings));
    // Terminated: gone from the queue (the worker sends `Term` just after the
    // result), never delivered again.
    for _ in 0..50 {
        if queue.jobs_in_stream().await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(queue.jobs_in_stream().await, 0);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(queue.queue.state(uuid).await.unwrap().unwrap().attempts, 1, "{}", worker.log());
    assert_eq!(target.count("auth_user").await, 0);

    worker.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(worker.wait(Duration::from_secs(15)), 0, "{}", worker.log());
}

/// SIGTERM stops a worker after its current batch and gives the job back
/// at once; the next worker resumes it, and the database ends as one
/// uninterrupted import leaves it.
#[tokio::test]
async fn sigterm_gives_the_job_back_after_a_batch_and_another_worker_resumes() {
    let queue = TestQueue::new().await;
    let target = Target::new(Kind::Postgres).await;
    let serial = Target::new(Kind::Postgres).await;
    let dir = target.dir.path();
    let export = dir.join("export.json");
    synth::write(&Config { records: 1500, ..Config::default() }, &export).expect("generate an export");
    let mut progress = queue.subscribe(format!("{}.imports.*.progress", queue.prefix)).await;
    let uuid = queue.submit(&export, &["--batch-size", "20", "--seed", "7"]);
    let mut first = queue.worker(&target.url, "w1", &[], dir);
    mid_import(&mut progress, &[&first]).await;

    first.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(first.wait(Duration::from_secs(30)), 0, "{}", first.log());
    assert!(first.log().contains("given back"), "{}", first.log());
    let state = queue.queue.state(uuid).await.unwrap().unwrap();
    assert_eq!((state.status, state.attempts), (Status::Queued, 1), "{state:#?}");
    assert_eq!(queue.jobs_in_stream().await, 1, "the job is back in the queue");

    let second = queue.worker(&target.url, "w2", &[], dir);
    let states = queue.wait_final(&[uuid], Duration::from_secs(60), &[&first, &second]).await;
    let state = &states[&uuid];
    assert_eq!((state.status, state.attempts, state.worker.as_deref()), (Status::Done, 2, Some("w2")), "{state:#?}");
    assert!(state.summary.as_ref().unwrap()["totals"]["resumed"].as_u64().unwrap() > 0, "{state:#?}");
    // `relocate status` shows the job beside the chunks it wrote.
    let url = nats_url();
    let status = crate::support::relocate(&[
        "status",
        "--db",
        &target.url,
        &uuid.to_string(),
        "--nats",
        &url,
        "--nats-prefix",
        &queue.prefix,
    ]);
    status.success();
    assert!(status.stdout.contains(&format!("job {uuid}: done after 2 attempt(s) on w2;")), "{}", status.stdout);
    assert!(status.stdout.contains(&format!("import {uuid}: ")), "{}", status.stdout);

    let uuid = uuid.to_string();
    let args = [
        "import",
        "organizations",
        export.to_str().unwrap(),
        "--import-uuid",
        &uuid,
        "--seed",
        "7",
        "--batch-size",
        "20",
        "--silent",
    ];
    serial.relocate(&args).success();
    assert_eq!(table_counts(&target).await, table_counts(&serial).await);
    assert_eq!(chunks(&target).await, chunks(&serial).await);
}

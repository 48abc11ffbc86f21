//! `relocate worker`: imports queued jobs until stopped.
//!
//! Each job is pulled alone, its export downloaded to a private temp file
//! and imported with the job's import UUID, with `Progress` sent every third
//! of the consumer's ack wait. Then: done, ack; a failure that may pass
//! ([`engine::Error::is_retryable`]), nak with a delay, and the next attempt
//! resumes from the import's chunks; any other failure (a bad key, an
//! invalid record, a plugin), findings published and the job terminated.
//! A crashed worker's job comes back after the ack wait and resumes too.
//! SIGTERM (or Ctrl-C) stops every import after its current batch and gives
//! the jobs back at once; a second one exits at once.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use tokio::sync::watch;

use super::queue::NatsArgs;
use super::{DbArg, PluginArgs, Request, findings_json, load_plugins, observe, open_export, read_key};
use crate::engine::graph::Registry;
use crate::engine::{self, Commit, Summary};
use crate::jobs::progress::Publisher;
use crate::jobs::queue::{Delivery, Queue};
use crate::jobs::{self, Job, Outcome, Status};
use crate::plugin::PluginHost;
use crate::{crypto, db};

/// How long one pull waits for a job before asking again.
const PULL_WAIT: Duration = Duration::from_secs(5);
/// The first retry's delay after a failure that may pass; doubled per attempt, up to [`MAX_RETRY_DELAY`].
const RETRY_DELAY: Duration = Duration::from_secs(5);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);

#[derive(Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    db: DbArg,
    /// The RSA private key for encrypted exports (PEM); it never leaves this machine.
    #[arg(long)]
    decrypt_with: Option<PathBuf>,
    /// Jobs imported at once by this worker.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: u16,
    /// This worker's name in job states and progress (default: HOST-PID).
    #[arg(long)]
    worker_id: Option<String>,
    #[command(flatten)]
    plugins: PluginArgs,
}

/// What every job of this worker shares.
struct Worker {
    queue: Queue,
    host: PluginHost,
    registry: Registry,
    key: Option<crypto::PrivateKey>,
    db: String,
    id: String,
    ack_wait: Duration,
    max_deliver: u32,
    /// Set on SIGTERM: the engine stops after its current batch.
    stop: Arc<AtomicBool>,
}

pub async fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let key = args.decrypt_with.as_deref().map(read_key).transpose()?;
    let (host, registry) = load_plugins(&args.plugins)?;
    let queue = args.nats.connect().await?;
    let (ack_wait, max_deliver) = queue.limits();
    let id = args.worker_id.unwrap_or_else(default_id);
    let (stop, stopped) = on_signals(id.clone())?;
    eprintln!(
        "worker {id}: taking jobs from {} into {} ({} at a time; ack wait {} s, {max_deliver} deliveries at most)",
        queue.names().stream(),
        args.db.db,
        args.concurrency,
        ack_wait.as_secs()
    );
    let worker = Worker {
        queue,
        host,
        registry,
        key,
        db: args.db.db,
        id,
        ack_wait,
        max_deliver: u32::try_from(max_deliver).unwrap_or(u32::MAX),
        stop,
    };
    // One task: the engine's heavy work runs on blocking threads, plugin
    // threads and the database anyway.
    futures_util::future::join_all((0..args.concurrency).map(|_| worker.slot(stopped.clone()))).await;
    worker.queue.flush().await?;
    eprintln!("worker {}: stopped", worker.id);
    Ok(())
}

/// `HOST-PID`.
fn default_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    format!("{}-{}", if host.is_empty() { "worker" } else { host }, std::process::id())
}

/// The stop flag the engine checks, and a channel that says so to idle
/// slots. A second signal exits at once: the batch in flight rolls back
/// and its job comes back after the ack wait.
fn on_signals(id: String) -> anyhow::Result<(Arc<AtomicBool>, watch::Receiver<bool>)> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = watch::channel(false);
    let flag = stop.clone();
    tokio::spawn(async move {
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        eprintln!("worker {id}: stopping after the current batch (signal again to stop at once)");
        flag.store(true, Ordering::Relaxed);
        let _ = tx.send(true);
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        std::process::exit(130);
    });
    Ok((stop, rx))
}

/// What an attempt's end writes into the job's state (and, if final, publishes).
struct End {
    status: Status,
    summary: Option<serde_json::Value>,
    findings: Option<serde_json::Value>,
    error: Option<String>,
}

/// The answer to the delivery.
enum Reply {
    Ack,
    Nak(Option<Duration>),
    Term,
}

/// What became of one attempt.
enum Ending {
    Done(Summary),
    /// Stopped by a signal between batches: given back for another worker.
    Stopped,
    /// May pass next time.
    Retry(anyhow::Error),
    /// Will not pass: findings published, job terminated.
    Fail(anyhow::Error),
}

impl Worker {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Takes jobs one at a time until stopped.
    async fn slot(&self, mut stopped: watch::Receiver<bool>) {
        while !self.stopping() {
            let next = tokio::select! {
                next = self.queue.next(PULL_WAIT) => next,
                _ = stopped.changed() => break,
            };
            match next {
                Ok(Some(delivery)) => {
                    if let Err(e) = self.job(delivery).await {
                        eprintln!("worker {}: {e:#}", self.id);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    // NATS is away (the client reconnects by itself): wait a little, ask again.
                    eprintln!("worker {}: {e}", self.id);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// One delivery of a job, from its claim to its ack, nak or term.
    async fn job(&self, delivery: Delivery) -> anyhow::Result<()> {
        let _beat = delivery.heartbeat(self.ack_wait / 3);
        let attempt = delivery.attempt;
        let job = match Job::from_json(delivery.payload()) {
            Ok(job) => job,
            Err(e) => return self.refuse(delivery, e).await,
        };
        let uuid = job.import_uuid;
        let who = format!("worker {}: import {uuid} (attempt {attempt}/{})", self.id, self.max_deliver);
        eprintln!("{who}: started");
        let started = Instant::now();
        self.queue
            .update_state(uuid, |state| {
                let mut s = state.unwrap_or_else(|| jobs::JobState::queued(&job, String::new()));
                s.status = Status::Running;
                s.worker = Some(self.id.clone());
                s.attempts = attempt;
                s.started_at = Some(chrono::Utc::now());
                Some(s)
            })
            .await?;
        let (ending, progress) = self.import(&job, attempt).await;
        let ending = match ending {
            Ending::Retry(e) if attempt >= self.max_deliver => Ending::Fail(e.context("no retries left")),
            // The server delivers no job past max_deliver: given back, it would sit in the stream for good.
            Ending::Stopped if attempt >= self.max_deliver => Ending::Fail(
                anyhow::Error::new(engine::Error::Cancelled)
                    .context("stopped on its last attempt; submit it again with the same --import-uuid to resume"),
            ),
            ending => ending,
        };
        let none = End { status: Status::Queued, summary: None, findings: None, error: None };
        let (end, reply, note) = match ending {
            Ending::Done(summary) => {
                let end = End { status: Status::Done, summary: Some(observe::summary_json(&summary)), ..none };
                (end, Reply::Ack, format!("done in {:.1} s", started.elapsed().as_secs_f64()))
            }
            Ending::Stopped => {
                let error = Some("its worker stopped; it resumes on the next".into());
                (End { error, ..none }, Reply::Nak(None), "stopped after a batch, given back".into())
            }
            Ending::Retry(e) => {
                let delay = retry_delay(attempt);
                let end = End { status: Status::Retrying, error: Some(format!("{e:#}")), ..none };
                (end, Reply::Nak(Some(delay)), format!("will retry in {:.1} s: {e:#}", delay.as_secs_f64()))
            }
            Ending::Fail(e) => {
                let findings = serde_json::from_str(&findings_json(Some(&e))).ok();
                let end = End { status: Status::Failed, findings, error: Some(format!("{e:#}")), ..none };
                (end, Reply::Term, format!("failed: {e:#}"))
            }
        };
        self.set_state(uuid, progress, &end).await?;
        if end.status.is_final() {
            self.announce(uuid, attempt, end).await;
        }
        match reply {
            Reply::Ack => {
                delivery.ack().await?;
                // Nothing will import it again.
                let _ = self.queue.delete_export(&job.object).await;
            }
            Reply::Nak(delay) => delivery.nak(delay).await?,
            Reply::Term => delivery.term().await?,
        }
        eprintln!("{who}: {note}");
        Ok(())
    }

    /// Records where an attempt ended, with its last progress.
    async fn set_state(&self, uuid: uuid::Uuid, progress: Option<jobs::Progress>, end: &End) -> jobs::Result<()> {
        self.queue
            .update_state(uuid, |state| {
                let mut s = state?;
                s.status = end.status;
                s.progress = progress.clone();
                s.error = end.error.clone();
                if end.status.is_final() {
                    s.finished_at = Some(chrono::Utc::now());
                    s.summary = end.summary.clone();
                    s.findings = end.findings.clone();
                }
                Some(s)
            })
            .await?;
        Ok(())
    }

    /// A message that is no job this relocate can run: terminated, with
    /// its state failed when it names an import.
    async fn refuse(&self, delivery: Delivery, error: jobs::Error) -> anyhow::Result<()> {
        let message = format!("not a job this worker can run: {error}");
        eprintln!("worker {}: {message}", self.id);
        let uuid = serde_json::from_slice::<serde_json::Value>(delivery.payload())
            .ok()
            .and_then(|v| v.get("import_uuid")?.as_str().and_then(|u| uuid::Uuid::parse_str(u).ok()));
        if let Some(uuid) = uuid {
            let end = End { status: Status::Failed, summary: None, findings: None, error: Some(message) };
            self.set_state(uuid, None, &end).await?;
            self.announce(uuid, delivery.attempt, end).await;
        }
        delivery.term().await?;
        Ok(())
    }

    /// Publishes a final outcome on the import's result subject.
    async fn announce(&self, import_uuid: uuid::Uuid, attempts: u32, end: End) {
        let End { status, summary, findings, error } = end;
        let outcome = Outcome { import_uuid, status, worker: self.id.clone(), attempts, summary, findings, error };
        // The state holds the same: a result nobody listened to is not lost.
        let _ = self.queue.announce(self.queue.names().result(import_uuid), &outcome).await;
        let _ = self.queue.flush().await;
    }

    /// Downloads, opens and imports the job's export; what became of it, and the last progress.
    async fn import(&self, job: &Job, attempt: u32) -> (Ending, Option<jobs::Progress>) {
        let stop = self.stop.clone();
        let publisher = Publisher::start(self.queue.clone(), job.import_uuid, self.id.clone(), attempt, stop);
        let result = self.try_import(job, &publisher).await;
        let progress = publisher.finish().await;
        let ending = match result {
            Ok(summary) => Ending::Done(summary),
            Err(e) if is_cancelled(&e) => Ending::Stopped,
            Err(e) if is_retryable(&e) => Ending::Retry(e),
            Err(e) => Ending::Fail(e),
        };
        (ending, Some(progress))
    }

    async fn try_import(&self, job: &Job, publisher: &Publisher) -> anyhow::Result<Summary> {
        // Private to this user, and removed however this ends.
        let temp = tempfile::NamedTempFile::new().context("cannot create a temp file for the export")?;
        let mut file = tokio::fs::File::from_std(temp.reopen().context("cannot open the export's temp file")?);
        self.queue.download(&job.object, &mut file).await?;
        drop(file);
        if self.stopping() {
            return Err(engine::Error::Cancelled.into());
        }
        // Decrypting and indexing read the whole file: off the async threads.
        let export = tokio::task::block_in_place(|| open_export(temp.path(), self.key.as_ref()))?;
        let mut conn = db::Db::connect(&self.db).await.map_err(engine::Error::from)?;
        let opts = Request::from(job).options();
        let summary = engine::import(&export, &self.host, &self.registry, &mut conn, &opts, publisher).await?;
        Ok(summary)
    }
}

impl From<&Job> for Request {
    fn from(job: &Job) -> Request {
        Request {
            scope: job.scope.into(),
            flags: job.flags.into(),
            filters: job.filters.clone().into(),
            import_uuid: job.import_uuid,
            seed: job.seed,
            batch_size: job.batch_size,
            commit: Commit::EachBatch,
        }
    }
}

fn engine_error(e: &anyhow::Error) -> Option<&engine::Error> {
    e.chain().find_map(|c| c.downcast_ref::<engine::Error>())
}

fn is_cancelled(e: &anyhow::Error) -> bool {
    matches!(engine_error(e), Some(engine::Error::Cancelled))
}

/// The engine decides for its errors; of the queue's, only a missing
/// export and a job that cannot be read fail for good.
fn is_retryable(e: &anyhow::Error) -> bool {
    if let Some(e) = engine_error(e) {
        return e.is_retryable();
    }
    match e.chain().find_map(|c| c.downcast_ref::<jobs::Error>()) {
        Some(jobs::Error::Nats { .. } | jobs::Error::Connect { .. } | jobs::Error::Io { .. }) => true,
        Some(_) => false,
        // The temp file: a full disk may be freed.
        None => e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some()),
    }
}

/// Backs off, doubling per attempt, at a random moment within a second so
/// that workers retrying together part.
fn retry_delay(attempt: u32) -> Duration {
    let jitter = Duration::from_millis(rand::random::<u64>() % 1000);
    let doubled = RETRY_DELAY.saturating_mul(1 << attempt.saturating_sub(1).min(10));
    doubled.min(MAX_RETRY_DELAY) + jitter
}

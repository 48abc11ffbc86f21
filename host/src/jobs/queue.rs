//! The job queue on NATS JetStream: a work-queue stream of [`Job`]s with one
//! durable pull consumer that every worker shares, an object store of the
//! submitted exports, a KV bucket of [`JobState`]s, and per-import subjects
//! for progress and results.
//!
//! All of it is created on first use by whichever command comes first, with
//! [`Settings`]; later commands bind to what exists (creating a consumer that
//! exists would silently change it). nats-server 2.9 answers the account
//! query that async-nats' `create_key_value` makes in a shape it cannot
//! read, so the KV bucket's stream is created here directly, as that call
//! would create it.

use std::path::Path;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::kv::{self, Operation, UpdateErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::object_store::{GetErrorKind, ObjectMetadata, ObjectStore};
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, AckKind};
use futures_util::StreamExt as _;
use uuid::Uuid;

use super::{Error, Job, JobState, Result, nats};

/// The default name prefix: stream `relocate-jobs`, subjects `relocate.…`.
pub const DEFAULT_PREFIX: &str = "relocate";
/// How long a delivered job may go without a word from its worker before
/// another worker gets it: the time to notice a crashed worker. Workers
/// send `Progress` every third of it.
pub const ACK_WAIT: Duration = Duration::from_secs(30);
/// Deliveries of one job: the first run and 4 retries, as Sentry retries
/// its import step.
pub const MAX_DELIVER: i64 = 5;
/// Replicas of every stream and bucket on one server; 3 on a cluster.
pub const REPLICAS: usize = 1;
/// A job published twice with the same import UUID within this window is
/// stored once (`Nats-Msg-Id`): a resubmission after a lost reply.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// Exports are kept this long at most (a done job's is deleted at once).
pub const EXPORTS_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Job states are kept this long, with this many past states each.
pub const STATE_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
pub const STATE_HISTORY: i64 = 10;
/// The largest object chunk that fits NATS' default 1 MiB message.
const OBJECT_CHUNK: usize = 1 << 20;

/// How the queue is named and, when this command creates it, set up.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Names everything: one prefix, one queue (tests use their own).
    pub prefix: String,
    pub replicas: usize,
    pub ack_wait: Duration,
    pub max_deliver: i64,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings { prefix: DEFAULT_PREFIX.into(), replicas: REPLICAS, ack_wait: ACK_WAIT, max_deliver: MAX_DELIVER }
    }
}

/// The names of the queue's streams, buckets and subjects for one prefix.
#[derive(Clone, Debug)]
pub struct Names {
    prefix: String,
}

impl Names {
    pub fn new(prefix: &str) -> Result<Names> {
        let valid = !prefix.is_empty() && prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return Err(Error::Prefix(prefix.into()));
        }
        Ok(Names { prefix: prefix.into() })
    }

    /// The work-queue stream of jobs.
    pub fn stream(&self) -> String {
        format!("{}-jobs", self.prefix)
    }
    pub fn jobs_subject(&self) -> String {
        format!("{}.jobs", self.prefix)
    }
    /// The durable pull consumer every worker shares.
    pub fn consumer(&self) -> String {
        format!("{}-workers", self.prefix)
    }
    /// The object store bucket of exports (stream `OBJ_<it>`).
    pub fn exports(&self) -> String {
        format!("{}-exports", self.prefix)
    }
    /// The KV bucket of job states (stream `KV_<it>`).
    pub fn state(&self) -> String {
        format!("{}-state", self.prefix)
    }
    /// Progress of one import: [`super::Progress`] messages, not stored.
    pub fn progress(&self, import_uuid: Uuid) -> String {
        format!("{}.imports.{import_uuid}.progress", self.prefix)
    }
    /// The outcome of one import: one [`super::Outcome`].
    pub fn result(&self, import_uuid: Uuid) -> String {
        format!("{}.imports.{import_uuid}.result", self.prefix)
    }
    /// Every stream the queue uses, for cleaning up.
    pub fn streams(&self) -> [String; 3] {
        [self.stream(), format!("OBJ_{}", self.exports()), format!("KV_{}", self.state())]
    }
}

/// A connection to the queue, everything in it created if missing.
#[derive(Clone)]
pub struct Queue {
    client: async_nats::Client,
    js: jetstream::Context,
    names: Names,
    consumer: PullConsumer,
    exports: ObjectStore,
    state: kv::Store,
}

/// What publishing a job did.
#[derive(Clone, Copy, Debug)]
pub struct Submitted {
    /// The queue already held a job with this import UUID, published within
    /// [`DUPLICATE_WINDOW`]: this one was dropped.
    pub duplicate: bool,
}

impl Queue {
    /// Connects and binds to (or creates) the stream, consumer and buckets.
    pub async fn connect(url: &str, settings: &Settings) -> Result<Queue> {
        let names = Names::new(&settings.prefix)?;
        let client = async_nats::ConnectOptions::new()
            .name("relocate")
            .connect(url)
            .await
            .map_err(|source| Error::Connect { url: url.into(), source })?;
        let js = jetstream::new(client.clone());
        let jobs = js
            .get_or_create_stream(stream::Config {
                name: names.stream(),
                description: Some("relocate import jobs, each taken by one worker".into()),
                subjects: vec![names.jobs_subject()],
                retention: RetentionPolicy::WorkQueue,
                storage: StorageType::File,
                duplicate_window: DUPLICATE_WINDOW,
                num_replicas: settings.replicas,
                ..Default::default()
            })
            .await
            .map_err(nats(format!("creating the stream {}", names.stream())))?;
        let consumer: PullConsumer = jobs
            .get_or_create_consumer(
                &names.consumer(),
                pull::Config {
                    durable_name: Some(names.consumer()),
                    description: Some("relocate workers".into()),
                    ack_policy: AckPolicy::Explicit,
                    deliver_policy: DeliverPolicy::All,
                    ack_wait: settings.ack_wait,
                    max_deliver: settings.max_deliver,
                    ..Default::default()
                },
            )
            .await
            .map_err(nats(format!("creating the consumer {}", names.consumer())))?;
        // As `create_object_store` would make it.
        js.get_or_create_stream(stream::Config {
            name: format!("OBJ_{}", names.exports()),
            description: Some("relocate exports submitted as jobs".into()),
            subjects: vec![format!("$O.{}.C.>", names.exports()), format!("$O.{}.M.>", names.exports())],
            max_age: EXPORTS_MAX_AGE,
            storage: StorageType::File,
            num_replicas: settings.replicas,
            discard: DiscardPolicy::New,
            allow_rollup: true,
            allow_direct: true,
            ..Default::default()
        })
        .await
        .map_err(nats(format!("creating the object store {}", names.exports())))?;
        let exports = js.get_object_store(names.exports()).await.map_err(nats("opening the object store"))?;
        // As `create_key_value` would make it (see the module's doc).
        js.get_or_create_stream(stream::Config {
            name: format!("KV_{}", names.state()),
            description: Some("relocate job states".into()),
            subjects: vec![format!("$KV.{}.>", names.state())],
            max_messages_per_subject: STATE_HISTORY,
            max_age: STATE_MAX_AGE,
            storage: StorageType::File,
            num_replicas: settings.replicas,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: DiscardPolicy::New,
            ..Default::default()
        })
        .await
        .map_err(nats(format!("creating the KV bucket {}", names.state())))?;
        let state = js.get_key_value(names.state()).await.map_err(nats("opening the KV bucket"))?;
        Ok(Queue { client, js, names, consumer, exports, state })
    }

    pub fn names(&self) -> &Names {
        &self.names
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// The consumer's ack wait and deliveries, as the server keeps them
    /// (whoever created it chose them).
    pub fn limits(&self) -> (Duration, i64) {
        let config = &self.consumer.cached_info().config;
        (config.ack_wait, config.max_deliver)
    }

    /// Stores the export as-is under `job.object`, publishes the job with
    /// its import UUID as `Nats-Msg-Id`, and records it as queued. Unless
    /// `force`, refuses an import that is queued, running or retrying.
    pub async fn submit(&self, path: &Path, job: &Job, force: bool) -> Result<Submitted> {
        job.check()?;
        if let Some(state) = self.state(job.import_uuid).await?
            && !state.status.is_final()
            && !force
        {
            return Err(Error::Active { import_uuid: job.import_uuid, status: state.status });
        }
        let io = |source| Error::Io { path: path.to_path_buf(), source };
        let mut file = tokio::fs::File::open(path).await.map_err(io)?;
        let source = path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let meta = ObjectMetadata {
            name: job.object.clone(),
            description: Some(source.clone()),
            chunk_size: Some(OBJECT_CHUNK),
            ..Default::default()
        };
        self.exports.put(meta, &mut file).await.map_err(nats(format!("storing {}", path.display())))?;
        let payload = serde_json::to_vec(job)?;
        let ack = self
            .js
            .send_publish(
                self.names.jobs_subject(),
                PublishMessage::build().payload(payload.into()).message_id(job.import_uuid.to_string()),
            )
            .await
            .map_err(nats("publishing the job"))?
            .await
            .map_err(nats("publishing the job"))?;
        if ack.duplicate {
            return Ok(Submitted { duplicate: true });
        }
        // After the publish: a duplicate must not reset the state. A worker
        // may have taken the job already; then its state stands.
        let queued = JobState::queued(job, source);
        self.update_state(job.import_uuid, |current| match current {
            Some(s) if !s.status.is_final() && !force => None,
            _ => Some(queued.clone()),
        })
        .await?;
        Ok(Submitted { duplicate: false })
    }

    /// Waits up to `wait` for the next job; one at a time, so that a busy
    /// worker holds no job it has not started.
    pub async fn next(&self, wait: Duration) -> Result<Option<Delivery>> {
        let mut batch =
            self.consumer.batch().max_messages(1).expires(wait).messages().await.map_err(nats("pulling a job"))?;
        let Some(message) = batch.next().await else { return Ok(None) };
        let message = message.map_err(nats("pulling a job"))?;
        let info = message.info().map_err(nats("reading a job's delivery"))?;
        let attempt = u32::try_from(info.delivered).unwrap_or(u32::MAX);
        let stream_sequence = info.stream_sequence;
        Ok(Some(Delivery { message, attempt, stream_sequence }))
    }

    /// Writes the export `object` to `to`; an object that is not there
    /// (deleted, expired) is [`Error::MissingObject`].
    pub async fn download(&self, object: &str, to: &mut tokio::fs::File) -> Result<u64> {
        let mut reader = self.exports.get(object).await.map_err(|e| match e.kind() {
            GetErrorKind::NotFound => Error::MissingObject(object.into()),
            _ => nats(format!("fetching the export {object}"))(e),
        })?;
        // The digest is checked on the last read: a corrupt object fails here.
        let bytes = tokio::io::copy(&mut reader, to).await.map_err(nats(format!("fetching the export {object}")))?;
        tokio::io::AsyncWriteExt::flush(to).await.map_err(nats(format!("fetching the export {object}")))?;
        Ok(bytes)
    }

    /// Deletes a done job's export.
    pub async fn delete_export(&self, object: &str) -> Result<()> {
        self.exports.delete(object).await.map_err(nats(format!("deleting the export {object}")))
    }

    /// One job's state, if it has one.
    pub async fn state(&self, import_uuid: Uuid) -> Result<Option<JobState>> {
        let entry = self.state.entry(import_uuid.to_string()).await.map_err(nats("reading a job's state"))?;
        match entry {
            Some(e) if e.operation == Operation::Put => Ok(Some(serde_json::from_slice(&e.value)?)),
            _ => Ok(None),
        }
    }

    /// Every job's state, oldest submission first.
    pub async fn states(&self) -> Result<Vec<JobState>> {
        let mut keys = self.state.keys().await.map_err(nats("listing the jobs"))?;
        let mut states = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(nats("listing the jobs"))?;
            let Ok(uuid) = Uuid::parse_str(&key) else { continue };
            if let Some(state) = self.state(uuid).await? {
                states.push(state);
            }
        }
        states.sort_by_key(|s| (s.submitted_at, s.import_uuid));
        Ok(states)
    }

    /// Changes a job's state by compare-and-set: `change` sees the current
    /// state (`None` if there is none) and returns the next, or `None` to
    /// leave it. Retried when another writer came first.
    pub async fn update_state(
        &self,
        import_uuid: Uuid,
        mut change: impl FnMut(Option<JobState>) -> Option<JobState>,
    ) -> Result<Option<JobState>> {
        let key = import_uuid.to_string();
        loop {
            let entry = self.state.entry(key.clone()).await.map_err(nats("reading a job's state"))?;
            let (current, revision) = match entry {
                Some(e) if e.operation == Operation::Put => (Some(serde_json::from_slice(&e.value)?), e.revision),
                Some(e) => (None, e.revision),
                // Revision 0: only if the key has never been written.
                None => (None, 0),
            };
            let Some(mut next) = change(current) else { return Ok(None) };
            next.updated_at = chrono::Utc::now();
            match self.state.update(&key, serde_json::to_vec(&next)?.into(), revision).await {
                Ok(_) => return Ok(Some(next)),
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => continue,
                Err(e) => return Err(nats("writing a job's state")(e)),
            }
        }
    }

    /// Publishes a message nobody need be listening to (progress, results).
    pub async fn announce(&self, subject: String, value: &impl serde::Serialize) -> Result<()> {
        let payload = serde_json::to_vec(value)?;
        self.client.publish(subject, payload.into()).await.map_err(nats("publishing"))?;
        Ok(())
    }

    /// Waits until everything published has reached the server.
    pub async fn flush(&self) -> Result<()> {
        self.client.flush().await.map_err(nats("flushing"))
    }

    /// Deletes the queue's streams, buckets and everything in them.
    pub async fn destroy(self) -> Result<()> {
        for name in self.names.streams() {
            self.js.delete_stream(&name).await.map_err(nats(format!("deleting the stream {name}")))?;
        }
        Ok(())
    }
}

/// A job delivered to this worker, until it is acked, nak'ed or terminated.
pub struct Delivery {
    message: jetstream::Message,
    /// 1 on the first delivery.
    pub attempt: u32,
    pub stream_sequence: u64,
}

impl Delivery {
    pub fn payload(&self) -> &[u8] {
        &self.message.payload
    }

    /// Sends `Progress` every `every` until the returned guard is dropped,
    /// so that the job is not given to another worker while this one works.
    pub fn heartbeat(&self, every: Duration) -> Heartbeat {
        let message = self.message.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                // A lost beat is made up by the next one.
                let _ = message.ack_with(AckKind::Progress).await;
            }
        });
        Heartbeat(task)
    }

    /// Done: the stream drops the job. Waits for the server's confirmation.
    pub async fn ack(self) -> Result<()> {
        self.message.double_ack().await.map_err(nats("acknowledging a job"))
    }

    /// Gives the job back, to be delivered again after `delay` (at once with `None`).
    pub async fn nak(self, delay: Option<Duration>) -> Result<()> {
        self.message.double_ack_with(AckKind::Nak(delay)).await.map_err(nats("giving a job back"))
    }

    /// Never to be delivered again.
    pub async fn term(self) -> Result<()> {
        self.message.double_ack_with(AckKind::Term).await.map_err(nats("terminating a job"))
    }
}

/// Stops the heartbeat when dropped.
pub struct Heartbeat(tokio::task::JoinHandle<()>);

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

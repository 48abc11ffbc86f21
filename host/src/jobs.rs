//! Import jobs for many workers: what a job is on the wire, what state it is
//! in, and where both travel (NATS JetStream, in [`queue`]).
//!
//! `relocate submit` stores an export as-is in an object store and publishes
//! a [`Job`] naming it; `relocate worker`s pull jobs one at a time and import
//! them with the job's import UUID, so a retry or a redelivery after a crash
//! resumes from the import's chunks instead of writing anything twice.
//! Private keys never travel: a worker decrypts with its own.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::engine;
use crate::model::ImportScope;
use crate::plugin::ImportFlags;

pub mod progress;
pub mod queue;

/// The version of [`Job`] and [`JobState`] this relocate writes and reads.
pub const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect { url: String, source: async_nats::ConnectError },
    #[error("NATS: {context}: {source}")]
    Nats { context: String, source: async_nats::Error },
    #[error("{}: {source}", path.display())]
    Io { path: std::path::PathBuf, source: std::io::Error },
    #[error("invalid job JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("job format version {0} is not one this relocate reads (it reads {VERSION})")]
    Version(u32),
    #[error("the export {0} of this job is not in the object store")]
    MissingObject(String),
    #[error(
        "import {import_uuid} is {status} already; a second job for it would only wait for the first \
         (--force if it is stuck)"
    )]
    Active { import_uuid: Uuid, status: Status },
    #[error("--nats-prefix `{0}` must be letters, digits, `-` and `_`")]
    Prefix(String),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Wraps a NATS error with what we were doing.
pub(crate) fn nats<E: Into<async_nats::Error>>(context: impl Into<String>) -> impl FnOnce(E) -> Error {
    let context = context.into();
    move |e| Error::Nats { context, source: e.into() }
}

/// One import to run: the message on the jobs stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// [`VERSION`]; a worker refuses (and terminates) a job of another.
    pub version: u32,
    /// The export's name in the object store, stored as submitted
    /// (an encrypted tarball stays encrypted).
    pub object: String,
    pub scope: Scope,
    #[serde(default)]
    pub flags: Flags,
    #[serde(default)]
    pub filters: Filters,
    /// Fixed at submission, so that every attempt generates the same names.
    pub seed: u64,
    /// The import's identity: every attempt resumes the same import.
    pub import_uuid: Uuid,
    pub batch_size: usize,
    pub submitted_at: DateTime<Utc>,
}

/// Sentry's import scopes, as a job names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Users,
    Organizations,
    Config,
    Global,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Users => "users",
            Scope::Organizations => "organizations",
            Scope::Config => "config",
            Scope::Global => "global",
        }
    }
}

impl From<Scope> for ImportScope {
    fn from(scope: Scope) -> ImportScope {
        match scope {
            Scope::Users => ImportScope::Users,
            Scope::Organizations => ImportScope::Organizations,
            Scope::Config => ImportScope::Config,
            Scope::Global => ImportScope::Global,
        }
    }
}

/// Sentry's import flags, as a job carries them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Flags {
    pub merge_users: bool,
    pub overwrite_configs: bool,
    pub hide_organizations: bool,
}

impl From<Flags> for ImportFlags {
    fn from(f: Flags) -> ImportFlags {
        ImportFlags {
            merge_users: f.merge_users,
            overwrite_configs: f.overwrite_configs,
            hide_organizations: f.hide_organizations,
        }
    }
}

/// Sentry's allow-list filters, as a job carries them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Filters {
    pub usernames: Option<BTreeSet<String>>,
    pub org_slugs: Option<BTreeSet<String>>,
}

impl From<Filters> for engine::Filters {
    fn from(f: Filters) -> engine::Filters {
        engine::Filters { usernames: f.usernames, org_slugs: f.org_slugs }
    }
}

impl Job {
    /// Reads a job, refusing a version this relocate does not know.
    pub fn from_json(bytes: &[u8]) -> Result<Job> {
        #[derive(Deserialize)]
        struct Versioned {
            version: u32,
        }
        let Versioned { version } = serde_json::from_slice(bytes)?;
        if version != VERSION {
            return Err(Error::Version(version));
        }
        let job: Job = serde_json::from_slice(bytes)?;
        job.check()?;
        Ok(job)
    }

    /// The flags and filters a scope takes, as `relocate import <scope>` takes them.
    pub fn check(&self) -> Result<()> {
        use Scope::*;
        let (f, filters) = (self.flags, &self.filters);
        let given: [(&str, bool, &[Scope]); 5] = [
            ("merge_users", f.merge_users, &[Users, Organizations, Config]),
            ("overwrite_configs", f.overwrite_configs, &[Config]),
            ("hide_organizations", f.hide_organizations, &[Organizations]),
            ("usernames filter", filters.usernames.is_some(), &[Users]),
            ("org_slugs filter", filters.org_slugs.is_some(), &[Organizations]),
        ];
        if let Some((name, ..)) = given.iter().find(|(_, set, scopes)| *set && !scopes.contains(&self.scope)) {
            return Err(Error::Invalid(format!("a {} import takes no {name}", self.scope.as_str())));
        }
        if !(1..=engine::MAX_BATCH_SIZE).contains(&self.batch_size) {
            return Err(Error::Invalid(format!(
                "batch size {} is not from 1 to {}",
                self.batch_size,
                engine::MAX_BATCH_SIZE
            )));
        }
        Ok(())
    }
}

/// Where a job is, as `relocate jobs` lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting for a worker (a stopped worker's job comes back here).
    Queued,
    Running,
    /// Failed in a way that may pass; waiting for its next attempt.
    Retrying,
    Done,
    /// Failed for good: see its findings.
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Retrying => "retrying",
            Status::Done => "done",
            Status::Failed => "failed",
        }
    }

    /// Whether no worker will touch the job again.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Done | Status::Failed)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job's state, kept in the state bucket under its import UUID.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobState {
    pub version: u32,
    pub import_uuid: Uuid,
    pub status: Status,
    pub scope: Scope,
    /// The submitted file's name, for people.
    pub source: String,
    /// The worker that ran (or runs) the latest attempt.
    pub worker: Option<String>,
    /// Deliveries so far: 1 on the first run.
    pub attempts: u32,
    pub submitted_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The latest progress written (not every message published).
    pub progress: Option<Progress>,
    /// `relocate import --json`'s summary, once done.
    pub summary: Option<serde_json::Value>,
    /// Sentry's findings, once failed for good.
    pub findings: Option<serde_json::Value>,
    /// The latest attempt's error, if it failed.
    pub error: Option<String>,
}

impl JobState {
    /// A job just submitted.
    pub fn queued(job: &Job, source: String) -> JobState {
        JobState {
            version: VERSION,
            import_uuid: job.import_uuid,
            status: Status::Queued,
            scope: job.scope,
            source,
            worker: None,
            attempts: 0,
            submitted_at: job.submitted_at,
            started_at: None,
            updated_at: Utc::now(),
            finished_at: None,
            progress: None,
            summary: None,
            findings: None,
            error: None,
        }
    }
}

/// One import's progress, as published and as kept in its state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub import_uuid: Uuid,
    pub worker: String,
    pub attempt: u32,
    /// Records of described models through so far, and in all.
    pub done: u64,
    pub total: u64,
    /// Records per second over this attempt.
    pub records_per_second: f64,
    /// The model in progress: name, records through, records.
    pub model: Option<ModelProgress>,
    /// Per-model counts of the models finished in this attempt.
    pub models: Vec<ModelCounts>,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelProgress {
    pub name: String,
    pub done: u64,
    pub records: u64,
}

/// What happened to one model's records (the summary's columns).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelCounts {
    pub model: String,
    pub inserted: u64,
    pub existing: u64,
    pub overwritten: u64,
    pub dropped: u64,
    pub skipped: u64,
    pub resumed: u64,
}

impl From<&engine::ModelSummary> for ModelCounts {
    fn from(m: &engine::ModelSummary) -> ModelCounts {
        ModelCounts {
            model: m.model.clone(),
            inserted: m.inserted,
            existing: m.existing,
            overwritten: m.overwritten,
            dropped: m.dropped,
            skipped: m.skipped,
            resumed: m.resumed,
        }
    }
}

/// A job's outcome, published on its result subject.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub import_uuid: Uuid,
    pub status: Status,
    pub worker: String,
    pub attempts: u32,
    pub summary: Option<serde_json::Value>,
    pub findings: Option<serde_json::Value>,
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        Job {
            version: VERSION,
            object: "o".into(),
            scope: Scope::Organizations,
            flags: Flags::default(),
            filters: Filters::default(),
            seed: 7,
            import_uuid: Uuid::nil(),
            batch_size: 1000,
            submitted_at: Utc::now(),
        }
    }

    #[test]
    fn a_job_reads_back_as_written() {
        let job = job();
        let json = serde_json::to_vec(&job).expect("serializable");
        assert_eq!(Job::from_json(&json).expect("a job"), job);
        let value: serde_json::Value = serde_json::from_slice(&json).expect("JSON");
        assert_eq!(value["scope"], "organizations");
        assert_eq!(value["version"], 1);
    }

    #[test]
    fn another_version_is_refused() {
        let mut value = serde_json::to_value(job()).expect("serializable");
        value["version"] = 2.into();
        let err = Job::from_json(value.to_string().as_bytes()).expect_err("version 2");
        assert!(matches!(err, Error::Version(2)), "{err}");
    }

    #[test]
    fn flags_must_fit_the_scope() {
        let mut j = job();
        j.filters.usernames = Some(["a".to_string()].into());
        assert!(j.check().is_err());
        j.scope = Scope::Users;
        assert!(j.check().is_ok());
        j.scope = Scope::Global;
        assert!(j.check().is_err());
    }
}

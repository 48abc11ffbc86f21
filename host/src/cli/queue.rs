//! `relocate submit` and `relocate jobs`: putting imports on the job queue
//! and seeing where they are. The workers are in `worker.rs`.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{UsageError, batch_size, split_list};
use crate::jobs::queue::{self, Queue, Settings};
use crate::jobs::{self, Job, JobState};

/// Where the queue is and, for the command that creates it, how it is set up.
#[derive(Args)]
pub struct NatsArgs {
    /// The NATS server, with JetStream.
    #[arg(long, env = "RELOCATE_NATS", value_name = "URL")]
    pub nats: String,
    /// Names the queue: stream PREFIX-jobs, buckets PREFIX-exports and PREFIX-state,
    /// subjects PREFIX.jobs and PREFIX.imports.<uuid>.{progress,result}.
    #[arg(long, env = "RELOCATE_NATS_PREFIX", value_name = "PREFIX", default_value = queue::DEFAULT_PREFIX)]
    pub nats_prefix: String,
    /// Replicas of the streams and buckets, when this command creates them (3 on a cluster).
    #[arg(long, default_value_t = queue::REPLICAS)]
    pub nats_replicas: usize,
    /// Seconds a worker may go without a word before its job goes to another (the time to
    /// notice a crashed worker), when this command creates the queue.
    #[arg(long, value_name = "SECONDS", default_value_t = queue::ACK_WAIT.as_secs())]
    pub ack_wait: u64,
    /// Deliveries of one job, the first run and its retries, when this command creates the queue.
    #[arg(long, default_value_t = queue::MAX_DELIVER)]
    pub max_deliver: i64,
}

impl NatsArgs {
    pub async fn connect(&self) -> anyhow::Result<Queue> {
        if !(1..=5).contains(&self.nats_replicas) {
            anyhow::bail!(UsageError("--nats-replicas must be from 1 to 5".into()));
        }
        if self.ack_wait < 3 || self.max_deliver < 1 {
            anyhow::bail!(UsageError("--ack-wait must be at least 3 seconds and --max-deliver at least 1".into()));
        }
        let settings = Settings {
            prefix: self.nats_prefix.clone(),
            replicas: self.nats_replicas,
            ack_wait: Duration::from_secs(self.ack_wait),
            max_deliver: self.max_deliver,
        };
        Ok(Queue::connect(&self.nats, &settings).await?)
    }
}

#[derive(Args)]
pub struct SubmitArgs {
    /// The export: a JSON file or an encrypted tarball, stored as it is (workers decrypt with their own key).
    src: PathBuf,
    /// The kind of import, as `relocate import <scope>`.
    #[arg(long, value_enum)]
    scope: jobs::Scope,
    /// Reuse existing users with the same username (users, organizations, config).
    #[arg(long)]
    merge_users: bool,
    /// Import only these users, comma-separated (users).
    #[arg(long)]
    filter_usernames: Option<String>,
    /// Import only these organizations, comma-separated slugs, and their members (organizations).
    #[arg(long)]
    filter_org_slugs: Option<String>,
    /// Import organizations hidden, pending approval (organizations).
    #[arg(long)]
    hide_organizations: bool,
    /// Replace existing configuration values (config).
    #[arg(long)]
    overwrite_configs: bool,
    /// Seed for generated suffixes, tokens and passwords (default: random, fixed for every attempt).
    #[arg(long)]
    seed: Option<u64>,
    /// Identity of the import (default: a new one); printed on stdout.
    #[arg(long)]
    import_uuid: Option<uuid::Uuid>,
    /// Records per plugin call and per transaction.
    #[arg(long, default_value_t = 1000, value_parser = batch_size)]
    batch_size: usize,
    /// Submit even if the import is queued, running or retrying (a job stuck after its last delivery).
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    nats: NatsArgs,
}

pub async fn submit(args: SubmitArgs) -> anyhow::Result<()> {
    if !args.src.is_file() {
        anyhow::bail!(UsageError(format!("{} is not a file", args.src.display())));
    }
    let import_uuid = args.import_uuid.unwrap_or_else(uuid::Uuid::new_v4);
    let job = Job {
        version: jobs::VERSION,
        object: import_uuid.to_string(),
        scope: args.scope,
        flags: jobs::Flags {
            merge_users: args.merge_users,
            overwrite_configs: args.overwrite_configs,
            hide_organizations: args.hide_organizations,
        },
        filters: jobs::Filters {
            usernames: args.filter_usernames.as_deref().map(split_list),
            org_slugs: args.filter_org_slugs.as_deref().map(split_list),
        },
        seed: args.seed.unwrap_or_else(rand::random),
        import_uuid,
        batch_size: args.batch_size,
        submitted_at: chrono::Utc::now(),
    };
    // Flags that do not fit the scope are a mistake on the command line.
    job.check().map_err(|e| UsageError(format!("--scope {}: {e}", args.scope.as_str())))?;
    let queue = args.nats.connect().await?;
    let submitted = queue.submit(&args.src, &job, args.force).await?;
    if submitted.duplicate {
        eprintln!(
            "warning: the queue took a job for import {import_uuid} less than {} s ago; this one was dropped",
            queue::DUPLICATE_WINDOW.as_secs()
        );
    } else {
        eprintln!("submitted {} as import {import_uuid} to {}", args.src.display(), queue.names().stream());
    }
    println!("{import_uuid}");
    Ok(())
}

#[derive(Args)]
pub struct JobsArgs {
    /// Print the jobs' states as one JSON array.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    nats: NatsArgs,
}

pub async fn list(args: JobsArgs) -> anyhow::Result<()> {
    let queue = args.nats.connect().await?;
    let states = queue.states().await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&states)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<36}  {:<8} {:>8}  {:<20} {:<13} {:<20} {:>15}  source",
        "import", "status", "attempts", "worker", "scope", "submitted", "records"
    )?;
    for s in &states {
        writeln!(
            out,
            "{:<36}  {:<8} {:>8}  {:<20} {:<13} {:<20} {:>15}  {}",
            s.import_uuid,
            s.status.as_str(),
            s.attempts,
            s.worker.as_deref().unwrap_or("-"),
            s.scope.as_str(),
            s.submitted_at.format("%Y-%m-%d %H:%M:%S"),
            records(s),
            s.source
        )?;
        if let (Some(error), false) = (&s.error, s.status == jobs::Status::Done) {
            writeln!(out, "    {error}")?;
        }
    }
    Ok(())
}

/// `done/total` from the latest progress; the summary's total once done.
fn records(s: &JobState) -> String {
    let totals = s.summary.as_ref().and_then(|summary| summary.get("totals")).and_then(|t| t.as_object());
    match (totals, &s.progress) {
        (Some(totals), _) => totals.values().filter_map(|v| v.as_u64()).sum::<u64>().to_string(),
        (None, Some(p)) => format!("{}/{}", p.done, p.total),
        (None, None) => "-".into(),
    }
}

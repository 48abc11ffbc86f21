//! `relocate status`: the imports a database holds, from Sentry's import
//! chunks, so an operator can see what a rerun with an import's UUID skips.

use std::collections::BTreeMap;
use std::io::Write as _;

use clap::Args;
use serde_json::{Value as Json, json};

use super::DbArg;
use crate::db::{self, LedgerEntry};
use crate::jobs::JobState;
use crate::jobs::queue::{self, Queue, Settings};

#[derive(Args)]
pub(super) struct StatusArgs {
    #[command(flatten)]
    db: DbArg,
    /// Show only this import (its --import-uuid).
    import_uuid: Option<uuid::Uuid>,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
    /// Also show each import's job on this NATS queue (as `relocate jobs` does): its state,
    /// attempts, worker and, once done, the summary `relocate import --json` prints.
    #[arg(long, value_name = "URL")]
    nats: Option<String>,
    /// The queue's names, as given to `relocate submit` and `worker`.
    #[arg(long, value_name = "PREFIX", default_value = queue::DEFAULT_PREFIX, requires = "nats")]
    nats_prefix: String,
}

/// One import: its models in the order they were written.
struct Import {
    uuid: uuid::Uuid,
    models: Vec<LedgerEntry>,
    total: Counts,
}

#[derive(Default)]
struct Counts {
    chunks: i64,
    records: i64,
    inserted: i64,
    existing: i64,
    overwritten: i64,
}

impl Counts {
    fn of(e: &LedgerEntry) -> Counts {
        let mut c = Counts::default();
        c.add(e);
        c
    }

    fn add(&mut self, e: &LedgerEntry) {
        self.chunks += e.chunks;
        self.records += e.records;
        self.inserted += e.inserted;
        self.existing += e.existing;
        self.overwritten += e.overwritten;
    }
}

impl Import {
    fn first_written(&self) -> &str {
        self.models.iter().map(|m| m.first_written.as_str()).min().unwrap_or_default()
    }

    fn last_written(&self) -> &str {
        self.models.iter().map(|m| m.last_written.as_str()).max().unwrap_or_default()
    }
}

pub(super) async fn run(args: &StatusArgs) -> anyhow::Result<()> {
    let url = &args.db.db;
    // Looking must not leave an empty SQLite file behind a mistyped path.
    let mut conn = db::Db::connect_existing(url).await?;
    let ledger = conn.import_ledger(args.import_uuid.as_ref()).await?;
    let imports = group(ledger.unwrap_or_default());
    let jobs = match &args.nats {
        Some(nats) => Some(job_states(nats, &args.nats_prefix).await?),
        None => None,
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        let mut json = to_json(url, &imports);
        if let (Some(jobs), Json::Object(doc)) = (&jobs, &mut json) {
            let wanted = |s: &&JobState| args.import_uuid.is_none_or(|u| u == s.import_uuid);
            doc.insert("jobs".into(), serde_json::to_value(jobs.iter().filter(wanted).collect::<Vec<_>>())?);
        }
        writeln!(out, "{}", serde_json::to_string_pretty(&json)?)?;
        return Ok(());
    }
    if let Some(jobs) = &jobs {
        for job in jobs.iter().filter(|s| args.import_uuid.is_none_or(|u| u == s.import_uuid)) {
            writeln!(out, "{}", job_line(job))?;
        }
    }
    if imports.is_empty() {
        match args.import_uuid {
            Some(uuid) => writeln!(
                out,
                "no chunks of import {uuid} in {url}: a rerun with --import-uuid {uuid} starts from the beginning"
            )?,
            None => writeln!(out, "no imports recorded in {url}")?,
        }
        return Ok(());
    }
    let n = imports.len();
    writeln!(
        out,
        "{n} import{} recorded in {url}; a rerun with an import's --import-uuid skips the records counted under it",
        if n == 1 { "" } else { "s" }
    )?;
    for import in &imports {
        writeln!(out)?;
        writeln!(
            out,
            "import {}: {} records of {} models in {} chunks, written {} to {}",
            import.uuid,
            import.total.records,
            import.models.len(),
            import.total.chunks,
            import.first_written(),
            import.last_written()
        )?;
        writeln!(
            out,
            "  {:<44} {:>7} {:>9} {:>9} {:>9} {:>11}",
            "model", "chunks", "records", "inserted", "existing", "overwritten"
        )?;
        for m in &import.models {
            row(&mut out, &m.model, &Counts::of(m))?;
        }
        row(&mut out, "total", &import.total)?;
    }
    Ok(())
}

/// The queue's job states; the queue is bound (created if new) with its
/// default settings, as `relocate jobs` does.
async fn job_states(nats: &str, prefix: &str) -> anyhow::Result<Vec<JobState>> {
    let settings = Settings {
        prefix: prefix.to_string(),
        replicas: queue::REPLICAS,
        ack_wait: queue::ACK_WAIT,
        max_deliver: queue::MAX_DELIVER,
    };
    Ok(Queue::connect(nats, &settings).await?.states().await?)
}

/// `job 1f…: done after 1 attempt(s) on worker-1; 36942 inserted, 3063 existing`.
fn job_line(job: &JobState) -> String {
    let worker = job.worker.as_deref().map(|w| format!(" on {w}")).unwrap_or_default();
    let totals = job.summary.as_ref().map(|s| &s["totals"]).map_or(String::new(), |t| {
        let n = |k: &str| t[k].as_u64().unwrap_or(0);
        format!("; {} inserted, {} existing, {} resumed", n("inserted"), n("existing"), n("resumed"))
    });
    let error = job.error.as_deref().map(|e| format!("; {e}")).unwrap_or_default();
    format!("job {}: {} after {} attempt(s){worker}{totals}{error}", job.import_uuid, job.status.as_str(), job.attempts)
}

fn row(out: &mut impl std::io::Write, model: &str, c: &Counts) -> std::io::Result<()> {
    writeln!(
        out,
        "  {model:<44} {:>7} {:>9} {:>9} {:>9} {:>11}",
        c.chunks, c.records, c.inserted, c.existing, c.overwritten
    )
}

/// Entries grouped per import, oldest import first; within one, models in
/// the order their first chunk was written (the import's order).
fn group(entries: Vec<LedgerEntry>) -> Vec<Import> {
    let mut by_uuid: BTreeMap<uuid::Uuid, Vec<LedgerEntry>> = BTreeMap::new();
    for e in entries {
        by_uuid.entry(e.import_uuid).or_default().push(e);
    }
    let mut imports: Vec<Import> = by_uuid
        .into_iter()
        .map(|(uuid, mut models)| {
            models.sort_by(|a, b| (&a.first_written, &a.model).cmp(&(&b.first_written, &b.model)));
            let mut total = Counts::default();
            models.iter().for_each(|m| total.add(m));
            Import { uuid, models, total }
        })
        .collect();
    imports.sort_by(|a, b| (a.first_written(), a.uuid).cmp(&(b.first_written(), b.uuid)));
    imports
}

fn to_json(url: &str, imports: &[Import]) -> Json {
    let counts = |c: &Counts| {
        json!({
            "chunks": c.chunks,
            "records": c.records,
            "inserted": c.inserted,
            "existing": c.existing,
            "overwritten": c.overwritten,
        })
    };
    let imports: Vec<Json> = imports
        .iter()
        .map(|import| {
            let models: Vec<Json> = import
                .models
                .iter()
                .map(|m| {
                    let mut entry = json!({
                        "model": m.model,
                        "silo": match m.silo {
                            crate::model::Silo::Control => "control",
                            crate::model::Silo::Region => "region",
                        },
                        "first_written": m.first_written,
                        "last_written": m.last_written,
                    });
                    merge(&mut entry, counts(&Counts::of(m)));
                    entry
                })
                .collect();
            let mut entry = json!({
                "import_uuid": import.uuid.to_string(),
                "first_written": import.first_written(),
                "last_written": import.last_written(),
                "models": models,
            });
            merge(&mut entry, counts(&import.total));
            entry
        })
        .collect();
    json!({ "db": url, "imports": imports })
}

fn merge(into: &mut Json, from: Json) {
    if let (Json::Object(into), Json::Object(from)) = (into, from) {
        into.extend(from);
    }
}

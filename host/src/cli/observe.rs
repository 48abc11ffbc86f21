//! What an operator sees while an import runs and keeps afterwards:
//! progress on stderr, the `--report` file of record fates, and the
//! `--json` summary.

use std::fs::File;
use std::io::{BufWriter, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::{Commit, Detail, FailedBatch, ModelSummary, RecordFate, Reporter, Summary};
use crate::model::ModelName;

/// Seconds between plain progress lines when stderr is not a terminal;
/// `RELOCATE_PROGRESS_INTERVAL` changes it (0: a line per batch).
const PLAIN_INTERVAL: Duration = Duration::from_secs(10);

/// The engine's reporter for one import: progress and the report file.
pub struct Observer {
    progress: Progress,
    report: Option<ReportFile>,
    capture: Option<super::plugin_test::Capture>,
}

impl Observer {
    pub fn new(progress: Progress, report: Option<ReportFile>) -> Observer {
        Observer { progress, report, capture: None }
    }

    /// Writes a batch a plugin fails on as a case (`--capture-failures`).
    #[must_use]
    pub(super) fn with_capture(mut self, capture: Option<super::plugin_test::Capture>) -> Observer {
        self.capture = capture;
        self
    }

    /// Clears the bars and flushes the report; an error names the report
    /// file. Also says where a failing batch was captured, if it was.
    pub fn finish(self) -> (std::io::Result<()>, Option<String>) {
        self.progress.finish();
        let captured = self.capture.and_then(|c| c.said.into_inner().unwrap_or_else(|e| e.into_inner()));
        let finished = match self.report {
            Some(report) => report.finish(),
            None => Ok(()),
        };
        (finished, captured)
    }
}

impl Reporter for Observer {
    fn on_import_start(&self, records: u64) {
        self.progress.start(records);
    }
    fn on_model_start(&self, model: &ModelName, records: usize) {
        self.progress.model_start(model, records as u64);
    }
    fn on_batch_done(&self, model: &ModelName, done: usize) {
        self.progress.model_progress(model, done as u64);
    }
    fn on_model_done(&self, summary: &ModelSummary) {
        self.progress.model_done(summary);
    }
    fn detail(&self) -> Detail {
        self.report.as_ref().map_or(Detail::None, |r| r.detail)
    }
    fn on_records(&self, fates: Vec<RecordFate>) {
        if let Some(report) = &self.report {
            report.write(&fates);
        }
    }
    fn on_batch_failed(&self, failed: &FailedBatch<'_>) {
        if let Some(capture) = &self.capture {
            capture.batch_failed(failed);
        }
    }
}

/// Progress on stderr: bars on a terminal, a plain line now and then
/// otherwise, nothing with `--silent`.
pub enum Progress {
    Off,
    Bars(Bars),
    Plain(Mutex<Plain>),
}

impl Progress {
    pub fn new(silent: bool) -> Progress {
        if silent {
            Progress::Off
        } else if std::io::stderr().is_terminal() {
            Progress::Bars(Bars::new())
        } else {
            let interval = std::env::var("RELOCATE_PROGRESS_INTERVAL")
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .map_or(PLAIN_INTERVAL, Duration::from_secs);
            Progress::Plain(Mutex::new(Plain { interval, ..Plain::default() }))
        }
    }

    fn start(&self, records: u64) {
        match self {
            Progress::Off => {}
            Progress::Bars(b) => b.overall.set_length(records),
            Progress::Plain(p) => {
                let mut p = lock(p);
                p.total = records;
                p.started = Some(Instant::now());
            }
        }
    }

    fn model_start(&self, model: &ModelName, records: u64) {
        match self {
            Progress::Off => {}
            Progress::Bars(b) => {
                let bar = b.multi.add(ProgressBar::new(records).with_style(b.model_style.clone()));
                bar.set_prefix(model.to_string());
                bar.enable_steady_tick(Duration::from_millis(200));
                *lock(&b.current) = Some((bar, 0));
            }
            Progress::Plain(p) => {
                let mut p = lock(p);
                p.model = Some((model.to_string(), records, 0));
            }
        }
    }

    fn model_progress(&self, _model: &ModelName, done: u64) {
        match self {
            Progress::Off => {}
            Progress::Bars(b) => {
                if let Some((bar, before)) = lock(&b.current).as_mut() {
                    bar.set_position(done);
                    b.overall.inc(done.saturating_sub(*before));
                    *before = done;
                }
            }
            Progress::Plain(p) => {
                let mut p = lock(p);
                if let Some((_, _, before)) = p.model.as_mut() {
                    let step = done.saturating_sub(*before);
                    *before = done;
                    p.done += step;
                }
                p.maybe_print();
            }
        }
    }

    fn model_done(&self, summary: &ModelSummary) {
        match self {
            Progress::Off => {}
            Progress::Bars(b) => {
                if let Some((bar, before)) = lock(&b.current).take() {
                    b.overall.inc(summary.records().saturating_sub(before));
                    bar.finish_and_clear();
                    b.multi.remove(&bar);
                }
            }
            Progress::Plain(p) => {
                let mut p = lock(p);
                if let Some((_, _, before)) = p.model.take() {
                    p.done += summary.records().saturating_sub(before);
                }
            }
        }
    }

    fn finish(&self) {
        if let Progress::Bars(b) = self {
            b.overall.finish_and_clear();
            let _ = b.multi.clear();
        }
    }
}

/// A poisoned lock only means another thread panicked while printing; the
/// progress is still good to show.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    model_style: ProgressStyle,
    /// The model's bar and the records already added to the overall bar.
    current: Mutex<Option<(ProgressBar, u64)>>,
}

impl Bars {
    fn new() -> Bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let overall_style = ProgressStyle::with_template(
            "{prefix:>44.bold} [{bar:30}] {human_pos}/{human_len} records  {per_sec}  ETA {eta}  ({elapsed})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let model_style = ProgressStyle::with_template(
            "{prefix:>44} [{bar:30}] {human_pos}/{human_len} records  {per_sec}  ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let overall = multi.add(ProgressBar::new(0).with_style(overall_style));
        overall.set_prefix("all models");
        overall.enable_steady_tick(Duration::from_millis(200));
        Bars { multi, overall, model_style, current: Mutex::new(None) }
    }
}

#[derive(Default)]
pub struct Plain {
    interval: Duration,
    total: u64,
    done: u64,
    /// The model in progress: name, records, records done.
    model: Option<(String, u64, u64)>,
    started: Option<Instant>,
    last: Option<Instant>,
}

impl Plain {
    fn maybe_print(&mut self) {
        let now = Instant::now();
        let started = *self.started.get_or_insert(now);
        if now.duration_since(self.last.unwrap_or(started)) < self.interval {
            return;
        }
        self.last = Some(now);
        let secs = now.duration_since(started).as_secs_f64().max(0.001);
        let rate = self.done as f64 / secs;
        let percent = if self.total == 0 { 100.0 } else { self.done as f64 * 100.0 / self.total as f64 };
        let model = match &self.model {
            Some((name, records, done)) => format!("; {name} {done}/{records}"),
            None => String::new(),
        };
        eprintln!("progress: {}/{} records ({percent:.0}%), {rate:.0} records/s{model}", self.done, self.total);
    }
}

/// `--report FILE`: one JSON line per record the reporter wants.
pub struct ReportFile {
    path: PathBuf,
    detail: Detail,
    out: Mutex<(BufWriter<File>, Option<std::io::Error>)>,
}

impl ReportFile {
    /// Creates (or truncates) the file now, so that an unwritable path
    /// stops the import before it starts.
    pub fn create(path: &Path, detail: Detail) -> std::io::Result<ReportFile> {
        let file = File::create(path)?;
        Ok(ReportFile { path: path.to_path_buf(), detail, out: Mutex::new((BufWriter::new(file), None)) })
    }

    fn write(&self, fates: &[RecordFate]) {
        let mut out = lock(&self.out);
        if out.1.is_some() {
            return;
        }
        for fate in fates {
            let line = serde_json::json!({
                "model": fate.model.as_str(),
                "ordinal": fate.ordinal,
                "old_pk": fate.old_pk,
                "new_pk": fate.new_pk,
                "outcome": fate.fate.as_str(),
                "reason": fate.reason,
            });
            if let Err(e) = writeln!(out.0, "{line}") {
                out.1 = Some(e);
                return;
            }
        }
    }

    fn finish(self) -> std::io::Result<()> {
        let path = self.path;
        let (mut out, error) = self.out.into_inner().unwrap_or_else(|e| e.into_inner());
        let with_path = |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        if let Some(e) = error {
            return Err(with_path(e));
        }
        out.flush().map_err(with_path)
    }
}

/// `--json`: the summary as one JSON document.
pub fn summary_json(summary: &Summary) -> serde_json::Value {
    let model = |m: &ModelSummary| {
        serde_json::json!({
            "model": m.model,
            "inserted": m.inserted,
            "existing": m.existing,
            "overwritten": m.overwritten,
            "dropped": m.dropped,
            "skipped": m.skipped,
            "resumed": m.resumed,
            "seconds": m.elapsed.as_secs_f64(),
        })
    };
    let total = |f: fn(&ModelSummary) -> u64| summary.models.iter().map(f).sum::<u64>();
    serde_json::json!({
        "import_uuid": summary.import_uuid.to_string(),
        "committed": match summary.commit {
            Commit::EachBatch => "each batch",
            Commit::AtEnd => "at the end",
            Commit::Never => "never (dry run)",
        },
        "dry_run": summary.commit == Commit::Never,
        "started_at": summary.started_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "seconds": summary.elapsed.as_secs_f64(),
        "models": summary.models.iter().map(model).collect::<Vec<_>>(),
        "totals": {
            "inserted": total(|m| m.inserted),
            "existing": total(|m| m.existing),
            "overwritten": total(|m| m.overwritten),
            "dropped": total(|m| m.dropped),
            "skipped": total(|m| m.skipped),
            "resumed": total(|m| m.resumed),
        },
        "derived": summary.derived,
        "unknown": summary.unknown.iter().map(|(m, n)| (m.clone(), *n)).collect::<std::collections::BTreeMap<_, _>>(),
    })
}

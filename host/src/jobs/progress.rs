//! The engine's [`Reporter`] for a job: progress on the import's progress
//! subject, now and then into its state, and the worker's request to stop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use uuid::Uuid;

use super::queue::Queue;
use super::{ModelCounts, ModelProgress, Progress, Status};
use crate::engine::{ModelSummary, Reporter};
use crate::model::ModelName;

/// At most this often a progress message per import (and at every model's end).
const PUBLISH_INTERVAL: Duration = Duration::from_millis(250);
/// At most this often the progress goes into the job's state.
const STATE_INTERVAL: Duration = Duration::from_secs(5);

/// Publishes one attempt's progress; asks the engine to stop once `stop` is set.
pub struct Publisher {
    stop: Arc<AtomicBool>,
    tracker: Mutex<Tracker>,
    tx: mpsc::UnboundedSender<Progress>,
    task: tokio::task::JoinHandle<()>,
}

struct Tracker {
    progress: Progress,
    started: Instant,
    last_sent: Option<Instant>,
    /// Records of the model in progress already counted in `progress.done`.
    model_counted: u64,
}

impl Publisher {
    /// Starts the task that publishes; call [`Publisher::finish`] at the end.
    pub fn start(queue: Queue, import_uuid: Uuid, worker: String, attempt: u32, stop: Arc<AtomicBool>) -> Publisher {
        let (tx, mut rx) = mpsc::unbounded_channel::<Progress>();
        let progress = Progress { import_uuid, worker: worker.clone(), attempt, ..Progress::default() };
        let task = tokio::spawn(async move {
            let subject = queue.names().progress(import_uuid);
            let mut last_kept: Option<Instant> = None;
            while let Some(p) = rx.recv().await {
                // Progress is advice: a message lost now is replaced by the next.
                let _ = queue.announce(subject.clone(), &p).await;
                if last_kept.is_none_or(|t| t.elapsed() >= STATE_INTERVAL) {
                    last_kept = Some(Instant::now());
                    let _ = queue
                        .update_state(import_uuid, |state| {
                            let mut state =
                                state.filter(|s| s.status == Status::Running && s.worker.as_ref() == Some(&worker))?;
                            state.progress = Some(p.clone());
                            Some(state)
                        })
                        .await;
                }
            }
        });
        let tracker = Tracker { progress, started: Instant::now(), last_sent: None, model_counted: 0 };
        Publisher { stop, tracker: Mutex::new(tracker), tx, task }
    }

    /// Waits until every progress message is out; returns the last.
    pub async fn finish(self) -> Progress {
        let Publisher { tracker, tx, task, .. } = self;
        drop(tx);
        let _ = task.await;
        tracker.into_inner().unwrap_or_else(|e| e.into_inner()).progress
    }

    fn update(&self, always: bool, change: impl FnOnce(&mut Tracker)) {
        let mut t = self.tracker.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut t);
        let now = Instant::now();
        if always || t.last_sent.is_none_or(|last| now.duration_since(last) >= PUBLISH_INTERVAL) {
            t.last_sent = Some(now);
            let secs = now.duration_since(t.started).as_secs_f64().max(0.001);
            t.progress.records_per_second = t.progress.done as f64 / secs;
            t.progress.at = chrono::Utc::now();
            let _ = self.tx.send(t.progress.clone());
        }
    }
}

impl Reporter for Publisher {
    fn on_import_start(&self, records: u64) {
        self.update(true, |t| t.progress.total = records);
    }

    fn on_model_start(&self, model: &ModelName, records: usize) {
        self.update(false, |t| {
            t.model_counted = 0;
            t.progress.model = Some(ModelProgress { name: model.to_string(), done: 0, records: records as u64 });
        });
    }

    fn on_batch_done(&self, _model: &ModelName, done: usize) {
        self.update(false, |t| {
            t.progress.done += (done as u64).saturating_sub(t.model_counted);
            t.model_counted = done as u64;
            if let Some(m) = &mut t.progress.model {
                m.done = done as u64;
            }
        });
    }

    fn on_model_done(&self, summary: &ModelSummary) {
        self.update(true, |t| {
            t.progress.done += summary.records().saturating_sub(t.model_counted);
            t.model_counted = 0;
            t.progress.model = None;
            t.progress.models.push(ModelCounts::from(summary));
        });
    }

    fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

//! The store writer: one thread that owns the write connection. It merges whatever batches
//! are waiting into one transaction (group commit), commits, and only then runs the batch's
//! after-commit actions (API replies, messages to agents). A failed commit is fatal: the
//! engine's memory is ahead of the store, so the server stops and a restart rebuilds from
//! what is durable.

use crate::clock::Stopwatch;
use crate::logs::LogStore;
use crate::metrics::Metrics;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use zenith_model::records::Changes;
use zenith_model::Millis;
use zenith_store::Store;

/// Runs after its batch is committed (`Ok`) or failed (`Err` with the reason).
pub type AfterCommit = Box<dyn FnOnce(Result<(), &str>) + Send>;

pub enum WriterMsg {
    Commit {
        changes: Box<Changes>,
        after: Vec<AfterCommit>,
    },
    /// Deletes jobs finished before `before`, and their logs.
    Sweep { before: Millis },
}

/// Most batches merged into one transaction.
const MAX_MERGE: usize = 64;
/// Jobs deleted per sweep transaction (sweeps repeat until done).
const SWEEP_CHUNK: usize = 1000;

/// Starts the writer thread. `fatal` receives the error that stopped it.
pub fn spawn(
    mut store: Box<dyn Store>,
    logs: LogStore,
    mut rx: mpsc::Receiver<WriterMsg>,
    fatal: watch::Sender<Option<String>>,
    metrics: Arc<Metrics>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("zenith-store-writer".into())
        .spawn(move || {
            let mut failed: Option<String> = None;
            while let Some(first) = rx.blocking_recv() {
                let mut changes = Changes::default();
                let mut after: Vec<AfterCommit> = Vec::new();
                let mut sweep = None;
                let mut merged = 0;
                let mut next = Some(first);
                while let Some(msg) = next.take() {
                    match msg {
                        WriterMsg::Commit {
                            changes: c,
                            after: a,
                        } => {
                            changes.absorb(*c);
                            after.extend(a);
                        }
                        WriterMsg::Sweep { before } => sweep = Some(before),
                    }
                    merged += 1;
                    if merged < MAX_MERGE {
                        next = rx.try_recv().ok();
                    }
                }
                let result = match &failed {
                    Some(e) => Err(e.clone()),
                    None if changes.is_empty() => Ok(()),
                    None => {
                        let watch = Stopwatch::start();
                        let r = store.commit(&changes).map_err(|e| e.to_string());
                        metrics.commit_time.observe(watch.seconds());
                        metrics.batch_size.observe(changes.len() as f64);
                        r
                    }
                };
                if let Err(e) = &result {
                    if failed.is_none() {
                        tracing::error!(error = %e, "store commit failed; stopping the server");
                        failed = Some(e.clone());
                        fatal.send_replace(Some(format!("store commit failed: {e}")));
                    }
                }
                let r = result.as_ref().map(|_| ()).map_err(|e| e.as_str());
                for a in after {
                    a(r);
                }
                if let (Some(before), None) = (sweep, &failed) {
                    loop {
                        match store.sweep(before, SWEEP_CHUNK) {
                            Ok((jobs, gone)) => {
                                logs.remove(&gone);
                                if jobs < SWEEP_CHUNK {
                                    break;
                                }
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "retention sweep failed; will retry");
                                break;
                            }
                        }
                    }
                }
            }
        })
}

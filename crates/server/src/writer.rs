//! The store writer: one thread that owns the write connection. It merges whatever batches
//! are waiting into one transaction (group commit), commits, and only then runs the batch's
//! after-commit actions (API replies, messages to agents).
//!
//! A failed commit (disk full, I/O error) leaves the engine's memory ahead of the store. The
//! writer then refuses every batch built on that memory (each batch carries the loop's
//! generation; older generations are refused) and tells the loop, which reloads the engine
//! from the store (`Reload`), refuses new work while writes fail, and probes (`Probe`) until
//! the store accepts writes again.

use crate::clock::Stopwatch;
use crate::logs::LogStore;
use crate::metrics::Metrics;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use zenith_model::records::{Changes, Loaded};
use zenith_model::Millis;
use zenith_store::{Store, StoreError};

/// Runs after its batch is committed (`Ok`) or failed (`Err` with the reason).
pub type AfterCommit = Box<dyn FnOnce(Result<(), &CommitError>) + Send>;

/// Why a batch's changes are not durable.
#[derive(Clone, Debug, thiserror::Error)]
pub enum CommitError {
    /// The store failed this commit (shared by every batch merged into it).
    #[error("{0}")]
    Store(Arc<StoreError>),
    /// An earlier commit failed: batches built on the memory it left are refused.
    #[error("the store refused an earlier write; retry")]
    AfterFailure,
    /// The store refuses writes (degraded): the changes wait in the engine.
    #[error("the store refuses writes")]
    Degraded,
}

pub enum WriterMsg {
    /// One batch of engine changes built on generation `gen` of the engine's memory.
    Commit {
        gen: u64,
        changes: Box<Changes>,
        after: Vec<AfterCommit>,
    },
    /// Deletes jobs finished before `before`, and their logs.
    Sweep {
        now: Millis,
        before: Millis,
        audit_before: Millis,
        audit_keep: u64,
    },
    /// Reads every live record back, to rebuild the engine after a failed commit.
    Reload {
        reply: oneshot::Sender<Result<Loaded, StoreError>>,
    },
    /// Tries a small write: does the store accept writes again?
    Probe {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// Sent to the loop when a commit of generation `gen` failed.
#[derive(Debug)]
pub struct CommitFailed {
    pub gen: u64,
    pub error: Arc<StoreError>,
}

/// Most batches merged into one transaction.
const MAX_MERGE: usize = 64;
/// Jobs deleted per sweep transaction (sweeps repeat until done).
const SWEEP_CHUNK: usize = 1000;

struct Writer {
    store: Box<dyn Store>,
    logs: LogStore,
    artifacts: crate::artifacts::ArtifactStore,
    metrics: Arc<Metrics>,
    failures: mpsc::Sender<CommitFailed>,
    /// Batches of an older generation are refused: their base state was never committed.
    accept_gen: u64,
}

/// Starts the writer thread.
pub fn spawn(
    store: Box<dyn Store>,
    logs: LogStore,
    artifacts: crate::artifacts::ArtifactStore,
    mut rx: mpsc::Receiver<WriterMsg>,
    failures: mpsc::Sender<CommitFailed>,
    metrics: Arc<Metrics>,
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let mut w = Writer {
        store,
        logs,
        artifacts,
        metrics,
        failures,
        accept_gen: 0,
    };
    std::thread::Builder::new()
        .name("zenith-store-writer".into())
        .spawn(move || {
            let mut stash: Option<WriterMsg> = None;
            loop {
                let msg = match stash.take() {
                    Some(m) => m,
                    None => match rx.blocking_recv() {
                        Some(m) => m,
                        None => break,
                    },
                };
                match msg {
                    WriterMsg::Commit {
                        gen,
                        changes,
                        after,
                    } => {
                        // Group commit: merge the batches of the same generation that are waiting.
                        let mut changes = *changes;
                        let mut after = after;
                        let mut merged = 1;
                        for _ in 1..MAX_MERGE {
                            match rx.try_recv() {
                                Ok(WriterMsg::Commit {
                                    gen: g,
                                    changes: c,
                                    after: a,
                                }) if g == gen => {
                                    changes.absorb(*c);
                                    after.extend(a);
                                    merged += 1;
                                }
                                Ok(other) => {
                                    stash = Some(other);
                                    break;
                                }
                                Err(_) => break,
                            }
                        }
                        w.commit(gen, changes, after);
                        // Only now (after-commit actions done) are these batches out of flight.
                        in_flight.fetch_sub(merged, std::sync::atomic::Ordering::AcqRel);
                    }
                    WriterMsg::Sweep {
                        now,
                        before,
                        audit_before,
                        audit_keep,
                    } => {
                        w.sweep(now, before);
                        if let Err(e) = w.store.sweep_audit(audit_before, audit_keep) {
                            tracing::warn!(error = %e, "audit sweep failed; will retry");
                        }
                    }
                    WriterMsg::Reload { reply } => {
                        // The loop stops waiting only when it stops itself.
                        let _ = reply.send(w.store.load());
                    }
                    WriterMsg::Probe { reply } => {
                        // As above.
                        let _ =
                            reply.send(w.store.set_meta("write_probe", &w.accept_gen.to_string()));
                    }
                }
            }
        })
}

impl Writer {
    fn commit(&mut self, gen: u64, changes: Changes, after: Vec<AfterCommit>) {
        let result = if gen < self.accept_gen {
            Err(CommitError::AfterFailure)
        } else if changes.is_empty() {
            Ok(Vec::new())
        } else {
            let _span = tracing::info_span!("commit", records = changes.len()).entered();
            let watch = Stopwatch::start();
            let r = self
                .store
                .commit(&changes)
                .map_err(|e| CommitError::Store(Arc::new(e)));
            self.metrics.commit_time.observe(watch.seconds());
            self.metrics.batch_size.observe(changes.len() as f64);
            if let Err(CommitError::Store(e)) = &r {
                tracing::error!(error = %e, "store commit failed; refusing new work until writes succeed");
                self.accept_gen = gen + 1;
                // Full only while the loop still handles an earlier failure of this
                // generation, which rebuilds the engine all the same.
                let _ = self.failures.try_send(CommitFailed {
                    gen,
                    error: e.clone(),
                });
            }
            r
        };
        if let Ok(gone) = &result {
            // Logs of deleted jobs (`zenith job delete`).
            self.logs.remove(gone);
        }
        let r = result.as_ref().map(|_| ());
        for a in after {
            a(r);
        }
    }

    fn sweep(&mut self, now: Millis, before: Millis) {
        loop {
            match self.store.sweep_runs(now, before, SWEEP_CHUNK) {
                Ok((runs, gone)) => {
                    self.logs.remove(&gone);
                    self.artifacts.remove_runs(&runs);
                    if !runs.is_empty() {
                        tracing::info!(
                            runs = runs.len(),
                            "deleted finished flow runs (ttl or retention)"
                        );
                    }
                    if runs.len() < SWEEP_CHUNK {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "flow run sweep failed; will retry");
                    break;
                }
            }
        }
        loop {
            match self.store.sweep(before, SWEEP_CHUNK) {
                Ok((jobs, gone)) => {
                    self.logs.remove(&gone);
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

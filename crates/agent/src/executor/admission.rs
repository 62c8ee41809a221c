//! Admission: takes assignments (refusing duplicates), holds the node's backlog in arrival
//! order and decides what starts: the head of the backlog, as soon as its resources and GPUs
//! are free; one that can never fit this node ends as failed to start.

use super::{Executor, Proc};
use zenith_model::{AttemptId, AttemptOutcome, Resources};
use zenith_protocol::agent::Assignment;

/// Attempt IDs remembered to refuse duplicate assignments.
const SEEN_LIMIT: usize = 100_000;

impl Executor {
    /// Whether assignments wait in the backlog for resources (the node is saturated with
    /// short work).
    pub fn has_waiting(&self) -> bool {
        !self.inner.table.lock().waiting.is_empty()
    }

    /// Takes an assignment unless it was seen before (fencing against duplicate delivery):
    /// it starts now if the node has room, else waits in the backlog for its turn.
    pub fn start(&self, a: Assignment) {
        {
            let mut t = self.inner.table.lock();
            if !t.seen.insert(a.attempt) {
                tracing::debug!(attempt = %a.attempt, "duplicate assignment refused");
                return;
            }
            t.seen_order.push_back(a.attempt);
            while t.seen_order.len() > SEEN_LIMIT {
                if let Some(old) = t.seen_order.pop_front() {
                    t.seen.remove(&old);
                }
            }
            if self.leaving() {
                // Sent before the server read that this agent is stopping: back to the queue.
                drop(t);
                self.end_unstarted(a.attempt, AttemptOutcome::Evicted);
                return;
            }
            t.waiting.push_back(a);
            self.inner.metrics.waiting.set(t.waiting.len() as i64);
        }
        self.promote();
    }

    /// Starts waiting assignments in order while the first fits what is free. One that can
    /// never fit this node ends as failed to start instead of blocking the rest.
    pub(super) fn promote(&self) {
        {
            let mut t = self.inner.table.lock();
            if t.promoting {
                // The loop below is already running further up this call stack.
                return;
            }
            t.promoting = true;
        }
        loop {
            let next = {
                let mut t = self.inner.table.lock();
                let Some(head) = t.waiting.front() else {
                    t.promoting = false;
                    break;
                };
                // `None`: it fits what is free; else why it can never fit this node.
                let refusal = if head.resources.fits_in(&t.free) {
                    None
                } else if let Some(s) = head.resources.first_shortfall(&t.total) {
                    Some(format!("needs more than this node offers: {s}"))
                } else {
                    t.promoting = false;
                    break;
                };
                t.waiting.pop_front().map(|a| (a, refusal))
            };
            match next {
                Some((a, None)) => self.launch(a),
                Some((a, Some(message))) => {
                    self.end_unstarted(a.attempt, AttemptOutcome::StartFailed { message })
                }
                None => break,
            }
        }
        let t = self.inner.table.lock();
        self.inner.metrics.waiting.set(t.waiting.len() as i64);
    }

    /// Ends an attempt that never started (refused, or killed while waiting).
    pub(super) fn end_unstarted(&self, attempt: AttemptId, outcome: AttemptOutcome) {
        self.inner.table.lock().running.insert(
            attempt,
            Proc {
                pgid: None,
                gpus: Vec::new(),
                killing: false,
                evicted: false,
                outputs: Vec::new(),
                scratch: None,
                hostfile: None,
                resources: Resources::default(),
                spawned: None,
            },
        );
        self.finish(attempt, None, outcome);
    }

    /// Starts an assignment that fits: takes its resources and binds its GPUs, then hands
    /// it to its lifecycle (`attempt`).
    fn launch(&self, a: Assignment) {
        let gpus = {
            let mut t = self.inner.table.lock();
            // Bind concrete GPUs: the resources check above counted them.
            let wanted = a.resources.gpus as usize;
            if t.free_gpus.len() < wanted {
                let message = format!(
                    "{wanted} GPUs wanted, {} free on this node",
                    t.free_gpus.len()
                );
                drop(t);
                self.end_unstarted(a.attempt, AttemptOutcome::StartFailed { message });
                return;
            }
            let gpus: Vec<u32> = t.free_gpus.iter().copied().take(wanted).collect();
            for g in &gpus {
                t.free_gpus.remove(g);
            }
            t.free.take(&a.resources);
            t.running.insert(
                a.attempt,
                Proc {
                    pgid: None,
                    gpus: gpus.clone(),
                    killing: false,
                    evicted: false,
                    outputs: a.io.outputs.clone(),
                    scratch: None,
                    hostfile: None,
                    resources: a.resources.clone(),
                    spawned: None,
                },
            );
            self.inner.metrics.running.set(t.running.len() as i64);
            gpus
        };
        self.begin(a, gpus);
    }
}

//! Leaving: when the agent stops (SIGTERM) it takes no more work, gives its backlog back and
//! lets what runs finish within its shutdown grace; what still runs then is stopped. Both
//! end `evicted`: the server requeues them elsewhere, counted as neither failures nor node
//! losses.

use super::Executor;
use std::sync::atomic::Ordering;
use zenith_model::{AttemptId, AttemptOutcome};

impl Executor {
    /// The agent is stopping: assignments are refused.
    pub fn leaving(&self) -> bool {
        self.inner.leaving.load(Ordering::SeqCst)
    }

    /// Stops taking work: from now on assignments end `evicted` at once, and so does every
    /// attempt waiting in the backlog (returned: how many). What runs goes on.
    pub fn leave(&self) -> usize {
        // Set before the backlog is emptied, both under the table's lock in `start`: an
        // assignment either sees the flag or is in the backlog emptied here.
        self.inner.leaving.store(true, Ordering::SeqCst);
        let waiting: Vec<AttemptId> = {
            let mut t = self.inner.table.lock();
            let w = t.waiting.drain(..).map(|a| a.attempt).collect();
            self.inner.metrics.waiting.set(0);
            w
        };
        for a in &waiting {
            self.end_unstarted(*a, AttemptOutcome::Evicted);
        }
        waiting.len()
    }

    /// Stops every attempt still running (returned: how many); each ends `evicted` unless it
    /// succeeds first.
    pub fn evict_all(&self) -> usize {
        let running: Vec<AttemptId> = {
            let mut t = self.inner.table.lock();
            for p in t.running.values_mut() {
                p.evicted = true;
            }
            t.running.keys().copied().collect()
        };
        for a in &running {
            self.kill(*a);
        }
        running.len()
    }

    /// Nothing runs, waits, or has a result on its way to the outbox.
    pub fn idle(&self) -> bool {
        let t = self.inner.table.lock();
        t.running.is_empty() && t.waiting.is_empty() && t.ended.is_empty()
    }
}

//! Stopping gracefully (SIGTERM while registered): the agent tells the server it is leaving
//! (no new work for it from then on), gives its backlog back, lets what runs finish within
//! `--shutdown-grace`, then stops what is left; those attempts end `evicted` and the server
//! requeues them elsewhere at once, not after the heartbeat timeout. Its last report says it
//! is done; the node is then `left`.
//!
//! Bounded: the agent exits at the latest the kill grace plus [`REPORT_WINDOW`] after the
//! shutdown grace, and at once once nothing runs and the server cannot be reached (results
//! not acknowledged stay in the outbox, reported when the agent starts again).

use crate::{Agent, AgentError};
use std::time::Duration;
use tokio::time::Instant;
use zenith_protocol::agent::{LeaveNotice, SessionId};

/// After what ran has been stopped, how long the agent keeps trying to report its results.
const REPORT_WINDOW: Duration = Duration::from_secs(5);
/// Between reports while attempts run out their grace.
const REPORT_EVERY: Duration = Duration::from_millis(200);

impl Agent {
    /// Leaves the cluster over the session `session` (see the module's description).
    pub(crate) async fn leave(&mut self, mut session: SessionId) -> Result<(), AgentError> {
        let grace = self.conn.cfg.shutdown_grace;
        let returned = self.exec.leave();
        let running = self.exec.attempts().0.len();
        tracing::info!(
            running,
            returned,
            grace_ms = grace.as_millis() as u64,
            "stopping: no new work; what runs may finish within the shutdown grace"
        );
        let evict_at = Instant::now() + grace;
        let give_up = evict_at + self.conn.cfg.kill_grace + REPORT_WINDOW;
        let mut evicted = false;
        loop {
            let now = Instant::now();
            if !evicted && now >= evict_at {
                evicted = true;
                let n = self.exec.evict_all();
                if n > 0 {
                    tracing::info!(
                        stopped = n,
                        "shutdown grace over: stopping what still runs (requeued elsewhere)"
                    );
                }
            }
            while let Ok(r) = self.results.try_recv() {
                self.stash(Some(r)).await?;
            }
            let idle = self.exec.idle();
            let done = idle && self.outbox.is_empty();
            let notice = LeaveNotice {
                grace_ms: evict_at.saturating_duration_since(now).as_millis() as u64,
                done,
            };
            let reported = self
                .conn
                .report(
                    &session,
                    &self.exec,
                    &mut self.outbox,
                    &mut self.logs,
                    Some(notice),
                )
                .await;
            match reported {
                Ok(false) if done => {
                    tracing::info!("left the cluster: every result is with the server");
                    return Ok(());
                }
                // Acknowledged the last results: say so at once.
                Ok(false) if idle && self.outbox.is_empty() => continue,
                Ok(false) => {}
                Ok(true) => session = self.register_again(session).await,
                Err(e) if idle => {
                    tracing::warn!(error = %e, pending = self.outbox.len(), "cannot tell the server this node is leaving; results stay in the outbox for the next start");
                    return Ok(());
                }
                Err(e) => tracing::warn!(error = %e, "leaving: report failed"),
            }
            if Instant::now() >= give_up {
                tracing::warn!(
                    pending = self.outbox.len(),
                    "stopping before the server acknowledged every result; they stay in the outbox for the next start"
                );
                return Ok(());
            }
            let next = match evicted {
                true => now + REPORT_EVERY,
                false => evict_at.min(now + REPORT_EVERY),
            };
            tokio::select! {
                r = self.results.recv() => self.stash(r).await?,
                _ = tokio::time::sleep_until(next) => {}
            }
        }
    }

    /// The server forgot the session while the agent was leaving (a failover): registers
    /// again so that the rest of its results can be reported; keeps `old` if that fails.
    async fn register_again(&self, old: SessionId) -> SessionId {
        let (mut known, waiting) = self.exec.attempts();
        known.extend(waiting.iter().copied());
        known.extend(self.outbox.pending().map(|r| r.attempt));
        match self.conn.register(known, waiting).await {
            Ok(reg) => reg.session,
            Err(e) => {
                tracing::warn!(error = %e, "leaving: cannot register again");
                old
            }
        }
    }
}

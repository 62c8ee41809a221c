//! The session loop: register (with backoff while the server is away), run the session (the
//! assignment stream in a task of its own, a report on every batch of results and every
//! heartbeat), register again when it ends, until shutdown. Results are moved into the
//! outbox all along, also while no session is up.

use crate::{AbortOnDrop, Agent, AgentError};
use std::future::Future;
use std::time::Duration;
use zenith_protocol::agent::{AttemptResult, RegisterResponse};

/// While work waits in the backlog, how long a result waits for others to share its outbox
/// sync and its report (one server commit).
const REPORT_LINGER: Duration = Duration::from_millis(5);

/// What comes after a session, or after the pause that follows a failed registration.
enum Next {
    Register,
    Shutdown,
}

impl Agent {
    /// Registers, runs the session, and again, until `shutdown` resolves. Fails only when
    /// results cannot be written to the outbox.
    pub(crate) async fn serve(
        &mut self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), AgentError> {
        tokio::pin!(shutdown);
        let mut backoff = Backoff::default();
        loop {
            let (mut known, waiting) = self.exec.attempts();
            known.extend(waiting.iter().copied());
            known.extend(self.outbox.pending().map(|r| r.attempt));
            let tried = self.conn.servers.current();
            let reg = tokio::select! {
                _ = &mut shutdown => return Ok(()),
                r = self.conn.register(known, waiting) => r,
            };
            let next = match reg {
                Ok(reg) => {
                    backoff.succeeded();
                    self.session(reg, &mut shutdown).await?
                }
                Err(AgentError::Revoked(why)) => {
                    tracing::error!(reason = %why, "this node was revoked; the agent stops");
                    return Err(AgentError::Revoked(why));
                }
                Err(e) => {
                    let wait = backoff.failed(self.conn.servers.current() != tried);
                    tracing::warn!(error = %e, retry_ms = wait.as_millis() as u64, "registration failed");
                    self.pause(wait, &mut shutdown).await?
                }
            };
            if let Next::Shutdown = next {
                return Ok(());
            }
        }
    }

    /// Waits `wait` (with jitter) before the next registration. Attempts keep finishing
    /// while the server is away: their results go to the outbox meanwhile.
    async fn pause<S>(&mut self, wait: Duration, shutdown: &mut S) -> Result<Next, AgentError>
    where
        S: Future<Output = ()> + Unpin,
    {
        let pause = tokio::time::sleep(jitter(wait));
        tokio::pin!(pause);
        loop {
            tokio::select! {
                _ = &mut *shutdown => return Ok(Next::Shutdown),
                _ = &mut pause => return Ok(Next::Register),
                r = self.results.recv() => self.stash(r).await?,
            }
        }
    }

    /// One registered session, until the stream ends, the server asks for a new
    /// registration, or shutdown.
    async fn session<S>(
        &mut self,
        reg: RegisterResponse,
        shutdown: &mut S,
    ) -> Result<Next, AgentError>
    where
        S: Future<Output = ()> + Unpin,
    {
        tracing::info!(session = %reg.session, "registered");
        self.metrics.registrations.inc();
        self.conn.adopt_heartbeat_timeout(reg.heartbeat_timeout_ms);
        for k in &reg.kill {
            self.exec.kill(*k);
        }
        // The stream runs in its own task so that assignments start while a report is in
        // flight; it is aborted whenever this session ends.
        let stream_conn = self.conn.clone();
        let stream_exec = self.exec.clone();
        let session = reg.session.clone();
        let stream_session = reg.session;
        let mut stream = AbortOnDrop(tokio::spawn(async move {
            stream_conn.read_stream(stream_session, stream_exec).await
        }));
        let mut tick = tokio::time::interval(Duration::from_millis(
            reg.heartbeat_interval_ms.clamp(50, 60_000),
        ));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut *shutdown => {
                    // The stream stays open meanwhile: kills (cancels) still arrive.
                    self.leave(session).await?;
                    return Ok(Next::Shutdown);
                }
                _ = &mut stream.0 => {
                    // The stream ended (server restart, partition): reconnect after a pause,
                    // so that a server that keeps dropping streams is not hammered.
                    tokio::select! {
                        _ = &mut *shutdown => return Ok(Next::Shutdown),
                        _ = tokio::time::sleep(jitter(Duration::from_millis(300))) => {}
                    }
                    return Ok(Next::Register);
                }
                r = self.results.recv() => {
                    // The node is saturated with short work, which starts from the backlog
                    // without waiting for the server: let the next few ms of results share
                    // one outbox sync, one report and one commit.
                    if self.exec.has_waiting() {
                        tokio::time::sleep(REPORT_LINGER).await;
                    }
                    self.stash(r).await?
                }
                _ = tick.tick() => {}
            }
            match self
                .conn
                .report(&session, &self.exec, &mut self.outbox, &mut self.logs, None)
                .await
            {
                Ok(true) => return Ok(Next::Register),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, pending = self.outbox.len(), "report failed; results kept in the outbox");
                    tokio::select! {
                        _ = &mut *shutdown => return Ok(Next::Shutdown),
                        _ = tokio::time::sleep(jitter(Duration::from_millis(500))) => {}
                    }
                }
            }
        }
    }

    /// Moves a finished result, and any others waiting, into the outbox (one fsync).
    pub(crate) async fn stash(&mut self, first: Option<AttemptResult>) -> std::io::Result<()> {
        let mut batch: Vec<_> = first.into_iter().collect();
        while let Ok(more) = self.results.try_recv() {
            batch.push(more);
        }
        let ids: Vec<_> = batch.iter().map(|r| r.attempt).collect();
        match self.outbox.add(batch).await {
            Ok(()) => {}
            // The results are kept in memory and reported; the agent and its jobs go on.
            Err(e) if crate::outbox::is_disk_full(&e) => {
                self.metrics.outbox_disk_full.inc();
                tracing::error!(error = %e, "disk full: results kept in memory only until space returns");
            }
            Err(e) => return Err(e),
        }
        self.exec.stashed(&ids);
        Ok(())
    }

    /// Shutdown: kills every attempt still running or waiting in the backlog.
    pub(crate) fn stop(&self) {
        let (mut running, waiting) = self.exec.attempts();
        running.extend(waiting);
        for a in &running {
            self.exec.kill(*a);
        }
        tracing::info!(killed = running.len(), "agent stopped");
    }
}

/// The wait between failed registrations.
struct Backoff {
    /// 100 ms doubling after each failure at the same server, up to 5 s (backon's schedule;
    /// the jitter is added by the caller).
    delays: backon::ExponentialBackoff,
    /// The last failure went straight on to another server.
    hopped: bool,
}

/// The longest wait between registrations.
const MAX_RETRY: Duration = Duration::from_secs(5);

impl Default for Backoff {
    fn default() -> Self {
        use backon::BackoffBuilder as _;
        Backoff {
            delays: backon::ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(100))
                .with_max_delay(MAX_RETRY)
                .with_factor(2.0)
                .without_max_times()
                .build(),
            hopped: false,
        }
    }
}

impl Backoff {
    fn succeeded(&mut self) {
        *self = Backoff::default();
    }

    /// How long to wait after a failed registration; `moved`: it sent the agent to another
    /// server (the next in the list, or the leader a standby named). Then the agent goes at
    /// once, but only once in a row, so that servers pointing at each other during a
    /// failover are not hammered.
    fn failed(&mut self, moved: bool) -> Duration {
        let hop = moved && !self.hopped;
        self.hopped = hop;
        if hop {
            return Duration::from_millis(50);
        }
        // Whole milliseconds: the schedule is computed in floating point (200.000003 ms).
        let d = self.delays.next().unwrap_or(MAX_RETRY);
        Duration::from_millis(d.as_millis().try_into().unwrap_or(u64::MAX))
    }
}

/// Adds up to 50% random jitter so that agents do not retry in lockstep.
fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 2];
    if let Err(e) = getrandom::fill(&mut b) {
        // Still a valid wait, only without jitter: agents may retry in lockstep.
        tracing::warn!(error = %e, "no randomness for retry jitter; waiting without it");
    }
    let frac = u16::from_le_bytes(b) as u64 % 500;
    d + d * frac as u32 / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_hops_once_in_a_row() {
        let ms = Duration::from_millis;
        let mut b = Backoff::default();
        assert_eq!(b.failed(false), ms(100));
        assert_eq!(b.failed(false), ms(200));
        assert_eq!(b.failed(true), ms(50), "sent elsewhere: go at once");
        assert_eq!(b.failed(true), ms(400), "but only once in a row");
        assert_eq!(b.failed(true), ms(50));
        for _ in 0..10 {
            b.failed(false);
        }
        assert_eq!(b.failed(false), ms(5000), "capped");
        b.succeeded();
        assert_eq!(b.failed(false), ms(100));
    }
}

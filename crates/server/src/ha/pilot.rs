//! The lease pilot: stands by polling the lease, starts a term when it wins it, renews it while
//! the term runs, and ends the term (back to standing by) when the lease is lost.

use super::{Ha, LeaseError};
use crate::leader::Leader;
use crate::{auth, HaConfig, ServerConfig};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use zenith_store::pg_lease::Lease;
use zenith_store::postgres::{Fence, PgStore};
use zenith_store::StoreError;

/// This server's version, as recorded in its member row.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Runs `f` with the lease on a blocking thread, giving up after `limit` (the thread may
/// stay blocked on a dead connection until its TCP timeout; the next call is refused until
/// then rather than queued behind it).
async fn with_lease<T: Send + 'static>(
    lease: &Arc<Mutex<Lease>>,
    limit: Duration,
    f: impl FnOnce(&mut Lease) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, LeaseError> {
    let lease = lease.clone();
    let job = tokio::task::spawn_blocking(move || {
        let mut g = lease.try_lock().map_err(|_| LeaseError::Busy)?;
        Ok(f(&mut g)?)
    });
    match tokio::time::timeout(limit, job).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(LeaseError::Task(e)),
        Err(_) => Err(LeaseError::Timeout(limit)),
    }
}

/// Why a term ended.
enum TermEnd {
    Shutdown,
    Lost(String),
}

/// What the pilot keeps from one term to the next.
struct Pilot {
    cfg: ServerConfig,
    hc: HaConfig,
    ha: Arc<Ha>,
    tokens: auth::Tokens,
    /// The pilot's own connection for the lease row (requests use [`Ha::reads`]).
    lease: Arc<Mutex<Lease>>,
    ttl: Duration,
    /// How often a standby tries to take the lease.
    poll: Duration,
    /// When this server started (store clock), as recorded in its member row.
    started: i64,
}

/// Stands by, leads when the lease is won, stands by again when it is lost; until shutdown.
pub(super) async fn pilot(
    cfg: ServerConfig,
    hc: HaConfig,
    ha: Arc<Ha>,
    tokens: auth::Tokens,
    mut stop: watch::Receiver<bool>,
) {
    let ttl = Duration::from_millis(hc.lease_ttl_ms.max(300));
    let lease = Arc::new(Mutex::new(Lease::new(
        &hc.store_url,
        &ha.id,
        &ha.me,
        hc.lease_ttl_ms,
    )));
    let p = Pilot {
        poll: (ttl / 4).clamp(Duration::from_millis(50), Duration::from_secs(1)),
        started: crate::Clock::new().now() as i64,
        cfg,
        hc,
        ha,
        tokens,
        lease,
        ttl,
    };
    let mut last_warning = String::new();
    loop {
        let Some(epoch) = p.stand_by(&mut stop, &mut last_warning).await else {
            return;
        };
        let won_at = tokio::time::Instant::now();
        let lost = Arc::new(Notify::new());
        let Some(term) = p.start_term(epoch, &lost).await else {
            continue;
        };
        let ha = &p.ha;
        ha.metrics.leader.set(1);
        ha.metrics.lease_epoch.set(epoch);
        ha.metrics.leader_terms.inc();
        ha.set_leader(Some(ha.me.clone()));
        ha.set_term(Some(term.router.clone()));
        tracing::info!(
            epoch,
            took_ms = won_at.elapsed().as_millis() as u64,
            "leader: took the lease and loaded the store"
        );
        let end = p.lead(epoch, &term, &lost, &mut stop).await;
        if let TermEnd::Shutdown = p.end_term(epoch, term, end).await {
            return;
        }
    }
}

impl Pilot {
    /// Polls the lease until this server wins it (its epoch) or is stopped (`None`, after
    /// leaving the member list). Meanwhile keeps the leader URL the standby forwards to.
    async fn stand_by(
        &self,
        stop: &mut watch::Receiver<bool>,
        last_warning: &mut String,
    ) -> Option<i64> {
        let (ha, lease, ttl) = (&self.ha, &self.lease, self.ttl);
        ha.metrics.leader.set(0);
        loop {
            if *stop.borrow() {
                if let Err(e) = with_lease(lease, ttl, |l| l.leave()).await {
                    tracing::warn!(error = %e, "cannot leave the member list at shutdown");
                }
                return None;
            }
            let started = self.started;
            // A failed heartbeat only ages this server's member row; the lease call right
            // after uses the same connection and reports what is wrong with it.
            let _ = with_lease(lease, ttl, move |l| l.heartbeat(VERSION, started)).await;
            match with_lease(lease, ttl, |l| l.try_acquire()).await {
                Ok(Some(epoch)) => return Some(epoch),
                Ok(None) => {
                    if let Ok(v) = with_lease(lease, ttl, |l| l.view()).await {
                        ha.metrics.lease_epoch.set(v.epoch);
                        let live = v.expires_at > v.now && !v.url.is_empty();
                        ha.set_leader(live.then_some(v.url));
                    }
                    last_warning.clear();
                }
                Err(e) => {
                    let e = e.to_string();
                    if e != *last_warning {
                        tracing::warn!(error = %e, "cannot reach the lease; standing by");
                        *last_warning = e;
                    }
                    ha.set_leader(None);
                }
            }
            tokio::select! {
                _ = stop.changed() => {}
                _ = tokio::time::sleep(self.poll) => {}
            }
        }
    }

    /// Starts a term under the won `epoch`, its store fenced by it (a refused write notifies
    /// `lost`); `None` when it could not start (the lease is released again).
    async fn start_term(&self, epoch: i64, lost: &Arc<Notify>) -> Option<Leader> {
        let on_lost = lost.clone();
        let fence = Fence {
            holder: self.ha.id.clone(),
            epoch,
            on_lost: Arc::new(move || on_lost.notify_one()),
        };
        let (cfg, tokens, metrics, url) = (
            self.cfg.clone(),
            self.tokens.clone(),
            self.ha.metrics.clone(),
            self.hc.store_url.clone(),
        );
        let started_term = tokio::task::spawn_blocking(move || {
            let mut store = PgStore::open(&url)?;
            store.set_fence(fence);
            let reader = Arc::new(store.reader(4));
            Leader::start(&cfg, Box::new(store), reader, tokens, metrics)
        })
        .await;
        match started_term {
            Ok(Ok(t)) => Some(t),
            Ok(Err(e)) => {
                tracing::error!(error = %e, epoch, "could not start the term; releasing the lease");
                self.release(epoch).await;
                tokio::time::sleep(self.poll).await;
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "term start task failed");
                None
            }
        }
    }

    /// Renews the lease while the term runs; returns why it ended.
    async fn lead(
        &self,
        epoch: i64,
        term: &Leader,
        lost: &Notify,
        stop: &mut watch::Receiver<bool>,
    ) -> TermEnd {
        let (lease, ttl, started) = (&self.lease, self.ttl, self.started);
        let renew_every = ttl / 3;
        let mut fatal = term.fatal();
        // Sent time of the last renewal that succeeded: the lease is ours until at least that +
        // TTL in the database's clock, so stepping down by then (locally) is always in time.
        let mut renewed = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = stop.changed() => return TermEnd::Shutdown,
                _ = lost.notified() => return TermEnd::Lost("a write found the lease held by another server".into()),
                _ = fatal.changed() => return TermEnd::Lost("the store failed".into()),
                _ = tokio::time::sleep(renew_every) => {}
            }
            let sent = tokio::time::Instant::now();
            match with_lease(lease, ttl / 3, move |l| l.renew(epoch)).await {
                Ok(true) => renewed = sent,
                Ok(false) => return TermEnd::Lost("the lease was taken or expired".into()),
                Err(e) => {
                    tracing::warn!(error = %e, epoch, "cannot renew the lease");
                    if renewed.elapsed() + renew_every >= ttl {
                        return TermEnd::Lost(format!("no renewal for a whole TTL: {e}"));
                    }
                }
            }
            // A failed heartbeat only ages the member row; renewal failures, which decide the
            // term, are reported above.
            let _ = with_lease(lease, ttl / 3, move |l| l.heartbeat(VERSION, started)).await;
        }
    }

    /// Hands requests back to the standby side, stops the term and releases the lease
    /// (leaving the member list too at shutdown); passes on why the term ended.
    async fn end_term(&self, epoch: i64, term: Leader, end: TermEnd) -> TermEnd {
        let ha = &self.ha;
        if matches!(end, TermEnd::Lost(_)) {
            ha.metrics.leader_losses.inc();
        }
        // From here requests go to the standby side: forwarded to the new leader when the
        // lease names one, refused with 503 (clients retry) until then.
        let next = with_lease(&self.lease, self.ttl, |l| l.view()).await.ok();
        ha.set_leader(
            next.filter(|v| v.epoch != epoch && v.expires_at > v.now)
                .map(|v| v.url),
        );
        ha.set_term(None);
        ha.metrics.leader.set(0);
        let fatal = term.finish().await;
        match &end {
            TermEnd::Shutdown => {
                self.release(epoch).await;
                if let Err(e) = with_lease(&self.lease, self.ttl, |l| l.leave()).await {
                    tracing::warn!(error = %e, "cannot leave the member list at shutdown");
                }
                tracing::info!(epoch, "leader: released the lease at shutdown");
            }
            TermEnd::Lost(why) => {
                if let Some(f) = fatal {
                    tracing::error!(error = %f, "the term's store failed");
                }
                // Let another server lead (no-op when the lease is already someone else's).
                self.release(epoch).await;
                tracing::warn!(epoch, reason = %why, "leader: stepped down; standing by");
            }
        }
        end
    }

    /// Gives the lease up early; should that fail, it lapses after its TTL all the same.
    async fn release(&self, epoch: i64) {
        if let Err(e) = with_lease(&self.lease, self.ttl, move |l| l.release(epoch)).await {
            tracing::warn!(error = %e, epoch, "cannot release the lease; it lapses after its TTL");
        }
    }
}

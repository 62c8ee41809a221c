//! Several servers on one PostgreSQL database: one leader, the others standing by.
//!
//! Every server listens and answers. The *pilot* task of each server ([`pilot`]) competes for
//! the lease row (`zenith_store::pg_lease`); the winner starts a term ([`Leader`]: engine
//! loaded from the store, control loop, fenced writer) and serves the API from it, renewing the
//! lease every third of its TTL. A standby ([`standby`]) forwards `/api/v1` requests to the
//! leader it read from the lease row, answers agents with 503 and the leader's URL (agents
//! connect to the leader directly), and tries to take the lease each poll. A leader that cannot
//! renew for a whole TTL, finds its lease taken, or has a write refused by the fence ends its
//! term at once and becomes a standby; its writes could not have landed anyway (see
//! `zenith_store::postgres::Fence`). [`servers`] answers `GET /api/v1/servers` on either kind.
//!
//! [`Leader`]: crate::leader::Leader

mod pilot;
pub(crate) mod servers;
mod standby;

use crate::{auth, lock_data_dir, metrics::Metrics, ServerConfig, ServerError};
use axum::extract::Request;
use axum::routing::get;
use axum::Router;
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::watch;
use tower::ServiceExt;
use zenith_store::pg_lease::Lease;
use zenith_store::postgres::PgStore;
use zenith_store::StoreError;

/// What every request handler of an HA server shares.
struct Ha {
    id: String,
    me: String,
    tokens: auth::Tokens,
    metrics: Arc<Metrics>,
    /// The API of the current term while this server leads.
    term: RwLock<Option<Router>>,
    /// The leader as last read from the lease row (this server's URL while it leads).
    leader: RwLock<Option<String>>,
    http: reqwest::Client,
    /// A connection for `GET /api/v1/servers`.
    reads: Arc<Mutex<Lease>>,
    max_body: usize,
    /// The same per-client limit as the leader's, applied before forwarding (the leader sees
    /// every forwarded request as coming from this server).
    limiter: crate::limiter::RateLimiter,
}

impl Ha {
    fn leader_url(&self) -> Option<String> {
        self.leader.read().ok().and_then(|g| g.clone())
    }
    fn set_leader(&self, url: Option<String>) {
        if let Ok(mut g) = self.leader.write() {
            *g = url;
        }
    }
    fn set_term(&self, router: Option<Router>) {
        if let Ok(mut g) = self.term.write() {
            *g = router;
        }
    }
}

/// Why a call on a lease connection gave no answer.
#[derive(Debug, thiserror::Error)]
enum LeaseError {
    /// The connection is still busy with an earlier call (maybe blocked on a dead peer).
    #[error("a previous call on the lease is still running")]
    Busy,
    #[error("lease connection lock poisoned")]
    Poisoned,
    #[error("no answer from PostgreSQL within {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("lease task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("{0}")]
    Store(#[from] StoreError),
}

fn server_id() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "server".into());
    let mut b = [0u8; 3];
    // Without randomness the suffix stays zero: host and process ID still tell servers apart,
    // only a restart with a reused PID would look like the same member.
    if let Err(e) = getrandom::fill(&mut b) {
        tracing::warn!(error = %e, "no randomness for the server ID suffix");
    }
    format!("{host}-{}-{}", std::process::id(), hex::encode(b))
}

/// Opens the store, retrying connection failures for up to 30 s (servers and the database
/// often start together); a bad URL fails at once.
async fn open_store(url: &str) -> Result<PgStore, ServerError> {
    let mut tries = 0;
    loop {
        let u = url.to_string();
        let r = tokio::task::spawn_blocking(move || PgStore::open(&u))
            .await
            .map_err(|e| ServerError::Io(format!("store task: {e}")))?;
        match r {
            Ok(s) => return Ok(s),
            Err(StoreError::Pg(e)) if tries < 30 && e.as_db_error().is_none() => {
                tries += 1;
                tracing::warn!(error = %e, "PostgreSQL not reachable yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

pub(crate) async fn serve(
    cfg: ServerConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let Some(hc) = cfg.ha.clone() else {
        return Err(ServerError::NoHaStore);
    };
    let _lock = lock_data_dir(&cfg.data_dir, "server.lock", "server")?;
    let mut store = open_store(&hc.store_url).await?;
    let data_dir = cfg.data_dir.clone();
    let preset = cfg.preset_tokens.clone();
    let (tokens, store_back) = tokio::task::spawn_blocking(move || {
        let t = auth::Tokens::init(&mut store, &data_dir, &preset);
        (t, store)
    })
    .await
    .map_err(|e| ServerError::Io(format!("store task: {e}")))?;
    let tokens = tokens?;
    drop(store_back);
    let id = server_id();
    let metrics = Arc::new(Metrics::new());
    let ha = Arc::new(Ha {
        id: id.clone(),
        me: hc.advertise_url.trim_end_matches('/').to_string(),
        tokens: tokens.clone(),
        metrics: metrics.clone(),
        term: RwLock::new(None),
        leader: RwLock::new(None),
        http: zenith_client::http_client(cfg.ca_cert.as_deref(), Duration::from_secs(2))
            .map_err(|e| ServerError::Io(e.to_string()))?,
        reads: Arc::new(Mutex::new(Lease::new(
            &hc.store_url,
            &id,
            &hc.advertise_url,
            hc.lease_ttl_ms,
        ))),
        max_body: cfg.max_body_bytes,
        limiter: crate::limiter::RateLimiter::new(cfg.rate_limit_per_client),
    });
    tracing::info!(id = %id, url = %ha.me, ttl_ms = hc.lease_ttl_ms, "joining as a standby");

    let (stop_tx, stop_rx) = watch::channel(false);
    let pilot = tokio::spawn(pilot::pilot(
        cfg.clone(),
        hc,
        ha.clone(),
        tokens,
        stop_rx.clone(),
    ));
    let standby = standby::router(ha.clone());
    let outer_ha = ha.clone();
    let app = Router::new()
        .route("/api/v1/servers", get(servers::servers))
        .with_state(ha.clone())
        .fallback(move |req: Request| {
            let r = outer_ha
                .term
                .read()
                .ok()
                .and_then(|g| g.clone())
                .unwrap_or_else(|| standby.clone());
            async move { r.oneshot(req).await.unwrap_or_else(|e| match e {}) }
        });
    let signal_tx = stop_tx.clone();
    let signal = async move {
        shutdown.await;
        // Fails only once every receiver is gone, when nothing is left to stop.
        let _ = signal_tx.send(true);
    };
    let served = crate::serve_http(
        &cfg,
        listener,
        app,
        metrics.clone(),
        signal,
        stop_rx.clone(),
    )
    .await;
    // As above: a send with no receivers left has nobody to tell.
    let _ = stop_tx.send(true);
    if let Err(e) = pilot.await {
        tracing::error!(error = %e, "the lease pilot task failed");
    }
    served
}

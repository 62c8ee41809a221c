//! The control plane: HTTP API, control loop, store writer and agent sessions.
//!
//! [`serve`] takes a bound listener and a shutdown future (so tests and `zenith up` choose the
//! port and the lifetime). See `docs/architecture.md` for how the pieces fit.

mod access;
mod agent_api;
mod api;
mod artifacts;
pub mod auth;
mod clock;
mod control;
mod convert;
mod error;
mod events;
mod flows_api;
mod ha;
mod handler;
mod job_control_api;
mod leader;
mod limiter;
pub mod listen;
pub mod logs;
mod metrics;
mod namespaces_api;
mod node_keys;
mod nodes_api;
pub mod oidc;
pub mod openapi;
mod tenancy_api;
pub mod tls;
mod ui;
mod users;
mod writer;

pub use clock::Clock;
pub use control::Fatal;
pub use error::ApiError;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use zenith_store::sqlite::SqliteStore;
use zenith_store::StoreReader;

/// Everything the server can be told. Durations in milliseconds.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Database, tokens and logs live here.
    pub data_dir: PathBuf,
    /// Tokens for a new store chosen by the operator instead of random ones.
    pub preset_tokens: auth::PresetTokens,
    /// How often agents are asked to report.
    pub heartbeat_interval_ms: u64,
    /// A node silent this long is lost and its work requeued.
    pub heartbeat_timeout_ms: u64,
    /// Finished jobs (with attempts and logs) are deleted this long after they end.
    pub retention_ms: u64,
    /// How often the retention sweep runs.
    pub sweep_every_ms: u64,
    /// Audit records are deleted this long after they were written...
    pub audit_retention_ms: u64,
    /// ...and the oldest beyond this many.
    pub max_audit_records: u64,
    /// Fair share: recent usage counts half after this long.
    pub fair_share_half_life_ms: u64,
    /// Queues whose attempts a higher-priority job may preempt (docs/scheduling.md).
    pub preemptible_queues: std::collections::BTreeSet<String>,
    /// Accept bearer JWTs of this OpenID Connect provider (docs/tenancy.md).
    pub oidc: Option<oidc::OidcConfig>,
    /// Cap on each stored stdout/stderr file.
    pub max_log_bytes: u64,
    /// Cap on a request body.
    pub max_body_bytes: usize,
    /// Most queued or running jobs at once (admission control).
    pub max_live_jobs: usize,
    /// Cap on the database size; at the cap new work is refused (503) until retention frees
    /// space.
    pub max_store_bytes: Option<u64>,
    /// Requests per second each client address may make to `/api/v1` (bursts of twice
    /// that); beyond it: 429 with `Retry-After`.
    pub rate_limit_per_client: u32,
    /// Largest flow artifact (one file or directory, as tar).
    pub max_artifact_bytes: u64,
    /// How long an idempotency key is remembered.
    pub idempotency_ttl_ms: u64,
    /// Connection bounds: header/idle timeout, connections per client address.
    pub listen: listen::ListenLimits,
    /// Most idempotency keys kept, and kept per client token (beyond: the oldest evicted).
    pub max_idempotency_keys: usize,
    pub max_idempotency_keys_per_client: usize,
    /// Share a PostgreSQL store with other servers (one leader at a time); `None`: the
    /// embedded store in `data_dir`.
    pub ha: Option<HaConfig>,
    /// Serve HTTPS with this certificate and key (reloaded on SIGHUP or change); `None`:
    /// plain HTTP.
    pub tls: Option<tls::TlsFiles>,
    /// Requests per second each client address may make to `/agent/v1` and to `/healthz`,
    /// `/readyz`, `/metrics` (each a bucket of its own; bursts of twice that).
    pub agent_rate_limit_per_client: u32,
    /// Trust this CA (PEM) when talking to other servers (a standby forwarding to the
    /// leader over HTTPS), besides the system's roots.
    pub ca_cert: Option<PathBuf>,
}

/// Several servers on one PostgreSQL database (docs/ha.md).
#[derive(Clone, Debug)]
pub struct HaConfig {
    /// `postgres://user:password@host:port/db`.
    pub store_url: String,
    /// The URL other servers, clients and agents use to reach this one, e.g.
    /// `http://10.0.0.5:7700`; standbys forward requests to it while this server leads.
    pub advertise_url: String,
    /// The leader renews its lease every third of this; a standby takes over after it lapses.
    pub lease_ttl_ms: u64,
}

impl ServerConfig {
    pub fn new(data_dir: PathBuf) -> Self {
        ServerConfig {
            data_dir,
            heartbeat_interval_ms: 1000,
            heartbeat_timeout_ms: 15_000,
            retention_ms: 7 * 24 * 3600 * 1000,
            sweep_every_ms: 60_000,
            audit_retention_ms: 90 * 24 * 3600 * 1000,
            max_audit_records: 1_000_000,
            fair_share_half_life_ms: 3600 * 1000,
            preemptible_queues: Default::default(),
            oidc: None,
            max_log_bytes: 64 << 20,
            max_body_bytes: 16 << 20,
            preset_tokens: Default::default(),
            max_live_jobs: 1_000_000,
            max_store_bytes: None,
            rate_limit_per_client: 1000,
            max_artifact_bytes: 1 << 30,
            idempotency_ttl_ms: 24 * 3600 * 1000,
            listen: listen::ListenLimits::default(),
            max_idempotency_keys: 100_000,
            max_idempotency_keys_per_client: 10_000,
            ha: None,
            tls: None,
            ca_cert: None,
            agent_rate_limit_per_client: 20_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("store: {0}")]
    Store(#[from] zenith_store::StoreError),
    #[error("{0}")]
    Io(String),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The control loop stopped the server.
    #[error("{0}")]
    Fatal(#[from] control::Fatal),
    /// `serve_ha` was called without a PostgreSQL store.
    #[error("no PostgreSQL store configured")]
    NoHaStore,
    /// A setting that cannot work (named in the message).
    #[error("{0}")]
    Config(String),
}

/// Shared by all handlers; cloned per request, so one reference count (a clone per field
/// showed up at 5% of server CPU with 10,000 agents heartbeating).
#[derive(Clone)]
pub(crate) struct AppState(Arc<AppInner>);

impl std::ops::Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

pub(crate) struct AppInner {
    control: mpsc::Sender<control::LoopMsg>,
    reader: Arc<dyn StoreReader>,
    logs: logs::LogStore,
    tokens: auth::Tokens,
    shutdown: watch::Receiver<bool>,
    metrics: Arc<metrics::Metrics>,
    events: tokio::sync::broadcast::Sender<events::EventBatch>,
    /// True while the store refuses writes.
    degraded: Arc<std::sync::atomic::AtomicBool>,
    limiter: Arc<limiter::RateLimiter>,
    /// Token buckets of `/agent/v1` and of the probes (`/healthz`, `/readyz`, `/metrics`).
    agent_limiter: Arc<limiter::RateLimiter>,
    probe_limiter: Arc<limiter::RateLimiter>,
    artifacts: artifacts::ArtifactStore,
    keys: Arc<node_keys::NodeKeys>,
    users: Arc<users::UserTokens>,
    /// Judges OIDC bearer tokens when `--oidc-issuer` is set.
    oidc: Option<Arc<oidc::Oidc>>,
    clock: clock::Clock,
}

/// The node an agent request authenticated as (its credential), for the handlers.
#[derive(Clone, Debug)]
pub(crate) struct AuthedNode(pub zenith_model::NodeId);

/// Capacity of the control loop's inbox; a full inbox answers 429.
const CONTROL_INBOX: usize = 65_536;

/// Runs a server on `listener` until `shutdown` resolves (or a store failure stops it). With
/// [`ServerConfig::ha`] set it joins the servers sharing that PostgreSQL database
/// ([`ha`]); otherwise it runs alone on the embedded store in the data directory.
pub async fn serve(
    cfg: ServerConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    if cfg.ha.is_some() {
        return ha::serve(cfg, listener, shutdown).await;
    }
    let _lock = lock_data_dir(&cfg.data_dir, "server.lock", "server")?;
    let mut store = SqliteStore::open(&cfg.data_dir)?;
    if let Some(limit) = cfg.max_store_bytes {
        store.set_size_limit(limit)?;
    }
    let tokens = auth::Tokens::init(&mut store, &cfg.data_dir, &cfg.preset_tokens)?;
    let reader: Arc<dyn StoreReader> = Arc::new(store.reader(4)?);
    let metrics = Arc::new(metrics::Metrics::new());
    metrics.leader.set(1);
    let leader = leader::Leader::start(&cfg, Box::new(store), reader, tokens, metrics.clone())?;
    let app = leader.router.clone();
    let stop_wait = leader.stopped();
    let mut fatal = leader.fatal();
    let stop = leader.stop_sender();
    let stop_signal = async move {
        tokio::select! {
            _ = shutdown => {}
            _ = fatal.changed() => {}
        }
        let _ = stop.send(true);
    };
    serve_http(&cfg, listener, app, metrics, stop_signal, stop_wait).await?;
    match leader.finish().await {
        Some(e) => Err(ServerError::Fatal(e)),
        None => Ok(()),
    }
}

/// Serves `app` until `signal` resolves, within the connection bounds of `cfg`
/// ([`listen`]); once `stopped` turns, long-lived connections get 3 s to finish.
async fn serve_http(
    cfg: &ServerConfig,
    listener: tokio::net::TcpListener,
    app: Router,
    metrics: Arc<metrics::Metrics>,
    signal: impl Future<Output = ()> + Send + 'static,
    stopped: watch::Receiver<bool>,
) -> Result<(), ServerError> {
    let tls = match &cfg.tls {
        Some(files) => {
            let certs = tls::Reloading::open(files.clone())?;
            tokio::spawn(certs.clone().watch(
                std::time::Duration::from_secs(5),
                metrics.clone(),
                stopped.clone(),
            ));
            Some(certs.server_config()?)
        }
        None => {
            tokio::spawn(ignore_hangup(stopped.clone()));
            None
        }
    };
    listen::serve(listener, app, cfg.listen, tls, metrics, signal, stopped).await;
    Ok(())
}

/// Without TLS there is nothing to reload: SIGHUP (sent by `systemctl reload`, or a closing
/// terminal) is logged and ignored rather than ending the server, as with TLS, where it
/// reloads the certificate.
async fn ignore_hangup(mut stopped: watch::Receiver<bool>) {
    let kind = tokio::signal::unix::SignalKind::hangup();
    let Ok(mut hup) = tokio::signal::unix::signal(kind) else {
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => tracing::info!("SIGHUP: nothing to reload (no TLS certificate)"),
            _ = stopped.changed() => return,
        }
    }
}

/// Creates `dir` if needed and makes it private to this user (0700), also when an older
/// version left it readable: nothing inside (database, WAL, logs, artifacts) is then
/// reachable by other local users, whatever the modes of the files in it.
fn private_dir(dir: &std::path::Path) -> Result<(), ServerError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .map_err(|e| ServerError::Io(format!("cannot create {}: {e}", dir.display())))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| ServerError::Io(format!("cannot make {} private: {e}", dir.display())))
}

/// Fails as [`serve`] would when another zenith holds the data directory: lets `zenith up`
/// say so before it prints anything else (the lock is released again at once).
pub fn check_data_dir_free(dir: &std::path::Path) -> Result<(), ServerError> {
    lock_data_dir(dir, "server.lock", "server").map(drop)
}

/// Holds an exclusive lock on `<dir>/<file>` for as long as the returned guard lives, so that
/// two processes never share one data directory.
fn lock_data_dir(
    dir: &std::path::Path,
    file: &str,
    what: &str,
) -> Result<nix::fcntl::Flock<std::fs::File>, ServerError> {
    private_dir(dir)?;
    let path = dir.join(file);
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| ServerError::Io(format!("cannot open {}: {e}", path.display())))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        ServerError::Io(format!(
            "data directory {} is in use by another zenith {what} (cannot lock {}: {errno})",
            dir.display(),
            path.display()
        ))
    })
}

fn router(state: AppState, max_body: usize) -> Router {
    let (api, _) = openapi::api_routes().split_for_parts();
    let api = api
        .fallback(not_found)
        .layer(middleware::from_fn(error::json_rejections))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            access::authenticate,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), rate_limit));
    let enroll = Router::new()
        .route("/enroll", post(agent_api::enroll))
        .layer(middleware::from_fn_with_state(state.clone(), require_join));
    let agent = Router::new()
        .route("/register", post(agent_api::register))
        .route("/stream", get(agent_api::stream))
        .route("/report", post(agent_api::report))
        .route("/logs", post(agent_api::upload_logs))
        .route(
            "/artifacts/{run}/{step}/{instance}/{name}",
            axum::routing::put(artifacts::put).get(artifacts::get),
        )
        .fallback(not_found)
        .layer(middleware::from_fn(error::json_rejections))
        .layer(middleware::from_fn_with_state(state.clone(), require_node))
        .merge(enroll);
    let probes = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics_page))
        .layer(middleware::from_fn_with_state(
            state.probe_limiter.clone(),
            limit_with,
        ));
    Router::new()
        .merge(probes)
        .route("/", get(ui::index))
        .route("/ui/{file}", get(ui::asset))
        .route("/api/v1/openapi.json", get(openapi::serve))
        .nest("/api/v1", api)
        .nest("/agent/v1", agent)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(state.clone(), track_request))
        .with_state(state)
}

async fn ready(State(state): State<AppState>) -> Response {
    if state.control.is_closed() || *state.shutdown.borrow() {
        ApiError::Unavailable("control loop stopped".into()).into_response()
    } else if state.degraded.load(std::sync::atomic::Ordering::Relaxed) {
        ApiError::Unavailable("the store refuses writes; new work is refused".into())
            .into_response()
    } else {
        "ready\n".into_response()
    }
}

/// Prometheus scrape: engine levels are read from the control loop at scrape time.
async fn metrics_page(State(state): State<AppState>) -> Response {
    let (tx, rx) = tokio::sync::oneshot::channel();
    if state
        .control
        .try_send(control::LoopMsg::Levels { reply: tx })
        .is_ok()
    {
        if let Ok(levels) = rx.await {
            state.metrics.set_levels(&levels);
        }
    }
    state.metrics.set_clients(state.limiter.clients());
    let mut resp = state.metrics.render().into_response();
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
    );
    resp
}

/// Counts every request by route template, method and status, and times it.
async fn track_request(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = metrics::route_of(req.uri().path());
    let method = metrics::method_of(req.method());
    let watch = clock::Stopwatch::start();
    let resp = next.run(req).await;
    // Streams (logs, agent stream) are timed to their first byte, not their end.
    state
        .metrics
        .observe_request(route, method, resp.status().as_u16(), watch.seconds());
    resp
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

fn bearer(req: &Request) -> Option<&str> {
    req.headers()
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Per-client token bucket on the public API (before authentication, so floods of bad
/// tokens are limited too).
async fn rate_limit(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    match state.limiter.check(peer.ip(), clock::Monotonic::now()) {
        Ok(()) => next.run(req).await,
        Err(_) => ApiError::Overloaded(format!("too many requests from {}; slow down", peer.ip()))
            .into_response(),
    }
}

/// The probes: a token bucket per client address of their own, so a flood there does not
/// starve the API (the agent protocol's is checked with its credential, `agent_rate`).
async fn limit_with(
    State(limiter): State<Arc<limiter::RateLimiter>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    match limiter.check(peer.ip(), clock::Monotonic::now()) {
        Ok(()) => next.run(req).await,
        Err(_) => ApiError::Overloaded(format!("too many requests from {}; slow down", peer.ip()))
            .into_response(),
    }
}

/// Enrolment takes the join token (`agent.token`; the admin token works too), within the
/// agent protocol's rate limit.
async fn require_join(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    if let Err(refused) = agent_rate(&state, peer) {
        return refused.into_response();
    }
    match bearer(&req).and_then(|t| state.tokens.role_of(t)) {
        Some(_) => next.run(req).await,
        None => ApiError::Unauthorized.into_response(),
    }
}

/// The agent protocol's token bucket for `peer` (checked in the same middleware as the
/// credential: one layer less on every heartbeat).
fn agent_rate(state: &AppState, peer: std::net::SocketAddr) -> Result<(), ApiError> {
    state
        .agent_limiter
        .check(peer.ip(), clock::Monotonic::now())
        .map_err(|_| {
            ApiError::Overloaded(format!("too many requests from {}; slow down", peer.ip()))
        })
}

/// Every other agent request carries its node's credential; handlers get the node
/// ([`AuthedNode`]) and hold the request to it.
async fn require_node(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    if let Err(refused) = agent_rate(&state, peer) {
        return refused.into_response();
    }
    let Some(token) = bearer(&req) else {
        return ApiError::Unauthorized.into_response();
    };
    match state.keys.check(token) {
        Ok(node) => {
            req.extensions_mut().insert(AuthedNode(node));
            next.run(req).await
        }
        Err((why, node)) => {
            state
                .metrics
                .agent_refused
                .get_or_create(&metrics::ReasonLabel {
                    reason: why.label(),
                })
                .inc();
            why.into_error(node.as_deref()).into_response()
        }
    }
}

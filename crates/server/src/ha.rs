//! Several servers on one PostgreSQL database: one leader, the others standing by.
//!
//! Every server listens and answers. The *pilot* task of each server competes for the lease
//! row (`zenith_store::pg_lease`); the winner starts a term ([`Leader`]: engine loaded from the
//! store, control loop, fenced writer) and serves the API from it, renewing the lease every
//! third of its TTL. A standby forwards `/api/v1` requests to the leader it read from the lease
//! row, answers agents with 503 and the leader's URL (agents connect to the leader directly),
//! and tries to take the lease each poll. A leader that cannot renew for a whole TTL, finds
//! its lease taken, or has a write refused by the fence ends its term at once and becomes a
//! standby; its writes could not have landed anyway (see `zenith_store::postgres::Fence`).

use crate::leader::Leader;
use crate::{auth, bearer, lock_data_dir, metrics::Metrics, ApiError, ServerConfig, ServerError};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tower::ServiceExt;
use zenith_protocol::api::{ServerList, ServerView, TermView};
use zenith_store::pg_lease::Lease;
use zenith_store::postgres::{Fence, PgStore};
use zenith_store::StoreError;

/// Set on requests a standby forwards, so that two standbys never bounce one between them.
const FORWARDED: &str = "x-zenith-forwarded-by";
use zenith_protocol::agent::LEADER_HEADER;

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

/// Runs `f` with the lease on a blocking thread, giving up after `limit` (the thread may
/// stay blocked on a dead connection until its TCP timeout; the next call is refused until
/// then rather than queued behind it).
async fn with_lease<T: Send + 'static>(
    lease: &Arc<Mutex<Lease>>,
    limit: Duration,
    f: impl FnOnce(&mut Lease) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, String> {
    let lease = lease.clone();
    let job = tokio::task::spawn_blocking(move || {
        let mut g = lease
            .try_lock()
            .map_err(|_| "a previous call on the lease is still running".to_string())?;
        f(&mut g).map_err(|e| e.to_string())
    });
    match tokio::time::timeout(limit, job).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(format!("lease task failed: {e}")),
        Err(_) => Err(format!(
            "no answer from PostgreSQL within {} ms",
            limit.as_millis()
        )),
    }
}

fn server_id() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "server".into());
    let mut b = [0u8; 3];
    let _ = getrandom::fill(&mut b);
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
        return Err(ServerError::Fatal("no PostgreSQL store configured".into()));
    };
    let _lock = lock_data_dir(&cfg.data_dir, "server.lock", "server")?;
    let mut store = open_store(&hc.store_url).await?;
    let data_dir = cfg.data_dir.clone();
    let (tokens, store_back) = tokio::task::spawn_blocking(move || {
        let t = auth::Tokens::init(&mut store, &data_dir);
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
        http: reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| ServerError::Io(format!("http client: {e}")))?,
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
    let pilot = tokio::spawn(pilot(cfg.clone(), hc, ha.clone(), tokens, stop_rx.clone()));
    let standby = standby_router(ha.clone());
    let outer_ha = ha.clone();
    let app = Router::new()
        .route("/api/v1/servers", get(servers))
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
        let _ = signal_tx.send(true);
    };
    let served = crate::serve_http(listener, app, signal, stop_rx.clone()).await;
    let _ = stop_tx.send(true);
    let _ = pilot.await;
    served
}

/// Why a term ended.
enum TermEnd {
    Shutdown,
    Lost(String),
}

/// Stands by, leads when the lease is won, stands by again when it is lost; until shutdown.
async fn pilot(
    cfg: ServerConfig,
    hc: crate::HaConfig,
    ha: Arc<Ha>,
    tokens: auth::Tokens,
    mut stop: watch::Receiver<bool>,
) {
    let ttl = Duration::from_millis(hc.lease_ttl_ms.max(300));
    let poll = (ttl / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let lease = Arc::new(Mutex::new(Lease::new(
        &hc.store_url,
        &ha.id,
        &ha.me,
        hc.lease_ttl_ms,
    )));
    let version = env!("CARGO_PKG_VERSION");
    let started = crate::Clock::new().now() as i64;
    let mut last_warning = String::new();
    loop {
        // Standby.
        ha.metrics.leader.set(0);
        let epoch = loop {
            if *stop.borrow() {
                let _ = with_lease(&lease, ttl, |l| l.leave()).await;
                return;
            }
            let _ = with_lease(&lease, ttl, move |l| l.heartbeat(version, started)).await;
            match with_lease(&lease, ttl, |l| l.try_acquire()).await {
                Ok(Some(epoch)) => break epoch,
                Ok(None) => {
                    if let Ok(v) = with_lease(&lease, ttl, |l| l.view()).await {
                        ha.metrics.lease_epoch.set(v.epoch);
                        let live = v.expires_at > v.now && !v.url.is_empty();
                        ha.set_leader(live.then_some(v.url));
                    }
                    last_warning.clear();
                }
                Err(e) => {
                    if e != last_warning {
                        tracing::warn!(error = %e, "cannot reach the lease; standing by");
                        last_warning = e;
                    }
                    ha.set_leader(None);
                }
            }
            tokio::select! {
                _ = stop.changed() => {}
                _ = tokio::time::sleep(poll) => {}
            }
        };

        // Leader.
        let won_at = tokio::time::Instant::now();
        let lost = Arc::new(Notify::new());
        let on_lost = lost.clone();
        let fence = Fence {
            holder: ha.id.clone(),
            epoch,
            on_lost: Arc::new(move || on_lost.notify_one()),
        };
        let (cfg2, tokens2, metrics2, url) = (
            cfg.clone(),
            tokens.clone(),
            ha.metrics.clone(),
            hc.store_url.clone(),
        );
        let started_term = tokio::task::spawn_blocking(move || {
            let mut store = PgStore::open(&url)?;
            store.set_fence(fence);
            let reader = Arc::new(store.reader(4));
            Leader::start(&cfg2, Box::new(store), reader, tokens2, metrics2)
        })
        .await;
        let term = match started_term {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                tracing::error!(error = %e, epoch, "could not start the term; releasing the lease");
                let _ = with_lease(&lease, ttl, move |l| l.release(epoch)).await;
                tokio::time::sleep(poll).await;
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "term start task failed");
                continue;
            }
        };
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

        let end = lead(
            &lease, ttl, epoch, &term, &lost, &mut stop, version, started,
        )
        .await;
        if matches!(end, TermEnd::Lost(_)) {
            ha.metrics.leader_losses.inc();
        }
        // From here requests go to the standby side: forwarded to the new leader when the
        // lease names one, refused with 503 (clients retry) until then.
        let next = with_lease(&lease, ttl, |l| l.view()).await.ok();
        ha.set_leader(
            next.filter(|v| v.epoch != epoch && v.expires_at > v.now)
                .map(|v| v.url),
        );
        ha.set_term(None);
        ha.metrics.leader.set(0);
        let fatal = term.finish().await;
        match end {
            TermEnd::Shutdown => {
                let _ = with_lease(&lease, ttl, move |l| l.release(epoch)).await;
                let _ = with_lease(&lease, ttl, |l| l.leave()).await;
                tracing::info!(epoch, "leader: released the lease at shutdown");
                return;
            }
            TermEnd::Lost(why) => {
                if let Some(f) = fatal {
                    tracing::error!(error = %f, "the term's store failed");
                }
                // Let another server lead (no-op when the lease is already someone else's).
                let _ = with_lease(&lease, ttl, move |l| l.release(epoch)).await;
                tracing::warn!(epoch, reason = %why, "leader: stepped down; standing by");
            }
        }
    }
}

/// Renews the lease while the term runs; returns why it ended.
#[allow(clippy::too_many_arguments)]
async fn lead(
    lease: &Arc<Mutex<Lease>>,
    ttl: Duration,
    epoch: i64,
    term: &Leader,
    lost: &Notify,
    stop: &mut watch::Receiver<bool>,
    version: &'static str,
    started: i64,
) -> TermEnd {
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
        let _ = with_lease(lease, ttl / 3, move |l| l.heartbeat(version, started)).await;
    }
}

fn standby_router(ha: Arc<Ha>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(standby_ready))
        .route("/metrics", get(standby_metrics))
        .route("/", get(crate::ui::index))
        .route("/ui/{file}", get(crate::ui::asset))
        .route("/api/v1/{*rest}", any(forward))
        .route("/agent/v1/{*rest}", any(not_leader))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .with_state(ha)
}

async fn standby_ready(State(ha): State<Arc<Ha>>) -> Response {
    let msg = match ha.leader_url() {
        Some(l) => format!("standby; the leader is {l}"),
        None => "standby; no leader elected yet".into(),
    };
    ApiError::Unavailable(msg).into_response()
}

async fn standby_metrics(State(ha): State<Arc<Ha>>) -> Response {
    let mut resp = ha.metrics.render().into_response();
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    resp
}

/// Agents talk to the leader itself: tell them where it is.
async fn not_leader(State(ha): State<Arc<Ha>>) -> Response {
    let leader = ha.leader_url();
    let msg = match &leader {
        Some(l) => format!("this server is a standby; the leader is {l}"),
        None => "this server is a standby and no leader is elected yet; retry shortly".into(),
    };
    let mut resp = ApiError::Unavailable(msg).into_response();
    if let Some(v) = leader.and_then(|l| HeaderValue::from_str(&l).ok()) {
        resp.headers_mut()
            .insert(HeaderName::from_static(LEADER_HEADER), v);
    }
    resp.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        HeaderValue::from_static("1"),
    );
    resp
}

/// Hop-by-hop headers, and the ones the proxy sets itself.
fn passes(name: &HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "host"
            | "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "te"
            | "upgrade"
            | "content-length"
    )
}

/// Forwards one API request to the leader and streams its answer back. Requests without an
/// admin token, and clients over their rate, are answered here.
async fn forward(
    State(ha): State<Arc<Ha>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    req: Request,
) -> Response {
    if ha
        .limiter
        .check(peer.ip(), crate::clock::Monotonic::now())
        .is_err()
    {
        return ApiError::Overloaded(format!("too many requests from {}; slow down", peer.ip()))
            .into_response();
    }
    match bearer(&req).and_then(|t| ha.tokens.role_of(t)) {
        Some(auth::Role::Admin) => {}
        Some(auth::Role::Agent) => return ApiError::Forbidden.into_response(),
        None => return ApiError::Unauthorized.into_response(),
    }
    let Some(leader) = ha.leader_url().filter(|l| *l != ha.me) else {
        return ApiError::Unavailable("no leader elected yet; retry shortly".into())
            .into_response();
    };
    if req.headers().contains_key(FORWARDED) {
        return ApiError::Unavailable(format!("{leader} is not leading any more; retry shortly"))
            .into_response();
    }
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let body = match axum::body::to_bytes(body, ha.max_body).await {
        Ok(b) => b,
        Err(e) => return ApiError::PayloadTooLarge(format!("request body: {e}")).into_response(),
    };
    let send = |to: &str| {
        let mut rb = ha.http.request(parts.method.clone(), format!("{to}{path}"));
        for (k, v) in parts.headers.iter().filter(|(k, _)| passes(k)) {
            rb = rb.header(k, v);
        }
        rb.header(FORWARDED, ha.me.as_str())
            .body(body.clone())
            .send()
    };
    ha.metrics.forwarded.inc();
    let resp = match send(&leader).await {
        Ok(r) => r,
        // The leader this server knew is gone (nothing was sent): the lease may already name
        // its successor, before this server's next poll.
        Err(e) if e.is_connect() => match fresh_leader(&ha, &leader).await {
            Some(next) => match send(&next).await {
                Ok(r) => r,
                Err(e) => return leader_silent(&next, &e),
            },
            None => return leader_silent(&leader, &e),
        },
        Err(e) => return leader_silent(&leader, &e),
    };
    let mut out = Response::builder()
        .status(StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY));
    for (k, v) in resp.headers().iter().filter(|(k, _)| passes(k)) {
        out = out.header(k, v);
    }
    out.body(Body::from_stream(resp.bytes_stream()))
        .unwrap_or_else(|e| ApiError::Unavailable(format!("forwarding: {e}")).into_response())
}

fn leader_silent(leader: &str, e: &reqwest::Error) -> Response {
    ApiError::Unavailable(format!(
        "the leader {leader} did not answer: {e}; retry shortly"
    ))
    .into_response()
}

/// Reads the lease again; the leader it names if that is live and not `stale` (or this
/// server).
async fn fresh_leader(ha: &Arc<Ha>, stale: &str) -> Option<String> {
    let reads = ha.reads.clone();
    let view = tokio::task::spawn_blocking(move || reads.lock().ok()?.view().ok())
        .await
        .ok()??;
    let live = view.expires_at > view.now && !view.url.is_empty();
    let next = live.then_some(view.url)?;
    if next == stale || next == ha.me {
        return None;
    }
    ha.set_leader(Some(next.clone()));
    Some(next)
}

/// `GET /api/v1/servers` on any server of an HA setup.
async fn servers(State(ha): State<Arc<Ha>>, req: Request) -> Response {
    match bearer(&req).and_then(|t| ha.tokens.role_of(t)) {
        Some(auth::Role::Admin) => {}
        Some(auth::Role::Agent) => return ApiError::Forbidden.into_response(),
        None => return ApiError::Unauthorized.into_response(),
    }
    // Concurrent callers wait their turn on the one connection (each call is bounded by the
    // connection's statement timeout).
    let reads = ha.reads.clone();
    let read = tokio::task::spawn_blocking(move || {
        let mut l = reads
            .lock()
            .map_err(|_| "lease connection lock poisoned".to_string())?;
        Ok::<_, String>((
            l.view().map_err(|e| e.to_string())?,
            l.members().map_err(|e| e.to_string())?,
            l.terms(10).map_err(|e| e.to_string())?,
        ))
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    let (v, members, terms) = match read {
        Ok(r) => r,
        Err(e) => return ApiError::Unavailable(format!("store: {e}")).into_response(),
    };
    let live = v.expires_at > v.now && !v.url.is_empty();
    let ms = |d: i64| d.max(0) as u64;
    Json(ServerList {
        store: "postgres".into(),
        answered_by: ha.me.clone(),
        leader: live.then(|| v.url.clone()),
        epoch: v.epoch,
        lease_age_ms: ms(v.now - v.acquired_at),
        lease_expires_in_ms: v.expires_at - v.now,
        commits_this_epoch: v.commits,
        members: members
            .into_iter()
            .map(|m| ServerView {
                leader: live && m.id == v.holder,
                last_seen_ms_ago: ms(v.now - m.last_seen),
                id: m.id,
                url: m.url,
                version: m.version,
            })
            .collect(),
        terms: terms
            .into_iter()
            .map(|t| TermView {
                epoch: t.epoch,
                url: t.url,
                held_ms: ms(t.ended_at - t.acquired_at),
                commits: t.commits,
            })
            .collect(),
    })
    .into_response()
}

/// `GET /api/v1/servers` on an embedded server: itself, always the leader.
pub(crate) async fn embedded_servers(headers: axum::http::HeaderMap) -> Json<ServerList> {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| format!("http://{h}"))
        .unwrap_or_default();
    Json(ServerList {
        store: "embedded".into(),
        answered_by: host.clone(),
        leader: Some(host.clone()),
        epoch: 0,
        lease_age_ms: 0,
        lease_expires_in_ms: 0,
        commits_this_epoch: 0,
        members: vec![ServerView {
            id: "embedded".into(),
            url: host,
            version: env!("CARGO_PKG_VERSION").into(),
            leader: true,
            last_seen_ms_ago: 0,
        }],
        terms: vec![],
    })
}

//! How a standby answers: `/api/v1` requests are forwarded to the leader named by the lease
//! (and their answers streamed back), agents are told to go to the leader, health and metrics
//! are its own.

use super::Ha;
use crate::{auth, bearer, ApiError};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use std::sync::Arc;
use zenith_protocol::agent::LEADER_HEADER;

/// Set on requests a standby forwards, so that two standbys never bounce one between them.
const FORWARDED: &str = "x-zenith-forwarded-by";

/// The routes a standby serves (while this server leads, the term's router answers instead).
pub(super) fn router(ha: Arc<Ha>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/", get(crate::ui::index))
        .route("/ui/{file}", get(crate::ui::asset))
        .route("/api/v1/openapi.json", get(crate::openapi::serve))
        .route("/api/v1/{*rest}", any(forward))
        .route("/agent/v1/{*rest}", any(not_leader))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .with_state(ha)
}

async fn ready(State(ha): State<Arc<Ha>>) -> Response {
    let msg = match ha.leader_url() {
        Some(l) => format!("standby; the leader is {l}"),
        None => "standby; no leader elected yet".into(),
    };
    ApiError::Unavailable(msg).into_response()
}

async fn metrics(State(ha): State<Arc<Ha>>) -> Response {
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

/// Forwards one API request to the leader and streams its answer back. Requests without a
/// token, with a wrong bootstrap token, and clients over their rate, are answered here.
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
    // People's tokens are the leader's to judge (it holds the one current table, so a
    // revocation holds here the moment the leader commits it): forwarded as they are; so are
    // OIDC tokens (the leader fetches the provider's keys).
    match bearer(&req) {
        Some(t) if crate::users::UserTokens::is_user_token(t) || crate::oidc::looks_like_jwt(t) => {
        }
        Some(t) => match ha.tokens.role_of(t) {
            Some(auth::Role::Admin) => {}
            Some(auth::Role::Agent) => return ApiError::Forbidden.into_response(),
            None => return ApiError::Unauthorized.into_response(),
        },
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
            .header(crate::access::CLIENT_HEADER, peer.ip().to_string())
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

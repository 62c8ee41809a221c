//! `GET /api/v1/servers`: who serves this cluster, who leads, and the recent terms; from the
//! lease row and member list with PostgreSQL, a one-line answer for the embedded store.

use super::{Ha, LeaseError};
use crate::{auth, bearer, ApiError};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::Arc;
use zenith_protocol::api::{ServerList, ServerView, TermView};

/// `GET /api/v1/servers` on any server of an HA setup.
pub(super) async fn servers(State(ha): State<Arc<Ha>>, req: Request) -> Response {
    match bearer(&req).and_then(|t| ha.tokens.role_of(t)) {
        Some(auth::Role::Admin) => {}
        Some(auth::Role::Agent) => return ApiError::Forbidden.into_response(),
        None => return ApiError::Unauthorized.into_response(),
    }
    // Concurrent callers wait their turn on the one connection (each call is bounded by the
    // connection's statement timeout).
    let reads = ha.reads.clone();
    let read = tokio::task::spawn_blocking(move || {
        let mut l = reads.lock().map_err(|_| LeaseError::Poisoned)?;
        Ok::<_, LeaseError>((l.view()?, l.members()?, l.terms(10)?))
    })
    .await;
    let (v, members, terms) = match read {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return ApiError::Unavailable(format!("store: {e}")).into_response(),
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
#[utoipa::path(
    get, path = "/servers", operation_id = "listServers", tag = "cluster",
    responses((status = 200, description = "The servers sharing the store and who leads", body = zenith_protocol::api::ServerList))
)]
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

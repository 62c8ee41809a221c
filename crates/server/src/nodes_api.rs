//! Public API v1 handlers of nodes (`/api/v1/nodes...`): list, revoke, cordon, uncordon,
//! drain, remove.

use crate::control::LoopMsg;
use crate::error::ApiError;
use crate::handler::ask;
use crate::users::Principal;
use crate::AppState;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use zenith_protocol::api::NodeList;

#[utoipa::path(
    get, path = "/nodes", operation_id = "listNodes", tag = "nodes",
    responses((status = 200, description = "Every node the server knows", body = zenith_protocol::api::NodeList))
)]
pub async fn nodes(State(state): State<AppState>) -> Result<Json<NodeList>, ApiError> {
    Ok(Json(NodeList {
        nodes: ask(&state, |reply| LoopMsg::Nodes { reply }).await?,
    }))
}

/// `POST /nodes/{node}/revoke` (node ID, or a name one node has): the node's credential is
/// refused from now on, its stream closed and its attempts requeued elsewhere.
#[utoipa::path(
    post, path = "/nodes/{node}/revoke", operation_id = "revokeNode", tag = "nodes", params(("node" = String, Path, description = "Node ID or name")),
    responses((status = 200, description = "Its credential revoked; its attempts requeued", body = zenith_protocol::api::RevokeView))
)]
pub async fn revoke_node(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(node): Path<String>,
) -> Result<Json<zenith_protocol::api::RevokeView>, ApiError> {
    p.must_operate()?;
    checked_node(&node)?;
    Ok(Json(
        crate::handler::ask_waiting(&state, |reply| LoopMsg::Revoke { node, reply }).await??,
    ))
}

fn checked_node(node: &str) -> Result<(), ApiError> {
    if node.is_empty() || node.len() > 256 {
        return Err(ApiError::Invalid(zenith_model::ValidationError::new(
            "node",
            "a node ID or name of 1-256 bytes",
        )));
    }
    Ok(())
}

async fn node_action(
    state: &AppState,
    p: &Principal,
    node: String,
    action: crate::control::NodeAction,
) -> Result<Json<zenith_protocol::api::NodeView>, ApiError> {
    p.must_operate()?;
    checked_node(&node)?;
    Ok(Json(
        crate::handler::ask_waiting(state, |reply| LoopMsg::NodeAction {
            node,
            action,
            reply,
        })
        .await??,
    ))
}

/// `POST /nodes/{node}/cordon`: no new work there; what runs goes on.
#[utoipa::path(
    post, path = "/nodes/{node}/cordon", operation_id = "cordonNode", tag = "nodes", params(("node" = String, Path, description = "Node ID or name")),
    responses((status = 200, description = "It takes no new work", body = zenith_protocol::api::NodeView))
)]
pub async fn cordon_node(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(node): Path<String>,
) -> Result<Json<zenith_protocol::api::NodeView>, ApiError> {
    node_action(&state, &p, node, crate::control::NodeAction::Cordon).await
}

/// `POST /nodes/{node}/uncordon`: open to new work again (ends a drain).
#[utoipa::path(
    post, path = "/nodes/{node}/uncordon", operation_id = "uncordonNode", tag = "nodes", params(("node" = String, Path, description = "Node ID or name")),
    responses((status = 200, description = "It takes new work again", body = zenith_protocol::api::NodeView))
)]
pub async fn uncordon_node(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(node): Path<String>,
) -> Result<Json<zenith_protocol::api::NodeView>, ApiError> {
    node_action(&state, &p, node, crate::control::NodeAction::Uncordon).await
}

/// `POST /nodes/{node}/drain` `{"deadline": "1h"}`: cordon; attempts still running at the
/// deadline are stopped and requeued elsewhere.
#[utoipa::path(
    post, path = "/nodes/{node}/drain", operation_id = "drainNode", tag = "nodes", params(("node" = String, Path, description = "Node ID or name")),
    request_body(content = Option<zenith_protocol::api::DrainRequest>, description = "Optional deadline"),
    responses((status = 200, description = "Cordoned; running attempts finish, or are requeued at the deadline", body = zenith_protocol::api::NodeView))
)]
pub async fn drain_node(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(node): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<zenith_protocol::api::NodeView>, ApiError> {
    let req: zenith_protocol::api::DrainRequest = crate::handler::decode_optional(&body)?;
    let ms = req.deadline.map(|d| d.as_millis());
    node_action(&state, &p, node, crate::control::NodeAction::Drain(ms)).await
}

/// `DELETE /nodes/{node}`: forget a node that runs nothing (409 while it runs work).
#[utoipa::path(
    delete, path = "/nodes/{node}", operation_id = "removeNode", tag = "nodes", params(("node" = String, Path, description = "Node ID or name")),
    responses((status = 200, description = "Forgotten (a node that is not running anything)", body = zenith_protocol::api::NodeView),
        (status = 409, description = "It still runs attempts", body = zenith_protocol::api::ErrorBody))
)]
pub async fn remove_node(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(node): Path<String>,
) -> Result<Json<zenith_protocol::api::NodeView>, ApiError> {
    node_action(&state, &p, node, crate::control::NodeAction::Remove).await
}

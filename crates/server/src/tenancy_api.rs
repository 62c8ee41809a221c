//! `/api/v1/tokens` (admin), `/api/v1/whoami` (anyone) and `/api/v1/audit` (admin, operator).

use crate::control::LoopMsg;
use crate::error::ApiError;
use crate::handler::{ask, decode, read};
use crate::users::{NewToken, Principal};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use zenith_model::tenancy::{
    validate_namespace, validate_user, Role, ALL_NAMESPACES, MAX_TOKEN_NAMESPACES,
};
use zenith_model::ValidationError;
use zenith_protocol::tenancy::{
    AuditList, TokenCreated, TokenList, TokenRequest, TokenView, WhoAmI,
};
use zenith_store::AuditFilter;

/// Longest a token may live: ten years.
const MAX_EXPIRY_MS: u64 = 10 * 366 * 24 * 3600 * 1000;

fn invalid(field: &str, msg: impl Into<String>) -> ApiError {
    ApiError::Invalid(ValidationError::new(field, msg))
}

/// Checks a token request; its namespaces, deduplicated (an admin's are `*`).
fn checked_namespaces(req: &TokenRequest) -> Result<Vec<String>, ApiError> {
    validate_user(&req.name, "name").map_err(ApiError::Invalid)?;
    // Admins act everywhere: naming namespaces would promise a limit that does not hold.
    let everywhere = req.namespaces.is_empty() || req.namespaces == [ALL_NAMESPACES];
    if req.role == Role::Admin && !everywhere {
        return Err(invalid(
            "namespaces",
            "admin tokens act in every namespace; leave namespaces out (or use a submitter or viewer token for some)",
        ));
    }
    // Operators read everywhere whatever they name.
    if req.role == Role::Admin || (req.role == Role::Operator && req.namespaces.is_empty()) {
        return Ok(vec![ALL_NAMESPACES.into()]);
    }
    if req.namespaces.is_empty() {
        return Err(invalid(
            "namespaces",
            format!(
                "{} tokens name the namespaces they act in (--ns NAME, or * for all)",
                req.role
            ),
        ));
    }
    if req.namespaces.len() > MAX_TOKEN_NAMESPACES {
        return Err(invalid(
            "namespaces",
            format!("at most {MAX_TOKEN_NAMESPACES}"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(req.namespaces.len());
    for (i, ns) in req.namespaces.iter().enumerate() {
        if ns != ALL_NAMESPACES {
            validate_namespace(ns, &format!("namespaces[{i}]")).map_err(ApiError::Invalid)?;
        }
        if !out.contains(ns) {
            out.push(ns.clone());
        }
    }
    Ok(out)
}

/// `POST /api/v1/tokens`: a new token, shown once.
#[utoipa::path(
    post, path = "/tokens", operation_id = "createToken", tag = "tenancy",
    request_body = zenith_protocol::tenancy::TokenRequest,
    responses((status = 201, description = "The token (its secret shown only here)", body = zenith_protocol::tenancy::TokenCreated))
)]
pub async fn create(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    body: Bytes,
) -> Result<(StatusCode, Json<TokenCreated>), ApiError> {
    p.must_be_admin()?;
    let req: TokenRequest = decode(&body)?;
    let namespaces = checked_namespaces(&req)?;
    let now = state.clock.now();
    let expires_at = match req.expires_in {
        Some(d) if d.0 == 0 || d.0 > MAX_EXPIRY_MS => {
            return Err(invalid("expires_in", "must be between 1ms and 10 years"))
        }
        Some(d) => Some(now + d.0),
        None => None,
    };
    let new = NewToken {
        user: req.name,
        role: req.role,
        namespaces,
        expires_at,
        created_by: p.user.clone(),
    };
    let (token, record) = ask(&state, |reply| LoopMsg::CreateToken { new, reply }).await??;
    Ok((
        StatusCode::CREATED,
        Json(TokenCreated {
            token,
            view: TokenView::of(&record, now),
        }),
    ))
}

/// `GET /api/v1/tokens`: every token, newest first (never a secret).
#[utoipa::path(
    get, path = "/tokens", operation_id = "listTokens", tag = "tenancy",
    responses((status = 200, description = "Tokens (without secrets)", body = zenith_protocol::tenancy::TokenList))
)]
pub async fn list(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<TokenList>, ApiError> {
    p.must_be_admin()?;
    let now = state.clock.now();
    Ok(Json(TokenList {
        tokens: state
            .users
            .list()
            .iter()
            .map(|r| TokenView::of(r, now))
            .collect(),
    }))
}

/// `POST /api/v1/tokens/{id}/revoke`: refused from now on.
#[utoipa::path(
    post, path = "/tokens/{id}/revoke", operation_id = "revokeToken", tag = "tenancy", params(("id" = String, Path, description = "Token ID")),
    responses((status = 200, description = "Revoked on every server", body = zenith_protocol::tenancy::TokenView))
)]
pub async fn revoke(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<TokenView>, ApiError> {
    p.must_be_admin()?;
    if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid(
            "id",
            "a token ID is 16 hex digits (zenith token list)",
        ));
    }
    let record = ask(&state, |reply| LoopMsg::RevokeToken { id, reply }).await??;
    Ok(Json(TokenView::of(&record, state.clock.now())))
}

/// `GET /api/v1/whoami`
#[utoipa::path(
    get, path = "/whoami", operation_id = "whoami", tag = "tenancy",
    responses((status = 200, description = "The caller: user, role, namespaces", body = zenith_protocol::tenancy::WhoAmI))
)]
pub async fn whoami(Extension(p): Extension<Principal>) -> Json<WhoAmI> {
    Json(WhoAmI {
        default_namespace: p.default_namespace().to_string(),
        user: p.user,
        role: p.role,
        namespaces: p.namespaces,
        token: p.token,
    })
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    user: Option<String>,
    /// Milliseconds since the epoch.
    since: Option<u64>,
    #[serde(default)]
    refused: bool,
    before: Option<u64>,
    limit: Option<usize>,
}

/// `GET /api/v1/audit`: newest first.
#[utoipa::path(
    get, path = "/audit", operation_id = "audit", tag = "tenancy", params(AuditQuery),
    responses((status = 200, description = "Audit records, newest first (admin only)", body = zenith_protocol::tenancy::AuditList))
)]
pub async fn audit(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<AuditList>, ApiError> {
    p.must_operate()?;
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > zenith_store::MAX_AUDIT_PAGE {
        return Err(invalid(
            "limit",
            format!("must be 1..={}", zenith_store::MAX_AUDIT_PAGE),
        ));
    }
    if let Some(u) = &q.user {
        validate_user(u, "user").map_err(ApiError::Invalid)?;
    }
    let filter = AuditFilter {
        user: q.user,
        since: q.since,
        refused_only: q.refused,
        before: q.before,
        limit,
    };
    let records = read(&state, move |r| r.audit(&filter)).await?;
    let next_before = if records.len() == limit {
        records.last().map(|r| r.id)
    } else {
        None
    };
    Ok(Json(AuditList {
        records,
        next_before,
    }))
}

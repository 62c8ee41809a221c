//! `/api/v1/namespaces` (settings: weight, user weights, quota; set by admins, read by whoever
//! reads the namespace) and `/api/v1/share` (the fair-share table, for the namespaces the
//! caller reads).

use crate::control::LoopMsg;
use crate::error::ApiError;
use crate::handler::{ask, decode};
use crate::users::Principal;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use zenith_model::namespace::NamespaceSettings;
use zenith_model::tenancy::validate_namespace;
use zenith_model::ValidationError;
use zenith_protocol::tenancy::{NamespaceList, ShareList};

fn checked_name(name: &str) -> Result<(), ApiError> {
    validate_namespace(name, "name").map_err(ApiError::Invalid)
}

/// `GET /api/v1/namespaces`: the settings of every namespace the caller reads that has some.
#[utoipa::path(
    get, path = "/namespaces", operation_id = "listNamespaces", tag = "tenancy",
    responses((status = 200, description = "Namespaces the caller may read, with quotas and weights", body = zenith_protocol::tenancy::NamespaceList))
)]
pub async fn list(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<NamespaceList>, ApiError> {
    let all = ask(&state, |reply| LoopMsg::Namespaces { reply }).await?;
    Ok(Json(NamespaceList {
        namespaces: all.into_iter().filter(|s| p.can_read(&s.name)).collect(),
    }))
}

/// `GET /api/v1/namespaces/{name}`: its settings (a namespace without any has the defaults).
#[utoipa::path(
    get, path = "/namespaces/{name}", operation_id = "getNamespace", tag = "tenancy", params(("name" = String, Path, description = "Namespace")),
    responses((status = 200, description = "Its settings", body = zenith_model::namespace::NamespaceSettings))
)]
pub async fn show(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<NamespaceSettings>, ApiError> {
    checked_name(&name)?;
    p.must_read(&name, || format!("namespace {name} not found"))?;
    let all = ask(&state, |reply| LoopMsg::Namespaces { reply }).await?;
    Ok(Json(
        all.into_iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| NamespaceSettings::new(&name)),
    ))
}

/// `PUT /api/v1/namespaces/{name}` (admin): replaces its settings; the body's `name`, when
/// given, must be the path's.
#[utoipa::path(
    put, path = "/namespaces/{name}", operation_id = "putNamespace", tag = "tenancy", params(("name" = String, Path, description = "Namespace")),
    request_body = zenith_model::namespace::NamespaceSettings,
    responses((status = 200, description = "Its new settings (admin only)", body = zenith_model::namespace::NamespaceSettings))
)]
pub async fn put(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<NamespaceSettings>, ApiError> {
    p.must_be_admin()?;
    checked_name(&name)?;
    let mut raw: serde_json::Value = decode(&body)?;
    if let Some(obj) = raw.as_object_mut() {
        match obj.get("name") {
            None => {
                obj.insert("name".into(), name.clone().into());
            }
            Some(given) if given.as_str() == Some(name.as_str()) => {}
            Some(_) => {
                return Err(ApiError::Invalid(ValidationError::new(
                    "name",
                    format!("must be the path's namespace {name:?} or left out"),
                )))
            }
        }
    }
    let settings: NamespaceSettings = decode(raw.to_string().as_bytes())?;
    settings.validate().map_err(ApiError::Invalid)?;
    let stored = settings.clone();
    ask(&state, |reply| LoopMsg::SetNamespace {
        name,
        settings: Some(stored),
        reply,
    })
    .await??;
    Ok(Json(settings))
}

/// `DELETE /api/v1/namespaces/{name}` (admin): back to weight 1 and no quota.
#[utoipa::path(
    delete, path = "/namespaces/{name}", operation_id = "resetNamespace", tag = "tenancy", params(("name" = String, Path, description = "Namespace")),
    responses((status = 200, description = "Its settings, now reset (admin only)", body = zenith_model::namespace::NamespaceSettings))
)]
pub async fn delete(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<NamespaceSettings>, ApiError> {
    p.must_be_admin()?;
    checked_name(&name)?;
    let n = name.clone();
    ask(&state, |reply| LoopMsg::SetNamespace {
        name: n,
        settings: None,
        reply,
    })
    .await??;
    Ok(Json(NamespaceSettings::new(&name)))
}

/// `GET /api/v1/share`: weight, holdings, recent usage and share of each namespace the
/// caller reads, and of its users.
#[utoipa::path(
    get, path = "/share", operation_id = "fairShare", tag = "tenancy",
    responses((status = 200, description = "Fair share: each namespace's and user's weight, usage and share", body = zenith_protocol::tenancy::ShareList))
)]
pub async fn share(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<ShareList>, ApiError> {
    let mut list = ask(&state, |reply| LoopMsg::Shares { reply }).await?;
    list.namespaces.retain(|s| p.can_read(&s.party.name));
    Ok(Json(list))
}

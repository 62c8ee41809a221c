//! API bodies of tenancy: people's tokens (`/api/v1/tokens`), `whoami` and the audit log.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use zenith_model::tenancy::{AuditRecord, Role, UserTokenRecord};
use zenith_model::{DurationMs, Millis};

/// `POST /api/v1/tokens` (admin).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The user it names (recorded as the submitter of what it submits).
    pub name: String,
    pub role: Role,
    /// Namespaces it acts in; `*` for all. Required unless the role is admin.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Refused after this long (e.g. "90d"); never, when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<DurationMs>,
}

/// A token as listed: never its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    pub id: String,
    pub user: String,
    pub role: Role,
    pub namespaces: Vec<String>,
    pub created_at: Millis,
    pub created_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Millis>,
    /// `active`, `revoked` or `expired` (at the time of the answer).
    pub state: String,
}

impl TokenView {
    pub fn of(r: &UserTokenRecord, now: Millis) -> TokenView {
        let state = if r.revoked_at.is_some() {
            "revoked"
        } else if r.expires_at.is_some_and(|t| t <= now) {
            "expired"
        } else {
            "active"
        };
        TokenView {
            id: r.id.clone(),
            user: r.user.clone(),
            role: r.role,
            namespaces: r.namespaces.clone(),
            created_at: r.created_at,
            created_by: r.created_by.clone(),
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
            state: state.into(),
        }
    }
}

/// The answer to a token's creation: the token itself, shown this once.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenCreated {
    pub token: String,
    #[serde(flatten)]
    pub view: TokenView,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenView>,
}

/// `GET /api/v1/whoami`: who the presented token acts as.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    pub user: String,
    pub role: Role,
    /// Namespaces it acts in (`*`: all).
    pub namespaces: Vec<String>,
    /// Where its work goes when it names no namespace.
    pub default_namespace: String,
    /// The token's ID; absent for the bootstrap admin token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// `GET /api/v1/audit` (admin, operator): newest first; pass `next_before` as `before`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditList {
    pub records: Vec<AuditRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<u64>,
}

/// `GET /api/v1/namespaces`: the settings of namespaces that have some.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NamespaceList {
    pub namespaces: Vec<zenith_model::namespace::NamespaceSettings>,
}

/// `GET /api/v1/share`: the fair-share table (docs/tenancy.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ShareList {
    /// Recent usage counts half after this long.
    pub half_life_ms: u64,
    pub namespaces: Vec<zenith_model::namespace::ShareView>,
}

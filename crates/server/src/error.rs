//! API errors and their one mapping to HTTP status and the `{"error": ...}` body.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use zenith_model::ValidationError;
use zenith_protocol::api::{ErrorBody, ErrorDetail};

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Invalid(ValidationError),
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or invalid token")]
    Unauthorized,
    #[error("this token may not call this route")]
    Forbidden,
    /// A person's token that is no longer good (revoked, expired).
    #[error("{0}")]
    BadToken(String),
    /// The caller's role or namespaces do not allow this.
    #[error("{0}")]
    Denied(String),
    /// The caller may not see this: answered as not found, so its existence is not revealed
    /// (and audited as a refusal).
    #[error("{0}")]
    Hidden(String),
    /// An agent's node credential is unknown here (or wrong): it enrolls again.
    #[error("{0}")]
    NodeUnknown(String),
    /// An agent's node was revoked: it may not come back under this ID.
    #[error("{0}")]
    NodeRevoked(String),
    /// A node asked about an attempt that is not its own.
    #[error("{0}")]
    NotYours(String),
    /// A namespace's quota refuses this; `limit` is `cpus`, `jobs`, ...
    #[error("{message}")]
    Quota {
        message: String,
        limit: &'static str,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Overloaded(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// A bug: the server broke one of its own invariants (answered 500, logged).
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The control loop is gone: the server is shutting down, or its term as leader ended.
    pub(crate) fn loop_stopped() -> ApiError {
        ApiError::Unavailable(
            "the control loop stopped (server shutting down, or no longer the leader); retry"
                .into(),
        )
    }

    fn parts(&self) -> (StatusCode, &'static str, Option<String>) {
        match self {
            ApiError::Invalid(v) => (
                StatusCode::BAD_REQUEST,
                "invalid_argument",
                Some(v.field.clone()),
            ),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid_argument", None),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", None),
            ApiError::Forbidden => (StatusCode::FORBIDDEN, "forbidden", None),
            ApiError::BadToken(_) => (StatusCode::UNAUTHORIZED, "unauthorized", None),
            ApiError::Denied(_) => (StatusCode::FORBIDDEN, "forbidden", None),
            ApiError::Hidden(_) => (StatusCode::NOT_FOUND, "not_found", None),
            ApiError::NodeUnknown(_) => (StatusCode::UNAUTHORIZED, "node_unknown", None),
            ApiError::NodeRevoked(_) => (StatusCode::FORBIDDEN, "node_revoked", None),
            ApiError::NotYours(_) => (StatusCode::FORBIDDEN, "not_your_attempt", None),
            ApiError::Quota { limit, .. } => (
                StatusCode::FORBIDDEN,
                "quota_exceeded",
                Some(format!("quota.{limit}")),
            ),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", None),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict", None),
            ApiError::Overloaded(_) => (StatusCode::TOO_MANY_REQUESTS, "resource_exhausted", None),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", None),
            ApiError::PayloadTooLarge(_) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", None)
            }
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", None),
        }
    }
}

impl ApiError {
    /// Whether the caller was refused for who it is (audited even when it only read).
    fn denies(&self) -> bool {
        matches!(
            self,
            ApiError::Unauthorized
                | ApiError::Forbidden
                | ApiError::BadToken(_)
                | ApiError::Denied(_)
                | ApiError::Hidden(_)
        )
    }
}

/// Set on an error response: its message, for the audit log.
#[derive(Clone, Debug)]
pub(crate) struct ErrorNote {
    pub message: String,
    pub denied: bool,
}

impl From<zenith_store::StoreError> for ApiError {
    fn from(e: zenith_store::StoreError) -> Self {
        ApiError::Unavailable(format!("store: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, field) = self.parts();
        let message = match &self {
            ApiError::Invalid(v) => v.message.clone(),
            other => other.to_string(),
        };
        let note = ErrorNote {
            message: message.clone(),
            denied: self.denies(),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_string(),
                message,
                field,
            },
        };
        let mut resp = (status, Json(body)).into_response();
        resp.extensions_mut().insert(note);
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        resp
    }
}

/// Largest plain-text rejection body rewritten by [`json_rejections`] (axum's are one line).
const MAX_REJECTION_TEXT: usize = 4096;

/// Rewrites the plain-text answers axum's extractors give (a bad query string, a body over
/// the limit, a wrong method) as the API's JSON error shape, keeping their status and headers:
/// every error a client of `/api/v1` sees is `{"error": {"code", "message"}}`.
pub(crate) async fn json_rejections(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !status.is_client_error() || is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = match axum::body::to_bytes(body, MAX_REJECTION_TEXT).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_string(),
        Err(_) => String::new(),
    };
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::NOT_FOUND => "not_found",
        _ => "invalid_argument",
    };
    let message = match (text.is_empty(), status) {
        (false, _) => text,
        (true, StatusCode::METHOD_NOT_ALLOWED) => "this route does not take that method".into(),
        (true, s) => s.canonical_reason().unwrap_or("rejected").to_string(),
    };
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.into(),
            message,
            field: None,
        },
    };
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    let json = serde_json::to_vec(&body).unwrap_or_default();
    Response::from_parts(parts, axum::body::Body::from(json))
}

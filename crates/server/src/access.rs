//! Who may do what: every `/api/v1` request is authenticated here (the bootstrap admin token
//! or a person's token, [`crate::users`]), gated by role, and handed to its handler with its
//! [`Principal`]; handlers check namespaces. Every state-changing request, and every refused
//! one, is then recorded in the audit log (through the control loop, in the next commit).
//!
//! | role | jobs, runs, flows | nodes | tokens | audit |
//! |---|---|---|---|---|
//! | admin | everything, every namespace | read, revoke | create, list, revoke | read |
//! | operator | read, every namespace | read, revoke | — | read |
//! | submitter | submit, cancel, read in its namespaces | read | — | — |
//! | viewer | read in its namespaces | read | — | — |

use crate::control::LoopMsg;
use crate::error::{ApiError, ErrorNote};
use crate::users::{Principal, UserTokens};
use crate::{auth, bearer, AppState};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use zenith_model::tenancy::{
    truncated, validate_namespace, AuditRecord, Role, ALL_NAMESPACES, DEFAULT_NAMESPACE,
    MAX_AUDIT_PATH,
};

impl Principal {
    /// The bootstrap admin token (`admin.token`).
    pub fn bootstrap_admin() -> Principal {
        Principal {
            user: "admin".into(),
            role: Role::Admin,
            namespaces: vec![ALL_NAMESPACES.into()],
            token: None,
        }
    }

    fn names(&self, ns: &str) -> bool {
        self.role == Role::Admin
            || self
                .namespaces
                .iter()
                .any(|n| n == ns || n == ALL_NAMESPACES)
    }

    /// Whether it may read what lives in `ns`.
    pub fn can_read(&self, ns: &str) -> bool {
        self.role.reads_everywhere() || self.names(ns)
    }

    /// Whether it may submit, cancel or change what lives in `ns`.
    pub fn can_write(&self, ns: &str) -> bool {
        self.role.writes_work() && self.names(ns)
    }

    /// Whether it reads every namespace.
    pub fn reads_all(&self) -> bool {
        self.role.reads_everywhere() || self.namespaces.iter().any(|n| n == ALL_NAMESPACES)
    }

    /// Where its work goes when it names no namespace: `default` if it may act there, else
    /// the first namespace of its token.
    pub fn default_namespace(&self) -> &str {
        if self.names(DEFAULT_NAMESPACE) || self.role.reads_everywhere() {
            return DEFAULT_NAMESPACE;
        }
        self.namespaces
            .first()
            .map(String::as_str)
            .unwrap_or(DEFAULT_NAMESPACE)
    }

    /// Refuses unless it may change what lives in `ns` (403: it may know `ns` exists, it
    /// names it itself).
    pub fn must_write(&self, ns: &str) -> Result<(), ApiError> {
        if self.can_write(ns) {
            return Ok(());
        }
        Err(ApiError::Denied(format!(
            "{} ({}) may not change work in namespace {ns}",
            self.user, self.role
        )))
    }

    /// Refuses unless it is an admin.
    pub fn must_be_admin(&self) -> Result<(), ApiError> {
        if self.role == Role::Admin {
            return Ok(());
        }
        Err(ApiError::Denied(format!(
            "{} ({}) may not do this; it takes an admin token",
            self.user, self.role
        )))
    }

    /// Refuses unless it is an admin or an operator.
    pub fn must_operate(&self) -> Result<(), ApiError> {
        if self.role.reads_everywhere() {
            return Ok(());
        }
        Err(ApiError::Denied(format!(
            "{} ({}) may not do this; it takes an operator or admin token",
            self.user, self.role
        )))
    }

    /// The namespaces a listing covers: `requested` (a name, `*` for all it may read, or
    /// nothing for its default namespace) within those it may read. `None`: every namespace.
    pub fn listing(&self, requested: Option<&str>) -> Result<Option<Vec<String>>, ApiError> {
        match requested {
            Some(ALL_NAMESPACES) if self.reads_all() => Ok(None),
            Some(ALL_NAMESPACES) => Ok(Some(self.namespaces.clone())),
            Some(ns) => {
                validate_namespace(ns, "namespace").map_err(ApiError::Invalid)?;
                if !self.can_read(ns) {
                    return Err(ApiError::Denied(format!(
                        "{} ({}) may not read namespace {ns}",
                        self.user, self.role
                    )));
                }
                Ok(Some(vec![ns.to_string()]))
            }
            None => Ok(Some(vec![self.default_namespace().to_string()])),
        }
    }

    /// Hides what lives in a namespace it may not read: `what` is answered as not found
    /// (so its existence is not revealed), and the refusal is audited.
    pub fn must_read(&self, ns: &str, what: impl FnOnce() -> String) -> Result<(), ApiError> {
        if self.can_read(ns) {
            Ok(())
        } else {
            Err(ApiError::Hidden(what()))
        }
    }
}

/// Set by a standby on what it forwards: the client's address, as the standby saw it.
pub(crate) const CLIENT_HEADER: &str = "x-zenith-client";

/// Where a request came from: the peer, and the client a standby says it forwards for (a
/// claim, so both are kept: `203.0.113.9 via 10.0.0.5`).
fn origin(req: &Request, peer: std::net::SocketAddr) -> String {
    match req
        .headers()
        .get(CLIENT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<std::net::IpAddr>().ok())
    {
        Some(client) => format!("{client} via {}", peer.ip()),
        None => peer.ip().to_string(),
    }
}

/// Authenticates an API request, holds viewers and operators to their roles, runs the
/// handler and audits the request.
pub(crate) async fn authenticate(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    // The path as the client sent it (this layer is on the router nested at `/api/v1`,
    // which sees paths without it).
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let path = truncated(&format!("/api/v1{path}"), MAX_AUDIT_PATH);
    let peer = origin(&req, peer);
    let who = match bearer(&req) {
        None => Err((ApiError::Unauthorized, None)),
        Some(t) if UserTokens::is_user_token(t) => state
            .users
            .check(t, state.clock.now())
            .map_err(|r| (r.clone().into_error(), r.user().map(str::to_string))),
        // A JWT: judged by the OIDC provider's keys when one is configured.
        Some(t) if crate::oidc::looks_like_jwt(t) => match &state.oidc {
            Some(o) => o.check(t).await,
            None => Err((ApiError::Unauthorized, None)),
        },
        Some(t) => match state.tokens.role_of(t) {
            Some(auth::Role::Admin) => Ok(Principal::bootstrap_admin()),
            Some(auth::Role::Agent) => Err((ApiError::Forbidden, Some("agent".into()))),
            None => Err((ApiError::Unauthorized, None)),
        },
    };
    let principal = match who {
        Ok(p) => p,
        Err((e, user)) => {
            let resp = e.into_response();
            audit(&state, user.as_deref(), "", &method, path, &peer, &resp);
            return resp;
        }
    };
    if let Err(e) = role_gate(&principal, &method, req.uri().path()) {
        let resp = e.into_response();
        let role = principal.role.as_str();
        audit(
            &state,
            Some(&principal.user),
            role,
            &method,
            path,
            &peer,
            &resp,
        );
        return resp;
    }
    let (user, role) = (principal.user.clone(), principal.role.as_str());
    req.extensions_mut().insert(principal);
    let resp = next.run(req).await;
    let changes = !matches!(method, Method::GET | Method::HEAD);
    let refused = resp
        .extensions()
        .get::<ErrorNote>()
        .is_some_and(|n| n.denied);
    if changes || refused {
        audit(&state, Some(&user), role, &method, path, &peer, &resp);
    }
    resp
}

/// What a role may not do whatever the namespace: viewers only read; operators read and
/// manage nodes.
fn role_gate(p: &Principal, method: &Method, path: &str) -> Result<(), ApiError> {
    let reads = matches!(*method, Method::GET | Method::HEAD);
    // `flows/validate` changes nothing: checking a spec is reading.
    let harmless = path.ends_with("/flows/validate");
    match p.role {
        Role::Viewer if !reads && !harmless => Err(ApiError::Denied(format!(
            "{} (viewer) may only read",
            p.user
        ))),
        Role::Operator if !reads && !harmless && !path.contains("/nodes/") => {
            Err(ApiError::Denied(format!(
                "{} (operator) may read everything and manage nodes, not change work",
                p.user
            )))
        }
        _ => Ok(()),
    }
}

fn audit(
    state: &AppState,
    user: Option<&str>,
    role: &str,
    method: &Method,
    path: String,
    peer: &str,
    resp: &Response,
) {
    let detail = resp
        .extensions()
        .get::<ErrorNote>()
        .map(|n| truncated(&n.message, MAX_AUDIT_PATH))
        .unwrap_or_default();
    let rec = AuditRecord {
        id: 0,
        at: 0, // stamped by the control loop
        user: user.unwrap_or("?").to_string(),
        role: role.to_string(),
        method: method.as_str().to_string(),
        path,
        peer: peer.to_string(),
        status: resp.status().as_u16(),
        detail,
    };
    if state.control.try_send(LoopMsg::Audit(rec)).is_err() {
        // A full inbox (already answering 429) or a stopped loop: counted, not waited for.
        state.metrics.audit_dropped.inc();
    }
}

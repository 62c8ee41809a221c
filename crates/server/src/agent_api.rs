//! Agent protocol handlers (`/agent/v1/...`): enrolment behind the join token, everything
//! else behind the node's own credential ([`AuthedNode`]) and held to that node: its own
//! registration, session, reports and log uploads only.

use crate::control::LoopMsg;
use crate::error::ApiError;
use crate::handler::{ask_waiting, decode_agent_body};
use crate::{AppState, AuthedNode};
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Extension, Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use std::time::Duration;
use zenith_model::{NodeId, ValidationError};
use zenith_protocol::agent::{
    decode_log_frames, EnrollRequest, EnrollResponse, LogAck, RegisterRequest, RegisterResponse,
    ReportRequest, ReportResponse, SessionId, StreamMessage, MAX_BATCH, MAX_PREFETCH,
    PROTOCOL_VERSION,
};

/// An idle stream carries a ping this often.
const PING_EVERY: Duration = Duration::from_secs(10);

fn check_known(field: &str, n: usize) -> Result<(), ApiError> {
    if n > MAX_BATCH {
        return Err(ApiError::Invalid(ValidationError::new(
            field,
            format!("at most {MAX_BATCH} attempts"),
        )));
    }
    Ok(())
}

fn check_version(v: u32) -> Result<(), ApiError> {
    if v != PROTOCOL_VERSION {
        return Err(ApiError::Invalid(ValidationError::new(
            "protocol_version",
            format!("agent speaks protocol {v}, this server speaks {PROTOCOL_VERSION}; upgrade the older side"),
        )));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.len() > 256 || name.chars().any(char::is_control) {
        return Err(ApiError::Invalid(ValidationError::new(
            "name",
            "at most 256 bytes without control characters",
        )));
    }
    Ok(())
}

/// A request about another node than the one whose credential it carries.
fn not_you(authed: &AuthedNode, claimed: &NodeId) -> Result<(), ApiError> {
    if &authed.0 != claimed {
        return Err(ApiError::NotYours(format!(
            "this credential is node {}'s, not node {claimed}'s",
            authed.0
        )));
    }
    Ok(())
}

/// `POST /agent/v1/enroll` (join token): the node's own credential, once per node ID.
pub async fn enroll(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<EnrollResponse>, ApiError> {
    let req: EnrollRequest = decode_agent_body(&body)?;
    check_version(req.protocol_version)?;
    let node = NodeId::parse(req.node_id.as_str())?;
    check_name(&req.name)?;
    let credential = ask_waiting(&state, |reply| LoopMsg::Enroll {
        node,
        name: req.name,
        reply,
    })
    .await??;
    Ok(Json(EnrollResponse { credential }))
}

pub async fn register(
    State(state): State<AppState>,
    Extension(authed): Extension<AuthedNode>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    body: Bytes,
) -> Result<Json<RegisterResponse>, ApiError> {
    let mut req: RegisterRequest = decode_agent_body(&body)?;
    match &req.address {
        Some(a) => check_address(a)?,
        // Gang members reach the node where the server sees it connect from.
        None => req.address = Some(peer.ip().to_string()),
    }
    check_version(req.protocol_version)?;
    NodeId::parse(req.node_id.as_str())?;
    not_you(&authed, &req.node_id)?;
    check_name(&req.name)?;
    req.resources
        .validate()
        .map_err(|e| ApiError::Invalid(e.within("resources")))?;
    zenith_model::job::validate_labels(&req.labels, "labels").map_err(ApiError::Invalid)?;
    check_known("known", req.known.len())?;
    check_known("waiting", req.waiting.len())?;
    if req.prefetch > MAX_PREFETCH {
        return Err(ApiError::Invalid(ValidationError::new(
            "prefetch",
            format!("at most {MAX_PREFETCH}"),
        )));
    }
    let session = crate::node_keys::new_session()?;
    Ok(Json(
        ask_waiting(&state, |reply| LoopMsg::Register {
            req,
            session,
            reply,
        })
        .await??,
    ))
}

/// An advertised address: a host name or IP address, as a hostfile line can hold it.
fn check_address(a: &str) -> Result<(), ApiError> {
    let ok = !a.is_empty()
        && a.len() <= 253
        && a.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::Invalid(ValidationError::new(
            "address",
            "a host name or IP address (letters, digits, '.', '-', ':', '_'; at most 253)",
        )))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    node_id: String,
    session: String,
}

/// The long-lived NDJSON stream of assignments and kills for one registered session.
pub async fn stream(
    State(state): State<AppState>,
    Extension(authed): Extension<AuthedNode>,
    Query(q): Query<StreamQuery>,
) -> Result<Response, ApiError> {
    let node = NodeId::parse(&q.node_id)?;
    not_you(&authed, &node)?;
    let session = SessionId(q.session);
    let rx = ask_waiting(&state, |reply| LoopMsg::OpenStream {
        node,
        session,
        reply,
    })
    .await?
    .ok_or(ApiError::Conflict(
        "session is not current (or its stream is already open); register again".into(),
    ))?;
    let shutdown = state.shutdown.clone();
    let body = futures_util::stream::unfold((rx, shutdown), |(mut rx, mut shutdown)| async move {
        let msg = tokio::select! {
            m = rx.recv() => m?,
            _ = tokio::time::sleep(PING_EVERY) => StreamMessage::Ping,
            _ = shutdown.changed() => return None,
        };
        let mut line = serde_json::to_vec(&msg).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot serialize a stream message");
            Vec::new()
        });
        line.push(b'\n');
        Some((Ok::<_, std::io::Error>(Bytes::from(line)), (rx, shutdown)))
    });
    let mut resp = Body::from_stream(body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(resp)
}

pub async fn report(
    State(state): State<AppState>,
    Extension(authed): Extension<AuthedNode>,
    body: Bytes,
) -> Result<Json<ReportResponse>, ApiError> {
    let req: ReportRequest = decode_agent_body(&body)?;
    NodeId::parse(req.node_id.as_str())?;
    not_you(&authed, &req.node_id)?;
    check_known("known", req.known.len())?;
    check_known("waiting", req.waiting.len())?;
    if req.results.len() > MAX_BATCH {
        return Err(ApiError::Invalid(ValidationError::new(
            "results",
            format!("at most {MAX_BATCH} results"),
        )));
    }
    for (i, r) in req.results.iter().enumerate() {
        check_outputs(&r.outputs).map_err(|e| e.within(&format!("results[{i}].outputs")))?;
        if let zenith_model::AttemptOutcome::StartFailed { message } = &r.outcome {
            if message.len() > 4096 {
                return Err(ApiError::Invalid(ValidationError::new(
                    format!("results[{i}].outcome.message"),
                    "at most 4096 bytes",
                )));
            }
        }
    }
    Ok(Json(
        ask_waiting(&state, |reply| LoopMsg::Report { req, reply }).await??,
    ))
}

/// Log frames of the node's own running attempts are stored. A frame of another node's
/// attempt refuses the whole upload (nothing stored); frames of attempts not running anywhere
/// (ended, lost, never made) are dropped unstored and acknowledged, so the agent moves on.
pub async fn upload_logs(
    State(state): State<AppState>,
    Extension(authed): Extension<AuthedNode>,
    body: Bytes,
) -> Result<Json<LogAck>, ApiError> {
    let frames = decode_log_frames(&body).map_err(ApiError::BadRequest)?;
    let mut attempts: Vec<_> = frames.iter().map(|(h, _)| h.attempt).collect();
    attempts.sort_unstable();
    attempts.dedup();
    let owners = ask_waiting(&state, |reply| LoopMsg::AttemptsOf {
        node: authed.0.clone(),
        attempts,
        reply,
    })
    .await?;
    if !owners.others.is_empty() {
        state
            .metrics
            .agent_refused
            .get_or_create(&crate::metrics::ReasonLabel {
                reason: "not_own_attempt",
            })
            .inc();
        return Err(ApiError::NotYours(format!(
            "node {} does not run attempt(s) {:?}; nothing stored",
            authed.0, owners.others
        )));
    }
    let logs = state.logs.clone();
    let ack = tokio::task::spawn_blocking(move || {
        // Decoded again on this thread: the frames borrow the body.
        let frames = decode_log_frames(&body).map_err(ApiError::BadRequest)?;
        let unknown: std::collections::HashSet<_> = owners.unknown.into_iter().collect();
        let (keep, drop): (Vec<_>, Vec<_>) = frames
            .into_iter()
            .partition(|(h, _)| !unknown.contains(&h.attempt));
        let mut ack = logs
            .append(&keep)
            .map_err(|e| ApiError::Unavailable(format!("writing logs: {e}")))?;
        ack.lengths.extend(
            drop.iter()
                .map(|(h, d)| (h.attempt, h.stream, h.offset + d.len() as u64)),
        );
        Ok::<_, ApiError>(ack)
    })
    .await
    .map_err(|e| ApiError::Unavailable(format!("log task failed: {e}")))??;
    Ok(Json(ack))
}

impl From<ValidationError> for ApiError {
    fn from(v: ValidationError) -> Self {
        ApiError::Invalid(v)
    }
}

/// Output parameters an agent reports: bounded in count, name and size.
fn check_outputs(
    outputs: &std::collections::BTreeMap<String, String>,
) -> Result<(), ValidationError> {
    use zenith_model::flow::limits::{MAX_NAME, MAX_OUTPUT_BYTES, MAX_OUTPUT_PARAMS};
    if outputs.len() > MAX_OUTPUT_PARAMS {
        return Err(ValidationError::new(
            "",
            format!("at most {MAX_OUTPUT_PARAMS} outputs"),
        ));
    }
    for (k, v) in outputs {
        if k.is_empty() || k.len() > MAX_NAME || v.len() > MAX_OUTPUT_BYTES {
            return Err(ValidationError::new(
                k.as_str(),
                format!("names of 1-{MAX_NAME} bytes, values of at most {MAX_OUTPUT_BYTES} bytes"),
            ));
        }
    }
    Ok(())
}

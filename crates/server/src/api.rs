//! Public API v1 handlers (`/api/v1/...`), all behind the admin token.

use crate::control::LoopMsg;
use crate::error::ApiError;
use crate::handler::{ask, read};
use crate::users::Principal;
use crate::AppState;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use zenith_engine::IdempotencyKey;
use zenith_model::{AttemptId, JobId, JobSpec, JobState};
use zenith_protocol::agent::LogStream;
use zenith_protocol::api::{
    attempt_view, job_summary, ExplainView, JobList, JobView, Submitted, SubmittedBatch,
};
use zenith_store::JobFilter;

/// Most specs in one batch submission.
pub const MAX_SUBMIT_BATCH: usize = 10_000;

fn parse_spec(v: serde_json::Value, prefix: &str) -> Result<JobSpec, ApiError> {
    let spec: JobSpec = serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let field = match (prefix.is_empty(), path.as_str()) {
            (true, ".") => String::new(),
            (true, p) => p.to_string(),
            (false, ".") => prefix.to_string(),
            (false, p) => format!("{prefix}.{p}"),
        };
        ApiError::Invalid(zenith_model::ValidationError::new(
            field,
            e.into_inner().to_string(),
        ))
    })?;
    spec.validate().map_err(|v| {
        ApiError::Invalid(if prefix.is_empty() {
            v
        } else {
            v.within(prefix)
        })
    })?;
    Ok(spec)
}

/// Longest accepted `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Reads the optional `Idempotency-Key` header; the request body's hash is its fingerprint,
/// so the same key with a different request is refused.
fn idempotency_key(headers: &HeaderMap, body: &[u8]) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bad = || {
        ApiError::Invalid(zenith_model::ValidationError::new(
            "Idempotency-Key",
            format!("must be 1-{MAX_IDEMPOTENCY_KEY} visible ASCII characters"),
        ))
    };
    let key = v.to_str().map_err(|_| bad())?;
    if key.is_empty()
        || key.len() > MAX_IDEMPOTENCY_KEY
        || !key.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(bad());
    }
    let digest = Sha256::digest(body);
    let mut fp = [0u8; 8];
    fp.copy_from_slice(&digest[..8]);
    Ok(Some(IdempotencyKey {
        scope: key_scope(headers),
        key: key.to_string(),
        fingerprint: u64::from_le_bytes(fp),
    }))
}

/// Whose key it is: a hash of the request's bearer token (authenticated before this runs),
/// so keys of one token never answer another's and each token's keys are bounded apart.
fn key_scope(headers: &HeaderMap) -> String {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut scope = hex::encode(Sha256::digest(token.as_bytes()));
    scope.truncate(zenith_engine::SCOPE_LEN);
    scope
}

/// Puts a parsed spec in its namespace (the caller's default when it names none) and records
/// who submits it; refused where the caller may not submit.
fn owned(mut spec: JobSpec, p: &Principal, prefix: &str) -> Result<Arc<JobSpec>, ApiError> {
    if !spec.submitter.is_empty() {
        let field = if prefix.is_empty() {
            "submitter".to_string()
        } else {
            format!("{prefix}.submitter")
        };
        return Err(ApiError::Invalid(zenith_model::ValidationError::new(
            field,
            "is set by the server from the caller's token",
        )));
    }
    if spec.namespace.is_empty() {
        spec.namespace = p.default_namespace().to_string();
    }
    p.must_write(&spec.namespace)?;
    spec.submitter = p.user.clone();
    Ok(Arc::new(spec))
}

/// The job `id` if the caller may see it; one it may not is answered as not found.
pub(crate) async fn visible_job(
    state: &AppState,
    p: &Principal,
    id: JobId,
) -> Result<zenith_model::JobRecord, ApiError> {
    let job = read(state, move |r| r.get_job(id))
        .await?
        .ok_or(ApiError::NotFound(format!("job {id} not found")))?;
    let ns = job.spec.as_deref().map(JobSpec::namespace).unwrap_or("");
    p.must_read(ns, || format!("job {id} not found"))?;
    Ok(job)
}

#[utoipa::path(
    post, path = "/jobs", operation_id = "submitJobs", tag = "jobs",
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried submission return the first answer (same body) instead of a second job; 1-255 visible ASCII characters")),
    request_body = zenith_protocol::api::SubmitBody,
    responses((status = 201, description = "Committed; header Idempotent-Replayed: true when answered from an earlier submission with the same key", body = zenith_protocol::api::SubmitAnswer),
        (status = 409, description = "The key was used with another body", body = zenith_protocol::api::ErrorBody),
        (status = 413, description = "Body too large", body = zenith_protocol::api::ErrorBody))
)]
pub async fn submit(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers, &body)?;
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("body is not valid JSON: {e}")))?;
    let (specs, batch) = match value {
        serde_json::Value::Array(items) => {
            if items.is_empty() || items.len() > MAX_SUBMIT_BATCH {
                return Err(ApiError::BadRequest(format!(
                    "a batch holds 1 to {MAX_SUBMIT_BATCH} jobs"
                )));
            }
            let mut specs = Vec::with_capacity(items.len());
            for (i, v) in items.into_iter().enumerate() {
                let at = format!("[{i}]");
                specs.push(owned(parse_spec(v, &at)?, &p, &at)?);
            }
            (specs, true)
        }
        v @ serde_json::Value::Object(_) => (vec![owned(parse_spec(v, "")?, &p, "")?], false),
        _ => {
            return Err(ApiError::BadRequest(
                "body must be a job spec object or a list of them".into(),
            ))
        }
    };
    let ended = crate::job_control_api::ended_dependencies(&state, &p, &specs).await?;
    // The job's first span: accepted, committed and acknowledged.
    let span = tracing::info_span!(
        "submit",
        jobs = specs.len(),
        first_job = tracing::field::Empty
    );
    let done = tracing::Instrument::instrument(
        async {
            ask(&state, |reply| LoopMsg::Submit {
                specs,
                key,
                ended,
                reply,
            })
            .await
        },
        span.clone(),
    )
    .await??;
    if let Some(first) = done.ids.first() {
        span.record("first_job", first.0);
    }
    tracing::debug!(jobs = ?done.ids, replayed = done.replayed, "submission committed");
    let ids = done.ids;
    let resp = if batch {
        (StatusCode::CREATED, Json(SubmittedBatch { ids })).into_response()
    } else {
        let id = ids
            .first()
            .copied()
            .ok_or(ApiError::Unavailable("no id allocated".into()))?;
        (StatusCode::CREATED, Json(Submitted { id })).into_response()
    };
    let mut resp = resp;
    if done.replayed {
        resp.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(resp)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    state: Option<String>,
    queue: Option<String>,
    /// A namespace, or `*` for every one the caller may read; absent: its default.
    namespace: Option<String>,
    before: Option<u64>,
    limit: Option<usize>,
}

#[utoipa::path(
    get, path = "/jobs", operation_id = "listJobs", tag = "jobs", params(ListQuery),
    responses((status = 200, description = "Jobs, newest first", body = zenith_protocol::api::JobList))
)]
pub async fn list(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<ListQuery>,
) -> Result<Json<JobList>, ApiError> {
    let namespaces = p.listing(q.namespace.as_deref())?;
    let job_state = match q.state.as_deref() {
        None | Some("") => None,
        Some(s) => Some(JobState::parse(s).ok_or_else(|| {
            ApiError::Invalid(zenith_model::ValidationError::new(
                "state",
                "must be one of queued, running, succeeded, failed, cancelled",
            ))
        })?),
    };
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::Invalid(zenith_model::ValidationError::new(
            "limit",
            "must be 1..=1000",
        )));
    }
    let filter = JobFilter {
        state: job_state,
        queue: q.queue,
        namespaces,
        before: q.before.map(JobId),
        limit,
    };
    let rows = read(&state, move |r| r.list_jobs(&filter)).await?;
    let next_before = if rows.len() == limit {
        rows.last().map(|j| j.id)
    } else {
        None
    };
    Ok(Json(JobList {
        jobs: rows.iter().map(job_summary).collect(),
        next_before,
    }))
}

pub(crate) fn job_id(raw: &str) -> Result<JobId, ApiError> {
    raw.parse::<u64>().map(JobId).map_err(|_| {
        ApiError::Invalid(zenith_model::ValidationError::new(
            "id",
            "job IDs are positive integers",
        ))
    })
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ShowQuery {
    attempts_limit: Option<usize>,
}

#[utoipa::path(
    get, path = "/jobs/{id}", operation_id = "getJob", tag = "jobs", params(("id" = u64, Path, description = "Job ID"), ShowQuery),
    responses((status = 200, description = "The job, its spec and its attempts", body = zenith_protocol::api::JobView))
)]
pub async fn show(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<ShowQuery>,
) -> Result<Json<JobView>, ApiError> {
    let id = job_id(&id)?;
    let limit = q.attempts_limit.unwrap_or(1000).min(100_000);
    let job = visible_job(&state, &p, id).await?;
    let (attempts, total) = read(&state, move |r| r.attempts(id, limit)).await?;
    let spec = job
        .spec
        .as_deref()
        .cloned()
        .ok_or(ApiError::Unavailable("stored job has no spec".into()))?;
    Ok(Json(JobView {
        summary: job_summary(&job),
        spec,
        attempts: attempts.iter().map(attempt_view).collect(),
        attempts_total: total,
    }))
}

#[utoipa::path(
    post, path = "/jobs/{id}/cancel", operation_id = "cancelJob", tag = "jobs", params(("id" = u64, Path, description = "Job ID")),
    responses((status = 202, description = "Accepted: its attempts are being stopped", body = zenith_protocol::api::Cancelled),
        (status = 409, description = "The job has already ended", body = zenith_protocol::api::ErrorBody))
)]
pub async fn cancel(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = job_id(&id)?;
    let job = visible_job(&state, &p, id).await?;
    p.must_write(job.spec.as_deref().map(JobSpec::namespace).unwrap_or(""))?;
    match ask(&state, |reply| LoopMsg::Cancel { id, reply }).await? {
        Ok(()) => Ok((
            StatusCode::ACCEPTED,
            Json(zenith_protocol::api::Cancelled {
                id: id.0,
                cancelled: true,
            }),
        )
            .into_response()),
        Err(ApiError::Conflict(m)) => match read(&state, move |r| r.get_job(id)).await? {
            None => Err(ApiError::NotFound(format!("job {id} not found"))),
            Some(j) => Err(ApiError::Conflict(format!(
                "job {id} already {}: {m}",
                j.state
            ))),
        },
        Err(e) => Err(e),
    }
}

#[utoipa::path(
    get, path = "/jobs/{id}/explain", operation_id = "explainJob", tag = "jobs", params(("id" = u64, Path, description = "Job ID")),
    responses((status = 200, description = "Why the job waits (or where it runs)", body = zenith_protocol::api::ExplainView))
)]
pub async fn explain(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<ExplainView>, ApiError> {
    let id = job_id(&id)?;
    let job = visible_job(&state, &p, id).await?;
    if let Some(v) = ask(&state, |reply| LoopMsg::Explain { id, reply }).await? {
        return Ok(Json(v));
    }
    Ok(Json(ExplainView {
        id,
        state: job.state,
        message: "it has ended; nothing to place".into(),
        nodes: 0,
        feasible: 0,
        rejections: Default::default(),
        quota: None,
        blocked: None,
        reservation: None,
        gang: None,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    task: Option<u32>,
    attempt: Option<u64>,
    stream: Option<String>,
    #[serde(default)]
    follow: bool,
}

/// Streams a task's output (its latest attempt unless `attempt` is given). With `follow`, waits
/// for the task to start and streams until the attempt ends.
#[utoipa::path(
    get, path = "/jobs/{id}/logs", operation_id = "jobLogs", tag = "jobs", params(("id" = u64, Path, description = "Job ID"), LogQuery),
    responses((status = 200, description = "The attempt's output, streamed as it is written with `follow`", content_type = "application/octet-stream", body = Vec<u8>))
)]
pub async fn logs(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> Result<Response, ApiError> {
    let id = job_id(&id)?;
    let stream = match q.stream.as_deref() {
        None | Some("stdout") => LogStream::Stdout,
        Some("stderr") => LogStream::Stderr,
        Some(_) => {
            return Err(ApiError::Invalid(zenith_model::ValidationError::new(
                "stream",
                "must be stdout or stderr",
            )))
        }
    };
    let job = visible_job(&state, &p, id).await?;
    let spec = job
        .spec
        .clone()
        .ok_or(ApiError::Unavailable("stored job has no spec".into()))?;
    let task = q.task.unwrap_or(spec.first_index());
    if task < spec.first_index() || task - spec.first_index() >= spec.task_count() {
        return Err(ApiError::Invalid(zenith_model::ValidationError::new(
            "task",
            format!("job {id} has no task {task}"),
        )));
    }
    let follow = q.follow;
    let pinned = q.attempt.map(AttemptId);
    if let Some(a) = pinned {
        let rec = read(&state, move |r| r.get_attempt(a)).await?;
        if rec.is_none_or(|r| r.job != id) {
            return Err(ApiError::NotFound(format!(
                "attempt {a} of job {id} not found"
            )));
        }
    }
    let st = LogFollow {
        state: state.clone(),
        job: id,
        task,
        stream,
        follow,
        attempt: pinned,
        offset: 0,
        done: false,
    };
    let body = futures_util::stream::unfold(st, |mut st| async move {
        let chunk = st.next_chunk().await;
        chunk.map(|c| (c, st))
    });
    let mut resp = Body::from_stream(body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(resp)
}

/// Reads a log file in chunks; in follow mode, polls until the attempt ends.
struct LogFollow {
    state: AppState,
    job: JobId,
    task: u32,
    stream: LogStream,
    follow: bool,
    attempt: Option<AttemptId>,
    offset: u64,
    done: bool,
}

const LOG_CHUNK: usize = 256 * 1024;
const FOLLOW_POLL: Duration = Duration::from_millis(200);

impl LogFollow {
    async fn next_chunk(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        loop {
            if self.done {
                return None;
            }
            let (job, task) = (self.job, self.task);
            let attempt = match self.attempt {
                Some(a) => a,
                None => match read(&self.state, move |r| r.latest_attempt(job, task)).await {
                    Ok(Some(a)) => {
                        self.attempt = Some(a.id);
                        a.id
                    }
                    Ok(None) if self.follow => {
                        // Not started yet: wait while the job is live.
                        match read(&self.state, move |r| r.get_job(job)).await {
                            Ok(Some(j)) if !j.state.is_final() => {
                                tokio::time::sleep(FOLLOW_POLL).await;
                                continue;
                            }
                            _ => return None,
                        }
                    }
                    Ok(None) => return None,
                    Err(e) => return Some(Err(std::io::Error::other(e.to_string()))),
                },
            };
            // Check whether the attempt ended *before* reading, so nothing written before the
            // end is missed.
            let ended = if self.follow {
                match read(&self.state, move |r| r.get_attempt(attempt)).await {
                    Ok(a) => a.is_none_or(|a| a.finished_at.is_some()),
                    Err(e) => return Some(Err(std::io::Error::other(e.to_string()))),
                }
            } else {
                true
            };
            let logs = self.state.logs.clone();
            let (stream, offset) = (self.stream, self.offset);
            let data =
                tokio::task::spawn_blocking(move || logs.read(attempt, stream, offset, LOG_CHUNK))
                    .await
                    .map_err(std::io::Error::other)
                    .and_then(|r| r);
            match data {
                Err(e) => return Some(Err(e)),
                Ok(d) if !d.is_empty() => {
                    self.offset += d.len() as u64;
                    return Some(Ok(Bytes::from(d)));
                }
                Ok(_) if ended => {
                    self.done = true;
                    return None;
                }
                Ok(_) => tokio::time::sleep(FOLLOW_POLL).await,
            }
        }
    }
}

/// `GET /api/v1/summary`
#[utoipa::path(
    get, path = "/summary", operation_id = "clusterSummary", tag = "cluster",
    responses((status = 200, description = "The cluster at a glance", body = zenith_protocol::api::ClusterSummary))
)]
pub async fn summary(
    State(state): State<AppState>,
) -> Result<Json<zenith_protocol::api::ClusterSummary>, ApiError> {
    let l = ask(&state, |reply| LoopMsg::Levels { reply }).await?;
    let mut queues: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for ((queue, st), n) in &l.jobs {
        let e = queues.entry(queue.clone()).or_default();
        match st {
            JobState::Queued => e.0 += n,
            JobState::Running => e.1 += n,
            _ => {}
        }
    }
    Ok(Json(zenith_protocol::api::ClusterSummary {
        nodes_ready: l
            .nodes
            .get(&zenith_model::NodeState::Ready)
            .copied()
            .unwrap_or(0),
        nodes_lost: l
            .nodes
            .get(&zenith_model::NodeState::Lost)
            .copied()
            .unwrap_or(0),
        cpus_total: l.cpu_millis_total as f64 / 1000.0,
        cpus_free: l.cpu_millis_free as f64 / 1000.0,
        memory_total: l.memory_total,
        memory_free: l.memory_free,
        running_attempts: l.running_attempts - l.backlogged_attempts.min(l.running_attempts),
        backlogged_attempts: l.backlogged_attempts,
        queues: queues
            .into_iter()
            .map(
                |(queue, (queued, running))| zenith_protocol::api::QueueLevel {
                    queue,
                    queued,
                    running,
                },
            )
            .collect(),
        runs_live: l.live_runs,
        flows_applied: l.flow_defs,
    }))
}

/// `GET /api/v1/version`: the server's build (any token).
#[utoipa::path(
    get, path = "/version", operation_id = "version", tag = "cluster",
    responses((status = 200, description = "The server's build", body = zenith_protocol::api::VersionView))
)]
pub async fn version() -> Json<zenith_protocol::api::VersionView> {
    Json(zenith_protocol::api::VersionView::this_build())
}

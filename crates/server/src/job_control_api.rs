//! Job control over HTTP: hold, release and update (priority, queue) of live jobs, requeue
//! of ended tasks, delete of ended jobs, and the end states of the jobs a submission names
//! in `after`.

use crate::api::{job_id, visible_job};
use crate::control::LoopMsg;
use crate::error::ApiError;
use crate::handler::{ask, read};
use crate::users::Principal;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use zenith_engine::{Command, EndedJob, JobUpdate, Outcome, RequeueTasks};
use zenith_model::{ArrayRange, JobId, JobSpec, JobState, ValidationError};
use zenith_protocol::api::{
    JobControlled, JobDeleted, JobRequeued, JobUpdateRequest, RequeueRequest,
};

/// Most distinct jobs one submission may name in `after` (each is looked up).
const MAX_AFTER_LOOKUPS: usize = 1024;

/// The end states of the jobs `specs` name in `after` that have ended; a job the caller
/// cannot see is refused as not found, naming the field.
pub(crate) async fn ended_dependencies(
    state: &AppState,
    p: &Principal,
    specs: &[Arc<JobSpec>],
) -> Result<BTreeMap<JobId, JobState>, ApiError> {
    let ids: BTreeSet<JobId> = specs
        .iter()
        .flat_map(|s| s.after.iter().map(|d| d.job))
        .collect();
    if ids.len() > MAX_AFTER_LOOKUPS {
        return Err(ApiError::Invalid(ValidationError::new(
            "after",
            format!("at most {MAX_AFTER_LOOKUPS} distinct jobs in one submission"),
        )));
    }
    let mut ended = BTreeMap::new();
    for id in ids {
        match visible_job(state, p, id).await {
            Ok(j) if j.state.is_final() => {
                ended.insert(id, j.state);
            }
            Ok(_) => {}
            Err(ApiError::NotFound(_) | ApiError::Hidden(_)) => {
                return Err(ApiError::Invalid(ValidationError::new(
                    "after",
                    format!("job {id} not found"),
                )))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(ended)
}

/// `POST /api/v1/jobs/{id}/hold`.
#[utoipa::path(
    post, path = "/jobs/{id}/hold", operation_id = "holdJob", tag = "jobs", params(("id" = u64, Path, description = "Job ID")),
    responses((status = 200, description = "Held: no new task starts until released", body = zenith_protocol::api::JobControlled),
        (status = 409, description = "The job has ended (or, for requeue, has nothing to run again)", body = zenith_protocol::api::ErrorBody))
)]
pub async fn hold(
    state: State<AppState>,
    p: Extension<Principal>,
    id: Path<String>,
) -> Result<Json<JobControlled>, ApiError> {
    set_hold(state, p, id, true).await
}

/// `POST /api/v1/jobs/{id}/release`.
#[utoipa::path(
    post, path = "/jobs/{id}/release", operation_id = "releaseJob", tag = "jobs", params(("id" = u64, Path, description = "Job ID")),
    responses((status = 200, description = "Released", body = zenith_protocol::api::JobControlled),
        (status = 409, description = "The job has ended (or, for requeue, has nothing to run again)", body = zenith_protocol::api::ErrorBody))
)]
pub async fn release(
    state: State<AppState>,
    p: Extension<Principal>,
    id: Path<String>,
) -> Result<Json<JobControlled>, ApiError> {
    set_hold(state, p, id, false).await
}

async fn set_hold(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    hold: bool,
) -> Result<Json<JobControlled>, ApiError> {
    let id = job_id(&id)?;
    control(&state, &p, id, Command::Hold { job: id, hold }).await
}

/// `PATCH /api/v1/jobs/{id}`: `{"priority": N, "queue": "Q"}` (either or both).
#[utoipa::path(
    patch, path = "/jobs/{id}", operation_id = "updateJob", tag = "jobs", params(("id" = u64, Path, description = "Job ID")),
    request_body = zenith_protocol::api::JobUpdateRequest,
    responses((status = 200, description = "Changed", body = zenith_protocol::api::JobControlled),
        (status = 409, description = "The job has ended (or, for requeue, has nothing to run again)", body = zenith_protocol::api::ErrorBody))
)]
pub async fn update(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<JobControlled>, ApiError> {
    let id = job_id(&id)?;
    let req: JobUpdateRequest =
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(&body))
            .map_err(|e| {
                let field = e.path().to_string();
                ApiError::Invalid(ValidationError::new(field, e.into_inner().to_string()))
            })?;
    req.validate().map_err(ApiError::Invalid)?;
    let update = JobUpdate {
        priority: req.priority,
        queue: req.queue,
    };
    control(&state, &p, id, Command::UpdateJob { job: id, update }).await
}

/// `POST /api/v1/jobs/{id}/requeue`: `{"tasks": "1,4-7"}`, `{"all": true}` or `{}` (the
/// ended tasks that did not succeed).
#[utoipa::path(
    post, path = "/jobs/{id}/requeue", operation_id = "requeueJob", tag = "jobs", params(("id" = u64, Path, description = "Job ID")),
    request_body(content = Option<zenith_protocol::api::RequeueRequest>, description = "Which ended tasks run again; none: every one that did not succeed"),
    responses((status = 200, description = "Tasks back in the queue", body = zenith_protocol::api::JobRequeued),
        (status = 409, description = "The job has ended (or, for requeue, has nothing to run again)", body = zenith_protocol::api::ErrorBody))
)]
pub async fn requeue(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<JobRequeued>, ApiError> {
    let id = job_id(&id)?;
    let req: RequeueRequest = crate::handler::decode_optional(&body)?;
    let tasks = match (req.all, req.tasks) {
        (true, Some(_)) => {
            return Err(ApiError::Invalid(ValidationError::new(
                "tasks",
                "give tasks or all, not both",
            )))
        }
        (true, None) => RequeueTasks::All,
        (false, Some(text)) => RequeueTasks::Indices(indices(&text)?),
        (false, None) => RequeueTasks::NotSucceeded,
    };
    let job = writable_job(&state, &p, id).await?;
    let ended = match job.state.is_final() {
        true => {
            let rows = read(&state, move |r| {
                r.tasks(id, zenith_model::job::limits::MAX_ARRAY_TASKS as usize)
            })
            .await?;
            Some(Box::new(EndedJob {
                record: job,
                tasks: rows,
            }))
        }
        false => None,
    };
    let cmd = Command::Requeue {
        job: id,
        tasks,
        ended,
    };
    let requeued = match ask(&state, |reply| LoopMsg::JobControl { cmd, reply }).await?? {
        Outcome::Requeued(n) => n,
        _ => {
            return Err(ApiError::Internal(
                "the engine answered another command".into(),
            ))
        }
    };
    let job = visible_job(&state, &p, id).await?;
    Ok(Json(JobRequeued {
        id,
        state: job.state,
        requeued,
    }))
}

/// `DELETE /api/v1/jobs/{id}`: forgets an ended job with its tasks, attempts and logs.
#[utoipa::path(
    delete, path = "/jobs/{id}", operation_id = "deleteJob", tag = "jobs", params(("id" = u64, Path, description = "Job ID")),
    responses((status = 200, description = "Deleted (an ended job)", body = zenith_protocol::api::JobDeleted),
        (status = 409, description = "The job has not ended", body = zenith_protocol::api::ErrorBody))
)]
pub async fn delete(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<JobDeleted>, ApiError> {
    let id = job_id(&id)?;
    let job = writable_job(&state, &p, id).await?;
    if let Some(owner) = job.owner {
        return Err(ApiError::Conflict(format!(
            "job {id} runs a step of flow run {}; it goes when the run is deleted",
            owner.run
        )));
    }
    let cmd = Command::DeleteJob { job: id };
    ask(&state, |reply| LoopMsg::JobControl { cmd, reply }).await??;
    Ok(Json(JobDeleted { id, deleted: true }))
}

/// Task indices written as an array is (`3`, `1,4-7`, `0-99:2`), without a throttle.
fn indices(text: &str) -> Result<Vec<u32>, ApiError> {
    let bad = |m: String| ApiError::Invalid(ValidationError::new("tasks", m));
    let a: ArrayRange = text.parse().map_err(|e| bad(format!("{e}")))?;
    if a.throttle.is_some() {
        return Err(bad("a task list takes no %throttle".into()));
    }
    if u64::from(a.len()) > zenith_model::job::limits::MAX_ARRAY_TASKS {
        return Err(bad(format!(
            "at most {} tasks",
            zenith_model::job::limits::MAX_ARRAY_TASKS
        )));
    }
    Ok((0..a.len()).map(|s| a.index_of(s)).collect())
}

/// The job, for a caller who may change its namespace.
async fn writable_job(
    state: &AppState,
    p: &Principal,
    id: JobId,
) -> Result<zenith_model::JobRecord, ApiError> {
    let job = visible_job(state, p, id).await?;
    p.must_write(job.spec.as_deref().map(JobSpec::namespace).unwrap_or(""))?;
    Ok(job)
}

/// Applies a job control command for a caller who may write the job's namespace, and
/// answers with the job's place after it.
async fn control(
    state: &AppState,
    p: &Principal,
    id: JobId,
    cmd: Command,
) -> Result<Json<JobControlled>, ApiError> {
    let job = writable_job(state, p, id).await?;
    ask(state, |reply| LoopMsg::JobControl { cmd, reply })
        .await?
        .map_err(|e| match e {
            ApiError::Conflict(m) if job.state.is_final() => {
                ApiError::Conflict(format!("job {id} already {}: {m}", job.state))
            }
            e => e,
        })?;
    let job = visible_job(state, p, id).await?;
    let spec = job.spec.as_deref();
    Ok(Json(JobControlled {
        id,
        state: job.state,
        hold: spec.is_some_and(|s| s.hold),
        priority: spec.map_or(0, |s| s.priority),
        queue: spec.map_or_else(String::new, |s| s.queue.clone()),
    }))
}

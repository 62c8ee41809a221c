//! Job control over HTTP: hold, release and update (priority, queue) of live jobs, and the
//! end states of the jobs a submission names in `after`.

use crate::api::{job_id, visible_job};
use crate::control::LoopMsg;
use crate::error::ApiError;
use crate::handler::ask;
use crate::users::Principal;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use zenith_engine::{Command, JobUpdate};
use zenith_model::{JobId, JobSpec, JobState, ValidationError};
use zenith_protocol::api::{JobControlled, JobUpdateRequest};

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
pub async fn hold(
    state: State<AppState>,
    p: Extension<Principal>,
    id: Path<String>,
) -> Result<Json<JobControlled>, ApiError> {
    set_hold(state, p, id, true).await
}

/// `POST /api/v1/jobs/{id}/release`.
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

/// Applies a job control command for a caller who may write the job's namespace, and
/// answers with the job's place after it.
async fn control(
    state: &AppState,
    p: &Principal,
    id: JobId,
    cmd: Command,
) -> Result<Json<JobControlled>, ApiError> {
    let job = visible_job(state, p, id).await?;
    p.must_write(job.spec.as_deref().map(JobSpec::namespace).unwrap_or(""))?;
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

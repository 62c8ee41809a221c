//! Public API v1 for flows (`/api/v1/flows...`), behind a token (`access.rs`). Specs arrive
//! as YAML text and are parsed and validated completely here, before anything is started.
//! A flow, its runs and their jobs live in one namespace: `?namespace=`, else the spec's
//! `namespace`, else the caller's default; the server stamps it and the submitter on the
//! spec. A run in a namespace the caller may not read does not exist for it (404).

use crate::control::{FlowSource, LoopMsg};
use crate::error::ApiError;
use crate::handler::{ask, decode, read};
use crate::users::Principal;
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use std::sync::Arc;
use std::sync::OnceLock;
use zenith_flowspec::{check, parse_yaml, FlowPlan, Templates};
use zenith_model::flow::flow_key;
use zenith_model::flow::{FlowSpec, RunId};
use zenith_model::tenancy::{validate_namespace, DEFAULT_NAMESPACE};
use zenith_model::ValidationError;
use zenith_protocol::flows::{
    def_view, run_graph, run_summary, run_view, FlowChanged, FlowList, FlowText, FlowValidated,
    RunAttemptView, RunAttempts, RunGraph, RunRequest, RunSubmitted, RunView, StepApproved,
};
use zenith_store::RunFilter;

/// Most instance rows shown for one run.
const MAX_INSTANCES_SHOWN: usize = 100_000;

fn templates() -> &'static Templates {
    static T: OnceLock<Templates> = OnceLock::new();
    T.get_or_init(Templates::new)
}

/// Parses and validates a spec; `field` errors keep their path.
pub fn compile(text: &str) -> Result<(Arc<FlowSpec>, Arc<FlowPlan>), ApiError> {
    let spec = parse_yaml(text).map_err(|e| ApiError::Invalid(e.within("flow")))?;
    let plan = check(&spec, templates()).map_err(|e| ApiError::Invalid(e.within("flow")))?;
    Ok((Arc::new(spec), Arc::new(plan)))
}

async fn compile_off_loop(text: String) -> Result<(Arc<FlowSpec>, Arc<FlowPlan>), ApiError> {
    tokio::task::spawn_blocking(move || compile(&text))
        .await
        .map_err(|e| ApiError::Unavailable(format!("validation task failed: {e}")))?
}

/// `?namespace=` of the flow routes that name flows rather than runs.
#[derive(Deserialize, Default, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NsQuery {
    namespace: Option<String>,
}

/// The namespace a request about flows acts in: the one asked for, else the spec's, else the
/// caller's default (the two given must agree).
fn flow_namespace(p: &Principal, asked: Option<&str>, spec: &str) -> Result<String, ApiError> {
    let ns = match (asked.filter(|a| !a.is_empty()), spec) {
        (Some(a), s) if !s.is_empty() && a != s => {
            return Err(ApiError::Invalid(ValidationError::new(
                "namespace",
                format!("{a:?} asked for, but the flow names namespace {s:?}"),
            )))
        }
        (Some(a), _) => a.to_string(),
        (None, s) if !s.is_empty() => s.to_string(),
        (None, _) => p.default_namespace().to_string(),
    };
    validate_namespace(&ns, "namespace").map_err(ApiError::Invalid)?;
    Ok(ns)
}

/// The spec as accepted from `p` in `ns`: its namespace and submitter stamped (a spec that
/// names a submitter is refused: only the server sets it).
fn stamped(spec: Arc<FlowSpec>, ns: &str, p: &Principal) -> Result<Arc<FlowSpec>, ApiError> {
    if !spec.submitter.is_empty() {
        return Err(ApiError::Invalid(ValidationError::new(
            "flow.submitter",
            "is set by the server from the token",
        )));
    }
    let mut spec = Arc::unwrap_or_clone(spec);
    spec.namespace = ns.to_string();
    spec.submitter = p.user.clone();
    Ok(Arc::new(spec))
}

/// A run's namespace (that of its spec).
fn run_namespace(run: &zenith_model::flow::RunRecord) -> &str {
    run.spec
        .as_deref()
        .map(FlowSpec::namespace)
        .unwrap_or(DEFAULT_NAMESPACE)
}

/// Refuses (as not found) a run the caller may not read, or (403) may not change.
async fn run_access(
    state: &AppState,
    p: &Principal,
    id: RunId,
    write: bool,
) -> Result<(), ApiError> {
    let run = read(state, move |r| r.get_run(id)).await?;
    let Some(run) = run else {
        return Ok(()); // the command answers "not found" itself
    };
    let ns = run_namespace(&run);
    p.must_read(ns, || format!("run {id} not found"))?;
    if write {
        p.must_write(ns)?;
    }
    Ok(())
}

fn run_id(raw: &str) -> Result<RunId, ApiError> {
    raw.parse::<u64>()
        .map(RunId)
        .map_err(|_| ApiError::Invalid(ValidationError::new("id", "run IDs are positive integers")))
}

/// `POST /api/v1/flows/runs`
#[utoipa::path(
    post, path = "/flows/runs", operation_id = "runFlow", tag = "flows", params(NsQuery),
    request_body = zenith_protocol::flows::RunRequest,
    responses((status = 201, description = "The run started", body = zenith_protocol::flows::RunSubmitted))
)]
pub async fn submit_run(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<NsQuery>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: RunRequest = decode(&body)?;
    let flow = match (req.flow, req.name) {
        (Some(text), None) => {
            let (spec, plan) = compile_off_loop(text).await?;
            let ns = flow_namespace(&p, q.namespace.as_deref(), &spec.namespace)?;
            p.must_write(&ns)?;
            FlowSource::Spec(stamped(spec, &ns, &p)?, plan)
        }
        (None, Some(name)) => {
            let ns = flow_namespace(&p, q.namespace.as_deref(), "")?;
            p.must_write(&ns)?;
            FlowSource::Applied(flow_key(&ns, &name))
        }
        _ => {
            return Err(ApiError::Invalid(ValidationError::new(
                "flow",
                "give either flow (the YAML text) or name (an applied flow)",
            )))
        }
    };
    let params = req.params;
    let id = ask(&state, |reply| LoopMsg::SubmitRun {
        flow,
        params,
        reply,
    })
    .await??;
    Ok((StatusCode::CREATED, Json(RunSubmitted { id })).into_response())
}

/// `POST /api/v1/flows/validate`
#[utoipa::path(
    post, path = "/flows/validate", operation_id = "validateFlow", tag = "flows",
    request_body = zenith_protocol::flows::FlowText,
    responses((status = 200, description = "The flow compiles", body = zenith_protocol::flows::FlowValidated))
)]
pub async fn validate(body: axum::body::Bytes) -> Result<Json<FlowValidated>, ApiError> {
    let req: FlowText = decode(&body)?;
    let (spec, _) = compile_off_loop(req.flow).await?;
    Ok(Json(FlowValidated {
        valid: true,
        name: spec.name.clone(),
        steps: spec.steps.len(),
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    name: Option<String>,
    /// A namespace, `*` for every one the token reads; default: the token's default.
    namespace: Option<String>,
    before: Option<u64>,
    limit: Option<usize>,
}

/// `GET /api/v1/flows/runs`
#[utoipa::path(
    get, path = "/flows/runs", operation_id = "listRuns", tag = "flows", params(RunsQuery),
    responses((status = 200, description = "Runs, newest first", body = Vec<zenith_protocol::flows::RunSummary>))
)]
pub async fn list_runs(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<RunsQuery>,
) -> Result<Json<Vec<zenith_protocol::flows::RunSummary>>, ApiError> {
    let namespaces = p.listing(q.namespace.as_deref())?;
    // A plain name is of the flow in the one namespace listed; `ns/name` is a flow's key.
    let name = match (&q.name, &namespaces) {
        (Some(n), Some(nss)) if nss.len() == 1 && !n.contains('/') => Some(flow_key(&nss[0], n)),
        (n, _) => n.clone(),
    };
    let f = RunFilter {
        name,
        namespaces,
        before: q.before.map(RunId),
        limit: q.limit.unwrap_or(100).clamp(1, 10_000),
    };
    let rows = read(&state, move |r| r.list_runs(&f)).await?;
    Ok(Json(rows.iter().map(run_summary).collect()))
}

/// `GET /api/v1/flows`: applied flows and the latest 50 runs.
#[utoipa::path(
    get, path = "/flows", operation_id = "listFlows", tag = "flows", params(NsQuery),
    responses((status = 200, description = "Applied flows and the latest runs", body = zenith_protocol::flows::FlowList))
)]
pub async fn list(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<NsQuery>,
) -> Result<Json<FlowList>, ApiError> {
    let namespaces = p.listing(q.namespace.as_deref())?;
    let f = RunFilter {
        limit: 50,
        namespaces: namespaces.clone(),
        ..Default::default()
    };
    let (defs, runs) = read(&state, move |r| Ok((r.list_flow_defs()?, r.list_runs(&f)?))).await?;
    let listed = |ns: &str| {
        namespaces
            .as_ref()
            .is_none_or(|l| l.iter().any(|n| n == ns))
    };
    Ok(Json(FlowList {
        flows: defs
            .iter()
            .filter(|d| listed(d.spec.namespace()))
            .map(def_view)
            .collect(),
        runs: runs.iter().map(run_summary).collect(),
    }))
}

/// A run with its spec, step rows and instance rows (at most [`MAX_INSTANCES_SHOWN`]).
async fn load_run(
    state: &AppState,
    id: RunId,
) -> Result<
    (
        zenith_model::flow::RunRecord,
        Arc<FlowSpec>,
        Vec<zenith_model::flow::StepRecord>,
        Vec<zenith_model::flow::InstanceRecord>,
    ),
    ApiError,
> {
    let (run, steps, instances) = read(state, move |r| {
        Ok((
            r.get_run(id)?,
            r.run_steps(id)?,
            r.run_instances(id, MAX_INSTANCES_SHOWN)?,
        ))
    })
    .await?;
    let run = run.ok_or(ApiError::NotFound(format!("run {id} not found")))?;
    let spec = run
        .spec
        .clone()
        .ok_or(ApiError::Unavailable("stored run has no spec".into()))?;
    Ok((run, spec, steps, instances))
}

/// `GET /api/v1/flows/runs/{id}`
#[utoipa::path(
    get, path = "/flows/runs/{id}", operation_id = "getRun", tag = "flows", params(("id" = u64, Path, description = "Run ID")),
    responses((status = 200, description = "The run and its steps", body = zenith_protocol::flows::RunView))
)]
pub async fn show_run(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<RunView>, ApiError> {
    let id = run_id(&id)?;
    let (run, spec, steps, instances) = load_run(&state, id).await?;
    p.must_read(spec.namespace(), || format!("run {id} not found"))?;
    Ok(Json(run_view(&run, &spec, &steps, &instances)))
}

/// `GET /api/v1/flows/runs/{id}/graph`
#[utoipa::path(
    get, path = "/flows/runs/{id}/graph", operation_id = "runGraph", tag = "flows", params(("id" = u64, Path, description = "Run ID")),
    responses((status = 200, description = "The run's DAG with states", body = zenith_protocol::flows::RunGraph))
)]
pub async fn graph(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<RunGraph>, ApiError> {
    let id = run_id(&id)?;
    let (run, spec, steps, instances) = load_run(&state, id).await?;
    p.must_read(spec.namespace(), || format!("run {id} not found"))?;
    Ok(Json(run_graph(&run, &spec, &steps, &instances)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AttemptsQuery {
    after: Option<u64>,
    limit: Option<usize>,
}

/// Most attempts in one page of a run's timeline.
pub const MAX_ATTEMPTS_PAGE: usize = 10_000;

/// `GET /api/v1/flows/runs/{id}/attempts?after=&limit=`
#[utoipa::path(
    get, path = "/flows/runs/{id}/attempts", operation_id = "runAttempts", tag = "flows", params(("id" = u64, Path, description = "Run ID"), AttemptsQuery),
    responses((status = 200, description = "A page of the run's attempts (its timeline)", body = zenith_protocol::flows::RunAttempts))
)]
pub async fn attempts(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<AttemptsQuery>,
) -> Result<Json<RunAttempts>, ApiError> {
    let id = run_id(&id)?;
    let limit = q.limit.unwrap_or(1000);
    if limit == 0 || limit > MAX_ATTEMPTS_PAGE {
        return Err(ApiError::Invalid(ValidationError::new(
            "limit",
            format!("must be 1..={MAX_ATTEMPTS_PAGE}"),
        )));
    }
    let after = q.after.map(zenith_model::AttemptId);
    let (run, rows) = read(&state, move |r| {
        Ok((r.get_run(id)?, r.run_attempts(id, after, limit)?))
    })
    .await?;
    let Some(run) = run else {
        return Err(ApiError::NotFound(format!("run {id} not found")));
    };
    p.must_read(run_namespace(&run), || format!("run {id} not found"))?;
    let next_after = if rows.len() == limit {
        rows.last().map(|a| a.attempt.id)
    } else {
        None
    };
    Ok(Json(RunAttempts {
        attempts: rows
            .iter()
            .map(|a| RunAttemptView {
                step: a.step,
                instance: a.instance,
                job: a.attempt.job,
                attempt: zenith_protocol::api::attempt_view(&a.attempt),
            })
            .collect(),
        next_after,
    }))
}

/// `POST /api/v1/flows/runs/{id}/cancel`
#[utoipa::path(
    post, path = "/flows/runs/{id}/cancel", operation_id = "cancelRun", tag = "flows", params(("id" = u64, Path, description = "Run ID")),
    responses((status = 202, description = "Accepted: its steps are being stopped", body = zenith_protocol::api::Cancelled),
        (status = 409, description = "The run has already ended", body = zenith_protocol::api::ErrorBody))
)]
pub async fn cancel_run(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = run_id(&id)?;
    run_access(&state, &p, id, true).await?;
    match ask(&state, |reply| LoopMsg::CancelRun { id, reply }).await? {
        Ok(()) => Ok((
            StatusCode::ACCEPTED,
            Json(zenith_protocol::api::Cancelled {
                id: id.0,
                cancelled: true,
            }),
        )
            .into_response()),
        Err(ApiError::Conflict(m)) => match read(&state, move |r| r.get_run(id)).await? {
            None => Err(ApiError::NotFound(format!("run {id} not found"))),
            Some(r) => Err(ApiError::Conflict(format!(
                "run {id} already {}: {m}",
                r.state
            ))),
        },
        Err(e) => Err(e),
    }
}

/// `POST /api/v1/flows/runs/{id}/steps/{step}/approve`
#[utoipa::path(
    post, path = "/flows/runs/{id}/steps/{step}/approve", operation_id = "approveStep", tag = "flows",
    params(("id" = u64, Path, description = "Run ID"), ("step" = String, Path, description = "The approval step's name")),
    responses((status = 200, description = "Approved: the run goes on", body = zenith_protocol::flows::StepApproved),
        (status = 409, description = "The step is not waiting for approval, or the run has ended", body = zenith_protocol::api::ErrorBody))
)]
pub async fn approve(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((id, step)): Path<(String, String)>,
) -> Result<Json<StepApproved>, ApiError> {
    let id = run_id(&id)?;
    run_access(&state, &p, id, true).await?;
    if step.len() > 63 {
        return Err(ApiError::Invalid(ValidationError::new(
            "step",
            "at most 63 characters",
        )));
    }
    let s = step.clone();
    ask(&state, |reply| LoopMsg::Approve { id, step: s, reply }).await??;
    Ok(Json(StepApproved {
        id,
        step,
        approved: true,
    }))
}

/// `PUT /api/v1/flows/{name}`: stores the definition and arms its schedule.
#[utoipa::path(
    put, path = "/flows/{name}", operation_id = "applyFlow", tag = "flows", params(("name" = String, Path, description = "The flow's name (as in its YAML)"), NsQuery),
    request_body = zenith_protocol::flows::FlowText,
    responses((status = 200, description = "Stored; its schedule armed", body = zenith_protocol::flows::FlowChanged))
)]
pub async fn apply(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    Query(q): Query<NsQuery>,
    body: axum::body::Bytes,
) -> Result<Json<FlowChanged>, ApiError> {
    let req: FlowText = decode(&body)?;
    let (spec, plan) = compile_off_loop(req.flow).await?;
    let ns = flow_namespace(&p, q.namespace.as_deref(), &spec.namespace)?;
    p.must_write(&ns)?;
    let spec = stamped(spec, &ns, &p)?;
    if spec.name != name {
        return Err(ApiError::Invalid(ValidationError::new(
            "flow.name",
            format!("is {:?} but the URL names {name:?}", spec.name),
        )));
    }
    ask(&state, |reply| LoopMsg::ApplyFlow { spec, plan, reply }).await??;
    Ok(Json(FlowChanged {
        name,
        namespace: ns,
        applied: true,
        deleted: false,
    }))
}

/// `DELETE /api/v1/flows/{name}`
#[utoipa::path(
    delete, path = "/flows/{name}", operation_id = "deleteFlow", tag = "flows", params(("name" = String, Path, description = "The flow's name"), NsQuery),
    responses((status = 200, description = "Deleted", body = zenith_protocol::flows::FlowChanged))
)]
pub async fn delete(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    Query(q): Query<NsQuery>,
) -> Result<Json<FlowChanged>, ApiError> {
    let ns = flow_namespace(&p, q.namespace.as_deref(), "")?;
    p.must_write(&ns)?;
    let key = flow_key(&ns, &name);
    ask(&state, |reply| LoopMsg::DeleteFlow { name: key, reply }).await??;
    Ok(Json(FlowChanged {
        name,
        namespace: ns,
        applied: false,
        deleted: true,
    }))
}

//! Public API v1 for flows (`/api/v1/flows...`): run, list, show, cancel, approve, apply.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;
use zenith_model::flow::{
    FlowDefRecord, FlowSpec, InstanceRecord, RunId, RunRecord, RunState, StepRecord, StepState,
    Trigger,
};
use zenith_model::{JobId, Millis, Reason};

/// `POST /api/v1/flows/runs`: a flow given as YAML text, or the name of an applied flow.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

/// `PUT /api/v1/flows/{name}` and `POST /api/v1/flows/validate`: the flow as YAML text.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowText {
    pub flow: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct RunSubmitted {
    pub id: RunId,
}

/// One entry of a run's `steps`: a step, or, for a fan-out step that has expanded, one of its
/// instances (same `name`, with `index` and `item`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct StepView {
    pub name: String,
    pub state: StepState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub attempts: u32,
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
    /// Fan-out instances: their index and item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<serde_json::Value>,
    /// The job that ran it, once started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobId>,
    /// The whole step's state (for fan-out instances: of all of them together).
    pub step_state: StepState,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct RunSummary {
    pub id: RunId,
    pub name: String,
    pub state: RunState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub trigger: Trigger,
    pub created_at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Millis>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct RunView {
    pub id: RunId,
    pub name: String,
    pub state: RunState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub trigger: Trigger,
    pub params: BTreeMap<String, String>,
    pub retries_used: u32,
    pub created_at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Millis>,
    pub steps: Vec<StepView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct FlowDefView {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_fire: Option<Millis>,
    pub updated_at: Millis,
    pub steps: usize,
}

/// `GET /api/v1/flows`: applied definitions and the latest runs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct FlowList {
    pub flows: Vec<FlowDefView>,
    pub runs: Vec<RunSummary>,
}

pub fn run_summary(r: &RunRecord) -> RunSummary {
    RunSummary {
        id: r.id,
        name: r.name.clone(),
        state: r.state,
        reason: r.reason.as_ref().map(Reason::to_string),
        trigger: r.trigger,
        created_at: r.created_at,
        finished_at: r.finished_at,
    }
}

pub fn def_view(d: &FlowDefRecord) -> FlowDefView {
    FlowDefView {
        name: d.name.clone(),
        schedule: d.spec.schedule.clone(),
        timezone: d.spec.timezone.clone(),
        next_fire: d.next_fire,
        updated_at: d.updated_at,
        steps: d.spec.steps.len(),
    }
}

/// Assembles a run's view from its rows; steps without a row are pending. A fan-out step
/// that expanded shows one entry per instance.
pub fn run_view(
    r: &RunRecord,
    spec: &FlowSpec,
    steps: &[StepRecord],
    instances: &[InstanceRecord],
) -> RunView {
    let mut rows: Vec<Option<&StepRecord>> = vec![None; spec.steps.len()];
    for s in steps {
        if let Some(slot) = rows.get_mut(s.step as usize) {
            *slot = Some(s);
        }
    }
    let mut insts: Vec<Vec<&InstanceRecord>> = vec![Vec::new(); spec.steps.len()];
    for i in instances {
        if let Some(slot) = insts.get_mut(i.step as usize) {
            slot.push(i);
        }
    }
    let mut out = Vec::with_capacity(spec.steps.len());
    for (si, s) in spec.steps.iter().enumerate() {
        let row = rows[si];
        let step_state = row.map(|r| r.state).unwrap_or(StepState::Pending);
        let reason = row.and_then(|r| r.reason.as_ref().map(Reason::to_string));
        if s.for_each.is_some() && !insts[si].is_empty() {
            for i in &insts[si] {
                out.push(StepView {
                    name: s.name.clone(),
                    state: i.state,
                    reason: i.reason.as_ref().map(Reason::to_string),
                    attempts: i.attempts,
                    outputs: i.outputs.clone(),
                    index: Some(i.instance),
                    item: i.item.clone(),
                    job: i.job,
                    step_state,
                });
            }
            continue;
        }
        let first = insts[si].first();
        out.push(StepView {
            name: s.name.clone(),
            state: step_state,
            reason,
            attempts: first.map(|i| i.attempts).unwrap_or(0),
            outputs: first.map(|i| i.outputs.clone()).unwrap_or_default(),
            index: None,
            item: None,
            job: first.and_then(|i| i.job),
            step_state,
        });
    }
    RunView {
        id: r.id,
        name: r.name.clone(),
        state: r.state,
        reason: r.reason.as_ref().map(Reason::to_string),
        trigger: r.trigger,
        params: r.params.clone(),
        retries_used: r.retries_used,
        created_at: r.created_at,
        finished_at: r.finished_at,
        expires_at: r.expires_at,
        steps: out,
    }
}

/// `GET /api/v1/flows/runs/{id}/graph`: the run's DAG, one entry per step (a fan-out step is
/// one node with its instances counted), for drawing.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct RunGraph {
    pub run: RunSummary,
    pub steps: Vec<GraphStep>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct GraphStep {
    pub name: String,
    /// Indexes into `steps` of the steps this one depends on.
    pub depends: Vec<u32>,
    pub state: StepState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub approval: bool,
    pub fan_out: bool,
    /// Instances by state (a plain step that started has one instance).
    pub instances: BTreeMap<String, u32>,
    /// The job of the first instance, once started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobId>,
    /// Attempts of all instances together.
    pub attempts: u32,
}

/// Builds the graph of a run from its spec and rows.
pub fn run_graph(
    r: &RunRecord,
    spec: &FlowSpec,
    steps: &[StepRecord],
    instances: &[InstanceRecord],
) -> RunGraph {
    let index: BTreeMap<&str, u32> = spec
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i as u32))
        .collect();
    let mut out: Vec<GraphStep> = spec
        .steps
        .iter()
        .map(|s| GraphStep {
            name: s.name.clone(),
            depends: s
                .depends
                .iter()
                .filter_map(|d| index.get(d.as_str()).copied())
                .collect(),
            state: StepState::Pending,
            reason: None,
            approval: s.kind == zenith_model::flow::StepKind::Approval,
            fan_out: s.for_each.is_some(),
            instances: BTreeMap::new(),
            job: None,
            attempts: 0,
        })
        .collect();
    for row in steps {
        if let Some(g) = out.get_mut(row.step as usize) {
            g.state = row.state;
            g.reason = row.reason.as_ref().map(Reason::to_string);
        }
    }
    for i in instances {
        if let Some(g) = out.get_mut(i.step as usize) {
            *g.instances.entry(i.state.as_str().to_string()).or_default() += 1;
            g.attempts = g.attempts.saturating_add(i.attempts);
            if g.job.is_none() {
                g.job = i.job;
            }
        }
    }
    RunGraph {
        run: run_summary(r),
        steps: out,
    }
}

/// `GET /api/v1/flows/runs/{id}/attempts?after=&limit=`: the attempts of a run's jobs in ID
/// order, a page at a time, for its timeline.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RunAttempts {
    pub attempts: Vec<RunAttemptView>,
    /// Pass as `after` for the next page; absent on the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<zenith_model::AttemptId>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RunAttemptView {
    /// Index of the step in the run's graph.
    pub step: u32,
    /// Fan-out instance index.
    pub instance: u32,
    pub job: JobId,
    #[serde(flatten)]
    pub attempt: crate::api::AttemptView,
}

/// `POST /api/v1/flows/validate`: the flow compiles.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct FlowValidated {
    pub valid: bool,
    pub name: String,
    pub steps: usize,
}

/// `POST /api/v1/flows/runs/{id}/steps/{step}/approve`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct StepApproved {
    pub id: RunId,
    pub step: String,
    pub approved: bool,
}

/// `PUT /api/v1/flows/{name}` (`applied`) and `DELETE` (`deleted`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct FlowChanged {
    pub name: String,
    pub namespace: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub applied: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

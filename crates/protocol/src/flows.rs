//! Public API v1 for flows (`/api/v1/flows...`): run, list, show, cancel, approve, apply.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use zenith_model::flow::{
    FlowDefRecord, FlowSpec, InstanceRecord, RunId, RunRecord, RunState, StepRecord, StepState,
};
use zenith_model::{JobId, Millis};

/// `POST /api/v1/flows/runs`: a flow given as YAML text, or the name of an applied flow.
#[derive(Clone, Debug, Serialize, Deserialize)]
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
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowText {
    pub flow: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunSubmitted {
    pub id: RunId,
}

/// One instance of a step: the only one, or one fan-out item.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct InstanceView {
    pub index: u32,
    pub state: StepState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobId>,
    pub attempts: u32,
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StepView {
    pub name: String,
    pub state: StepState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Attempts over all instances.
    pub attempts: u32,
    /// Output parameters (of the only instance; fan-out steps have them per instance).
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
    pub fan_out: bool,
    /// Instances (one for a plain step once started; one per item for a fan-out step).
    #[serde(default)]
    pub instances: Vec<InstanceView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunSummary {
    pub id: RunId,
    pub name: String,
    pub state: RunState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub trigger: String,
    pub created_at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Millis>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunView {
    pub id: RunId,
    pub name: String,
    pub state: RunState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub trigger: String,
    pub params: BTreeMap<String, String>,
    pub retries_used: u32,
    pub created_at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Millis>,
    pub steps: Vec<StepView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
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
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FlowList {
    pub flows: Vec<FlowDefView>,
    pub runs: Vec<RunSummary>,
}

pub fn run_summary(r: &RunRecord) -> RunSummary {
    RunSummary {
        id: r.id,
        name: r.name.clone(),
        state: r.state,
        reason: r.reason.clone(),
        trigger: r.trigger.clone(),
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

/// Assembles a run's view from its rows; steps without a row are pending.
pub fn run_view(
    r: &RunRecord,
    spec: &FlowSpec,
    steps: &[StepRecord],
    instances: &[InstanceRecord],
) -> RunView {
    let mut out: Vec<StepView> = spec
        .steps
        .iter()
        .map(|s| StepView {
            name: s.name.clone(),
            state: StepState::Pending,
            reason: None,
            attempts: 0,
            outputs: BTreeMap::new(),
            fan_out: s.for_each.is_some(),
            instances: Vec::new(),
        })
        .collect();
    for s in steps {
        if let Some(v) = out.get_mut(s.step as usize) {
            v.state = s.state;
            v.reason = s.reason.clone();
        }
    }
    for i in instances {
        if let Some(v) = out.get_mut(i.step as usize) {
            v.attempts += i.attempts;
            if !v.fan_out {
                v.outputs = i.outputs.clone();
            }
            v.instances.push(InstanceView {
                index: i.instance,
                state: i.state,
                item: i.item.clone(),
                job: i.job,
                attempts: i.attempts,
                outputs: i.outputs.clone(),
                reason: i.reason.clone(),
            });
        }
    }
    RunView {
        id: r.id,
        name: r.name.clone(),
        state: r.state,
        reason: r.reason.clone(),
        trigger: r.trigger.clone(),
        params: r.params.clone(),
        retries_used: r.retries_used,
        created_at: r.created_at,
        finished_at: r.finished_at,
        expires_at: r.expires_at,
        steps: out,
    }
}

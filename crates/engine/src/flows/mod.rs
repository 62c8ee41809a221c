//! Flow runs in the engine: DAG progress over jobs. Each step instance runs as one job owned
//! by its run ([`StepRef`]); when the job retires, the step moves on and its dependents start.
//!
//! Bounds: `runs` holds live runs only (finished ones are persisted and dropped), capped by
//! `max_live_runs`; `active_by_name` and `run_deadlines` index live runs only; `defs` holds
//! applied definitions, capped by `max_flow_defs`, and `cron_timers` one entry per scheduled
//! definition.

mod commands;
mod progress;
mod render;
mod restore;
mod timers;

use std::collections::BTreeMap;
use std::sync::Arc;
use zenith_flowspec::{cron::Schedule, FlowPlan};
use zenith_model::flow::{
    FlowSpec, InstanceRecord, RunId, RunRecord, RunState, StepRecord, StepState, Trigger,
};
use zenith_model::{JobId, Millis, Reason};

/// Why a run is being wound down before its steps are done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    Cancelled,
    DeadlineExceeded,
}

pub(crate) struct Instance {
    pub state: StepState,
    pub job: Option<JobId>,
    pub item: Option<serde_json::Value>,
    pub outputs: BTreeMap<String, String>,
    pub attempts: u32,
    pub reason: Option<Reason>,
}

pub(crate) struct StepRun {
    pub state: StepState,
    pub reason: Option<Reason>,
    /// Skipped because a dependency failed or was skipped for that reason.
    pub blocked: bool,
    /// Dependencies not final yet.
    pub waiting: u32,
    pub instances: Vec<Instance>,
    /// Instances not final yet.
    pub open_instances: u32,
}

pub(crate) struct FlowRun {
    pub spec: Arc<FlowSpec>,
    pub plan: Arc<FlowPlan>,
    pub params: BTreeMap<String, String>,
    pub trigger: Trigger,
    pub state: RunState,
    pub reason: Option<Reason>,
    pub steps: Vec<StepRun>,
    /// Steps not final yet.
    pub open: usize,
    pub retries_used: u32,
    pub deadline_at: Option<Millis>,
    pub created_at: Millis,
    pub ending: Option<Ending>,
    /// The run row has not been written yet (carry the spec).
    pub unsaved: bool,
}

/// An applied definition.
pub(crate) struct FlowDef {
    pub spec: Arc<FlowSpec>,
    pub plan: Arc<FlowPlan>,
    pub schedule: Option<Schedule>,
    pub next_fire: Option<Millis>,
    pub updated_at: Millis,
}

/// A step of a live run as reads show it (the rest comes from the store).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunLive {
    pub id: RunId,
    pub state: RunState,
}

impl crate::Engine {
    pub(crate) fn note_run(&mut self, id: RunId, finished_at: Option<Millis>) {
        let Some(run) = self.runs.get_mut(&id) else {
            return;
        };
        let spec = if run.unsaved {
            run.unsaved = false;
            Some(run.spec.clone())
        } else {
            None
        };
        let mut rec = RunRecord {
            id,
            name: run.spec.key(),
            spec,
            params: run.params.clone(),
            state: run.state,
            reason: run.reason.clone(),
            retries_used: run.retries_used,
            trigger: run.trigger,
            cancel_requested: run.ending == Some(Ending::Cancelled),
            deadline_at: run.deadline_at,
            created_at: run.created_at,
            finished_at,
            expires_at: finished_at
                .and_then(|f| run.spec.ttl.map(|t| f.saturating_add(t.as_millis()))),
        };
        if let Some(old) = self.changes.runs.get(&id) {
            if rec.spec.is_none() {
                rec.spec = old.spec.clone();
            }
        }
        self.changes.runs.insert(id, rec);
    }

    pub(crate) fn note_step(&mut self, id: RunId, si: u32) {
        let Some(run) = self.runs.get(&id) else {
            return;
        };
        let (Some(s), Some(spec)) = (run.steps.get(si as usize), run.spec.steps.get(si as usize))
        else {
            return;
        };
        let rec = StepRecord {
            run: id,
            step: si,
            name: spec.name.clone(),
            state: s.state,
            reason: s.reason.clone(),
            blocked: s.blocked,
            instances: s.instances.len() as u32,
        };
        self.changes.steps.insert((id, si), rec);
    }

    pub(crate) fn note_instance(&mut self, id: RunId, si: u32, ii: u32) {
        let Some(inst) = self
            .runs
            .get(&id)
            .and_then(|r| r.steps.get(si as usize))
            .and_then(|s| s.instances.get(ii as usize))
        else {
            return;
        };
        let rec = InstanceRecord {
            run: id,
            step: si,
            instance: ii,
            state: inst.state,
            job: inst.job,
            item: inst.item.clone(),
            outputs: inst.outputs.clone(),
            attempts: inst.attempts,
            reason: inst.reason.clone(),
        };
        self.changes.instances.insert((id, si, ii), rec);
    }

    /// Live runs, for metrics.
    pub fn live_runs(&self) -> usize {
        self.runs.len()
    }

    /// The state of a live run; `None` when it is not live.
    pub fn run_live(&self, id: RunId) -> Option<RunLive> {
        self.runs.get(&id).map(|r| RunLive { id, state: r.state })
    }
}

impl crate::Engine {
    /// The node running attempt `aid` and the flow step instance it is for, while it runs.
    pub fn attempt_owner(
        &self,
        aid: zenith_model::AttemptId,
    ) -> Option<(zenith_model::NodeId, Option<zenith_model::flow::StepRef>)> {
        let r = self.attempts.get(&aid)?;
        let owner = self.jobs.get(&r.job).and_then(|j| j.owner);
        Some((r.node.clone(), owner))
    }
}

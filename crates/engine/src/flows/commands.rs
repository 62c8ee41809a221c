//! Flow commands: start a run, cancel it, approve a step, apply or delete a definition.

use super::{Ending, FlowDef, FlowRun, StepRun};
use crate::{Engine, EngineError};
use std::collections::BTreeMap;
use std::sync::Arc;
use zenith_flowspec::{cron::Schedule, FlowPlan};
use zenith_model::flow::{
    Concurrency, FlowDefRecord, FlowSpec, RunId, RunState, StepState, Trigger,
};
use zenith_model::{Millis, Reason};

impl Engine {
    /// Starts a run of a validated spec (`plan` from `zenith_flowspec::check`) with
    /// merged `params`. Honours the flow's concurrency policy against its active runs.
    pub fn submit_run(
        &mut self,
        spec: Arc<FlowSpec>,
        plan: Arc<FlowPlan>,
        params: BTreeMap<String, String>,
        trigger: Trigger,
        now: Millis,
    ) -> Result<RunId, EngineError> {
        let now = self.clamp(now);
        if self.runs.len() >= self.cfg.max_live_runs {
            return Err(EngineError::TooManyRuns(self.cfg.max_live_runs));
        }
        let key = spec.key();
        let active: Vec<RunId> = self
            .active_by_name
            .get(&key)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        match spec.concurrency {
            Concurrency::Forbid if !active.is_empty() => {
                self.counters.runs_refused += 1;
                return Err(EngineError::FlowBusy(key, active[0]));
            }
            Concurrency::Replace => {
                for old in active {
                    self.end_run_early(
                        old,
                        Ending::Cancelled,
                        Some(Reason::ReplacedByNewerRun),
                        now,
                    );
                }
            }
            _ => {}
        }
        let id = RunId(self.next_run_id);
        self.next_run_id += 1;
        let steps = plan
            .deps
            .iter()
            .map(|d| StepRun {
                state: StepState::Pending,
                reason: None,
                blocked: false,
                waiting: d.len() as u32,
                instances: Vec::new(),
                open_instances: 0,
            })
            .collect();
        let run = FlowRun {
            open: spec.steps.len(),
            deadline_at: spec.deadline.map(|d| now.saturating_add(d.as_millis())),
            spec: spec.clone(),
            plan,
            params,
            trigger,
            state: RunState::Running,
            reason: None,
            steps,
            retries_used: 0,
            created_at: now,
            ending: None,
            unsaved: true,
        };
        if let Some(d) = run.deadline_at {
            self.run_deadlines.insert((d, id));
        }
        self.active_by_name.entry(key).or_default().insert(id);
        self.runs.insert(id, run);
        self.counters.runs_started += 1;
        self.note_run(id, None);
        for si in 0..spec.steps.len() as u32 {
            self.note_step(id, si);
        }
        let roots: Vec<u32> = (0..spec.steps.len() as u32)
            .filter(|&si| {
                self.runs
                    .get(&id)
                    .is_some_and(|r| r.steps[si as usize].waiting == 0)
            })
            .collect();
        for si in roots {
            self.start_step(id, si, now);
        }
        self.maybe_finish_run(id, now);
        Ok(id)
    }

    /// Cancels a live run: pending steps are cancelled, running step jobs killed.
    pub fn cancel_run(&mut self, id: RunId, now: Millis) -> Result<(), EngineError> {
        let now = self.clamp(now);
        if !self.runs.contains_key(&id) {
            return Err(EngineError::RunNotLive(id));
        }
        self.end_run_early(id, Ending::Cancelled, None, now);
        Ok(())
    }

    /// Approves a step waiting for approval.
    pub fn approve(&mut self, id: RunId, step: &str, now: Millis) -> Result<(), EngineError> {
        let now = self.clamp(now);
        let run = self.runs.get_mut(&id).ok_or(EngineError::RunNotLive(id))?;
        let Some(&si) = run.plan.index.get(step) else {
            return Err(EngineError::UnknownStep(step.to_string()));
        };
        let s = &mut run.steps[si as usize];
        if s.state != StepState::WaitingApproval {
            return Err(EngineError::NotWaitingApproval(step.to_string(), s.state));
        }
        s.state = StepState::Succeeded;
        s.reason = Some(Reason::Approved);
        self.step_final(id, si, now);
        Ok(())
    }

    /// Stores (or replaces) a named definition and (re)arms its schedule.
    pub fn apply_flow(
        &mut self,
        spec: Arc<FlowSpec>,
        plan: Arc<FlowPlan>,
        now: Millis,
    ) -> Result<(), EngineError> {
        let now = self.clamp(now);
        let name = spec.key();
        if !self.defs.contains_key(&name) && self.defs.len() >= self.cfg.max_flow_defs {
            return Err(EngineError::TooManyFlows(self.cfg.max_flow_defs));
        }
        let schedule = match &spec.schedule {
            Some(p) => Some(
                Schedule::parse(p, spec.timezone.as_deref()).map_err(EngineError::BadSchedule)?,
            ),
            None => None,
        };
        self.disarm(&name);
        let next_fire = schedule.as_ref().and_then(|s| s.next_after(now));
        self.defs.insert(
            name.clone(),
            FlowDef {
                spec,
                plan,
                schedule,
                next_fire,
                updated_at: now,
            },
        );
        if let Some(at) = next_fire {
            self.cron_timers.insert((at, name.clone()));
        }
        self.note_def(&name);
        Ok(())
    }

    /// Removes a definition and its schedule; runs already started go on.
    pub fn delete_flow(&mut self, name: &str) -> Result<(), EngineError> {
        if !self.defs.contains_key(name) {
            return Err(EngineError::UnknownFlow(name.to_string()));
        }
        self.disarm(name);
        self.defs.remove(name);
        self.changes.defs.insert(name.to_string(), None);
        Ok(())
    }

    /// A stored definition, to run by name.
    pub fn flow_def(&self, name: &str) -> Option<(Arc<FlowSpec>, Arc<FlowPlan>)> {
        self.defs
            .get(name)
            .map(|d| (d.spec.clone(), d.plan.clone()))
    }

    fn disarm(&mut self, name: &str) {
        if let Some(at) = self.defs.get(name).and_then(|d| d.next_fire) {
            self.cron_timers.remove(&(at, name.to_string()));
        }
    }

    pub(crate) fn note_def(&mut self, name: &str) {
        if let Some(d) = self.defs.get(name) {
            self.changes.defs.insert(
                name.to_string(),
                Some(FlowDefRecord {
                    name: name.to_string(),
                    spec: d.spec.clone(),
                    updated_at: d.updated_at,
                    next_fire: d.next_fire,
                }),
            );
        }
    }
}

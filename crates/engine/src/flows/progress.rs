//! How a run moves: a step starts when its dependencies are final, ends when its instances
//! (jobs) are final, and the run ends when every step is final.

use super::{Ending, Instance};
use crate::Engine;
use std::collections::BTreeMap;
use std::sync::Arc;
use zenith_flowspec::template;
use zenith_model::flow::{ForEach, RunId, RunState, StepKind, StepRef, StepState};
use zenith_model::{JobId, JobState, Millis, Reason, StepFailure};

/// A run's retry budget is spent: a failed task of its steps may not retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BudgetSpent {
    pub budget: u32,
}

impl Engine {
    /// Starts a step whose dependencies are all final.
    // Long by design: one decision sequence (run ending, dependencies, `when`, approval,
    // `forEach`, render, submit) where each early return ends the step with its reason.
    pub(crate) fn start_step(&mut self, id: RunId, si: u32, now: Millis) {
        let Some(run) = self.runs.get(&id) else {
            return;
        };
        let s = &run.steps[si as usize];
        if s.state != StepState::Pending {
            return;
        }
        if let Some(ending) = run.ending {
            let why = match ending {
                Ending::Cancelled => Reason::RunCancelled,
                Ending::DeadlineExceeded => Reason::DeadlineExceeded,
            };
            return self.set_step_final(id, si, StepState::Cancelled, Some(why), false, now);
        }
        let step = &run.spec.steps[si as usize];
        // A dependency that failed (without continueOnFailure), was cancelled, or was skipped
        // because of such a failure blocks this step.
        for &d in &run.plan.deps[si as usize] {
            let ds = &run.steps[d as usize];
            let dspec = &run.spec.steps[d as usize];
            let failed = ds.state == StepState::Failed && !dspec.continue_on_failure;
            let blocked =
                ds.state == StepState::Cancelled || (ds.state == StepState::Skipped && ds.blocked);
            if failed || blocked {
                let why = Reason::DependencyNotMet {
                    step: dspec.name.as_str().into(),
                    state: ds.state,
                };
                return self.set_step_final(id, si, StepState::Skipped, Some(why), true, now);
            }
        }
        let ctx = self.template_context(id, si, None);
        if let Some(w) = &step.when {
            match self.templates.eval(w, &ctx) {
                Ok(v) if v.is_true() => {}
                Ok(_) => {
                    let why = Reason::WhenFalse;
                    return self.set_step_final(id, si, StepState::Skipped, Some(why), false, now);
                }
                Err(e) => {
                    let why = Reason::WhenFailed {
                        message: e.to_string().into(),
                    };
                    return self.set_step_final(id, si, StepState::Failed, Some(why), false, now);
                }
            }
        }
        if step.kind == StepKind::Approval {
            if let Some(s) = self.runs.get_mut(&id).map(|r| &mut r.steps[si as usize]) {
                s.state = StepState::WaitingApproval;
            }
            self.note_step(id, si);
            return;
        }
        let items: Option<Vec<serde_json::Value>> = match &step.for_each {
            None => None,
            Some(ForEach::Items(items)) => Some(items.clone()),
            Some(ForEach::Expr(e)) => match self
                .templates
                .eval(e, &ctx)
                .and_then(|v| template::items_of(&v))
            {
                Ok(items) => Some(items),
                Err(e) => {
                    let why = Reason::ForEachFailed {
                        message: e.to_string().into(),
                    };
                    return self.set_step_final(id, si, StepState::Failed, Some(why), false, now);
                }
            },
        };
        let limit = zenith_model::flow::limits::MAX_FOREACH_ITEMS;
        if items.as_ref().is_some_and(|i| i.len() > limit) {
            let why = Reason::TooManyItems {
                limit: limit as u64,
            };
            return self.set_step_final(id, si, StepState::Failed, Some(why), false, now);
        }
        let instances: Vec<Option<serde_json::Value>> = match items {
            None => vec![None],
            Some(items) => items.into_iter().map(Some).collect(),
        };
        if instances.is_empty() {
            let why = Reason::NoItems;
            return self.set_step_final(id, si, StepState::Succeeded, Some(why), false, now);
        }
        let mut specs = Vec::with_capacity(instances.len());
        for (ii, item) in instances.iter().enumerate() {
            match self.step_job_spec(id, si, ii as u32, item.as_ref()) {
                Ok(spec) => specs.push(Arc::new(spec)),
                Err(e) => {
                    let invalid = Reason::Invalid(Box::new(e));
                    let why = if item.is_some() {
                        Reason::Item {
                            index: ii as u32,
                            cause: Box::new(invalid),
                        }
                    } else {
                        invalid
                    };
                    return self.set_step_final(id, si, StepState::Failed, Some(why), false, now);
                }
            }
        }
        let jobs = match self.submit(specs, now) {
            Ok(jobs) => jobs,
            Err(e) => {
                let why = Reason::Refused {
                    message: e.to_string().into(),
                };
                return self.set_step_final(id, si, StepState::Failed, Some(why), false, now);
            }
        };
        let n = jobs.len() as u32;
        for (ii, job) in jobs.iter().enumerate() {
            if let Some(j) = self.jobs.get_mut(job) {
                j.owner = Some(StepRef {
                    run: id,
                    step: si,
                    instance: ii as u32,
                });
            }
            self.note_job(*job);
        }
        let Some(s) = self.runs.get_mut(&id).map(|r| &mut r.steps[si as usize]) else {
            return;
        };
        s.state = StepState::Running;
        s.open_instances = n;
        s.instances = jobs
            .into_iter()
            .zip(instances)
            .map(|(job, item)| Instance {
                state: StepState::Running,
                job: Some(job),
                item,
                outputs: BTreeMap::new(),
                attempts: 0,
                reason: None,
            })
            .collect();
        self.note_step(id, si);
        for ii in 0..n {
            self.note_instance(id, si, ii);
        }
    }

    /// A job that runs a step instance retired with `state`.
    pub(crate) fn instance_job_ended(
        &mut self,
        owner: StepRef,
        state: JobState,
        outputs: BTreeMap<String, String>,
        attempts: u32,
        reason: Option<Reason>,
        now: Millis,
    ) {
        let Some(s) = self
            .runs
            .get_mut(&owner.run)
            .and_then(|r| r.steps.get_mut(owner.step as usize))
        else {
            return;
        };
        let Some(inst) = s.instances.get_mut(owner.instance as usize) else {
            return;
        };
        if inst.state.is_final() {
            return;
        }
        inst.state = match state {
            JobState::Succeeded => StepState::Succeeded,
            JobState::Failed => StepState::Failed,
            _ => StepState::Cancelled,
        };
        if inst.state == StepState::Succeeded {
            inst.outputs = outputs;
        }
        inst.attempts = attempts;
        inst.reason = reason;
        s.open_instances = s.open_instances.saturating_sub(1);
        let done = s.open_instances == 0;
        if !done {
            self.note_instance(owner.run, owner.step, owner.instance);
            return;
        }
        // Every instance is final: the step's state summarises them.
        let fan_out = s.instances.len() > 1 || s.instances.iter().any(|i| i.item.is_some());
        let first_bad = s
            .instances
            .iter()
            .enumerate()
            .find(|(_, i)| i.state == StepState::Failed)
            .or_else(|| {
                s.instances
                    .iter()
                    .enumerate()
                    .find(|(_, i)| i.state == StepState::Cancelled)
            });
        let (next, why) = match first_bad {
            None => (StepState::Succeeded, None),
            Some((ii, i)) => {
                let what = i.reason.clone().unwrap_or(match i.state {
                    StepState::Cancelled => Reason::Cancelled,
                    _ => Reason::Failed,
                });
                let why = if fan_out {
                    Reason::Item {
                        index: ii as u32,
                        cause: Box::new(what),
                    }
                } else {
                    what
                };
                (i.state, Some(why))
            }
        };
        self.note_instance(owner.run, owner.step, owner.instance);
        self.set_step_final(owner.run, owner.step, next, why, false, now);
    }

    /// Sets a step's final state and moves the run on.
    pub(crate) fn set_step_final(
        &mut self,
        id: RunId,
        si: u32,
        state: StepState,
        reason: Option<Reason>,
        blocked: bool,
        now: Millis,
    ) {
        let Some(s) = self
            .runs
            .get_mut(&id)
            .and_then(|r| r.steps.get_mut(si as usize))
        else {
            return;
        };
        if s.state.is_final() {
            return;
        }
        s.state = state;
        s.reason = reason;
        s.blocked = blocked;
        self.step_final(id, si, now);
    }

    /// A step just became final: count it, start dependents that are ready, end the run when
    /// nothing is left.
    pub(crate) fn step_final(&mut self, id: RunId, si: u32, now: Millis) {
        self.note_step(id, si);
        let Some(run) = self.runs.get_mut(&id) else {
            return;
        };
        run.open = run.open.saturating_sub(1);
        let plan = run.plan.clone();
        let mut ready = Vec::new();
        for &d in &plan.dependents[si as usize] {
            let ds = &mut run.steps[d as usize];
            ds.waiting = ds.waiting.saturating_sub(1);
            if ds.waiting == 0 && ds.state == StepState::Pending {
                ready.push(d);
            }
        }
        for d in ready {
            self.start_step(id, d, now);
        }
        self.maybe_finish_run(id, now);
    }

    /// Ends the run once every step is final: persisted, then dropped from memory.
    pub(crate) fn maybe_finish_run(&mut self, id: RunId, now: Millis) {
        let Some(run) = self.runs.get_mut(&id) else {
            return;
        };
        if run.open > 0 {
            return;
        }
        let failed = run
            .steps
            .iter()
            .zip(run.spec.steps.iter())
            .find(|(s, spec)| {
                (s.state == StepState::Failed && !spec.continue_on_failure)
                    || (s.state == StepState::Cancelled && run.ending.is_none())
            });
        let (state, reason) = match (run.ending, failed) {
            (Some(Ending::Cancelled), _) => (RunState::Cancelled, run.reason.clone()),
            (Some(Ending::DeadlineExceeded), _) => {
                (RunState::Failed, Some(Reason::DeadlineExceeded))
            }
            (None, Some((s, spec))) => (
                RunState::Failed,
                Some(Reason::Step(Box::new(StepFailure {
                    name: spec.name.clone(),
                    state: s.state,
                    cause: s.reason.clone().unwrap_or(Reason::Unexplained),
                }))),
            ),
            (None, None) => (RunState::Succeeded, None),
        };
        run.state = state;
        run.reason = reason;
        if let Some(d) = run.deadline_at {
            self.run_deadlines.remove(&(d, id));
        }
        let name = run.spec.key();
        match state {
            RunState::Succeeded => self.counters.runs_succeeded += 1,
            RunState::Failed => self.counters.runs_failed += 1,
            _ => self.counters.runs_cancelled += 1,
        }
        self.note_run(id, Some(now));
        self.runs.remove(&id);
        if let Some(set) = self.active_by_name.get_mut(&name) {
            set.remove(&id);
            if set.is_empty() {
                self.active_by_name.remove(&name);
            }
        }
    }

    /// Winds a run down: pending and waiting steps are cancelled, running step jobs killed;
    /// the run ends when they have reported.
    pub(crate) fn end_run_early(
        &mut self,
        id: RunId,
        ending: Ending,
        reason: Option<Reason>,
        now: Millis,
    ) {
        let Some(run) = self.runs.get_mut(&id) else {
            return;
        };
        if run.ending.is_some() {
            return;
        }
        run.ending = Some(ending);
        if let Some(r) = reason {
            run.reason = Some(r);
        }
        let why = match ending {
            Ending::Cancelled => Reason::RunCancelled,
            Ending::DeadlineExceeded => Reason::DeadlineExceeded,
        };
        let mut waiting = Vec::new();
        let mut jobs: Vec<JobId> = Vec::new();
        for (si, s) in run.steps.iter_mut().enumerate() {
            match s.state {
                StepState::Pending | StepState::WaitingApproval => {
                    s.state = StepState::Cancelled;
                    s.reason = Some(why.clone());
                    waiting.push(si as u32);
                }
                StepState::Running => jobs.extend(
                    s.instances
                        .iter()
                        .filter(|i| !i.state.is_final())
                        .filter_map(|i| i.job),
                ),
                _ => {}
            }
        }
        run.open = run.open.saturating_sub(waiting.len());
        self.note_run(id, None);
        for si in waiting {
            self.note_step(id, si);
        }
        for job in jobs {
            if let Some(j) = self.jobs.get_mut(&job) {
                if ending == Ending::DeadlineExceeded && j.reason.is_none() {
                    j.reason = Some(Reason::DeadlineExceeded);
                }
            }
            let _ = self.cancel(job, now);
        }
        self.maybe_finish_run(id, now);
    }

    /// Whether a failed task of a job owned by a run may retry: spends one unit of the run's
    /// retry budget. Jobs without a run always may.
    pub(crate) fn spend_retry(&mut self, owner: Option<StepRef>) -> Result<(), BudgetSpent> {
        let Some(owner) = owner else {
            return Ok(());
        };
        let Some(run) = self.runs.get_mut(&owner.run) else {
            return Ok(());
        };
        if let Some(budget) = run.spec.retry_budget {
            if run.retries_used >= budget {
                return Err(BudgetSpent { budget });
            }
        }
        run.retries_used += 1;
        self.note_run(owner.run, None);
        Ok(())
    }
}

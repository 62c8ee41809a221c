//! Rebuilding live runs and applied definitions from the store after a restart.

use super::{Ending, FlowDef, FlowRun, Instance, StepRun};
use crate::Engine;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use zenith_flowspec::{check, cron::Schedule};
use zenith_model::flow::{FlowDefRecord, InstanceRecord, RunRecord, StepRecord, StepState};
use zenith_model::Millis;

impl Engine {
    /// Restores definitions and live runs (before their jobs are restored). A schedule whose
    /// fire time passed while the server was down fires once at the first tick.
    // Long by design: definitions, runs, steps and instances are rebuilt in one pass over
    // rows that refer to each other.
    pub(crate) fn restore_flows(
        &mut self,
        defs: Vec<FlowDefRecord>,
        runs: Vec<RunRecord>,
        steps: Vec<StepRecord>,
        instances: Vec<InstanceRecord>,
        now: Millis,
    ) {
        for d in defs {
            let Ok(plan) = check(&d.spec, &self.templates) else {
                continue;
            };
            let schedule = d
                .spec
                .schedule
                .as_ref()
                .and_then(|p| Schedule::parse(p, d.spec.timezone.as_deref()).ok());
            let next_fire = match (&schedule, d.next_fire) {
                (Some(_), Some(at)) => Some(at),
                (Some(s), None) => s.next_after(now),
                (None, _) => None,
            };
            if let Some(at) = next_fire {
                self.cron_timers.insert((at, d.name.clone()));
            }
            self.defs.insert(
                d.name,
                FlowDef {
                    spec: d.spec,
                    plan: Arc::new(plan),
                    schedule,
                    next_fire,
                    updated_at: d.updated_at,
                },
            );
        }
        let mut step_rows: HashMap<(u64, u32), StepRecord> = HashMap::new();
        for s in steps {
            step_rows.insert((s.run.0, s.step), s);
        }
        let mut inst_rows: HashMap<(u64, u32), BTreeMap<u32, InstanceRecord>> = HashMap::new();
        for i in instances {
            inst_rows
                .entry((i.run.0, i.step))
                .or_default()
                .insert(i.instance, i);
        }
        for r in runs {
            let Some(spec) = r.spec else { continue };
            let Ok(plan) = check(&spec, &self.templates) else {
                continue;
            };
            let mut steps = Vec::with_capacity(spec.steps.len());
            for si in 0..spec.steps.len() as u32 {
                let row = step_rows.remove(&(r.id.0, si));
                let insts: Vec<Instance> = inst_rows
                    .remove(&(r.id.0, si))
                    .unwrap_or_default()
                    .into_values()
                    .map(|i| Instance {
                        state: i.state,
                        job: i.job,
                        item: i.item,
                        outputs: i.outputs,
                        attempts: i.attempts,
                        reason: i.reason,
                    })
                    .collect();
                let open_instances = insts.iter().filter(|i| !i.state.is_final()).count() as u32;
                steps.push(StepRun {
                    state: row.as_ref().map(|s| s.state).unwrap_or(StepState::Pending),
                    reason: row.as_ref().and_then(|s| s.reason.clone()),
                    blocked: row.as_ref().is_some_and(|s| s.blocked),
                    waiting: 0,
                    instances: insts,
                    open_instances,
                });
            }
            for (si, deps) in plan.deps.iter().enumerate() {
                steps[si].waiting = deps
                    .iter()
                    .filter(|&&d| !steps[d as usize].state.is_final())
                    .count() as u32;
            }
            let open = steps.iter().filter(|s| !s.state.is_final()).count();
            if let Some(d) = r.deadline_at {
                self.run_deadlines.insert((d, r.id));
            }
            self.active_by_name
                .entry(spec.key())
                .or_default()
                .insert(r.id);
            self.runs.insert(
                r.id,
                FlowRun {
                    spec,
                    plan: Arc::new(plan),
                    params: r.params,
                    trigger: r.trigger,
                    state: r.state,
                    reason: r.reason,
                    steps,
                    open,
                    retries_used: r.retries_used,
                    deadline_at: r.deadline_at,
                    created_at: r.created_at,
                    ending: r.cancel_requested.then_some(Ending::Cancelled),
                    unsaved: false,
                },
            );
        }
    }

    /// After jobs are restored: start steps that are ready and end runs with nothing left.
    pub(crate) fn reconcile_runs(&mut self, now: Millis) {
        let ids: Vec<_> = self.runs.keys().copied().collect();
        for id in ids {
            let ready: Vec<u32> = self
                .runs
                .get(&id)
                .map(|r| {
                    r.steps
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| s.state == StepState::Pending && s.waiting == 0)
                        .map(|(i, _)| i as u32)
                        .collect()
                })
                .unwrap_or_default();
            for si in ready {
                self.start_step(id, si, now);
            }
            self.maybe_finish_run(id, now);
        }
    }
}

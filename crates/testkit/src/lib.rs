//! Test helpers: an engine test environment with a fake clock that checks the engine's
#![allow(clippy::expect_used, clippy::unwrap_used)] // dev-only crate: a failed helper is a failed test
//! invariants after every step.

pub mod cluster;
pub mod pg;

use std::collections::BTreeMap;
use std::sync::Arc;
use zenith_engine::{
    Assignment, Command, Effect, Engine, EngineConfig, EngineError, NodeRegistration, Outcome,
    RunOf,
};
use zenith_flowspec::Templates;
use zenith_model::flow::{InstanceRecord, RunId, RunRecord, StepRecord, StepState};
use zenith_model::{AttemptId, AttemptOutcome, JobId, JobSpec, Millis, NodeId, Resources};

/// An engine driven by hand: a fake clock and the effects it produced so far.
pub struct TestEnv {
    pub engine: Engine,
    pub now: Millis,
    /// Dispatches not yet finished by the test, in order.
    pub running: BTreeMap<AttemptId, (NodeId, Assignment)>,
    pub dispatched_total: usize,
    pub kills: Vec<(NodeId, AttemptId)>,
    /// The latest image of every flow run, step and instance record written so far.
    pub runs: BTreeMap<RunId, RunRecord>,
    pub steps: BTreeMap<(RunId, u32), StepRecord>,
    pub instances: BTreeMap<(RunId, u32, u32), InstanceRecord>,
    /// The latest image of every job and task record written so far (a store's view).
    pub job_records: BTreeMap<JobId, zenith_model::JobRecord>,
    pub task_records: BTreeMap<(JobId, u32), zenith_model::TaskRecord>,
}

impl TestEnv {
    pub fn new(cfg: EngineConfig) -> Self {
        TestEnv {
            engine: Engine::new(cfg),
            now: 1_000_000,
            running: BTreeMap::new(),
            dispatched_total: 0,
            kills: Vec::new(),
            runs: BTreeMap::new(),
            steps: BTreeMap::new(),
            instances: BTreeMap::new(),
            job_records: BTreeMap::new(),
            task_records: BTreeMap::new(),
        }
    }

    /// A job's records as the store holds them (for `Command::Requeue` of an ended job).
    pub fn stored_job(&self, id: JobId) -> Option<zenith_engine::EndedJob> {
        Some(zenith_engine::EndedJob {
            record: self.job_records.get(&id)?.clone(),
            tasks: self
                .task_records
                .range((id, 0)..=(id, u32::MAX))
                .map(|(_, t)| t.clone())
                .collect(),
        })
    }

    /// Registers a ready node with `cpus` cores, `mem` bytes and labels.
    pub fn add_node(&mut self, id: &str, cpus: u64, mem: u64, labels: &[(&str, &str)]) -> NodeId {
        let nid = NodeId(id.to_string());
        let reg = NodeRegistration {
            id: nid.clone(),
            name: id.to_string(),
            resources: Resources {
                cpu_millis: cpus * 1000,
                memory: mem,
                ..Default::default()
            },
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            known: Vec::new(),
            waiting: Vec::new(),
            prefetch: 0,
            address: format!("{id}.local"),
        };
        self.apply(Command::Register(reg)).expect("register");
        nid
    }

    /// Applies a command at the fake clock's `now`, as the control loop does, then settles
    /// (a scheduling pass, effects collected, invariants checked).
    pub fn apply(&mut self, cmd: Command) -> Result<Outcome, EngineError> {
        let r = self.engine.apply(cmd, self.now);
        self.settle();
        r
    }

    pub fn submit(&mut self, spec: JobSpec) -> JobId {
        let cmd = Command::Submit {
            specs: vec![Arc::new(spec)],
            key: None,
        };
        match self.apply(cmd) {
            Ok(Outcome::Submitted(s)) => s.ids[0],
            other => panic!("submit: {other:?}"),
        }
    }

    /// Advances the fake clock and ticks.
    pub fn advance(&mut self, ms: u64) {
        self.now += ms;
        self.apply(Command::Tick).expect("tick");
    }

    /// Reports an attempt's outcome as its node would.
    pub fn finish(&mut self, aid: AttemptId, outcome: AttemptOutcome) -> bool {
        self.finish_with(aid, outcome, &[])
    }

    /// Reports an attempt's outcome with the output parameters it wrote.
    pub fn finish_with(
        &mut self,
        aid: AttemptId,
        outcome: AttemptOutcome,
        outputs: &[(&str, &str)],
    ) -> bool {
        let Some((node, _)) = self.running.remove(&aid) else {
            return false;
        };
        let outputs = outputs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let ok = self
            .engine
            .attempt_finished_with(&node, aid, outcome, outputs, None, self.now)
            .is_ok();
        self.settle();
        ok
    }

    /// Starts a run of a YAML flow with parameter overrides.
    pub fn run_flow(&mut self, yaml: &str, params: &[(&str, &str)]) -> RunId {
        let spec = zenith_flowspec::parse_yaml(yaml).expect("parse");
        let plan = zenith_flowspec::check(&spec, &Templates::new()).expect("check");
        let given = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let cmd = Command::SubmitRun {
            flow: RunOf::Spec(Arc::new(spec), Arc::new(plan)),
            params: given,
            trigger: zenith_model::flow::Trigger::Manual,
        };
        match self.apply(cmd) {
            Ok(Outcome::RunStarted(id)) => id,
            other => panic!("submit_run: {other:?}"),
        }
    }

    /// The latest state written for step `name` of a run (instance 0's record for details).
    pub fn step_state(&self, run: RunId, step: u32) -> Option<StepState> {
        self.steps.get(&(run, step)).map(|s| s.state)
    }

    /// Running attempts whose job name is `name` (flow jobs are named `flow/step[i]`).
    pub fn running_named(&self, name: &str) -> Vec<AttemptId> {
        self.running
            .iter()
            .filter(|(_, (_, a))| a.spec.name == name)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Finishes every running attempt with exit code 0.
    pub fn finish_all_ok(&mut self) -> usize {
        let ids: Vec<AttemptId> = self.running.keys().copied().collect();
        let n = ids.len();
        for aid in ids {
            self.finish(aid, AttemptOutcome::Exited { code: 0 });
        }
        n
    }

    /// Runs a scheduling pass, collects effects, drops changes, checks invariants.
    pub fn settle(&mut self) {
        self.engine.schedule(self.now);
        for e in self.engine.take_effects() {
            match e {
                Effect::Dispatch { node, assignment } => {
                    self.dispatched_total += 1;
                    self.running.insert(assignment.attempt, (node, assignment));
                }
                Effect::Kill { node, attempt } => self.kills.push((node, attempt)),
            }
        }
        let c = self.engine.take_changes();
        for (id, mut r) in c.runs {
            if r.spec.is_none() {
                r.spec = self.runs.get(&id).and_then(|o| o.spec.clone());
            }
            self.runs.insert(id, r);
        }
        for (id, mut r) in c.jobs {
            if r.spec.is_none() {
                r.spec = self.job_records.get(&id).and_then(|o| o.spec.clone());
            }
            self.job_records.insert(id, r);
        }
        for ((job, _), t) in c.tasks {
            self.task_records.insert((job, t.index), t);
        }
        for id in c.deleted_jobs {
            self.job_records.remove(&id);
            self.task_records.retain(|(j, _), _| *j != id);
        }
        self.steps.extend(c.steps);
        self.instances.extend(c.instances);
        if let Err(e) = self.engine.sanity_check() {
            panic!("sanity check failed: {e}");
        }
    }

    pub fn job_state(&self, id: JobId) -> Option<zenith_model::JobState> {
        self.engine.live_job(id).map(|j| j.state)
    }
}

/// A spec for `true` with the given CPU request.
pub fn spec(cpus: f64) -> JobSpec {
    let mut s = JobSpec::new(vec!["true".into()]);
    s.resources = Resources::cpus(cpus);
    s
}

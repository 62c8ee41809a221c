//! Test helpers: an engine test environment with a fake clock that checks the engine's
#![allow(clippy::expect_used, clippy::unwrap_used)] // dev-only crate: a failed helper is a failed test
//! invariants after every step.

use std::collections::BTreeMap;
use std::sync::Arc;
use zenith_engine::{Assignment, Effect, Engine, EngineConfig, NodeRegistration};
use zenith_model::{AttemptId, AttemptOutcome, JobId, JobSpec, Millis, NodeId, Resources};

/// An engine driven by hand: a fake clock and the effects it produced so far.
pub struct TestEnv {
    pub engine: Engine,
    pub now: Millis,
    /// Dispatches not yet finished by the test, in order.
    pub running: BTreeMap<AttemptId, (NodeId, Assignment)>,
    pub dispatched_total: usize,
    pub kills: Vec<(NodeId, AttemptId)>,
}

impl TestEnv {
    pub fn new(cfg: EngineConfig) -> Self {
        TestEnv {
            engine: Engine::new(cfg),
            now: 1_000_000,
            running: BTreeMap::new(),
            dispatched_total: 0,
            kills: Vec::new(),
        }
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
        };
        self.engine.register_node(reg, self.now);
        self.settle();
        nid
    }

    pub fn submit(&mut self, spec: JobSpec) -> JobId {
        let id = self
            .engine
            .submit(vec![Arc::new(spec)], self.now)
            .expect("submit")[0];
        self.settle();
        id
    }

    /// Advances the fake clock and ticks.
    pub fn advance(&mut self, ms: u64) {
        self.now += ms;
        self.engine.tick(self.now);
        self.settle();
    }

    /// Reports an attempt's outcome as its node would.
    pub fn finish(&mut self, aid: AttemptId, outcome: AttemptOutcome) -> bool {
        let Some((node, _)) = self.running.remove(&aid) else {
            return false;
        };
        let ok = self
            .engine
            .attempt_finished(&node, aid, outcome, self.now)
            .is_ok();
        self.settle();
        ok
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
        let _ = self.engine.take_changes();
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

//! Node backlogs (`prefetch`): scenarios, and a simulation of agents that hold assignments
//! beyond their capacity and start them in order as resources free, with messages in flight,
//! kills, cancellations, timeouts and agent crashes. After every step the engine's invariants
//! hold (`TestEnv::settle`); whenever an agent has nothing in flight, the engine's view of it
//! (started, waiting) equals the agent's own; at the end every job finishes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use std::collections::{BTreeMap, HashSet, VecDeque};
use zenith_engine::{AttemptReport, Command, EngineConfig, NodeRegistration, NodeReport, Outcome};
type TaskKey = (zenith_model::JobId, u32);
use zenith_model::{AttemptId, AttemptOutcome, DurationMs, JobState, NodeId, Resources};
use zenith_testkit::{spec, TestEnv};

fn register(
    env: &mut TestEnv,
    id: &str,
    cpus: u64,
    prefetch: u32,
    known: &[AttemptId],
    waiting: &[AttemptId],
) {
    env.engine.register_node(
        NodeRegistration {
            id: NodeId(id.into()),
            name: id.into(),
            resources: Resources::cpus(cpus as f64),
            labels: Default::default(),
            known: known.to_vec(),
            waiting: waiting.to_vec(),
            prefetch,
            address: String::new(),
        },
        env.now,
    );
    env.settle();
}

/// Runs one short attempt on the (only idle) node so that it has a run-time history.
fn warm(env: &mut TestEnv) {
    env.submit(spec(1.0));
    let d = take_dispatches(env);
    assert_eq!(d.len(), 1);
    env.engine
        .attempt_finished(&d[0].1, d[0].0, AttemptOutcome::Exited { code: 0 }, env.now)
        .unwrap();
    env.settle();
}

/// Dispatches so far as (attempt, node, queued), oldest first; empties `env.running`.
fn take_dispatches(env: &mut TestEnv) -> Vec<(AttemptId, NodeId, bool)> {
    std::mem::take(&mut env.running)
        .into_iter()
        .map(|(a, (n, asg))| (a, n, asg.queued))
        .collect()
}

fn node_view(env: &TestEnv, id: &str) -> (usize, usize) {
    let n = env
        .engine
        .nodes()
        .into_iter()
        .find(|n| n.id.0 == id)
        .unwrap();
    (n.running, n.queued)
}

#[test]
fn a_full_node_takes_work_into_its_backlog_up_to_prefetch() {
    let mut env = TestEnv::new(EngineConfig::default());
    register(&mut env, "n1", 2, 2, &[], &[]);
    warm(&mut env);
    let mut s = spec(1.0);
    s.array = Some("0-5".parse().unwrap());
    let job = env.submit(s);
    let d = take_dispatches(&mut env);
    assert_eq!(d.iter().filter(|x| !x.2).count(), 2, "two start at once");
    assert_eq!(
        d.iter().filter(|x| x.2).count(),
        2,
        "two wait in the backlog"
    );
    assert_eq!(node_view(&env, "n1"), (2, 2));
    assert_eq!(env.engine.levels().backlogged_attempts, 2);
    assert_eq!(env.engine.live_job(job).unwrap().counts.queued, 2);
    // The agent ran the first, started the third in its place, and reports it.
    let (a1, a2, a3, a4) = (d[0].0, d[1].0, d[2].0, d[3].0);
    let n1 = NodeId("n1".into());
    env.engine
        .attempt_finished(&n1, a1, AttemptOutcome::Exited { code: 0 }, env.now)
        .unwrap();
    env.engine.agent_started(&n1, &[a2, a3, a4], &[a4], env.now);
    env.settle();
    assert_eq!(node_view(&env, "n1"), (2, 2), "a3 started; one more queued");
    let d2 = take_dispatches(&mut env);
    assert_eq!(d2.len(), 1);
    assert!(d2[0].2, "the node is still full: the new one queues");
    assert_eq!(env.engine.counters().backlog_started, 1);
}

#[test]
fn a_node_running_long_attempts_takes_no_backlog() {
    let mut env = TestEnv::new(EngineConfig::default());
    register(&mut env, "n1", 1, 4, &[], &[]);
    let n1 = NodeId("n1".into());
    env.submit(spec(1.0));
    env.submit(spec(1.0));
    assert_eq!(
        node_view(&env, "n1"),
        (1, 0),
        "no history yet: only what fits"
    );
    let first = take_dispatches(&mut env)[0].0;
    // It ran 10 ms: short, so the next job starts and one more waits behind it.
    env.advance(10);
    env.engine
        .attempt_finished(&n1, first, AttemptOutcome::Exited { code: 0 }, env.now)
        .unwrap();
    env.settle();
    env.submit(spec(1.0));
    assert_eq!(node_view(&env, "n1"), (1, 1));
    let d = take_dispatches(&mut env);
    // The next ran 5 s: the average passes the limit; the backlog gets nothing new.
    env.advance(5_000);
    env.engine
        .attempt_finished(&n1, d[0].0, AttemptOutcome::Exited { code: 0 }, env.now)
        .unwrap();
    env.engine.agent_started(&n1, &[d[1].0], &[], env.now);
    env.settle();
    let late = env.submit(spec(1.0));
    assert_eq!(node_view(&env, "n1"), (1, 0));
    assert_eq!(env.job_state(late), Some(JobState::Queued));
}

/// A node with `cpus` cores whose one attempt so far was reported `seen_ms` after it started
/// (and ran `agent_ms` by its agent's clock, when given), then an array of `tasks`: what the
/// node runs and holds.
fn backlog_with(
    cpus: u64,
    prefetch: u32,
    seen_ms: u64,
    agent_ms: Option<u64>,
    tasks: u32,
) -> (usize, usize) {
    let mut env = TestEnv::new(EngineConfig::default());
    register(&mut env, "n1", cpus, prefetch, &[], &[]);
    env.submit(spec(1.0));
    let first = take_dispatches(&mut env)[0].0;
    env.advance(seen_ms);
    env.engine
        .attempt_finished_with(
            &NodeId("n1".into()),
            first,
            AttemptOutcome::Exited { code: 0 },
            Default::default(),
            agent_ms,
            env.now,
        )
        .unwrap();
    env.settle();
    let mut s = spec(1.0);
    s.array = Some(format!("0-{}", tasks - 1).parse().unwrap());
    env.submit(s);
    node_view(&env, "n1")
}

#[test]
fn a_backlog_holds_about_100_ms_of_work_and_at_most_prefetch() {
    // 50 ms attempts on 2 cores: 2 × 100 / 50 = 4 wait, however large the prefetch.
    assert_eq!(backlog_after_history(2, 64, 50, 40), (2, 4));
    // 20 ms on 1 core: 5.
    assert_eq!(backlog_after_history(1, 64, 20, 40), (1, 5));
    // Attempts that end within a report read as 0–1 ms: the whole prefetch.
    assert_eq!(backlog_after_history(2, 64, 0, 100), (2, 64));
    assert_eq!(backlog_after_history(2, 64, 1, 100), (2, 64));
    // At the limit of short (250 ms) a node still holds one, past it none.
    assert_eq!(backlog_after_history(1, 64, 250, 10), (1, 1));
    assert_eq!(backlog_after_history(1, 64, 251, 10), (1, 0));
}

fn backlog_after_history(cpus: u64, prefetch: u32, ran_ms: u64, tasks: u32) -> (usize, usize) {
    backlog_with(cpus, prefetch, ran_ms, None, tasks)
}

#[test]
fn the_agents_measure_of_run_time_beats_the_engines_view() {
    // The result came 50 ms after the engine saw the start (reports were slow), but the
    // process ran 1 ms: the backlog is sized by the 1 ms.
    assert_eq!(backlog_with(2, 64, 50, Some(1), 100), (2, 64));
    // And the other way: reported at once, ran 400 ms by the agent's clock: no backlog.
    assert_eq!(backlog_with(1, 64, 0, Some(400), 10), (1, 0));
}

#[test]
fn without_prefetch_nothing_is_queued_on_nodes() {
    let mut env = TestEnv::new(EngineConfig::default());
    register(&mut env, "n1", 2, 0, &[], &[]);
    let mut s = spec(1.0);
    s.array = Some("0-5".parse().unwrap());
    env.submit(s);
    let d = take_dispatches(&mut env);
    assert_eq!(d.len(), 2);
    assert!(d.iter().all(|x| !x.2));
}

#[test]
fn an_idle_node_gets_new_work_before_a_backlog_does() {
    let mut env = TestEnv::new(EngineConfig::default());
    register(&mut env, "a", 1, 4, &[], &[]);
    warm(&mut env);
    let first = env.submit(spec(1.0));
    let second = env.submit(spec(1.0));
    let d = take_dispatches(&mut env);
    assert_eq!(d.len(), 2);
    assert!(d[1].2, "the second waits on a");
    register(&mut env, "b", 1, 4, &[], &[]);
    warm(&mut env);
    let third = env.submit(spec(1.0));
    let d = take_dispatches(&mut env);
    assert_eq!(d.len(), 1);
    assert_eq!(
        d[0].1 .0, "b",
        "b is idle: the third starts there, not in a's backlog"
    );
    assert!(!d[0].2);
    for j in [first, second, third] {
        assert_eq!(env.job_state(j), Some(JobState::Running));
    }
}

#[test]
fn a_backlogged_attempt_times_out_from_its_start_not_its_assignment() {
    let mut env = TestEnv::new(EngineConfig::default());
    register(&mut env, "n1", 1, 1, &[], &[]);
    warm(&mut env);
    env.submit(spec(1.0));
    let mut s = spec(1.0);
    s.timeout = Some(DurationMs(3_000));
    env.submit(s);
    let d = take_dispatches(&mut env);
    let (a1, a2) = (d[0].0, d[1].0);
    assert!(d[1].2);
    env.advance(10_000);
    let n1 = NodeId("n1".into());
    env.engine.heartbeat(&n1, &[a1, a2], env.now);
    assert!(
        env.kills.is_empty(),
        "waiting does not count against its timeout"
    );
    env.engine
        .attempt_finished(&n1, a1, AttemptOutcome::Exited { code: 0 }, env.now)
        .unwrap();
    env.engine.agent_started(&n1, &[a2], &[], env.now);
    env.settle();
    env.advance(2_000);
    assert!(env.kills.is_empty());
    env.advance(1_500);
    assert_eq!(env.kills, vec![(n1, a2)], "killed 3 s after it started");
}

#[test]
fn losing_a_node_requeues_its_backlog_without_counting_a_loss() {
    let cfg = EngineConfig {
        max_node_loss_requeues: 0,
        ..EngineConfig::default()
    };
    let mut env = TestEnv::new(cfg);
    register(&mut env, "n1", 1, 1, &[], &[]);
    warm(&mut env);
    let started = env.submit(spec(1.0));
    let waiting = env.submit(spec(1.0));
    take_dispatches(&mut env);
    env.engine.mark_lost(&NodeId("n1".into()), env.now);
    env.settle();
    assert_eq!(
        env.job_state(started),
        None,
        "the started one failed (no requeues allowed)"
    );
    assert_eq!(
        env.job_state(waiting),
        Some(JobState::Queued),
        "the waiting one never ran there: requeued"
    );
}

#[test]
fn cancelling_a_backlogged_job_kills_it_on_the_agent() {
    let mut env = TestEnv::new(EngineConfig::default());
    register(&mut env, "n1", 1, 1, &[], &[]);
    warm(&mut env);
    env.submit(spec(1.0));
    let job = env.submit(spec(1.0));
    let d = take_dispatches(&mut env);
    env.engine.cancel(job, env.now).unwrap();
    env.settle();
    let n1 = NodeId("n1".into());
    assert_eq!(env.kills, vec![(n1.clone(), d[1].0)]);
    // The agent drops it from its backlog and reports it killed.
    env.engine
        .attempt_finished(&n1, d[1].0, AttemptOutcome::Signaled { signal: 9 }, env.now)
        .unwrap();
    env.settle();
    assert_eq!(env.job_state(job), None);
    assert_eq!(node_view(&env, "n1"), (1, 0));
}

#[test]
fn reregistration_takes_the_agents_word_on_what_waits() {
    let mut env = TestEnv::new(EngineConfig::default());
    register(&mut env, "n1", 1, 2, &[], &[]);
    warm(&mut env);
    for _ in 0..3 {
        env.submit(spec(1.0));
    }
    let d = take_dispatches(&mut env);
    let ids: Vec<_> = d.iter().map(|x| x.0).collect();
    assert_eq!(node_view(&env, "n1"), (1, 2));
    // The agent registers again (a new session) still running the first; the others wait.
    register(&mut env, "n1", 1, 2, &ids, &ids[1..]);
    assert_eq!(node_view(&env, "n1"), (1, 2));
    // The first ended (its result still in the agent's outbox) and the second started: the
    // second takes its place only once the first's result arrives.
    register(&mut env, "n1", 1, 2, &ids, &ids[2..]);
    assert_eq!(node_view(&env, "n1"), (1, 2));
    let n1 = NodeId("n1".into());
    env.engine
        .attempt_finished(&n1, ids[0], AttemptOutcome::Exited { code: 0 }, env.now)
        .unwrap();
    env.engine.agent_started(&n1, &ids[1..], &ids[2..], env.now);
    env.settle();
    assert_eq!(node_view(&env, "n1"), (1, 1));
    // A restored engine counts every open attempt as started; the agent's word moves the
    // waiting one back.
    register(&mut env, "n1", 1, 2, &ids[1..], &ids[2..]);
    assert_eq!(node_view(&env, "n1"), (1, 1));
}

// ---- simulation -------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Msg {
    Assign(AttemptId, u64, TaskKey),
    Kill(AttemptId),
}

#[derive(Default)]
struct Agent {
    cap: u64,
    inflight: VecDeque<Msg>,
    waiting: VecDeque<(AttemptId, u64, TaskKey)>,
    running: BTreeMap<AttemptId, (u64, TaskKey)>,
    results: Vec<(AttemptId, AttemptOutcome)>,
}

impl Agent {
    fn used(&self) -> u64 {
        self.running.values().map(|r| r.0).sum()
    }
    fn promote(&mut self) {
        while let Some(&(a, need, key)) = self.waiting.front() {
            if self.used() + need > self.cap {
                break;
            }
            self.waiting.pop_front();
            self.running.insert(a, (need, key));
        }
    }
    fn deliver(&mut self) {
        while let Some(m) = self.inflight.pop_front() {
            match m {
                Msg::Assign(a, need, key) => self.waiting.push_back((a, need, key)),
                Msg::Kill(a) => self.kill(a),
            }
            self.promote();
        }
    }
    fn kill(&mut self, a: AttemptId) {
        if let Some(i) = self.waiting.iter().position(|w| w.0 == a) {
            self.waiting.remove(i);
        } else if self.running.remove(&a).is_none() {
            return;
        }
        self.results
            .push((a, AttemptOutcome::Signaled { signal: 9 }));
        self.promote();
    }
    fn known(&self) -> Vec<AttemptId> {
        let mut k: Vec<_> = self.running.keys().copied().collect();
        k.extend(self.waiting.iter().map(|w| w.0));
        k.extend(self.results.iter().map(|r| r.0));
        k
    }
}

struct Sim {
    env: TestEnv,
    agents: BTreeMap<String, Agent>,
}

impl Sim {
    fn pump(&mut self) {
        self.env.settle();
        for (a, (node, asg)) in std::mem::take(&mut self.env.running) {
            let need = asg.spec.resources.cpu_millis;
            if let Some(ag) = self.agents.get_mut(&node.0) {
                ag.inflight
                    .push_back(Msg::Assign(a, need, (asg.job, asg.task)));
            }
        }
        for (node, a) in std::mem::take(&mut self.env.kills) {
            if let Some(ag) = self.agents.get_mut(&node.0) {
                ag.inflight.push_back(Msg::Kill(a));
            }
        }
        // No two attempts of one task started at once, across agents.
        let mut seen = HashSet::new();
        for ag in self.agents.values() {
            assert!(ag.used() <= ag.cap, "agent over-committed");
            for (_, key) in ag.running.values() {
                assert!(
                    seen.insert(*key),
                    "two attempts of task {key:?} started at once"
                );
            }
        }
    }

    /// One report of agent `name`; with `hold`, the newest result stays behind (its output
    /// is still being shipped), as a real agent's may.
    fn report(&mut self, name: &str, hold: bool) {
        let node = NodeId(name.into());
        let ag = self.agents.get_mut(name).unwrap();
        let known = ag.known();
        let waiting: Vec<_> = ag.waiting.iter().map(|w| w.0).collect();
        let mut results = std::mem::take(&mut ag.results);
        if hold {
            ag.results.extend(results.pop());
        }
        let quiet = ag.inflight.is_empty() && ag.results.is_empty();
        let now = self.env.now;
        let ag = &self.agents[name];
        let waiting: Vec<_> = waiting
            .into_iter()
            .filter(|a| ag.waiting.iter().any(|w| w.0 == *a))
            .collect();
        // The same command the server's control loop applies to an agent's report.
        let report = NodeReport {
            node: node.clone(),
            results: results
                .into_iter()
                .map(|(attempt, outcome)| AttemptReport {
                    attempt,
                    outcome,
                    outputs: Default::default(),
                    ran_ms: None,
                })
                .collect(),
            known,
            waiting,
            leaving: None,
        };
        let Ok(Outcome::Reported { reply, .. }) =
            self.env.engine.apply(Command::Report(report), now)
        else {
            panic!("a report is always answered");
        };
        if quiet && !reply.reregister {
            let ag = &self.agents[name];
            assert_eq!(
                node_view(&self.env, name),
                (ag.running.len(), ag.waiting.len()),
                "engine and agent {name} agree on started and waiting"
            );
        }
        let ag = self.agents.get_mut(name).unwrap();
        for k in reply.kill {
            ag.kill(k);
        }
        if reply.reregister {
            let known = ag.known();
            let waiting: Vec<_> = ag.waiting.iter().map(|w| w.0).collect();
            let cap = ag.cap;
            register(&mut self.env, name, cap / 1000, 3, &known, &waiting);
        }
        self.pump();
    }
}

#[derive(Clone, Debug)]
enum Op {
    Submit { cpus: u8, tasks: u8, timeout: bool },
    Deliver { node: u8 },
    Exit { pick: u16, code: i32 },
    Report { node: u8, hold: bool },
    Cancel { pick: u16 },
    Crash { node: u8 },
    Advance { ms: u16 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u8..=2, 1u8..=6, any::<bool>()).prop_map(|(cpus, tasks, timeout)| Op::Submit { cpus, tasks, timeout }),
        4 => (0u8..3).prop_map(|node| Op::Deliver { node }),
        5 => (any::<u16>(), prop_oneof![Just(0), Just(1)]).prop_map(|(pick, code)| Op::Exit { pick, code }),
        4 => (0u8..3, any::<bool>()).prop_map(|(node, hold)| Op::Report { node, hold }),
        1 => any::<u16>().prop_map(|pick| Op::Cancel { pick }),
        1 => (0u8..3).prop_map(|node| Op::Crash { node }),
        2 => (1u16..3000).prop_map(|ms| Op::Advance { ms }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]
    #[test]
    fn agents_with_backlogs_agree_with_the_engine(ops in proptest::collection::vec(op(), 1..250)) {
        let cfg = EngineConfig { heartbeat_timeout_ms: 60_000, dispatch_grace_ms: 30_000, ..Default::default() };
        let mut sim = Sim { env: TestEnv::new(cfg), agents: BTreeMap::new() };
        for i in 0..3u64 {
            let name = format!("n{i}");
            register(&mut sim.env, &name, 2 + i, 3, &[], &[]);
            sim.agents.insert(name, Agent { cap: (2 + i) * 1000, ..Default::default() });
        }
        let mut jobs = Vec::new();
        for op in ops {
            match op {
                Op::Submit { cpus, tasks, timeout } => {
                    let mut s = spec(f64::from(cpus));
                    if tasks > 1 { s.array = Some(format!("0-{}", tasks - 1).parse().unwrap()); }
                    s.retry.limit = 1;
                    if timeout { s.timeout = Some(DurationMs(2_000)); }
                    let cmd = Command::Submit { specs: vec![std::sync::Arc::new(s)], key: None };
                    let Ok(Outcome::Submitted(done)) = sim.env.engine.apply(cmd, sim.env.now) else { panic!("submit refused") };
                    jobs.push(done.ids[0]);
                }
                Op::Deliver { node } => sim.agents.get_mut(&format!("n{node}")).unwrap().deliver(),
                Op::Exit { pick, code } => {
                    let all: Vec<(String, AttemptId)> = sim.agents.iter()
                        .flat_map(|(n, a)| a.running.keys().map(move |k| (n.clone(), *k))).collect();
                    if !all.is_empty() {
                        let (n, a) = all[pick as usize % all.len()].clone();
                        let ag = sim.agents.get_mut(&n).unwrap();
                        ag.running.remove(&a);
                        ag.results.push((a, AttemptOutcome::Exited { code }));
                        ag.promote();
                    }
                }
                Op::Report { node, hold } => sim.report(&format!("n{node}"), hold),
                Op::Cancel { pick } => {
                    if !jobs.is_empty() {
                        // Refused when the job already ended: a valid move too.
                        let _ = sim.env.engine.apply(Command::Cancel { job: jobs[pick as usize % jobs.len()] }, sim.env.now);
                    }
                }
                Op::Crash { node } => {
                    // The agent restarts: what it ran died with it, what was in flight is gone.
                    let name = format!("n{node}");
                    let ag = sim.agents.get_mut(&name).unwrap();
                    let cap = ag.cap;
                    *ag = Agent { cap, ..Default::default() };
                    register(&mut sim.env, &name, cap / 1000, 3, &[], &[]);
                }
                Op::Advance { ms } => {
                    sim.env.now += u64::from(ms);
                    sim.env.engine.apply(Command::Tick, sim.env.now).unwrap();
                }
            }
            sim.pump();
        }
        for _ in 0..500 {
            if sim.env.engine.live_jobs() == 0 { break; }
            for n in 0..3 {
                let name = format!("n{n}");
                sim.agents.get_mut(&name).unwrap().deliver();
                let ag = sim.agents.get_mut(&name).unwrap();
                let ids: Vec<_> = ag.running.keys().copied().collect();
                for a in ids {
                    ag.running.remove(&a);
                    ag.results.push((a, AttemptOutcome::Exited { code: 0 }));
                }
                ag.promote();
                sim.report(&name, false);
            }
            sim.env.now += 500;
            sim.env.engine.apply(Command::Tick, sim.env.now).unwrap();
            sim.pump();
        }
        prop_assert_eq!(sim.env.engine.live_jobs(), 0, "every job finishes");
        prop_assert_eq!(sim.env.engine.levels().backlogged_attempts, 0);
        prop_assert_eq!(sim.env.engine.running_attempts(), 0);
    }
}

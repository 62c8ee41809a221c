//! Property tests: random interleavings of submissions, completions, cancellations, node
#![allow(clippy::unwrap_used, clippy::expect_used)]
//! deaths and clock movement. Each move becomes the same [`Command`]s the server's control
//! loop applies (agents' results and heartbeats are `Report`s, as on the wire). After every
//! step `sanity_check()` runs (inside `TestEnv`); at the end every job must finish once the
//! cluster is healthy: nothing over-committed, nothing lost, never two attempts of one task
//! at once.

use proptest::prelude::*;
use std::collections::HashSet;
use zenith_engine::{AttemptReport, Command, EngineConfig, NodeRegistration, NodeReport, Outcome};
use zenith_model::{AttemptOutcome, DurationMs, NodeId, Resources};
use zenith_testkit::{spec, TestEnv};

/// A move of the random history; each is carried out as engine commands.
#[derive(Clone, Debug)]
enum Op {
    Submit {
        cpus: u8,
        tasks: u8,
        retries: u8,
        timeout: bool,
    },
    Finish {
        pick: u16,
        code: i32,
    },
    Cancel {
        pick: u16,
    },
    Silence {
        node: u8,
    },
    Revive {
        node: u8,
    },
    Advance {
        ms: u16,
    },
    ClockBack,
    /// A random DAG flow built from `seed`.
    Flow {
        steps: u8,
        seed: u64,
    },
    CancelRun {
        pick: u16,
    },
}

/// A random flow: step i depends on some earlier steps; some fan out, retry, tolerate
/// failure, have a condition or a deadline.
fn random_flow(steps: u8, mut seed: u64) -> String {
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        seed >> 33
    };
    let mut y = format!("name: sim\nretryBudget: {}\n", next() % 4);
    if next() % 4 == 0 {
        y.push_str("deadline: 20s\n");
    }
    y.push_str("steps:\n");
    for i in 0..steps {
        y.push_str(&format!("  - name: s{i}\n    run: [x]\n"));
        let deps: Vec<String> = (0..i)
            .filter(|_| next() % 3 == 0)
            .map(|d| format!("s{d}"))
            .collect();
        if !deps.is_empty() {
            y.push_str(&format!("    depends: [{}]\n", deps.join(", ")));
            if next() % 4 == 0 {
                y.push_str(&format!(
                    "    when: \"steps.{}.state == 'succeeded'\"\n",
                    deps[0]
                ));
            }
        }
        match next() % 5 {
            0 => y.push_str(&format!("    forEach: \"range({})\"\n", next() % 4)),
            1 => y.push_str("    retry: {limit: 2, delay: 500ms}\n"),
            2 => y.push_str("    continueOnFailure: true\n"),
            _ => {}
        }
    }
    y
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..=4, 1u8..=5, 0u8..=2, any::<bool>()).prop_map(|(cpus, tasks, retries, timeout)| Op::Submit { cpus, tasks, retries, timeout }),
        6 => (any::<u16>(), prop_oneof![Just(0), Just(1), Just(137)]).prop_map(|(pick, code)| Op::Finish { pick, code }),
        1 => any::<u16>().prop_map(|pick| Op::Cancel { pick }),
        1 => (0u8..3).prop_map(|node| Op::Silence { node }),
        1 => (0u8..3).prop_map(|node| Op::Revive { node }),
        3 => (1u16..4000).prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::ClockBack),
        2 => (1u8..=8, any::<u64>()).prop_map(|(steps, seed)| Op::Flow { steps, seed }),
        1 => any::<u16>().prop_map(|pick| Op::CancelRun { pick }),
    ]
}

fn register(env: &mut TestEnv, i: u8, known: Vec<zenith_model::AttemptId>) {
    let id = NodeId(format!("n{i}"));
    env.apply(Command::Register(NodeRegistration {
        id,
        name: format!("n{i}"),
        resources: Resources {
            cpu_millis: 4000,
            memory: 1 << 30,
            ..Default::default()
        },
        labels: Default::default(),
        known,
        waiting: Vec::new(),
        prefetch: 0,
        address: String::new(),
    }))
    .unwrap();
}

/// What the agent of `node` knows: the attempts the test still runs there.
fn known_on(env: &TestEnv, node: &NodeId) -> Vec<zenith_model::AttemptId> {
    env.running
        .iter()
        .filter(|(_, (n, _))| n == node)
        .map(|(a, _)| *a)
        .collect()
}

/// The agent of `node` reports the attempt's end (with everything else it knows).
fn report_end(env: &mut TestEnv, aid: zenith_model::AttemptId, outcome: AttemptOutcome) {
    let Some((node, _)) = env.running.remove(&aid) else {
        return;
    };
    let known = known_on(env, &node);
    let report = NodeReport {
        node,
        results: vec![AttemptReport {
            attempt: aid,
            outcome,
            outputs: Default::default(),
            ran_ms: None,
        }],
        known,
        waiting: Vec::new(),
        leaving: None,
    };
    env.apply(Command::Report(report)).unwrap();
}

fn heartbeat_alive(env: &mut TestEnv, silent: &HashSet<u8>) {
    for i in 0..3u8 {
        if silent.contains(&i) {
            continue;
        }
        let id = NodeId(format!("n{i}"));
        let known = known_on(env, &id);
        let report = NodeReport {
            node: id.clone(),
            results: Vec::new(),
            known,
            waiting: Vec::new(),
            leaving: None,
        };
        let Ok(Outcome::Reported { reply, .. }) = env.apply(Command::Report(report)) else {
            panic!("a report is always answered");
        };
        for k in reply.kill {
            // The agent kills it and reports the signal.
            if env.running.contains_key(&k) {
                report_end(env, k, AttemptOutcome::Signaled { signal: 9 });
            }
        }
        if reply.reregister {
            let known = known_on(env, &id);
            register(env, i, known);
        }
    }
}

fn no_duplicate_tasks(env: &TestEnv) {
    let mut seen = HashSet::new();
    for (_, a) in env.running.values() {
        assert!(
            seen.insert((a.job, a.task)),
            "two attempts of job {} task {} at once",
            a.job,
            a.task
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn random_histories_keep_invariants(ops in proptest::collection::vec(op(), 1..300)) {
        let mut env = TestEnv::new(EngineConfig { heartbeat_timeout_ms: 5_000, dispatch_grace_ms: 2_000, ..Default::default() });
        for i in 0..3 { register(&mut env, i, vec![]); }
        env.settle();
        let mut silent: HashSet<u8> = HashSet::new();
        let mut jobs = Vec::new();
        let mut runs = Vec::new();
        for op in ops {
            match op {
                Op::Submit { cpus, tasks, retries, timeout } => {
                    let mut s = spec(f64::from(cpus));
                    if tasks > 1 { s.array = Some(format!("0-{}", tasks - 1).parse().unwrap()); }
                    s.retry.limit = u32::from(retries);
                    s.retry.delay = DurationMs(500);
                    if timeout { s.timeout = Some(DurationMs(3_000)); }
                    jobs.push(env.submit(s));
                }
                Op::Finish { pick, code } => {
                    let alive: Vec<_> = env.running.iter().filter(|(_, (n, _))| !silent.iter().any(|i| n.0 == format!("n{i}"))).map(|(a, _)| *a).collect();
                    if !alive.is_empty() {
                        let aid = alive[pick as usize % alive.len()];
                        report_end(&mut env, aid, AttemptOutcome::Exited { code });
                    }
                }
                Op::Cancel { pick } => {
                    if !jobs.is_empty() {
                        // Refused when the job already ended: that is a valid move too.
                        let _ = env.apply(Command::Cancel { job: jobs[pick as usize % jobs.len()] });
                    }
                }
                Op::Silence { node } => { silent.insert(node); }
                Op::Revive { node } => {
                    if silent.remove(&node) {
                        // A revived agent restarted: it forgot everything it ran.
                        let id = NodeId(format!("n{node}"));
                        env.running.retain(|_, (n, _)| *n != id);
                        register(&mut env, node, vec![]);
                    }
                }
                Op::Advance { ms } => {
                    env.now += u64::from(ms);
                    heartbeat_alive(&mut env, &silent);
                    env.apply(Command::Tick).unwrap();
                    // Attempts on nodes that were declared lost are gone from the engine.
                    let live: HashSet<_> = env.engine.nodes().into_iter().filter(|n| n.state == zenith_model::NodeState::Ready).map(|n| n.id).collect();
                    env.running.retain(|_, (n, _)| live.contains(n));
                }
                Op::Flow { steps, seed } => {
                    runs.push(env.run_flow(&random_flow(steps, seed), &[]));
                }
                Op::CancelRun { pick } => {
                    if !runs.is_empty() {
                        // Refused when the run already ended: a valid move too.
                        let _ = env.apply(Command::CancelRun { run: runs[pick as usize % runs.len()] });
                    }
                }
                Op::ClockBack => { env.now = env.now.saturating_sub(10_000); env.apply(Command::Tick).unwrap(); }
            }
            no_duplicate_tasks(&env);
        }
        // Heal the cluster and drain: every job must finish.
        for i in silent.drain() {
            let id = NodeId(format!("n{i}"));
            env.running.retain(|_, (n, _)| *n != id);
            register(&mut env, i, vec![]);
        }
        env.settle();
        for _ in 0..2000 {
            if env.engine.live_jobs() == 0 { break; }
            let ids: Vec<_> = env.running.keys().copied().collect();
            for aid in ids {
                report_end(&mut env, aid, AttemptOutcome::Exited { code: 0 });
            }
            env.now += 1000;
            heartbeat_alive(&mut env, &HashSet::new());
            env.apply(Command::Tick).unwrap();
            no_duplicate_tasks(&env);
        }
        prop_assert_eq!(env.engine.live_jobs(), 0, "every job finishes");
        prop_assert_eq!(env.engine.live_runs(), 0, "every flow run finishes");
        for r in &runs {
            prop_assert!(env.runs[r].state.is_final(), "run {} is {:?}", r, env.runs[r].state);
        }
        prop_assert_eq!(env.engine.running_attempts(), 0);
    }
}

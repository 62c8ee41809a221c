//! Node maintenance on a fake clock: cordon, drain with a deadline, uncordon, remove; an
//! agent that stops and says so (leaving, left).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use zenith_engine::{AttemptReport, Command, EngineConfig, EngineError, Leaving, NodeReport};
use zenith_model::{AttemptId, AttemptOutcome, JobState, NodeId, NodeState};
use zenith_testkit::{spec, TestEnv};

fn cmd(env: &mut TestEnv, c: Command) -> Result<(), EngineError> {
    env.apply(c).map(|_| ())
}

#[test]
fn a_cordoned_node_takes_no_new_work_and_what_runs_goes_on() {
    let mut env = TestEnv::new(EngineConfig::default());
    let a = env.add_node("a", 2, 1 << 30, &[]);
    let running = env.submit(spec(1.0));
    cmd(
        &mut env,
        Command::Cordon {
            node: a.clone(),
            drain_deadline: None,
        },
    )
    .unwrap();
    let waiting = env.submit(spec(1.0));
    assert_eq!(
        env.job_state(waiting),
        Some(JobState::Queued),
        "no new work on a"
    );
    assert_eq!(env.job_state(running), Some(JobState::Running));
    let (_, why) = env.engine.explain(waiting).unwrap();
    assert_eq!(why.feasible, 0);
    // Another node takes it; uncordoning opens a again.
    env.add_node("b", 1, 1 << 30, &[]);
    assert_eq!(env.job_state(waiting), Some(JobState::Running));
    cmd(&mut env, Command::Uncordon { node: a.clone() }).unwrap();
    let third = env.submit(spec(1.0));
    assert_eq!(env.job_state(third), Some(JobState::Running));
    let on_a = env.running.values().filter(|(n, _)| n == &a).count();
    assert_eq!(on_a, 2);
}

#[test]
fn a_drain_deadline_requeues_what_still_runs_and_then_the_node_can_go() {
    let mut env = TestEnv::new(EngineConfig::default());
    let a = env.add_node("a", 1, 1 << 30, &[]);
    let job = env.submit(spec(1.0));
    let (&first, _) = env.running.iter().next().unwrap();
    let deadline = env.now + 5_000;
    cmd(
        &mut env,
        Command::Cordon {
            node: a.clone(),
            drain_deadline: Some(deadline),
        },
    )
    .unwrap();
    // Busy: it cannot be removed.
    assert!(matches!(
        cmd(&mut env, Command::RemoveNode { node: a.clone() }),
        Err(EngineError::NodeBusy(_, 1))
    ));
    env.advance(4_000);
    assert!(env.kills.is_empty(), "before the deadline it runs on");
    env.advance(2_000);
    assert_eq!(
        env.kills,
        vec![(a.clone(), first)],
        "stopped at the deadline"
    );
    // The agent reports it killed: the task is requeued (not a failure), and runs on b.
    env.finish(first, AttemptOutcome::Signaled { signal: 15 });
    assert_eq!(env.job_state(job), Some(JobState::Queued));
    let b = env.add_node("b", 1, 1 << 30, &[]);
    let (_, (node, a2)) = env.running.iter().next().unwrap();
    assert_eq!((node, a2.attempt_number), (&b, 2));
    assert_eq!(env.engine.counters().evictions, 1);
    cmd(&mut env, Command::RemoveNode { node: a.clone() }).unwrap();
    assert!(!env.engine.has_node(&a));
    assert!(matches!(
        cmd(
            &mut env,
            Command::Cordon {
                node: NodeId("nope".into()),
                drain_deadline: None
            }
        ),
        Err(EngineError::UnknownNode(_))
    ));
}

/// A report from `node`'s agent that it is leaving (`done`: its last).
fn leaving(
    node: &NodeId,
    results: Vec<AttemptReport>,
    known: Vec<AttemptId>,
    done: bool,
) -> Command {
    Command::Report(NodeReport {
        node: node.clone(),
        results,
        known,
        waiting: Vec::new(),
        leaving: Some(Leaving {
            grace_ms: 5_000,
            done,
        }),
    })
}

#[test]
fn a_leaving_agent_takes_no_new_work_and_what_it_stops_is_requeued_at_once() {
    let mut env = TestEnv::new(EngineConfig::default());
    let a = env.add_node("a", 1, 1 << 30, &[]);
    let job = env.submit(spec(1.0));
    let (&first, _) = env.running.iter().next().unwrap();
    cmd(&mut env, leaving(&a, Vec::new(), vec![first], false)).unwrap();
    let info = &env.engine.nodes()[0];
    assert_eq!(info.leaving, Some(env.now + 5_000));
    assert_eq!(info.state, NodeState::Ready);
    // No new work on a, even once its slot frees.
    env.finish(first, AttemptOutcome::Exited { code: 0 });
    let next = env.submit(spec(1.0));
    assert_eq!(env.job_state(next), Some(JobState::Queued));
    let (_, why) = env.engine.explain(next).unwrap();
    assert_eq!(why.feasible, 0);
    // A second notice does not push the deadline on.
    env.advance(1_000);
    cmd(&mut env, leaving(&a, Vec::new(), Vec::new(), false)).unwrap();
    assert_eq!(env.engine.nodes()[0].leaving, Some(env.now + 4_000));
    assert!(
        env.engine.live_job(job).is_none(),
        "the first job succeeded"
    );

    // b runs the next job; the agent of b then leaves and stops it: requeued, not failed,
    // without waiting for any timeout.
    let b = env.add_node("b", 1, 1 << 30, &[]);
    let (&on_b, _) = env.running.iter().next().unwrap();
    cmd(&mut env, leaving(&b, Vec::new(), vec![on_b], false)).unwrap();
    env.running.remove(&on_b);
    let evicted = AttemptReport {
        attempt: on_b,
        outcome: AttemptOutcome::Evicted,
        outputs: Default::default(),
        ran_ms: None,
    };
    cmd(&mut env, leaving(&b, vec![evicted], Vec::new(), false)).unwrap();
    assert_eq!(env.job_state(next), Some(JobState::Queued));
    assert_eq!(env.engine.counters().evictions, 1);
    assert_eq!(env.engine.counters().retries_scheduled, 0);

    // Done: a and b are left; anything still assigned is requeued as evicted.
    cmd(&mut env, leaving(&a, Vec::new(), Vec::new(), true)).unwrap();
    cmd(&mut env, leaving(&b, Vec::new(), Vec::new(), true)).unwrap();
    let states: Vec<NodeState> = env.engine.nodes().iter().map(|n| n.state).collect();
    assert_eq!(states, vec![NodeState::Left, NodeState::Left]);
    assert_eq!(env.engine.counters().node_leaves, 2);
    // Coming back opens the node again; the requeued job runs there as attempt 2.
    env.add_node("a", 1, 1 << 30, &[]);
    let (_, (node, again)) = env.running.iter().next().unwrap();
    assert_eq!((node, again.job, again.attempt_number), (&a, next, 2));
    assert_eq!(env.engine.nodes()[0].leaving, None);
}

#[test]
fn a_node_that_left_with_work_assigned_requeues_it_as_evicted() {
    let mut env = TestEnv::new(EngineConfig::default());
    let a = env.add_node("a", 1, 1 << 30, &[]);
    let job = env.submit(spec(1.0));
    let (&first, _) = env.running.iter().next().unwrap();
    cmd(&mut env, leaving(&a, Vec::new(), vec![first], true)).unwrap();
    env.running.remove(&first);
    assert_eq!(env.engine.nodes()[0].state, NodeState::Left);
    assert_eq!(env.job_state(job), Some(JobState::Queued));
    assert_eq!(env.engine.counters().evictions, 1);
    assert_eq!(env.engine.counters().node_loss_requeues, 0);
}

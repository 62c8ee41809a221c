//! Node maintenance on a fake clock: cordon, drain with a deadline, uncordon, remove.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use zenith_engine::{Command, EngineConfig, EngineError};
use zenith_model::{AttemptOutcome, JobState, NodeId};
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

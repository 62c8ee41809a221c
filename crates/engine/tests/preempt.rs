//! Preemption on a fake clock: a higher-priority job stops lower-priority attempts of a
//! preemptible queue, once, on the node where the fewest stop, and takes their room.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use zenith_engine::EngineConfig;
use zenith_model::{AttemptId, AttemptOutcome, JobId, JobState, TaskState};
use zenith_testkit::{spec, TestEnv};

fn env(preemptible: &[&str]) -> TestEnv {
    let cfg = EngineConfig {
        preemptible_queues: preemptible.iter().map(|q| q.to_string()).collect(),
        ..EngineConfig::default()
    };
    let mut env = TestEnv::new(cfg);
    env.add_node("a", 4, 1 << 30, &[]);
    env.add_node("b", 4, 1 << 30, &[]);
    env
}

/// Fills both nodes with 1-CPU jobs of `queue` at `priority`, a second apart (so their ages
/// differ); returns them in start order.
fn fill(env: &mut TestEnv, queue: &str, priority: i32) -> Vec<JobId> {
    (0..8)
        .map(|_| {
            let mut s = spec(1.0);
            s.queue = queue.into();
            s.priority = priority;
            let id = env.submit(s);
            env.advance(1000);
            id
        })
        .collect()
}

fn urgent(env: &mut TestEnv, cpus: f64, priority: i32) -> JobId {
    let mut s = spec(cpus);
    s.priority = priority;
    env.submit(s)
}

fn attempt_of(env: &TestEnv, job: JobId) -> AttemptId {
    *env.running
        .iter()
        .find(|(_, (_, a))| a.job == job)
        .expect("running")
        .0
}

#[test]
fn a_higher_priority_job_preempts_the_youngest_lower_ones_once_and_takes_their_room() {
    let mut env = env(&["spot"]);
    let spot = fill(&mut env, "spot", 0);
    let big = urgent(&mut env, 2.0, 10);
    // Two attempts stop, on one node, the youngest there.
    assert_eq!(env.kills.len(), 2, "{:?}", env.kills);
    let node = env.kills[0].0.clone();
    assert!(env.kills.iter().all(|(n, _)| *n == node));
    let victims: Vec<JobId> = env
        .kills
        .iter()
        .map(|(_, a)| env.running[a].1.job)
        .collect();
    let on_node: Vec<JobId> = spot
        .iter()
        .copied()
        .filter(|j| env.running[&attempt_of(&env, *j)].0 == node)
        .collect();
    assert_eq!(
        victims,
        on_node[on_node.len() - 2..]
            .iter()
            .rev()
            .copied()
            .collect::<Vec<_>>()
    );
    let note = env.engine.reservation_note(big).unwrap();
    assert!(
        note.starts_with("preempting 2 lower-priority attempts on node"),
        "{note}"
    );
    // Later passes stop nothing more while those end.
    env.advance(1000);
    env.advance(1000);
    assert_eq!(env.kills.len(), 2);
    // The agent reports them killed by a signal: they end preempted and queue again.
    let kills = std::mem::take(&mut env.kills);
    for (_, aid) in &kills {
        env.finish(*aid, AttemptOutcome::Signaled { signal: 15 });
    }
    let (_, started) = env
        .running
        .values()
        .find(|(_, a)| a.job == big)
        .expect("the urgent job runs");
    assert_eq!(started.spec.priority, 10);
    assert_eq!(
        env.running.values().find(|(_, a)| a.job == big).unwrap().0,
        node
    );
    assert_eq!(env.engine.counters().preemptions, 2);
    for j in &victims {
        let live = env.engine.live_job(*j).unwrap();
        assert_eq!(
            live.state,
            JobState::Queued,
            "a preempted job waits to run again"
        );
    }
    // A preemption is no failure: they run again when room frees, and succeed.
    assert!(env.kills.is_empty());
    env.finish(attempt_of(&env, big), AttemptOutcome::Exited { code: 0 });
    for j in &victims {
        assert_eq!(env.job_state(*j), Some(JobState::Running));
        env.finish(attempt_of(&env, *j), AttemptOutcome::Exited { code: 0 });
        let t = &env.task_records[&(*j, 0)];
        assert_eq!(t.state, TaskState::Succeeded);
        assert_eq!(t.attempts, 2);
    }
}

#[test]
fn only_preemptible_queues_and_lower_priorities_are_stopped() {
    // Not a preemptible queue: the urgent job reserves and waits.
    let mut e = env(&["spot"]);
    fill(&mut e, "default", 0);
    let big = urgent(&mut e, 2.0, 10);
    assert!(e.kills.is_empty());
    assert!(e
        .engine
        .reservation_note(big)
        .unwrap()
        .contains("reserved for it"));
    // A preemptible queue, but the same priority: nothing stops.
    let mut e = env(&["spot"]);
    fill(&mut e, "spot", 10);
    urgent(&mut e, 2.0, 10);
    assert!(e.kills.is_empty());
    // No preemptible queue configured: nothing stops.
    let mut e = env(&[]);
    fill(&mut e, "spot", 0);
    urgent(&mut e, 2.0, 10);
    assert!(e.kills.is_empty());
    // A job larger than any node stops nothing.
    let mut e = env(&["spot"]);
    fill(&mut e, "spot", 0);
    urgent(&mut e, 5.0, 10);
    assert!(e.kills.is_empty());
}

#[test]
fn preemption_picks_the_node_where_fewest_stop() {
    let mut env = env(&["spot"]);
    // Node a: 4 spot jobs; node b: 2 spot jobs and 2 free CPUs... filled in order a then b
    // by bin-packing, so submit 6 jobs: a gets 4, b gets 2.
    let mut s = spec(1.0);
    s.queue = "spot".into();
    for _ in 0..6 {
        env.submit(s.clone());
    }
    // A 3-CPU job: b needs one stopped, a three.
    let big = urgent(&mut env, 3.0, 5);
    assert_eq!(env.kills.len(), 1, "{:?}", env.kills);
    let (node, aid) = env.kills[0].clone();
    env.finish(aid, AttemptOutcome::Signaled { signal: 9 });
    assert_eq!(
        env.running.values().find(|(_, a)| a.job == big).unwrap().0,
        node
    );
}

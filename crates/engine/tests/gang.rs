//! Gang jobs on a fake clock: all members start together on distinct nodes or none does;
//! one member ending early restarts the whole gang once, or fails it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use zenith_engine::{Command, EngineConfig};
use zenith_model::{AttemptId, AttemptOutcome, Gang, JobId, JobState, NodeId, TaskState};
use zenith_testkit::{spec, TestEnv};

fn cluster(nodes: usize, cpus: u64) -> TestEnv {
    let mut env = TestEnv::new(EngineConfig::default());
    for i in 0..nodes {
        env.add_node(&format!("n{i}"), cpus, 1 << 30, &[]);
    }
    env
}

fn gang(nodes: u32, per_node: u32, retries: u32) -> zenith_model::JobSpec {
    let mut s = spec(1.0);
    s.gang = Some(Gang {
        nodes,
        tasks_per_node: per_node,
    });
    s.retry.limit = retries;
    s
}

/// The running members of `job`: (rank, node, attempt number, attempt).
fn members(env: &TestEnv, job: JobId) -> Vec<(u32, NodeId, u32, AttemptId)> {
    let mut m: Vec<_> = env
        .running
        .iter()
        .filter(|(_, (_, a))| a.job == job)
        .map(|(aid, (n, a))| (a.task, n.clone(), a.attempt_number, *aid))
        .collect();
    m.sort();
    m
}

#[test]
fn a_gang_starts_all_together_on_distinct_nodes_with_ranks_and_hosts() {
    let mut env = cluster(3, 2);
    let job = env.submit(gang(3, 2, 0));
    let m = members(&env, job);
    assert_eq!(m.len(), 6);
    for (rank, node, _, aid) in &m {
        let a = &env.running[aid].1;
        let g = a.gang.as_ref().expect("a gang member");
        assert_eq!(g.rank, *rank);
        assert_eq!(g.node_rank, rank / 2);
        assert_eq!(g.local_rank, rank % 2);
        assert_eq!(g.hosts.len(), 3);
        assert_eq!(g.hosts[g.node_rank as usize], format!("{node}.local"));
        assert!(g.rendezvous.starts_with(&format!("{}:", g.hosts[0])));
    }
    let nodes: std::collections::BTreeSet<_> = m.iter().map(|x| x.1.clone()).collect();
    assert_eq!(nodes.len(), 3);
    for (_, _, _, aid) in m {
        env.finish(aid, AttemptOutcome::Exited { code: 0 });
    }
    assert_eq!(env.engine.live_job(job).map(|j| j.state), None);
    assert_eq!(env.job_records[&job].state, JobState::Succeeded);
}

#[test]
fn a_gang_waits_until_all_its_nodes_are_free_at_once() {
    let mut env = cluster(3, 2);
    let blocker = env.submit(spec(1.0));
    let job = env.submit(gang(3, 2, 0));
    assert!(members(&env, job).is_empty(), "one node has one core left");
    // Small jobs may still use the rest.
    let small = env.submit(spec(1.0));
    assert_eq!(env.job_state(small), Some(JobState::Running));
    for j in [blocker, small] {
        let aid = *env.running.iter().find(|(_, (_, a))| a.job == j).unwrap().0;
        env.finish(aid, AttemptOutcome::Exited { code: 0 });
    }
    assert_eq!(members(&env, job).len(), 6);
}

#[test]
fn a_failed_member_restarts_the_whole_gang_once() {
    let mut env = cluster(3, 2);
    let job = env.submit(gang(3, 1, 1));
    let m = members(&env, job);
    assert_eq!(m.len(), 3);
    // Rank 0 succeeded already, rank 1 fails: rank 2 is stopped, and all three run again.
    env.finish(m[0].3, AttemptOutcome::Exited { code: 0 });
    env.finish(m[1].3, AttemptOutcome::Exited { code: 3 });
    assert_eq!(env.kills.len(), 1);
    assert_eq!(env.kills[0].1, m[2].3);
    env.finish(m[2].3, AttemptOutcome::Signaled { signal: 15 });
    assert!(
        members(&env, job).is_empty(),
        "the failed member waits out its backoff"
    );
    // Within the heartbeat timeout: the nodes stay ready.
    env.advance(10_000);
    let again = members(&env, job);
    assert_eq!(again.len(), 3, "{again:?}");
    assert!(again.iter().all(|x| x.2 == 2), "{again:?}");
    // This try succeeds (rank 0 ran again with the others).
    for (_, _, _, aid) in again {
        env.finish(aid, AttemptOutcome::Exited { code: 0 });
    }
    assert_eq!(env.job_records[&job].state, JobState::Succeeded);
    assert_eq!(env.engine.counters().gangs_started, 2);
}

#[test]
fn a_member_failing_for_good_fails_the_gang_and_cancels_the_rest() {
    let mut env = cluster(2, 2);
    let job = env.submit(gang(2, 2, 0));
    let m = members(&env, job);
    env.finish(m[3].3, AttemptOutcome::Exited { code: 1 });
    assert_eq!(env.kills.len(), 3);
    for (_, aid) in std::mem::take(&mut env.kills) {
        env.finish(aid, AttemptOutcome::Signaled { signal: 15 });
    }
    assert_eq!(env.job_records[&job].state, JobState::Failed);
    let states: Vec<TaskState> = (0..4).map(|i| env.task_records[&(job, i)].state).collect();
    assert_eq!(
        states,
        vec![
            TaskState::Cancelled,
            TaskState::Cancelled,
            TaskState::Cancelled,
            TaskState::Failed
        ]
    );
}

#[test]
fn a_lost_node_restarts_the_gang_when_enough_nodes_are_back() {
    let mut env = cluster(3, 1);
    let job = env.submit(gang(3, 1, 0));
    let m = members(&env, job);
    let lost = m[1].1.clone();
    env.running.retain(|_, (n, _)| *n != lost);
    env.apply(Command::LoseNode { node: lost.clone() }).unwrap();
    // The two others are stopped (a node loss is no failure: the gang runs again).
    assert_eq!(env.kills.len(), 2);
    for (_, aid) in std::mem::take(&mut env.kills) {
        env.finish(aid, AttemptOutcome::Signaled { signal: 15 });
    }
    assert!(members(&env, job).is_empty(), "two nodes are not enough");
    env.add_node(lost.as_str(), 1, 1 << 30, &[]);
    let again = members(&env, job);
    assert_eq!(again.len(), 3);
    assert!(again.iter().all(|x| x.2 == 2));
}

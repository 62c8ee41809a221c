//! Engine scenarios on a fake clock; `TestEnv` runs `sanity_check()` after every step.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use zenith_engine::{EngineConfig, NodeRegistration};
use zenith_model::{AttemptOutcome, Backoff, DurationMs, JobState, NodeId, NodeState, Resources};
use zenith_testkit::{spec, TestEnv};

fn cfg() -> EngineConfig {
    EngineConfig {
        heartbeat_timeout_ms: 5_000,
        dispatch_grace_ms: 2_000,
        ..Default::default()
    }
}

#[test]
fn runs_a_job_to_success() {
    let mut env = TestEnv::new(cfg());
    env.add_node("n1", 2, 1 << 30, &[]);
    let id = env.submit(spec(1.0));
    assert_eq!(env.job_state(id), Some(JobState::Running));
    let (_, (_, a)) = env.running.iter().next().unwrap();
    assert_eq!((a.task, a.attempt_number), (0, 1));
    env.finish_all_ok();
    assert_eq!(env.job_state(id), None, "finished jobs leave the engine");
    assert_eq!(env.engine.live_jobs(), 0);
}

#[test]
fn never_overcommits_and_priority_orders_a_queue() {
    let mut env = TestEnv::new(cfg());
    env.add_node("n1", 2, 1 << 30, &[]);
    let low = env.submit(spec(1.0));
    let _blocker = env.submit(spec(1.0));
    // Node is full now; a high-priority job submitted later must go before a low one.
    let low2 = env.submit(spec(1.0));
    let mut hi = spec(1.0);
    hi.priority = 10;
    let high = env.submit(hi);
    assert_eq!(env.running.len(), 2);
    let first = *env.running.keys().next().unwrap();
    env.finish(first, AttemptOutcome::Exited { code: 0 });
    assert_eq!(env.job_state(low), None);
    assert_eq!(env.job_state(high), Some(JobState::Running));
    assert_eq!(env.job_state(low2), Some(JobState::Queued));
}

#[test]
fn task_array_summarises_tasks() {
    let mut env = TestEnv::new(cfg());
    env.add_node("n1", 4, 1 << 30, &[]);
    let mut s = spec(1.0);
    s.array = Some("1-10".parse().unwrap());
    let id = env.submit(s);
    assert_eq!(env.running.len(), 4);
    let live = env.engine.live_job(id).unwrap();
    assert_eq!((live.counts.running, live.counts.queued), (4, 6));
    let mut indices = Vec::new();
    while !env.running.is_empty() {
        indices.extend(env.running.values().map(|(_, a)| a.task));
        env.finish_all_ok();
    }
    indices.sort();
    assert_eq!(indices, (1..=10).collect::<Vec<_>>());
    assert_eq!(env.engine.live_jobs(), 0);
}

#[test]
fn retries_with_backoff_then_fails() {
    let mut env = TestEnv::new(cfg());
    env.add_node("n1", 1, 1 << 30, &[]);
    let mut s = spec(1.0);
    s.retry.limit = 2;
    s.retry.backoff = Backoff::Exponential;
    s.retry.delay = DurationMs(1000);
    let id = env.submit(s);
    let mut numbers = Vec::new();
    for delay in [1000u64, 2000] {
        let (&aid, (_, a)) = env.running.iter().next().unwrap();
        numbers.push(a.attempt_number);
        env.finish(aid, AttemptOutcome::Exited { code: 1 });
        assert!(env.running.is_empty(), "waits out the backoff");
        env.advance(delay - 1);
        assert!(env.running.is_empty(), "not before the backoff ends");
        env.advance(1);
        assert_eq!(env.running.len(), 1);
    }
    let (&aid, (_, a)) = env.running.iter().next().unwrap();
    numbers.push(a.attempt_number);
    assert_eq!(numbers, vec![1, 2, 3]);
    env.finish(aid, AttemptOutcome::Exited { code: 1 });
    assert_eq!(env.job_state(id), None);
}

#[test]
fn timeout_kills_and_records_timed_out() {
    let mut env = TestEnv::new(cfg());
    let n = env.add_node("n1", 1, 1 << 30, &[]);
    let mut s = spec(1.0);
    s.timeout = Some(DurationMs(1000));
    env.submit(s);
    let aid = *env.running.keys().next().unwrap();
    env.advance(999);
    assert!(env.kills.is_empty());
    env.advance(1);
    assert_eq!(env.kills, vec![(n.clone(), aid)]);
    // The kill shows up as a signal; the engine records it as a timeout.
    env.engine
        .attempt_finished(&n, aid, AttemptOutcome::Signaled { signal: 15 }, env.now)
        .unwrap();
    let ch = env.engine.take_changes();
    assert_eq!(ch.attempts[&aid].outcome, Some(AttemptOutcome::TimedOut));
    let job = ch.jobs.values().next().unwrap();
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(
        job.reason.as_ref().map(ToString::to_string).as_deref(),
        Some("task 0: timed_out")
    );
}

#[test]
fn cancel_queued_and_running() {
    let mut env = TestEnv::new(cfg());
    let n = env.add_node("n1", 1, 1 << 30, &[]);
    let mut s = spec(1.0);
    s.array = Some("0-2".parse().unwrap());
    let id = env.submit(s);
    let aid = *env.running.keys().next().unwrap();
    env.engine.cancel(id, env.now).unwrap();
    env.settle();
    assert_eq!(env.kills, vec![(n, aid)]);
    let live = env.engine.live_job(id).unwrap();
    assert_eq!((live.counts.cancelled, live.counts.running), (2, 1));
    env.finish(aid, AttemptOutcome::Signaled { signal: 15 });
    assert_eq!(env.job_state(id), None);
    assert!(env.engine.cancel(id, env.now).is_err());
}

#[test]
fn lost_node_requeues_once_and_fences_late_reports() {
    let mut env = TestEnv::new(cfg());
    let n1 = env.add_node("n1", 1, 1 << 30, &[]);
    let id = env.submit(spec(1.0));
    let old = *env.running.keys().next().unwrap();
    let n2 = env.add_node("n2", 1, 1 << 30, &[]);
    // n2 heartbeats, n1 goes silent.
    for _ in 0..6 {
        env.advance(1000);
        env.engine.heartbeat(&n2, &[], env.now);
    }
    env.settle();
    let nodes = env.engine.nodes();
    assert_eq!(
        nodes.iter().find(|n| n.id == n1).unwrap().state,
        NodeState::Lost
    );
    let (&new, (node, a)) = env.running.iter().find(|(a, _)| **a != old).unwrap();
    assert_eq!(node, &n2);
    assert_eq!(a.attempt_number, 2);
    // The old node's late report is refused; it is told to kill the attempt on re-register.
    assert!(env
        .engine
        .attempt_finished(&n1, old, AttemptOutcome::Exited { code: 0 }, env.now)
        .is_err());
    let reply = env.engine.register_node(
        NodeRegistration {
            id: n1.clone(),
            name: "n1".into(),
            resources: Resources::cpus(1.0),
            labels: Default::default(),
            known: vec![old],
            waiting: Vec::new(),
            prefetch: 0,
            address: String::new(),
        },
        env.now,
    );
    assert_eq!(reply.kill, vec![old]);
    env.running.remove(&old);
    env.settle();
    env.finish(new, AttemptOutcome::Exited { code: 0 });
    assert_eq!(env.job_state(id), None);
    assert_eq!(env.dispatched_total, 2, "exactly one requeue");
}

#[test]
fn reregistration_reconciles_attempts_the_agent_lost() {
    let mut env = TestEnv::new(cfg());
    let n1 = env.add_node("n1", 2, 1 << 30, &[]);
    env.submit(spec(1.0));
    env.submit(spec(1.0));
    let ids: Vec<_> = env.running.keys().copied().collect();
    // Agent restarted and only knows the first attempt.
    let reply = env.engine.register_node(
        NodeRegistration {
            id: n1.clone(),
            name: "n1".into(),
            resources: Resources::cpus(2.0),
            labels: Default::default(),
            known: vec![ids[0]],
            waiting: Vec::new(),
            prefetch: 0,
            address: String::new(),
        },
        env.now,
    );
    assert!(reply.kill.is_empty());
    env.running.remove(&ids[1]);
    env.settle();
    assert_eq!(env.running.len(), 2, "lost attempt requeued as a new one");
    assert!(env.running.contains_key(&ids[0]));
}

#[test]
fn unknown_node_heartbeat_asks_to_reregister() {
    let mut env = TestEnv::new(cfg());
    let r = env.engine.heartbeat(&NodeId("ghost".into()), &[], env.now);
    assert!(r.reregister);
}

#[test]
fn constraints_and_explain() {
    let mut env = TestEnv::new(cfg());
    env.add_node("n1", 2, 1 << 30, &[("gpu", "t4")]);
    env.add_node("n2", 2, 1 << 20, &[]);
    let mut s = spec(1.0);
    s.constraints = vec!["gpu=a100".parse().unwrap()];
    let id = env.submit(s);
    assert!(env.running.is_empty());
    let (state, e) = env.engine.explain(id).unwrap();
    assert_eq!(state, JobState::Queued);
    assert_eq!(e.summary(), "2 nodes: constraint gpu=a100 not met");
    let mut big = spec(1.0);
    big.resources.memory = 1 << 29;
    let id2 = env.submit(big);
    let (_, e2) = env.engine.explain(id2).unwrap();
    assert_eq!(
        e2.summary(),
        "1 node can run it now; 1 node: insufficient memory (exceeds node capacity)"
    ); // Every node busy: the constraint is still what is named.
    env.submit(spec(2.0));
    env.submit(spec(2.0));
    let (_, e) = env.engine.explain(id).unwrap();
    assert_eq!(e.summary(), "2 nodes: constraint gpu=a100 not met");
}

#[test]
fn clock_going_backwards_fires_nothing() {
    let mut env = TestEnv::new(cfg());
    let n = env.add_node("n1", 1, 1 << 30, &[]);
    let mut s = spec(1.0);
    s.timeout = Some(DurationMs(10_000));
    env.submit(s);
    env.now -= 1_000_000;
    env.engine.tick(env.now);
    env.engine.heartbeat(
        &n,
        &env.running.keys().copied().collect::<Vec<_>>(),
        env.now,
    );
    env.settle();
    assert!(env.kills.is_empty());
    assert_eq!(env.engine.nodes()[0].state, NodeState::Ready);
}

#[test]
fn admission_limit_refuses_excess_jobs() {
    let mut env = TestEnv::new(EngineConfig {
        max_live_jobs: 3,
        ..cfg()
    });
    for _ in 0..3 {
        env.submit(spec(1.0));
    }
    let err = env
        .engine
        .submit(vec![std::sync::Arc::new(spec(1.0))], env.now)
        .unwrap_err();
    assert!(err.to_string().contains("too many live jobs"));
}

#[test]
fn lost_nodes_are_forgotten_after_ttl() {
    let mut env = TestEnv::new(EngineConfig {
        lost_node_ttl_ms: 60_000,
        ..cfg()
    });
    env.add_node("n1", 1, 1 << 30, &[]);
    env.advance(6_000);
    assert_eq!(env.engine.nodes()[0].state, NodeState::Lost);
    env.advance(60_000);
    assert!(env.engine.nodes().is_empty());
    assert_eq!(
        env.engine.take_changes().removed_nodes.len(),
        0,
        "taken by settle already"
    );
}

#[test]
fn counters_levels_and_observations() {
    let mut env = TestEnv::new(cfg());
    env.add_node("n1", 2, 1 << 30, &[]);
    let mut s = spec(1.0);
    s.retry.limit = 1;
    s.retry.delay = DurationMs(10);
    env.submit(s);
    let q = env.submit(spec(1.0));
    env.submit(spec(2.0));
    let levels = env.engine.levels();
    assert_eq!(levels.running_attempts, 2);
    assert_eq!(
        levels.jobs.get(&("default".to_string(), JobState::Queued)),
        Some(&1)
    );
    assert_eq!((levels.cpu_millis_total, levels.cpu_millis_free), (2000, 0));
    let first = *env.running.keys().next().unwrap();
    env.advance(5);
    env.finish(first, AttemptOutcome::Exited { code: 1 });
    env.advance(10);
    env.engine.cancel(q, env.now).unwrap();
    env.settle();
    let (_, killed) = env.kills.pop().unwrap();
    env.finish(killed, AttemptOutcome::Signaled { signal: 15 });
    let c = env.engine.counters().clone();
    assert_eq!(c.jobs_submitted, 3);
    assert_eq!(c.retries_scheduled, 1);
    assert_eq!(c.jobs_cancelled, 1);
    assert_eq!(c.attempts_ended.get("exited_error"), Some(&1));
    assert!(c.attempts_started >= 3);
    let obs = env.engine.take_observations();
    assert!(obs.contains(&zenith_engine::Observation::RunTime(5)));
    assert!(obs
        .iter()
        .any(|o| matches!(o, zenith_engine::Observation::QueueWait(_))));
    assert!(env.engine.take_observations().is_empty(), "drained");
}

#[test]
fn idempotent_submission_replays_refuses_mismatch_evicts_and_expires() {
    use std::sync::Arc;
    use zenith_engine::IdempotencyKey;
    let mut env = TestEnv::new(EngineConfig {
        idempotency_ttl_ms: 1000,
        max_idempotency_keys: 3,
        max_idempotency_keys_per_client: 2,
        ..cfg()
    });
    let keyed = |scope: &str, k: &str, fp| {
        Some(IdempotencyKey {
            scope: scope.into(),
            key: k.into(),
            fingerprint: fp,
        })
    };
    let alice = "aaaaaaaaaaaa";
    let bob = "bbbbbbbbbbbb";
    let key = |k: &str, fp| keyed(alice, k, fp);
    let submit = |env: &mut TestEnv, key: Option<IdempotencyKey>| {
        let r = env
            .engine
            .submit_idempotent(key, vec![Arc::new(spec(1.0))], env.now);
        env.settle();
        r
    };
    let a = submit(&mut env, key("k1", 7)).unwrap();
    assert!(!a.replayed);
    let again = submit(&mut env, key("k1", 7)).unwrap();
    assert_eq!((again.ids.clone(), again.replayed), (a.ids.clone(), true));
    let err = submit(&mut env, key("k1", 8)).unwrap_err();
    assert!(err.to_string().contains("different request"));
    // Another client's key of the same name is its own.
    let b1 = submit(&mut env, keyed(bob, "k1", 9)).unwrap();
    assert!(!b1.replayed);
    assert_ne!(b1.ids, a.ids);
    // Alice's third key evicts her oldest (k1), never refuses: her loop keeps submitting.
    env.now += 1;
    submit(&mut env, key("k2", 1)).unwrap();
    env.now += 1;
    submit(&mut env, key("k3", 1)).unwrap();
    assert_eq!(env.engine.idempotency_keys(), 3);
    let k1_again = submit(&mut env, key("k1", 8)).unwrap();
    assert!(!k1_again.replayed, "k1 was evicted: a new job");
    // ...which evicted k2 in turn (and k2 then k3); Bob's key is untouched by Alice's churn.
    assert!(!submit(&mut env, key("k2", 1)).unwrap().replayed);
    let bob_again = submit(&mut env, keyed(bob, "k1", 9)).unwrap();
    assert_eq!((bob_again.ids, bob_again.replayed), (b1.ids.clone(), true));
    assert_eq!(env.engine.counters().idempotency_keys_evicted, 3);
    // The engine-wide bound evicts the oldest of all (Bob's): Carol's key makes room.
    let carol = submit(&mut env, keyed("cccccccccccc", "k1", 1)).unwrap();
    assert!(!carol.replayed);
    assert_eq!(env.engine.idempotency_keys(), 3);
    assert_eq!(env.engine.counters().idempotency_keys_evicted, 4);
    assert!(!submit(&mut env, keyed(bob, "k1", 9)).unwrap().replayed);
    env.advance(1000);
    assert_eq!(env.engine.idempotency_keys(), 0, "expired after the TTL");
    let fresh = submit(&mut env, key("k3", 1)).unwrap();
    assert!(!fresh.replayed);
}

#[test]
fn shapes_keep_priority_order_and_backfill() {
    let mut env = TestEnv::new(cfg());
    env.add_node("n1", 2, 1 << 30, &[]);
    // Queued while the node is away from the pass: submit everything, then one pass decides.
    let mut huge = Vec::new();
    for _ in 0..100 {
        huge.push(
            env.engine
                .submit(vec![std::sync::Arc::new(spec(8.0))], env.now)
                .unwrap()[0],
        );
    }
    let a = env
        .engine
        .submit(vec![std::sync::Arc::new(spec(2.0))], env.now)
        .unwrap()[0];
    let mut hi = spec(1.0);
    hi.priority = 5;
    let b = env
        .engine
        .submit(vec![std::sync::Arc::new(hi)], env.now)
        .unwrap()[0];
    let c = env
        .engine
        .submit(vec![std::sync::Arc::new(spec(1.0))], env.now)
        .unwrap()[0];
    env.settle();
    // b (priority 5) first; a (2 cores) no longer fits and reserves the node; c, with no
    // time limit, could delay a and does not backfill; the 8-core jobs (no node could ever
    // take them) reserve nothing and wait.
    assert_eq!(env.job_state(b), Some(JobState::Running));
    assert_eq!(env.job_state(a), Some(JobState::Queued));
    assert_eq!(env.job_state(c), Some(JobState::Queued));
    assert_eq!(env.engine.reservation().map(|r| r.job), Some(a));
    assert!(huge
        .iter()
        .all(|h| env.job_state(*h) == Some(JobState::Queued)));
    // When b finishes, a (older than anything else that fits) runs, then c.
    env.finish_all_ok();
    assert_eq!(env.job_state(a), Some(JobState::Running));
    env.finish_all_ok();
    assert_eq!(env.job_state(c), Some(JobState::Running));
}

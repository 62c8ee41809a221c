//! Job control on a fake clock: hold and release, priority and queue changes, dependencies
//! (`--after`, including chains and ones that can never be met) and array throttles.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use zenith_engine::{Command, EngineConfig, EngineError, JobUpdate};
use zenith_model::{ArrayRange, AttemptOutcome, Dependency, JobId, JobState};
use zenith_testkit::{spec, TestEnv};

fn env_with(cpus: u64) -> TestEnv {
    let mut env = TestEnv::new(EngineConfig::default());
    env.add_node("a", cpus, 1 << 30, &[]);
    env
}

fn after(id: JobId, on: &str) -> Dependency {
    format!("{id}:{on}").parse().unwrap()
}

/// Reports the running attempt of `job` ended with `outcome`.
fn finish_job(env: &mut TestEnv, job: JobId, outcome: AttemptOutcome) {
    let aid = *env
        .running
        .iter()
        .find(|(_, (_, a))| a.job == job)
        .unwrap()
        .0;
    env.finish(aid, outcome);
}

#[test]
fn a_held_job_waits_until_released_and_priority_changes_reorder_the_queue() {
    let mut env = env_with(1);
    let blocker = env.submit(spec(1.0));
    let mut held = spec(1.0);
    held.hold = true;
    let held = env.submit(held);
    let low = env.submit(spec(1.0));
    let high = env.submit(spec(1.0));
    assert!(env.engine.blocked_reason(held).unwrap().starts_with("held"));
    // Raise `high` above `low`; release `held` (it keeps its priority 0, older than low).
    env.apply(Command::UpdateJob {
        job: high,
        update: JobUpdate {
            priority: Some(5),
            queue: None,
        },
    })
    .unwrap();
    env.apply(Command::Hold {
        job: held,
        hold: false,
    })
    .unwrap();
    let order: Vec<JobId> = [blocker, high, held, low]
        .iter()
        .map(|&j| {
            finish_job(&mut env, j, AttemptOutcome::Exited { code: 0 });
            j
        })
        .collect();
    assert_eq!(order, vec![blocker, high, held, low]);
    // A finished job cannot be held; an unknown one neither.
    assert_eq!(
        env.apply(Command::Hold {
            job: low,
            hold: true
        })
        .unwrap_err(),
        EngineError::JobNotLive(low)
    );
}

#[test]
fn holding_a_queued_job_keeps_it_off_free_nodes_and_moving_queues_works() {
    let mut env = env_with(2);
    let mut s = spec(1.0);
    s.array = Some(ArrayRange::new(0, 3));
    s.hold = true;
    let job = env.submit(s);
    assert!(env.running.is_empty(), "held: nothing starts");
    env.apply(Command::UpdateJob {
        job,
        update: JobUpdate {
            priority: None,
            queue: Some("gpu".into()),
        },
    })
    .unwrap();
    assert!(env.running.is_empty(), "still held after the move");
    env.apply(Command::Hold { job, hold: false }).unwrap();
    env.settle();
    assert_eq!(env.running.len(), 2, "released: two fit");
    let live = env.engine.live_job(job).unwrap();
    assert_eq!(live.state, JobState::Running);
}

#[test]
fn after_ok_runs_on_success_and_a_failed_dependency_cancels_the_chain() {
    let mut env = env_with(4);
    let first = env.submit(spec(1.0));
    let mut second = spec(1.0);
    second.after = vec![after(first, "ok")];
    let second = env.submit(second);
    let mut third = spec(1.0);
    third.after = vec![after(second, "ok")];
    let third = env.submit(third);
    let mut on_fail = spec(1.0);
    on_fail.after = vec![after(first, "fail")];
    let on_fail = env.submit(on_fail);
    assert_eq!(env.running.len(), 1, "only the first runs");
    assert!(env
        .engine
        .blocked_reason(second)
        .unwrap()
        .contains(&format!("job {first} (needs ok)")));
    finish_job(&mut env, first, AttemptOutcome::Exited { code: 0 });
    // The first succeeded: the second runs; the :fail one can never run.
    assert_eq!(env.job_state(second), Some(JobState::Running));
    assert_eq!(env.job_state(on_fail), None, "ended");
    // Reported straight to the engine, so that the records it writes can be read.
    let (&aid, (node, _)) = env
        .running
        .iter()
        .find(|(_, (_, a))| a.job == second)
        .unwrap();
    let node = node.clone();
    env.engine
        .attempt_finished(&node, aid, AttemptOutcome::Exited { code: 3 }, env.now)
        .unwrap();
    assert_eq!(env.job_state(third), None, "cancelled down the chain");
    let changes = env.engine.take_changes();
    let rec = &changes.jobs[&third];
    assert_eq!(rec.state, JobState::Cancelled);
    assert_eq!(
        rec.reason.as_ref().unwrap().to_string(),
        format!("after job {second} failed (needed ok)")
    );
    let _ = on_fail;
}

#[test]
fn after_a_job_that_already_ended_or_never_existed() {
    let mut env = env_with(2);
    let done = env.submit(spec(1.0));
    finish_job(&mut env, done, AttemptOutcome::Exited { code: 0 });
    let mut s = spec(1.0);
    s.after = vec![after(done, "ok")];
    let runs = env.submit(s);
    assert_eq!(env.job_state(runs), Some(JobState::Running), "met already");
    let mut s = spec(1.0);
    s.after = vec![after(JobId(999), "any")];
    let err = env
        .apply(Command::Submit {
            specs: vec![std::sync::Arc::new(s)],
            key: None,
        })
        .unwrap_err();
    assert_eq!(err, EngineError::UnknownDependency(JobId(999)));
}

#[test]
fn a_long_chain_of_dependencies_unwinds_without_recursion() {
    let mut env = env_with(1);
    let first = env.submit(spec(1.0));
    let mut prev = first;
    let mut last = first;
    for _ in 0..10_000 {
        let mut s = spec(1.0);
        s.after = vec![after(prev, "ok")];
        // Straight to the engine: no invariant check per submission.
        last = env.engine.submit(vec![Arc::new(s)], env.now).unwrap()[0];
        prev = last;
    }
    env.apply(Command::Cancel { job: first }).unwrap();
    finish_job(&mut env, first, AttemptOutcome::Cancelled);
    assert_eq!(env.job_state(last), None, "the whole chain ended");
    assert_eq!(env.engine.live_jobs(), 0);
}

#[test]
fn an_array_throttle_caps_running_tasks_and_lets_other_jobs_by() {
    let mut env = env_with(8);
    let mut s = spec(1.0);
    s.array = "1-99:2%3".parse().ok();
    let arr = env.submit(s);
    let other = env.submit(spec(1.0));
    let of_arr = |env: &TestEnv| env.running.values().filter(|(_, a)| a.job == arr).count();
    assert_eq!(of_arr(&env), 3, "at most 3 of the array at once");
    assert_eq!(
        env.job_state(other),
        Some(JobState::Running),
        "not blocked behind it"
    );
    let mut indices: Vec<u32> = env
        .running
        .values()
        .filter(|(_, a)| a.job == arr)
        .map(|(_, a)| a.task)
        .collect();
    indices.sort();
    assert_eq!(indices, vec![1, 3, 5], "every second index");
    assert!(env.engine.blocked_reason(arr).unwrap().contains("3 of 3"));
    for _ in 0..50 {
        finish_job(&mut env, arr, AttemptOutcome::Exited { code: 0 });
        assert!(of_arr(&env) <= 3);
    }
    assert_eq!(env.job_state(arr), None, "all 50 tasks ran");
}

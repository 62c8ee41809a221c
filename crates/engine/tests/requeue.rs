//! Requeue and delete on a fake clock: ended jobs come back from their stored records, live
//! arrays requeue their failed tasks, deleted jobs stay deleted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use zenith_engine::{Command, EngineConfig, EngineError, Outcome, RequeueTasks};
use zenith_model::{ArrayRange, AttemptOutcome, JobId, JobState, TaskState};
use zenith_testkit::{spec, TestEnv};

fn env_with(cpus: u64) -> TestEnv {
    let mut env = TestEnv::new(EngineConfig::default());
    env.add_node("a", cpus, 1 << 30, &[]);
    env
}

/// Finishes the running attempt of task `index` of `job`.
fn finish_task(env: &mut TestEnv, job: JobId, index: u32, code: i32) {
    let aid = *env
        .running
        .iter()
        .find(|(_, (_, a))| a.job == job && a.task == index)
        .unwrap_or_else(|| panic!("task {index} of job {job} is not running"))
        .0;
    env.finish(aid, AttemptOutcome::Exited { code });
}

fn requeue(env: &mut TestEnv, job: JobId, tasks: RequeueTasks) -> Result<u32, EngineError> {
    let ended = env.stored_job(job).map(Box::new);
    match env.apply(Command::Requeue { job, tasks, ended })? {
        Outcome::Requeued(n) => Ok(n),
        other => panic!("requeue: {other:?}"),
    }
}

/// (task index, attempt number) of what runs for `job`.
fn running_tasks(env: &TestEnv, job: JobId) -> Vec<(u32, u32)> {
    let mut v: Vec<(u32, u32)> = env
        .running
        .values()
        .filter(|(_, a)| a.job == job)
        .map(|(_, a)| (a.task, a.attempt_number))
        .collect();
    v.sort_unstable();
    v
}

#[test]
fn an_ended_array_runs_its_failed_tasks_again_and_keeps_the_rest() {
    let mut env = env_with(4);
    let mut s = spec(1.0);
    s.array = Some(ArrayRange::new(0, 3));
    let job = env.submit(s);
    for (i, code) in [(0, 0), (1, 3), (2, 0), (3, 9)] {
        finish_task(&mut env, job, i, code);
    }
    assert_eq!(env.job_records[&job].state, JobState::Failed);
    assert_eq!(env.job_state(job), None, "ended jobs leave the engine");

    assert_eq!(requeue(&mut env, job, RequeueTasks::NotSucceeded), Ok(2));
    assert_eq!(env.job_records[&job].state, JobState::Running);
    assert_eq!(env.job_records[&job].finished_at, None);
    // Attempt numbers count on from the first run.
    assert_eq!(running_tasks(&env, job), vec![(1, 2), (3, 2)]);
    finish_task(&mut env, job, 1, 0);
    finish_task(&mut env, job, 3, 0);
    let rec = &env.job_records[&job];
    assert_eq!(rec.state, JobState::Succeeded);
    assert_eq!((rec.counts.succeeded, rec.counts.failed), (4, 0));
    assert_eq!(env.engine.counters().tasks_requeued, 2);
}

#[test]
fn a_succeeded_job_runs_again_only_when_asked_for_all() {
    let mut env = env_with(1);
    let job = env.submit(spec(1.0));
    finish_task(&mut env, job, 0, 0);
    let err = requeue(&mut env, job, RequeueTasks::NotSucceeded).unwrap_err();
    assert!(err.to_string().contains("--all"), "{err}");
    assert_eq!(requeue(&mut env, job, RequeueTasks::All), Ok(1));
    assert_eq!(running_tasks(&env, job), vec![(0, 2)]);
    // Only ended tasks may be named; unknown ones are refused.
    assert!(matches!(
        requeue(&mut env, job, RequeueTasks::Indices(vec![0])),
        Err(EngineError::CannotRequeue(..))
    ));
    assert_eq!(
        requeue(&mut env, job, RequeueTasks::Indices(vec![5])),
        Err(EngineError::NoSuchTask(job, 5))
    );
}

#[test]
fn a_live_array_requeues_a_failed_task_while_others_run() {
    let mut env = env_with(2);
    let mut s = spec(1.0);
    s.array = Some(ArrayRange::new(0, 2));
    let job = env.submit(s);
    finish_task(&mut env, job, 0, 1);
    // Task 2 took task 0's place; task 1 still runs.
    assert_eq!(running_tasks(&env, job), vec![(1, 1), (2, 1)]);
    assert_eq!(requeue(&mut env, job, RequeueTasks::NotSucceeded), Ok(1));
    finish_task(&mut env, job, 1, 0);
    assert_eq!(running_tasks(&env, job), vec![(0, 2), (2, 1)]);
    finish_task(&mut env, job, 0, 0);
    finish_task(&mut env, job, 2, 0);
    assert_eq!(env.job_records[&job].state, JobState::Succeeded);
}

#[test]
fn chosen_tasks_of_a_cancelled_array_run_and_the_others_stay_cancelled() {
    let mut env = env_with(1);
    let mut s = spec(1.0);
    s.array = Some(ArrayRange::new(0, 3));
    let job = env.submit(s);
    env.apply(Command::Cancel { job }).unwrap();
    let running: Vec<_> = env.running.keys().copied().collect();
    for aid in running {
        env.finish(aid, AttemptOutcome::Cancelled);
    }
    assert_eq!(env.job_records[&job].state, JobState::Cancelled);
    assert_eq!(
        requeue(&mut env, job, RequeueTasks::Indices(vec![2])),
        Ok(1)
    );
    assert_eq!(running_tasks(&env, job), vec![(2, 1)]);
    // Tasks that never started and stay cancelled now have rows saying so (a restart must
    // not read them as queued).
    for i in [1, 3] {
        assert_eq!(
            env.task_records[&(job, i)].state,
            TaskState::Cancelled,
            "{i}"
        );
    }
    finish_task(&mut env, job, 2, 0);
    let rec = &env.job_records[&job];
    assert_eq!((rec.counts.succeeded, rec.counts.cancelled), (1, 3));
    assert_eq!(rec.state, JobState::Cancelled, "a job with cancelled tasks");
}

#[test]
fn delete_takes_only_ended_jobs_and_a_deleted_job_stays_deleted() {
    let mut env = env_with(1);
    let job = env.submit(spec(1.0));
    assert_eq!(
        env.apply(Command::DeleteJob { job }).unwrap_err(),
        EngineError::NotEnded(job)
    );
    finish_task(&mut env, job, 0, 1);
    let stale = env.stored_job(job).map(Box::new);
    env.apply(Command::DeleteJob { job }).unwrap();
    assert!(
        !env.job_records.contains_key(&job),
        "deleted with the batch"
    );
    assert_eq!(
        env.apply(Command::DeleteJob { job }).unwrap_err(),
        EngineError::JobNotFound(job)
    );
    // A requeue read from the store just before the delete cannot bring it back.
    let r = env.apply(Command::Requeue {
        job,
        tasks: RequeueTasks::NotSucceeded,
        ended: stale,
    });
    assert_eq!(r.unwrap_err(), EngineError::JobNotFound(job));
    assert_eq!(env.engine.counters().jobs_deleted, 1);
}

#[test]
fn a_requeued_job_drops_ended_dependencies() {
    let mut env = env_with(1);
    let dep = env.submit(spec(1.0));
    let mut s = spec(1.0);
    s.after = vec![format!("{dep}:ok").parse().unwrap()];
    let child = env.submit(s);
    finish_task(&mut env, dep, 0, 1);
    assert_eq!(env.job_records[&child].state, JobState::Cancelled);
    assert_eq!(requeue(&mut env, child, RequeueTasks::NotSucceeded), Ok(1));
    assert_eq!(running_tasks(&env, child), vec![(0, 1)]);
    assert!(env.job_records[&child]
        .spec
        .as_ref()
        .unwrap()
        .after
        .is_empty());
}

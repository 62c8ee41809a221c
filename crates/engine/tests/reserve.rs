//! Reservations and EASY backfill on a fake clock: a big job is not overtaken forever by
//! small later ones; a small job backfills only when its timeout ends it before the big one
//! can start; and, over random workloads, a reserved job never starts later than its
//! reservation said.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use std::collections::BTreeMap;
use zenith_engine::EngineConfig;
use zenith_model::{AttemptOutcome, DurationMs, JobId, JobState};
use zenith_testkit::{spec, TestEnv};

fn running_of(env: &TestEnv, job: JobId) -> Vec<zenith_model::AttemptId> {
    env.running
        .iter()
        .filter(|(_, (_, a))| a.job == job)
        .map(|(id, _)| *id)
        .collect()
}

#[test]
fn a_big_job_takes_the_first_moment_its_cpus_are_free() {
    let mut env = TestEnv::new(EngineConfig::default());
    env.add_node("a", 2, 1 << 30, &[]);
    let small1 = env.submit(spec(1.0));
    let small2 = env.submit(spec(1.0));
    let mut big = spec(2.0);
    big.priority = 10;
    let big = env.submit(big);
    let later: Vec<JobId> = (0..5).map(|_| env.submit(spec(1.0))).collect();
    let r = env.engine.reservation().unwrap().clone();
    assert_eq!((r.job, r.start), (big, None), "no timeouts: start unknown");
    // One CPU frees: no later 1-CPU job takes it.
    env.finish(
        running_of(&env, small1)[0],
        AttemptOutcome::Exited { code: 0 },
    );
    assert!(later
        .iter()
        .all(|j| env.job_state(*j) == Some(JobState::Queued)));
    // Both free: the big job starts at once, then the small ones around it.
    env.finish(
        running_of(&env, small2)[0],
        AttemptOutcome::Exited { code: 0 },
    );
    assert_eq!(env.job_state(big), Some(JobState::Running));
    assert_ne!(env.engine.reservation().map(|r| r.job), Some(big));
    assert!(env.engine.counters().reservations >= 1);
}

#[test]
fn a_small_job_backfills_only_if_it_ends_before_the_reservation() {
    let mut env = TestEnv::new(EngineConfig::default());
    env.add_node("a", 2, 1 << 30, &[]);
    let timed = |secs: u64| {
        let mut s = spec(1.0);
        s.timeout = Some(DurationMs(secs * 1000));
        s
    };
    let long = env.submit(timed(100));
    let short = env.submit(timed(10));
    let big = env.submit(spec(2.0));
    let r = env.engine.reservation().unwrap().clone();
    assert_eq!((r.job, r.start), (big, Some(env.now + 100_000)));
    let too_long = env.submit(timed(200));
    let fits = env.submit(timed(50));
    env.advance(5_000);
    env.finish(
        running_of(&env, short)[0],
        AttemptOutcome::Exited { code: 0 },
    );
    assert_eq!(
        env.job_state(fits),
        Some(JobState::Running),
        "ends by the reservation"
    );
    assert_eq!(
        env.job_state(too_long),
        Some(JobState::Queued),
        "would delay the big job"
    );
    let _ = long;
}

/// One random workload: node sizes, and jobs (CPUs, timeout s, run time as a share of the
/// timeout, priority).
/// Node sizes, and jobs as (CPUs, timeout s, run time as a share of the timeout, priority).
type Workload = (Vec<u64>, Vec<(u64, u64, u64, i32)>);

fn workload() -> impl Strategy<Value = Workload> {
    (
        prop::collection::vec(2u64..=8, 1..4),
        prop::collection::vec((1u64..=4, 1u64..=60, 1u64..=100, 0i32..3), 5..60),
    )
}

/// The simulated time step; timeouts and run times are multiples of it, so attempts end and
/// deadlines fire exactly on steps.
const STEP: u64 = 250;

/// Notes when newly dispatched attempts will end, checking each against the reservation its
/// job was promised.
fn record(
    env: &TestEnv,
    run_ms: &BTreeMap<JobId, u64>,
    promised: &BTreeMap<JobId, u64>,
    ends: &mut BTreeMap<zenith_model::AttemptId, u64>,
) -> Result<(), String> {
    for (aid, (_, a)) in &env.running {
        if ends.contains_key(aid) {
            continue;
        }
        if let Some(p) = promised.get(&a.job) {
            if env.now > *p {
                return Err(format!(
                    "job {} started at {} after its reservation {p}",
                    a.job, env.now
                ));
            }
        }
        ends.insert(*aid, env.now + run_ms[&a.job]);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// With every job's run time within its timeout, a job holding a reservation with a known
    /// start never starts later than that start: backfilled jobs never delay it.
    #[test]
    fn a_reserved_job_is_never_delayed_by_backfill((nodes, jobs) in workload()) {
        // Nodes never heartbeat here: none is lost in the hours simulated.
        let cfg = EngineConfig { heartbeat_timeout_ms: 1 << 40, ..EngineConfig::default() };
        let mut env = TestEnv::new(cfg);
        let biggest = *nodes.iter().max().unwrap();
        for (i, cpus) in nodes.iter().enumerate() {
            env.add_node(&format!("n{i}"), *cpus, 1 << 30, &[]);
        }
        let mut run_ms: BTreeMap<JobId, u64> = BTreeMap::new();
        for (cpus, timeout_s, share, prio) in &jobs {
            let mut s = spec((*cpus).min(biggest) as f64);
            s.timeout = Some(DurationMs(timeout_s * 1000));
            s.priority = *prio;
            let id = env.submit(s);
            let run = (timeout_s * 1000 * share / 100).div_ceil(STEP) * STEP;
            run_ms.insert(id, run.max(STEP));
        }
        let mut promised: BTreeMap<JobId, u64> = BTreeMap::new();
        let mut ends: BTreeMap<zenith_model::AttemptId, u64> = BTreeMap::new();
        for _ in 0..100_000 {
            if let Some(r) = env.engine.reservation() {
                if let Some(start) = r.start {
                    let p = promised.entry(r.job).or_insert(start);
                    *p = (*p).min(start);
                }
            }
            record(&env, &run_ms, &promised, &mut ends).map_err(TestCaseError::fail)?;
            let due: Vec<_> = ends
                .iter()
                .filter(|(a, e)| **e <= env.now && env.running.contains_key(a))
                .map(|(a, _)| *a)
                .collect();
            for a in due {
                env.finish(a, AttemptOutcome::Exited { code: 0 });
                record(&env, &run_ms, &promised, &mut ends).map_err(TestCaseError::fail)?;
            }
            if env.engine.live_jobs() == 0 {
                break;
            }
            env.advance(STEP);
        }
        prop_assert_eq!(env.engine.live_jobs(), 0, "every job ran");
    }
}

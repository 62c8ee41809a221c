//! Soft placement on a fake clock: `prefer` picks among the nodes that fit, `spread` evens a
//! job's running tasks over a label's values; neither keeps a job from running.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use zenith_engine::EngineConfig;
use zenith_model::{ArrayRange, AttemptOutcome, NodeId};
use zenith_testkit::{spec, TestEnv};

fn zones() -> TestEnv {
    let mut env = TestEnv::new(EngineConfig::default());
    env.add_node("a", 4, 1 << 30, &[("zone", "a")]);
    env.add_node("b", 4, 1 << 30, &[("zone", "b"), ("disk", "ssd")]);
    env.add_node("c", 4, 1 << 30, &[("zone", "c")]);
    env
}

fn per_node(env: &TestEnv) -> BTreeMap<NodeId, usize> {
    let mut m = BTreeMap::new();
    for (n, _) in env.running.values() {
        *m.entry(n.clone()).or_insert(0) += 1;
    }
    m
}

#[test]
fn spread_evens_a_jobs_tasks_over_zones() {
    let mut env = zones();
    let mut s = spec(1.0);
    s.array = Some(ArrayRange::new(0, 5));
    s.spread = Some("zone".into());
    env.submit(s);
    let counts: Vec<usize> = per_node(&env).into_values().collect();
    assert_eq!(
        counts,
        vec![2, 2, 2],
        "bin-packing alone would give 4 and 2"
    );
    // Zone a empties; a second spread job counts only its own tasks: one per zone, though
    // zone a is now the emptiest.
    let on_a: Vec<_> = env
        .running
        .iter()
        .filter(|(_, (n, _))| n.as_str() == "a")
        .map(|(a, _)| *a)
        .collect();
    for a in on_a {
        env.finish(a, AttemptOutcome::Exited { code: 0 });
    }
    let mut t = spec(1.0);
    t.array = Some(ArrayRange::new(0, 2));
    t.spread = Some("zone".into());
    let job = env.submit(t);
    let mine: Vec<&str> = env
        .running
        .values()
        .filter(|(_, a)| a.job == job)
        .map(|(n, _)| n.as_str())
        .collect();
    let mut mine = mine;
    mine.sort();
    assert_eq!(mine, vec!["a", "b", "c"]);
}

#[test]
fn prefer_picks_among_fitting_nodes_and_never_blocks() {
    let mut env = zones();
    let mut s = spec(1.0);
    s.prefer = vec!["disk=ssd".parse().unwrap()];
    let job = env.submit(s.clone());
    let node = &env.running.values().find(|(_, a)| a.job == job).unwrap().0;
    assert_eq!(node.as_str(), "b");
    // The preferred node full: the job runs elsewhere rather than wait.
    let mut big = spec(3.0);
    big.constraints = vec!["disk=ssd".parse().unwrap()];
    env.submit(big);
    let other = env.submit(s);
    let node = &env
        .running
        .values()
        .find(|(_, a)| a.job == other)
        .unwrap()
        .0;
    assert_ne!(node.as_str(), "b");
}

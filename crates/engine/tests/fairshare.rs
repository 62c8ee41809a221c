//! Fair share and quotas between namespaces and users, on a fake clock: the figures the
//! tenancy issue asks for, measured from the attempt records the engine writes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use zenith_engine::{
    AttemptReport, Command, Effect, Engine, EngineConfig, EngineError, NodeRegistration, NodeReport,
};
use zenith_model::namespace::{NamespaceSettings, Quota};
use zenith_model::{AttemptId, AttemptOutcome, JobId, JobSpec, NodeId, Resources};
use zenith_testkit::{spec, TestEnv};

/// A cluster driven in 100 ms steps where every attempt runs `run_ms`.
struct Sim {
    engine: Engine,
    now: u64,
    run_ms: u64,
    /// Running attempts: node and when they end.
    running: HashMap<AttemptId, (NodeId, u64)>,
    /// Every attempt record written: (job, start, end).
    records: HashMap<AttemptId, (JobId, u64, Option<u64>)>,
    steps: u64,
}

impl Sim {
    fn new(nodes: usize, cpus: u64, run_ms: u64) -> Sim {
        Sim::with(EngineConfig::default(), nodes, cpus, run_ms)
    }

    fn with(cfg: EngineConfig, nodes: usize, cpus: u64, run_ms: u64) -> Sim {
        let mut engine = Engine::new(cfg);
        let now = 1_000_000;
        for i in 0..nodes {
            let reg = NodeRegistration {
                id: NodeId(format!("n{i:03}")),
                name: format!("n{i:03}"),
                resources: Resources {
                    cpu_millis: cpus * 1000,
                    memory: 64 << 30,
                    ..Default::default()
                },
                labels: Default::default(),
                known: vec![],
                waiting: vec![],
                prefetch: 0,
                address: String::new(),
            };
            engine.apply(Command::Register(reg), now).unwrap();
        }
        let mut s = Sim {
            engine,
            now,
            run_ms,
            running: HashMap::new(),
            records: HashMap::new(),
            steps: 0,
        };
        s.settle();
        s
    }

    fn set(&mut self, settings: NamespaceSettings) {
        let name = settings.name.clone();
        let cmd = Command::SetNamespace {
            name,
            settings: Some(settings),
        };
        self.engine.apply(cmd, self.now).unwrap();
        self.settle();
    }

    fn submit(&mut self, specs: Vec<JobSpec>) -> Result<Vec<JobId>, EngineError> {
        let cmd = Command::Submit {
            specs: specs.into_iter().map(Arc::new).collect(),
            key: None,
        };
        let out = self.engine.apply(cmd, self.now);
        self.settle();
        match out? {
            zenith_engine::Outcome::Submitted(s) => Ok(s.ids),
            other => panic!("submit: {other:?}"),
        }
    }

    fn settle(&mut self) {
        self.engine.schedule(self.now);
        for e in self.engine.take_effects() {
            if let Effect::Dispatch { node, assignment } = e {
                let end = self.now + self.run_ms;
                self.running.insert(assignment.attempt, (node, end));
            }
        }
        for (id, r) in self.engine.take_changes().attempts {
            self.records
                .insert(id, (r.job, r.started_at, r.finished_at));
        }
        self.steps += 1;
        // Every step on small runs; every 50th on the large ones (a check is O(jobs)).
        if self.steps.is_multiple_of(50) || self.engine.live_jobs() < 50 {
            self.engine.sanity_check().unwrap();
        }
    }

    /// Advances 100 ms: every node reports (attempts due ended with exit 0, the rest as
    /// known: its heartbeat), then a tick.
    fn step(&mut self) {
        self.now += 100;
        let mut by_node: BTreeMap<NodeId, NodeReport> = self
            .engine
            .nodes()
            .into_iter()
            .map(|n| {
                let r = NodeReport {
                    node: n.id.clone(),
                    results: vec![],
                    known: vec![],
                    waiting: vec![],
                    leaving: None,
                };
                (n.id, r)
            })
            .collect();
        let now = self.now;
        self.running.retain(|aid, (node, end)| {
            let Some(r) = by_node.get_mut(node) else {
                return true;
            };
            if *end <= now {
                r.results.push(AttemptReport {
                    attempt: *aid,
                    outcome: AttemptOutcome::Exited { code: 0 },
                    outputs: Default::default(),
                    ran_ms: None,
                });
                false
            } else {
                r.known.push(*aid);
                true
            }
        });
        for (_, r) in by_node {
            self.engine.apply(Command::Report(r), self.now).unwrap();
        }
        self.engine.apply(Command::Tick, self.now).unwrap();
        self.settle();
    }
}

fn job(ns: &str, user: &str, tasks: u32) -> JobSpec {
    let mut s = spec(1.0);
    s.namespace = ns.into();
    s.submitter = user.into();
    if tasks > 1 {
        s.array = Some(format!("0-{}", tasks - 1).parse().unwrap());
    }
    s
}

fn weighted(name: &str, weight: u32) -> NamespaceSettings {
    let mut s = NamespaceSettings::new(name);
    s.weight = weight;
    s
}

/// The figure: namespaces weighted 1:3 both queue 10,000 one-second tasks on a full
/// cluster; over the busy period (both have work queued) they hold 25% / 75% ± 5%.
#[test]
fn weights_one_to_three_give_a_quarter_and_three_quarters() {
    let mut sim = Sim::new(10, 10, 1_000);
    sim.set(weighted("lab", 1));
    sim.set(weighted("prod", 3));
    let mut a = Vec::new();
    let mut b = Vec::new();
    for _ in 0..10 {
        a.extend(sim.submit(vec![job("lab", "alice", 1_000)]).unwrap());
        b.extend(sim.submit(vec![job("prod", "bob", 1_000)]).unwrap());
    }
    let start = sim.now;
    // Busy while both namespaces still have tasks waiting.
    let waiting = |sim: &Sim, ns: &str| {
        let v = sim.engine.shares();
        let p = v.iter().find(|s| s.party.name == ns).unwrap();
        p.party.live_tasks > p.party.running
    };
    while waiting(&sim, "lab") && waiting(&sim, "prod") {
        sim.step();
    }
    let end = sim.now;
    let mut held = [0u64; 2];
    for (job, from, to) in sim.records.values() {
        let side = usize::from(b.contains(job));
        assert!(side == 1 || a.contains(job));
        let to = to.unwrap_or(end).min(end);
        held[side] += to.saturating_sub((*from).max(start));
    }
    let total = (held[0] + held[1]) as f64;
    let (lab, prod) = (held[0] as f64 / total, held[1] as f64 / total);
    println!(
        "fair share 1:3 over {} s busy: lab {:.1}% prod {:.1}% (from {} attempt records)",
        (end - start) / 1000,
        lab * 100.0,
        prod * 100.0,
        sim.records.len()
    );
    assert!((lab - 0.25).abs() <= 0.05, "lab share {lab}");
    assert!((prod - 0.75).abs() <= 0.05, "prod share {prod}");
}

/// A user who arrives late with 10 jobs gets the next free slots, ahead of the 1,000,000
/// queued tasks of another user of the same namespace.
#[test]
fn a_late_user_goes_before_a_million_task_array() {
    let mut sim = Sim::new(4, 8, 1_000);
    sim.submit(vec![job("default", "bulk", 1_000_000)]).unwrap();
    assert_eq!(sim.running.len(), 32, "the array fills the cluster");
    for _ in 0..25 {
        sim.step();
    }
    let late: Vec<JobId> = sim
        .submit((0..10).map(|_| job("default", "late", 1)).collect())
        .unwrap();
    let submitted = sim.now;
    // The next slots that free (one interval: the next pass after they free) are theirs.
    while late
        .iter()
        .any(|j| sim.engine.live_job(*j).is_some_and(|l| l.counts.queued > 0))
    {
        sim.step();
        assert!(
            sim.now - submitted <= 1_000,
            "late jobs waited past one run time"
        );
    }
    let mut started: Vec<u64> = sim
        .records
        .values()
        .filter(|(j, ..)| late.contains(j))
        .map(|(_, from, _)| *from - submitted)
        .collect();
    started.sort();
    println!("late user's 10 jobs started {started:?} ms after submission");
    let bulk_started_since = sim
        .records
        .values()
        .filter(|(j, from, _)| !late.contains(j) && *from > submitted && *from < started[9])
        .count();
    assert_eq!(bulk_started_since, 0, "no bulk task took a slot first");
}

/// Users weighted 2:1 inside one namespace share its slots 2:1.
#[test]
fn user_weights_split_a_namespace() {
    let mut sim = Sim::new(3, 10, 1_000);
    let mut s = NamespaceSettings::new("ml");
    s.user_weights.insert("ann".into(), 2);
    sim.set(s);
    sim.submit(vec![job("ml", "ann", 300), job("ml", "ben", 300)])
        .unwrap();
    for _ in 0..30 {
        sim.step();
    }
    let v = sim.engine.shares();
    let ml = v.iter().find(|s| s.party.name == "ml").unwrap();
    let running = |u: &str| ml.users.iter().find(|p| p.name == u).unwrap().running;
    assert_eq!((running("ann"), running("ben")), (20, 10));
}

/// A namespace at its CPU quota queues more work with the quota as the reason; ending the
/// work that holds it lets the next start at once.
#[test]
fn cpu_quota_queues_work_and_frees_on_cancel() {
    let mut env = TestEnv::new(EngineConfig::default());
    env.add_node("n1", 16, 64 << 30, &[]);
    let mut s = NamespaceSettings::new("ml");
    s.quota = Quota {
        cpus: Some(4.0),
        ..Default::default()
    };
    env.apply(Command::SetNamespace {
        name: "ml".into(),
        settings: Some(s),
    })
    .unwrap();
    let big = env.submit(job_cpus("ml", 4.0));
    let next = env.submit(job_cpus("ml", 2.0));
    let other = env.submit(job_cpus("web", 2.0));
    assert_eq!(
        env.running.len(),
        2,
        "big and the other namespace's job run"
    );
    let hit = env.engine.quota_hit(next).expect("quota reason");
    assert_eq!(hit.to_string(), "quota cpus 4/4 in namespace ml");
    assert!(env.engine.quota_hit(other).is_none());
    env.apply(Command::Cancel { job: big }).unwrap();
    assert_eq!(env.kills.len(), 1, "cancel kills big");
    let big_attempt = *env
        .running
        .iter()
        .find(|(_, (_, a))| a.job == big)
        .unwrap()
        .0;
    env.finish(big_attempt, AttemptOutcome::Signaled { signal: 9 });
    assert!(
        env.running.values().any(|(_, a)| a.job == next),
        "next starts"
    );
    assert!(env.engine.quota_hit(next).is_none());
}

fn job_cpus(ns: &str, cpus: f64) -> JobSpec {
    let mut s = spec(cpus);
    s.namespace = ns.into();
    s
}

/// Hard limits refuse at submit, naming the limit; a task larger than a resource limit
/// could never run and is refused too.
#[test]
fn hard_limits_refuse_at_submit() {
    let mut env = TestEnv::new(EngineConfig::default());
    env.add_node("n1", 1, 1 << 30, &[]);
    let mut s = NamespaceSettings::new("ml");
    s.quota = Quota {
        jobs: Some(2),
        cpus: Some(8.0),
        ..Default::default()
    };
    env.apply(Command::SetNamespace {
        name: "ml".into(),
        settings: Some(s),
    })
    .unwrap();
    env.submit(job_cpus("ml", 1.0));
    env.submit(job_cpus("ml", 1.0));
    let third = env.apply(Command::Submit {
        specs: vec![Arc::new(job_cpus("ml", 1.0))],
        key: None,
    });
    match third {
        Err(EngineError::QuotaExceeded(hit)) => {
            assert_eq!(hit.to_string(), "quota jobs 2/2 in namespace ml")
        }
        other => panic!("{other:?}"),
    }
    let huge = env.apply(Command::Submit {
        specs: vec![
            Arc::new(job_cpus("default", 1.0)),
            Arc::new(job_cpus("ml", 16.0)),
        ],
        key: None,
    });
    assert!(
        matches!(&huge, Err(EngineError::QuotaExceeded(h)) if h.limit == "jobs"),
        "{huge:?}"
    );
    assert_eq!(
        env.engine.live_jobs(),
        2,
        "all or none: the default job was not kept"
    );
}

/// Idle parties are forgotten once their usage decays, and at once when too many are idle.
#[test]
fn idle_parties_are_bounded() {
    let cfg = EngineConfig {
        fair_share_half_life_ms: 1_000,
        ..Default::default()
    };
    let users = |sim: &Sim| {
        sim.engine
            .shares()
            .iter()
            .map(|s| s.users.len())
            .sum::<usize>()
    };
    let mut sim = Sim::with(cfg.clone(), 1, 200, 5_000);
    sim.submit(
        (0..200)
            .map(|i| job("default", &format!("u{i}"), 1))
            .collect(),
    )
    .unwrap();
    while sim.engine.live_jobs() > 0 {
        sim.step();
    }
    sim.step();
    assert_eq!(
        users(&sim),
        200,
        "idle users are kept while their usage counts"
    );
    for _ in 0..300 {
        sim.step();
    }
    assert_eq!(
        users(&sim),
        0,
        "30 half-lives later their usage is negligible"
    );
    assert!(sim.engine.shares().is_empty());

    let crowd = zenith_engine::MAX_IDLE_PARTIES + 1;
    let mut sim = Sim::with(cfg, 1, crowd as u64, 5_000);
    sim.submit(
        (0..crowd)
            .map(|i| job("default", &format!("u{i}"), 1))
            .collect(),
    )
    .unwrap();
    while sim.engine.live_jobs() > 0 {
        sim.step();
    }
    let left = sim.engine.shares();
    let usage = left
        .first()
        .map_or(0.0, |n| n.users.first().map_or(0.0, |u| u.usage));
    // The next fold sees more idle parties than the bound and forgets them all, although
    // their usage (about 1/crowd, halved at most once) still counts.
    for _ in 0..10 {
        sim.step();
    }
    assert_eq!(users(&sim), 0, "usage was {usage}");
}

//! A fixed, deterministic engine workload for instruction counts (valgrind --tool=callgrind):
//! NODES nodes, JOBS one-core jobs submitted in batches of 1,000, each pass's placements
//! finished at once, until all are done. No I/O, no clock: the count only moves when the
//! engine's or placement's code does.

use std::sync::Arc;
use zenith_engine::{Effect, Engine, EngineConfig, NodeRegistration};
use zenith_model::{AttemptOutcome, JobSpec, NodeId, Resources};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 1_000)]
    nodes: usize,
    #[arg(long, default_value_t = 20_000)]
    jobs: usize,
}

pub fn run(a: Args) -> serde_json::Value {
    let mut e = Engine::new(EngineConfig::default());
    for i in 0..a.nodes {
        e.register_node(
            NodeRegistration {
                id: NodeId(format!("n{i:05}")),
                name: format!("n{i}"),
                resources: Resources {
                    cpu_millis: 8_000,
                    memory: 64 << 30,
                    ..Default::default()
                },
                labels: Default::default(),
                known: Vec::new(),
                waiting: Vec::new(),
                prefetch: 0,
                address: String::new(),
            },
            1,
        );
    }
    let spec = Arc::new({
        let mut s = JobSpec::new(vec!["true".into()]);
        s.resources = Resources::cpus(1.0);
        s
    });
    let mut now = 2;
    let mut finished = 0usize;
    let mut submitted = 0usize;
    while finished < a.jobs {
        if submitted < a.jobs {
            let n = 1_000.min(a.jobs - submitted);
            // A rejected batch would be a bug in this workload: stop and say so.
            if e.submit(vec![spec.clone(); n], now).is_err() {
                return serde_json::json!({"error": "submit refused"});
            }
            submitted += n;
        }
        e.schedule(now);
        for eff in e.take_effects() {
            if let Effect::Dispatch { node, assignment } = eff {
                if e.attempt_finished(
                    &node,
                    assignment.attempt,
                    AttemptOutcome::Exited { code: 0 },
                    now,
                )
                .is_ok()
                {
                    finished += 1;
                }
            }
        }
        let _ = e.take_changes();
        now += 1;
    }
    serde_json::json!({"nodes": a.nodes, "jobs": a.jobs, "steps": now})
}

//! The scheduling pass with criterion: `cargo bench -p zenith-engine --bench pass`.
//! One pass places every queued job on a cluster that has room for exactly all of them
//! (10 one-core jobs per 10-core node), at 100, 1,000 and 10,000 nodes; and a pass over a
//! full cluster with 100,000 queued jobs of a few shapes (what a busy cluster pays per event).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use std::sync::Arc;
use zenith_engine::{Engine, EngineConfig, NodeRegistration};
use zenith_model::{JobSpec, NodeId, Resources};

fn cluster(nodes: usize) -> Engine {
    let mut e = Engine::new(EngineConfig {
        max_dispatch_per_pass: usize::MAX,
        ..EngineConfig::default()
    });
    for i in 0..nodes {
        e.register_node(
            NodeRegistration {
                id: NodeId(format!("n{i:05}")),
                name: format!("n{i}"),
                resources: Resources {
                    cpu_millis: 10_000,
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
    e
}

fn job(cpus: u64) -> Arc<JobSpec> {
    let mut s = JobSpec::new(vec!["true".into()]);
    s.resources = Resources {
        cpu_millis: cpus * 1000,
        ..Default::default()
    };
    Arc::new(s)
}

fn placing_everything(c: &mut Criterion) {
    let mut g = c.benchmark_group("pass_places_all");
    g.sample_size(10);
    for nodes in [100usize, 1_000, 10_000] {
        g.bench_with_input(BenchmarkId::from_parameter(nodes), &nodes, |b, &nodes| {
            b.iter_batched(
                || {
                    let mut e = cluster(nodes);
                    let specs: Vec<_> = (0..nodes * 10).map(|_| job(1)).collect();
                    e.submit(specs, 2).unwrap();
                    e
                },
                |mut e| {
                    e.schedule(3);
                    assert_eq!(e.running_attempts(), nodes * 10);
                    e
                },
                BatchSize::LargeInput,
            );
        });
    }
    g.finish();
}

fn full_cluster_long_queue(c: &mut Criterion) {
    let mut g = c.benchmark_group("pass_full_cluster");
    g.sample_size(10);
    for queued in [10_000usize, 100_000] {
        g.bench_with_input(
            BenchmarkId::from_parameter(queued),
            &queued,
            |b, &queued| {
                b.iter_batched(
                    || {
                        let mut e = cluster(1_000);
                        // Fill the cluster, then queue jobs of four shapes that cannot fit.
                        e.submit((0..10_000).map(|_| job(1)).collect(), 2).unwrap();
                        e.schedule(2);
                        let specs: Vec<_> = (0..queued).map(|i| job(1 + (i % 4) as u64)).collect();
                        e.submit(specs, 2).unwrap();
                        e
                    },
                    |mut e| {
                        e.schedule(3);
                        e
                    },
                    BatchSize::LargeInput,
                );
            },
        );
    }
    g.finish();
}

criterion_group!(benches, placing_everything, full_cluster_long_queue);
criterion_main!(benches);

//! Soak: a steady churn of jobs, flow runs, client addresses and agent restarts against a
//! server with a short retention. Memory must plateau (server and agent), everything must
//! finish, and retention must empty the store. `ZENITH_SOAK_SECONDS` sets the length
//! (default 20); the figures are printed for docs/reliability.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;
use common::*;
use std::time::{Duration, Instant};

/// A client bound to its own loopback address, as a distinct client would be.
fn client_at(n: u8) -> reqwest::Client {
    client_from(std::net::Ipv4Addr::new(127, 0, 1, n))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn soak_with_churn_keeps_memory_flat_and_retention_empties_the_store() {
    let secs = env_num("ZENITH_SOAK_SECONDS", 20);
    let mut c = blocking(|| {
        Cluster::with_agents(
            &[
                "--retention",
                "2s",
                "--sweep-interval",
                "250ms",
                "--heartbeat-timeout",
                "3s",
            ],
            &[("steady", &["--cpus", "1"]), ("churn", &["--cpus", "1"])],
        )
    })
    .await;
    let server_pid = c.server.as_ref().unwrap().pid();
    let agent_pid = c.agents[0].pid();
    let api = c.api();
    let flow = "name: soak\nsteps:\n  - {name: a, run: [true], resources: {cpus: 0.1}}\n  - {name: b, depends: [a], run: [true], resources: {cpus: 0.1}}\n";
    let started = Instant::now();
    let (mut jobs, mut runs, mut restarts, mut refused) = (0u64, 0u64, 0u64, 0u64);
    let mut samples: Vec<(f64, u64, u64)> = Vec::new();
    let mut tick = 0u64;
    while started.elapsed() < Duration::from_secs(secs) {
        tick += 1;
        let client = api.with_client(client_at((tick % 250 + 2) as u8));
        let batch: Vec<_> = (0..20)
            .map(|_| serde_json::json!({"command": ["true"], "resources": {"cpus": 0.1}}))
            .collect();
        let r = client
            .post("/api/v1/jobs")
            .json(&batch)
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            201 => jobs += 20,
            429 | 503 => refused += 1,
            s => panic!("submit answered {s}"),
        }
        if tick.is_multiple_of(10) {
            let r = client
                .post("/api/v1/flows/runs")
                .json(&serde_json::json!({ "flow": flow }))
                .send()
                .await
                .unwrap();
            if r.status().as_u16() == 201 {
                runs += 1;
            }
        }
        if tick.is_multiple_of(40) {
            c = blocking(move || {
                c.restart_agent(1, "churn", &["--cpus", "1"]);
                c
            })
            .await;
            restarts += 1;
        }
        if tick.is_multiple_of(10) {
            samples.push((
                started.elapsed().as_secs_f64(),
                rss_kb(server_pid),
                rss_kb(agent_pid),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Drain: every job and run finishes, then retention empties the store.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let live = api.get_json("/api/v1/jobs?state=queued&limit=1").await["jobs"]
            .as_array()
            .unwrap()
            .len()
            + api.get_json("/api/v1/jobs?state=running&limit=1").await["jobs"]
                .as_array()
                .unwrap()
                .len();
        let metrics = api.metrics().await;
        let runs_live = metrics
            .lines()
            .find(|l| l.starts_with("zenith_flow_runs_live "))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("1")
            .to_string();
        if live == 0 && runs_live == "0" {
            break;
        }
        assert!(Instant::now() < deadline, "work did not drain");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = api.get_json("/api/v1/jobs?limit=10").await["jobs"]
            .as_array()
            .unwrap()
            .len()
            + api
                .get_json("/api/v1/flows/runs?limit=10")
                .await
                .as_array()
                .unwrap()
                .len();
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "retention did not empty the store"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let end = (rss_kb(server_pid), rss_kb(agent_pid));
    let third = (samples.len() / 3).max(1);
    let warm_server = samples[..third].iter().map(|s| s.1).max().unwrap();
    let warm_agent = samples[..third].iter().map(|s| s.2).max().unwrap();
    let peak_server = samples.iter().map(|s| s.1).max().unwrap();
    eprintln!(
        "soak {secs}s: {jobs} jobs, {runs} flow runs, {restarts} agent restarts, {refused} refused \
         batches; server RSS warm {warm_server} kB, peak {peak_server} kB, end {} kB; \
         agent RSS warm {warm_agent} kB, end {} kB",
        end.0, end.1
    );
    assert!(jobs > 0 && runs > 0 && restarts > 0);
    // A leak proportional to the work would keep growing after the first third.
    assert!(
        peak_server <= warm_server * 5 / 4 + 4096,
        "server memory kept growing: {samples:?}"
    );
    assert!(
        end.1 <= warm_agent * 5 / 4 + 4096,
        "agent memory kept growing: {samples:?}"
    );
}

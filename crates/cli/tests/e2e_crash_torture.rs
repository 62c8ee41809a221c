//! Crash torture: the server is killed with SIGKILL again and again while a client submits
//! jobs (retrying with idempotency keys) and an agent runs them. Afterwards: every acknowledged
//! job exists once, finishes, and no task succeeded twice.
//!
//! `ZENITH_TORTURE_KILLS` (default 5) and `ZENITH_TORTURE_JOBS` (default 300) scale it up.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A small deterministic generator for kill timings (seed printed for replay).
struct Lcg(u64);

impl Lcg {
    fn next_ms(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        lo + (self.0 >> 33) % (hi - lo)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_server_kill9_loses_and_duplicates_nothing() {
    let kills = env_num("ZENITH_TORTURE_KILLS", 5) as usize;
    let jobs = env_num("ZENITH_TORTURE_JOBS", 300) as usize;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("torture seed {seed}: {kills} kills, {jobs} jobs");
    let mut c = blocking(|| {
        Cluster::with_agents(
            &["--heartbeat-timeout", "30s", "--rate-limit", "100000"],
            &[("worker", &["--cpus", "4"])],
        )
    })
    .await;
    let api = c.api();
    let done = Arc::new(AtomicBool::new(false));

    // The client: submits `jobs` jobs one by one, retrying each (same key) until acknowledged.
    let client = {
        let api = api.with_client(
            reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
        );
        tokio::spawn(async move {
            let mut acked: BTreeMap<String, u64> = BTreeMap::new();
            let mut retries = 0u64;
            for i in 0..jobs {
                let key = format!("torture-{seed}-{i}");
                loop {
                    let resp = api
                        .post("/api/v1/jobs")
                        .header("Idempotency-Key", &key)
                        .json(&serde_json::json!({"command": ["sh", "-c", "echo $ZENITH_JOB_ID"], "resources": {"cpus": 0.25}}))
                        .send()
                        .await;
                    match resp {
                        Ok(r) if r.status() == 201 => {
                            let id = r.json::<serde_json::Value>().await.unwrap()["id"]
                                .as_u64()
                                .unwrap();
                            acked.insert(key, id);
                            break;
                        }
                        _ => {
                            retries += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            }
            (acked, retries)
        })
    };

    // The killer: SIGKILL and restart the server at pseudo-random moments.
    let killer_done = done.clone();
    let c_back = tokio::task::spawn_blocking(move || {
        let mut rng = Lcg(seed);
        for _ in 0..kills {
            std::thread::sleep(Duration::from_millis(rng.next_ms(100, 600)));
            c.kill_server();
            std::thread::sleep(Duration::from_millis(rng.next_ms(0, 200)));
            c.start_server();
        }
        killer_done.store(true, Ordering::SeqCst);
        c
    });
    let (acked, retries) = client.await.unwrap();
    c = c_back.await.unwrap();
    assert!(done.load(Ordering::SeqCst));
    eprintln!(
        "{} jobs acknowledged, {retries} retried requests",
        acked.len()
    );
    let ids: BTreeSet<u64> = acked.values().copied().collect();
    assert_eq!(ids.len(), jobs, "one job per key, no duplicates");

    // Nothing but the acknowledged jobs exists (paging through the listing).
    let mut listed = 0;
    let mut before: Option<u64> = None;
    loop {
        let mut q = "/api/v1/jobs?limit=1000".to_string();
        if let Some(b) = before {
            q.push_str(&format!("&before={b}"));
        }
        let page = api.get_json(&q).await;
        listed += page["jobs"].as_array().unwrap().len();
        match page["next_before"].as_u64() {
            Some(b) => before = Some(b),
            None => break,
        }
    }
    assert_eq!(listed, ids.len());
    blocking(move || {
        for id in &ids {
            let j = c.wait_final(*id, 120);
            assert_eq!(j["state"], "succeeded", "job {id}: {j}");
            let wins = j["attempts"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["state"] == "succeeded")
                .count();
            assert_eq!(wins, 1, "job {id} succeeded once: {j}");
            assert_eq!(c.ok(&["job", "logs", &id.to_string()]), format!("{id}\n"));
        }
    })
    .await;
}

/// Agents killed with SIGKILL mid-run, again and again, and restarted on their data dirs:
/// every job ends succeeded, with exactly one successful attempt, and attempts of one job
/// never overlap. `ZENITH_TORTURE_AGENT_KILLS` (default 6) and `ZENITH_TORTURE_JOBS` scale it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_agent_kill9_runs_every_job_to_success_once() {
    let kills = env_num("ZENITH_TORTURE_AGENT_KILLS", 6) as usize;
    let jobs = (env_num("ZENITH_TORTURE_JOBS", 300) as usize).min(2_000);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("agent torture seed {seed}: {kills} agent kills, {jobs} jobs");
    let c = blocking(|| {
        Cluster::with_agents(
            &["--heartbeat-timeout", "2s", "--rate-limit", "100000"],
            &[("a", &["--cpus", "2"]), ("b", &["--cpus", "2"])],
        )
    })
    .await;
    let specs: Vec<_> = (0..jobs)
        .map(|_| {
            serde_json::json!({"command": ["sh", "-c", "sleep 0.1; echo $ZENITH_JOB_ID"], "resources": {"cpus": 0.5}})
        })
        .collect();
    let resp = c.api().post_json("/api/v1/jobs", &specs).await;
    let ids: Vec<u64> = resp["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    blocking(move || {
        let mut c = c;
        let mut rng = Lcg(seed);
        for k in 0..kills {
            std::thread::sleep(Duration::from_millis(rng.next_ms(300, 900)));
            let (idx, name) = if k % 2 == 0 { (0, "a") } else { (1, "b") };
            c.restart_agent(idx, name, &["--cpus", "2"]);
        }
        let mut requeued = 0;
        for id in &ids {
            let j = c.wait_final(*id, 180);
            assert_eq!(j["state"], "succeeded", "job {id}: {j}");
            let attempts = j["attempts"].as_array().unwrap();
            let wins = attempts
                .iter()
                .filter(|a| a["state"] == "succeeded")
                .count();
            assert_eq!(wins, 1, "job {id} succeeded once: {j}");
            requeued += attempts.len() - 1;
            for w in attempts.windows(2) {
                let (end, next) = (
                    w[0]["finished_at_ms"].as_u64(),
                    w[1]["started_at_ms"].as_u64(),
                );
                assert!(
                    end.is_some() && end <= next,
                    "attempts of job {id} overlap: {j}"
                );
            }
            assert_eq!(c.ok(&["job", "logs", &id.to_string()]), format!("{id}\n"));
        }
        eprintln!(
            "{} jobs succeeded once each; {requeued} attempts lost to agent kills and rerun",
            ids.len()
        );
    })
    .await;
}

//! Overload: clients offering ten times what the server admits get 429 with `Retry-After`
//! (per-client rate, live-job cap), the server's memory stays bounded, and the jobs accepted
//! before the flood keep being scheduled and finish while it goes on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;
use common::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread")]
async fn ten_times_overload_is_refused_while_accepted_work_goes_on() {
    let c = blocking(|| Cluster::up(&["--rate-limit", "20", "--max-live-jobs", "400"])).await;
    let pid = c.server.as_ref().unwrap().pid();
    let api = c.api();
    // Accepted before the flood: 200 short jobs on 2 cores (4 at a time).
    let batch: Vec<_> = (0..200)
        .map(|_| serde_json::json!({"command": ["sleep", "0.02"], "resources": {"cpus": 0.5}}))
        .collect();
    let r = api.post("/api/v1/jobs").json(&batch).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let first: Vec<u64> = r.json::<serde_json::Value>().await.unwrap()["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let baseline = rss_kb(pid);
    // The flood: 8 clients, each on its own address, each as fast as it can (far beyond its
    // 20 requests/s), each request a batch of 10 jobs.
    let accepted = Arc::new(AtomicU64::new(0));
    let limited = Arc::new(AtomicU64::new(0));
    let without_retry_after = Arc::new(AtomicU64::new(0));
    let stop_at = Instant::now() + Duration::from_secs(6);
    let mut tasks = Vec::new();
    for n in 0..8u8 {
        let flood = api.with_client(
            client_from(std::net::Ipv4Addr::new(127, 0, 2, n + 1))
                .build()
                .unwrap(),
        );
        let (accepted, limited, missing) = (
            accepted.clone(),
            limited.clone(),
            without_retry_after.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let body: Vec<_> = (0..10)
                .map(|_| serde_json::json!({"command": ["true"], "resources": {"cpus": 0.1}}))
                .collect();
            while Instant::now() < stop_at {
                let r = flood.post("/api/v1/jobs").json(&body).send().await.unwrap();
                match r.status().as_u16() {
                    201 => {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    429 => {
                        limited.fetch_add(1, Ordering::Relaxed);
                        if !r.headers().contains_key("retry-after") {
                            missing.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    s => panic!("flood answered {s}"),
                }
            }
        }));
    }
    // The first jobs' states, in one request (the checker has its own address and rate).
    let last_first = *first.iter().max().unwrap();
    let first_done = |api: Api| async move {
        let v: serde_json::Value = api
            .get(&format!("/api/v1/jobs?before={}&limit=200", last_first + 1))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let jobs = v["jobs"].as_array()?;
        (jobs.len() == 200 && jobs.iter().all(|j| j["state"] == "succeeded")).then_some(())
    };
    let flood_start = Instant::now();
    let mut done_during_flood = None;
    let mut peak = baseline;
    while Instant::now() < stop_at {
        peak = peak.max(rss_kb(pid));
        if done_during_flood.is_none() && first_done(api.clone()).await.is_some() {
            done_during_flood = Some(flood_start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (ok, refused) = (
        accepted.load(Ordering::Relaxed),
        limited.load(Ordering::Relaxed),
    );
    eprintln!(
        "overload: {} requests accepted, {refused} refused with 429 ({:.1}x offered), server \
         RSS {baseline} kB before, {peak} kB peak; the 200 jobs accepted before finished {:?} \
         into the 6 s flood",
        ok,
        (ok + refused) as f64 / ok.max(1) as f64,
        done_during_flood
    );
    // The jobs accepted before the flood kept being scheduled: all done while it went on.
    assert!(
        done_during_flood.is_some(),
        "accepted work stalled under overload"
    );
    let _ = first;
    assert!(
        refused >= ok * 9,
        "at least 10x offered: {ok} accepted, {refused} refused"
    );
    assert_eq!(without_retry_after.load(Ordering::Relaxed), 0);
    assert!(
        peak < baseline + 64 * 1024,
        "memory bounded: {baseline} -> {peak} kB"
    );
    drop(c);
}

//! The scheduler's ceiling without process cost: simulated agents (real protocol, attempts
//! succeed on assignment) and batched submissions; jobs/s from the first submission to the
//! last result acknowledged (acknowledged = committed by the server).

use crate::sim_agents::{self, Stats};
use futures_util::stream::{self, StreamExt};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    agents: sim_agents::AgentArgs,
    #[arg(long, env = "ZENITH_TOKEN")]
    token: String,
    #[arg(long, default_value_t = 200_000)]
    jobs: u64,
    #[arg(long, default_value_t = 5_000)]
    batch: u64,
    #[arg(long, default_value_t = 4)]
    in_flight: usize,
}

pub async fn run(a: Args) -> anyhow::Result<serde_json::Value> {
    let stats = Arc::new(Stats::default());
    sim_agents::start(&a.agents, stats.clone()).await?;
    let http = crate::api_client(&a.token)?;
    let url = format!("{}/api/v1/jobs", a.agents.server);
    let batch: Vec<serde_json::Value> = (0..a.batch)
        .map(|_| serde_json::json!({"command": ["true"], "resources": {"cpus": 0.01}}))
        .collect();
    let body = serde_json::to_vec(&batch)?;
    let batches = a.jobs.div_ceil(a.batch);
    let start = Instant::now();
    let sent: Vec<anyhow::Result<()>> = stream::iter(0..batches)
        .map(|_| {
            let (http, url, body) = (http.clone(), url.clone(), body.clone());
            async move {
                // A full queue answers 429: wait as told and send again.
                loop {
                    let r = http
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await?;
                    if r.status().as_u16() == 429 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                    anyhow::ensure!(r.status().is_success(), "submit: {}", r.text().await?);
                    return Ok(());
                }
            }
        })
        .buffer_unordered(a.in_flight)
        .collect()
        .await;
    for r in sent {
        r?;
    }
    let submitted = start.elapsed().as_secs_f64();
    let total = batches * a.batch;
    let deadline = Instant::now() + Duration::from_secs(600);
    while stats.acked.load(Ordering::Relaxed) < total {
        anyhow::ensure!(Instant::now() < deadline, "results never all acknowledged");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(serde_json::json!({
        "jobs": total, "agents": a.agents.agents, "seconds": secs,
        "submitted_seconds": submitted, "per_second": total as f64 / secs,
        "reports": stats.reports.load(Ordering::Relaxed),
    }))
}

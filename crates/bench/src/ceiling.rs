//! The scheduler's ceiling without process cost: simulated agents (real protocol, attempts
//! succeed on assignment) and batched submissions; jobs/s from the first submission to the
//! last result acknowledged (acknowledged = committed by the server). With `--namespaces N
//! --users M` the jobs come from N×M submitters (a token each, made first), batches taking
//! turns, so the pass orders N·M parties by fair share.

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
    /// Namespaces the jobs are spread over.
    #[arg(long, default_value_t = 1)]
    namespaces: u32,
    /// Users (submitters, a token each) per namespace.
    #[arg(long, default_value_t = 1)]
    users: u32,
}

/// A token per (namespace, user), made with the admin token; one party: the admin itself.
async fn party_tokens(a: &Args) -> anyhow::Result<Vec<(String, String)>> {
    if a.namespaces * a.users <= 1 {
        return Ok(vec![("default".into(), a.token.clone())]);
    }
    let http = crate::api_client(&a.token)?;
    let url = format!("{}/api/v1/tokens", a.agents.server);
    let mut out = Vec::new();
    for n in 0..a.namespaces {
        for u in 0..a.users {
            let ns = format!("ns{n}");
            let req = serde_json::json!({"name": format!("u{u}-{ns}"), "role": "submitter",
                "namespaces": [ns]});
            let r = http.post(&url).json(&req).send().await?;
            anyhow::ensure!(r.status().is_success(), "token: {}", r.text().await?);
            let made: serde_json::Value = r.json().await?;
            let token = made["token"].as_str().unwrap_or_default().to_string();
            out.push((ns, token));
        }
    }
    Ok(out)
}

pub async fn run(a: Args) -> anyhow::Result<serde_json::Value> {
    let stats = Arc::new(Stats::default());
    sim_agents::start(&a.agents, stats.clone()).await?;
    let parties = party_tokens(&a).await?;
    let url = format!("{}/api/v1/jobs", a.agents.server);
    // Each party's batch is its own body and client (its token).
    let per_batch = a.batch.min(a.jobs.div_ceil(parties.len() as u64)).max(1);
    let mut senders = Vec::with_capacity(parties.len());
    for (ns, token) in &parties {
        let batch: Vec<serde_json::Value> = (0..per_batch)
            .map(|_| {
                serde_json::json!({"command": ["true"], "resources": {"cpus": 0.01},
                    "namespace": ns})
            })
            .collect();
        senders.push((crate::api_client(token)?, serde_json::to_vec(&batch)?));
    }
    let batches = a.jobs.div_ceil(per_batch);
    let start = Instant::now();
    let sent: Vec<anyhow::Result<()>> = stream::iter(0..batches)
        .map(|i| {
            let (http, body) = senders[i as usize % senders.len()].clone();
            let url = url.clone();
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
    let total = batches * per_batch;
    let deadline = Instant::now() + Duration::from_secs(600);
    while stats.acked.load(Ordering::Relaxed) < total {
        anyhow::ensure!(Instant::now() < deadline, "results never all acknowledged");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(serde_json::json!({
        "jobs": total, "agents": a.agents.agents, "seconds": secs,
        "parties": parties.len(), "batch": per_batch,
        "submitted_seconds": submitted, "per_second": total as f64 / secs,
        "reports": stats.reports.load(Ordering::Relaxed),
    }))
}

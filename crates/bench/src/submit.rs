//! Separate submissions: one job per request, IN_FLIGHT requests at a time over pooled
//! keep-alive connections. Jobs carry a constraint no node has, so they stay queued and the
//! figure is the API and the durable commit, not the agents.

use futures_util::stream::{self, StreamExt};
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    api: crate::ApiArgs,
    #[arg(long, default_value_t = 20_000)]
    count: u32,
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
}

pub async fn run(a: Args) -> anyhow::Result<serde_json::Value> {
    let http = crate::api_client(&a.api.token)?;
    let url = format!("{}/api/v1/jobs", a.api.server);
    let body = serde_json::to_vec(&serde_json::json!({
        "command": ["true"], "constraints": ["bench=never"],
    }))?;
    let start = Instant::now();
    let results: Vec<anyhow::Result<f64>> = stream::iter(0..a.count)
        .map(|_| {
            let (http, url, body) = (http.clone(), url.clone(), body.clone());
            async move {
                let t = Instant::now();
                let r = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                anyhow::ensure!(r.status().is_success(), "submit: {}", r.status());
                Ok(t.elapsed().as_secs_f64() * 1000.0)
            }
        })
        .buffer_unordered(a.in_flight)
        .collect()
        .await;
    let secs = start.elapsed().as_secs_f64();
    let mut ms = Vec::with_capacity(results.len());
    for r in results {
        ms.push(r?);
    }
    Ok(serde_json::json!({
        "count": a.count, "in_flight": a.in_flight, "seconds": secs,
        "per_second": a.count as f64 / secs, "request": crate::percentiles(ms),
    }))
}

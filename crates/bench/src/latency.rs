//! Submit-to-start on an idle cluster: each job runs `zenith-stamp FILE` (built beside this
//! binary), which writes the wall clock as its first act; latency = stamp - the clock just
//! before the submit request.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    api: crate::ApiArgs,
    #[arg(long, default_value_t = 200)]
    count: u32,
    /// Directory for the stamp files.
    #[arg(long)]
    dir: std::path::PathBuf,
}

fn now_ns() -> anyhow::Result<u128> {
    Ok(SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos())
}

pub async fn run(a: Args) -> anyhow::Result<serde_json::Value> {
    let http = crate::api_client(&a.api.token)?;
    let me = std::env::current_exe()?.with_file_name("zenith-stamp");
    let mut ms = Vec::with_capacity(a.count as usize);
    for i in 0..a.count {
        let file = a.dir.join(format!("stamp-{i}"));
        let body = serde_json::json!({
            "command": [me.to_string_lossy(), file.to_string_lossy()],
            "resources": {"cpus": 0.1},
        });
        let t0 = now_ns()?;
        let r = http
            .post(format!("{}/api/v1/jobs", a.api.server))
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "submit: {}", r.text().await?);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let started: u128 = loop {
            if let Ok(text) = tokio::fs::read_to_string(&file).await {
                if let Ok(v) = text.trim().parse() {
                    break v;
                }
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "job {i} never started"
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        };
        ms.push(started.saturating_sub(t0) as f64 / 1e6);
        // Let the job end so the next one meets an idle cluster.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(crate::percentiles(ms))
}

//! Load generators and measurements driven by `bench/run.py`. Each subcommand prints one JSON
//! object on stdout. A benchmark measures wall time, so this crate reads the clock directly.
#![allow(clippy::disallowed_methods)]

mod ceiling;
mod engine_work;
mod latency;
mod sim_agents;
mod spawn;
mod submit;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "zenith-bench",
    about = "Zenith benchmark load generators (see bench/run.py)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Raw process spawning from a Rust loop: COUNT runs of a command, CONCURRENCY at a time.
    Spawn(spawn::Args),
    /// Submit-to-start latency on an idle cluster, one job at a time.
    Latency(latency::Args),
    /// Separate submissions through the API, many in flight.
    Submit(submit::Args),
    /// Simulated agents speaking the real protocol; attempts "finish" as soon as assigned.
    SimAgents(sim_agents::AgentArgs),
    /// Scheduler ceiling: jobs submitted, scheduled, committed and completed by simulated agents.
    Ceiling(ceiling::Args),
    /// A fixed engine workload (submit, place, finish) for instruction counts under callgrind.
    EngineWork(engine_work::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let out = match cli.cmd {
        Cmd::Spawn(a) => spawn::run(a)?,
        Cmd::EngineWork(a) => engine_work::run(a),
        other => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                match other {
                    Cmd::Latency(a) => latency::run(a).await,
                    Cmd::Submit(a) => submit::run(a).await,
                    Cmd::SimAgents(a) => sim_agents::run(a).await,
                    Cmd::Ceiling(a) => ceiling::run(a).await,
                    _ => unreachable!("handled above"),
                }
            })?
        }
    };
    println!("{out}");
    Ok(())
}

/// Percentiles of a sample in milliseconds.
pub fn percentiles(mut ms: Vec<f64>) -> serde_json::Value {
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| -> f64 {
        if ms.is_empty() {
            return 0.0;
        }
        let i = ((ms.len() as f64 - 1.0) * q).round() as usize;
        (ms[i.min(ms.len() - 1)] * 1000.0).round() / 1000.0
    };
    serde_json::json!({
        "count": ms.len(), "p50_ms": at(0.5), "p90_ms": at(0.9), "p99_ms": at(0.99), "max_ms": at(1.0),
    })
}

/// Where the API is and the admin token.
#[derive(clap::Args)]
pub struct ApiArgs {
    #[arg(long, env = "ZENITH_SERVER")]
    pub server: String,
    #[arg(long, env = "ZENITH_TOKEN")]
    pub token: String,
}

/// An HTTP client for the API with the admin token.
pub fn api_client(token: &str) -> anyhow::Result<reqwest::Client> {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))?,
    );
    Ok(reqwest::Client::builder()
        .default_headers(h)
        .pool_max_idle_per_host(1024)
        .build()?)
}

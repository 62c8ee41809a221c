//! The machine's limit for trivial tasks: fork+exec+wait of a command, N at a time.

use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 10_000)]
    count: u64,
    #[arg(long, default_value_t = 2)]
    concurrency: u64,
    #[arg(long, default_value = "true")]
    command: String,
}

pub fn run(a: Args) -> anyhow::Result<serde_json::Value> {
    let next = std::sync::atomic::AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| -> anyhow::Result<()> {
        let workers: Vec<_> = (0..a.concurrency.max(1))
            .map(|_| {
                s.spawn(|| -> anyhow::Result<()> {
                    while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < a.count {
                        std::process::Command::new(&a.command).status()?;
                    }
                    Ok(())
                })
            })
            .collect();
        for w in workers {
            w.join()
                .map_err(|_| anyhow::anyhow!("spawn worker panicked"))??;
        }
        Ok(())
    })?;
    let secs = start.elapsed().as_secs_f64();
    Ok(serde_json::json!({
        "count": a.count, "concurrency": a.concurrency, "seconds": secs,
        "per_second": a.count as f64 / secs,
    }))
}

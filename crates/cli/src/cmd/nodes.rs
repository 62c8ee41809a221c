//! `zenith nodes`.

use super::Conn;
use crate::output::{self, Format};
use clap::Args;

#[derive(Args, Debug)]
pub struct NodesArgs {
    #[command(flatten)]
    conn: Conn,
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    format: Format,
}

pub async fn run(a: NodesArgs) -> anyhow::Result<u8> {
    let client = a.conn.client()?;
    let list = client.nodes().await?;
    if a.format == Format::Json {
        output::json(&list)?;
        return Ok(0);
    }
    let now = output::now_ms();
    let rows: Vec<Vec<String>> = list
        .nodes
        .iter()
        .map(|n| {
            let cpus = |m: u64| format!("{}", m as f64 / 1000.0);
            vec![
                n.id.to_string(),
                n.name.clone(),
                n.state.as_str().to_string(),
                format!(
                    "{}/{}",
                    cpus(n.free.cpu_millis),
                    cpus(n.resources.cpu_millis)
                ),
                format!(
                    "{}/{}",
                    output::bytes(n.free.memory),
                    output::bytes(n.resources.memory)
                ),
                match n.queued {
                    0 => n.running.to_string(),
                    q => format!("{} +{q} queued", n.running),
                },
                output::ago(now, n.last_heartbeat),
                n.labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
            ]
        })
        .collect();
    output::table(
        &[
            "ID",
            "NAME",
            "STATE",
            "CPUS FREE",
            "MEMORY FREE",
            "RUNNING",
            "HEARTBEAT",
            "LABELS",
        ],
        &rows,
    );
    Ok(0)
}

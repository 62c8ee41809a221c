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
    if a.format.is_data() {
        output::data(a.format, &list)?;
        return Ok(0);
    }
    let now = output::now_ms();
    // GPUs get a column when some node offers them.
    let gpus = list.nodes.iter().any(|n| n.resources.gpus > 0);
    let rows: Vec<Vec<String>> = list
        .nodes
        .iter()
        .map(|n| {
            let cpus = |m: u64| format!("{}", m as f64 / 1000.0);
            let mut row = vec![
                n.id.to_string(),
                n.name.clone(),
                match (n.revoked, n.disk_full) {
                    (true, _) => "revoked".to_string(),
                    (false, true) => format!("{} (disk full)", n.state.as_str()),
                    (false, false) if n.schedule != "open" && n.state.as_str() == "ready" => {
                        n.schedule.clone()
                    }
                    (false, false) => n.state.as_str().to_string(),
                },
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
            ];
            if gpus {
                row.push(format!("{}/{}", n.free.gpus, n.resources.gpus));
            }
            row.extend([
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
            ]);
            row
        })
        .collect();
    let mut header = vec!["ID", "NAME", "STATE", "CPUS FREE", "MEMORY FREE"];
    if gpus {
        header.push("GPUS FREE");
    }
    header.extend(["RUNNING", "HEARTBEAT", "LABELS"]);
    output::table(&header, &rows);
    Ok(0)
}

#[derive(clap::Subcommand, Debug)]
pub enum NodeVerb {
    /// Cut a node off at once: its credential is refused from now on, its running jobs are
    /// requeued elsewhere, and it cannot join again under its node ID.
    Revoke(RevokeArgs),
    /// No new work on the node; what runs there goes on.
    Cordon(RevokeArgs),
    /// Open the node to new work again (ends a cordon or drain).
    Uncordon(RevokeArgs),
    /// Cordon the node; with --deadline, attempts still running then are stopped and
    /// requeued elsewhere (outcome `evicted`).
    Drain(DrainArgs),
    /// Forget a node that runs nothing (drain it first); its agent may register again.
    Remove(RevokeArgs),
}

#[derive(Args, Debug)]
pub struct DrainArgs {
    /// Node ID, or the name of one node.
    node: String,
    /// Requeue what still runs after this long, e.g. 1h, 30m (default: let it finish).
    #[arg(long, value_parser = zenith_model::DurationMs::parse)]
    deadline: Option<zenith_model::DurationMs>,
    #[command(flatten)]
    conn: Conn,
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    format: Format,
}

#[derive(Args, Debug)]
pub struct RevokeArgs {
    /// Node ID, or the name of one node.
    node: String,
    #[command(flatten)]
    conn: Conn,
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    format: Format,
}

pub async fn node(verb: NodeVerb) -> anyhow::Result<u8> {
    let (a, action, deadline) = match verb {
        NodeVerb::Revoke(a) => return revoke(a).await,
        NodeVerb::Cordon(a) => (a, "cordon", None),
        NodeVerb::Uncordon(a) => (a, "uncordon", None),
        NodeVerb::Remove(a) => (a, "remove", None),
        NodeVerb::Drain(d) => (
            RevokeArgs {
                node: d.node,
                conn: d.conn,
                format: d.format,
            },
            "drain",
            d.deadline,
        ),
    };
    let v = a
        .conn
        .client()?
        .node_action(&a.node, action, deadline)
        .await?;
    if a.format.is_data() {
        output::data(a.format, &v)?;
        return Ok(0);
    }
    let name = output::safe(&v.name);
    match action {
        "remove" => out!("node {name} removed"),
        _ => {
            let until = v
                .drain_deadline
                .filter(|d| *d < u64::MAX / 2)
                .map(|d| format!(" (running work requeued at {})", output::when(d)))
                .unwrap_or_default();
            out!(
                "node {name} is {}: {} running{until}",
                v.schedule,
                v.running + v.queued
            )
        }
    }
    Ok(0)
}

async fn revoke(a: RevokeArgs) -> anyhow::Result<u8> {
    let v = a.conn.client()?.revoke_node(&a.node).await?;
    if a.format.is_data() {
        output::data(a.format, &v)?;
    } else {
        let jobs = match v.requeued {
            1 => "1 running attempt requeued".to_string(),
            n => format!("{n} running attempts requeued"),
        };
        println!(
            "node {} ({}) revoked: {jobs}",
            output::safe(v.node.as_str()),
            output::safe(&v.name)
        );
    }
    Ok(0)
}

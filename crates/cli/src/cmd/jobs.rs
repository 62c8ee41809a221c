//! `zenith jobs`: newest first, with filters.

use super::Conn;
use crate::output::{self, Format};
use clap::Args;
use zenith_model::JobState;

#[derive(Args, Debug)]
pub struct JobsArgs {
    #[command(flatten)]
    conn: Conn,
    /// Only jobs in this state: queued, running, succeeded, failed, cancelled.
    #[arg(long, value_parser = |s: &str| JobState::parse(s).ok_or(format!("unknown state {s:?}")))]
    state: Option<JobState>,
    /// Only jobs of this queue.
    #[arg(long)]
    queue: Option<String>,
    /// Most jobs to show (1-1000).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(1..=1000))]
    limit: u16,
    /// Jobs of every namespace this token reads.
    #[arg(long, short = 'A', conflicts_with = "namespace")]
    all_namespaces: bool,
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    format: Format,
}

pub async fn run(a: JobsArgs) -> anyhow::Result<u8> {
    let client = a.conn.client()?;
    let ns = match a.all_namespaces {
        true => Some("*"),
        false => a.conn.namespace.as_deref(),
    };
    let list = client
        .list_in(ns, a.state, a.queue.as_deref(), None, a.limit as usize)
        .await?;
    if a.format.is_data() {
        output::data(a.format, &list)?;
        return Ok(0);
    }
    let now = output::now_ms();
    // Wide: who submitted it, its priority, the task counts by state and when it ended.
    let wide = a.format == output::Format::Wide;
    let rows: Vec<Vec<String>> = list
        .jobs
        .iter()
        .map(|j| {
            let mut row = vec![j.id.to_string()];
            if a.all_namespaces || wide {
                row.push(j.namespace.clone());
            }
            row.extend([
                j.name.clone(),
                j.state.to_string(),
                format!("{}/{}", j.tasks.succeeded, j.task_count),
                j.queue.clone(),
                output::ago(now, j.created_at),
            ]);
            if wide {
                let t = &j.tasks;
                row.extend([
                    j.submitter.clone(),
                    j.priority.to_string(),
                    format!(
                        "{} queued, {} running, {} failed, {} cancelled",
                        t.queued, t.running, t.failed, t.cancelled
                    ),
                    j.finished_at
                        .map(|f| output::ago(now, f))
                        .unwrap_or_default(),
                ]);
            }
            row.push(j.reason.clone().unwrap_or_default());
            row
        })
        .collect();
    let mut header = vec!["ID"];
    if a.all_namespaces || wide {
        header.push("NAMESPACE");
    }
    header.extend(["NAME", "STATE", "DONE", "QUEUE", "SUBMITTED"]);
    if wide {
        header.extend(["USER", "PRIORITY", "TASKS", "ENDED"]);
    }
    header.push("REASON");
    output::table(&header, &rows);
    Ok(0)
}

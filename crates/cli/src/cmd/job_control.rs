//! `zenith job hold|release|update|requeue|delete ID...`: change jobs.

use super::{parse_job_id, Conn};
use crate::output::{self, Format};
use clap::Args;
use zenith_model::JobId;
use zenith_protocol::api::{JobControlled, JobUpdateRequest, RequeueRequest};

/// Job IDs to act on in turn (hold, release, delete).
#[derive(Args, Debug)]
pub struct JobIdsArgs {
    #[command(flatten)]
    conn: Conn,
    #[arg(value_parser = parse_job_id, required = true)]
    ids: Vec<JobId>,
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    format: Format,
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    #[command(flatten)]
    conn: Conn,
    #[arg(value_parser = parse_job_id)]
    id: JobId,
    /// New priority (higher runs first within a queue).
    #[arg(long, allow_hyphen_values = true)]
    priority: Option<i32>,
    /// Move it to this queue.
    #[arg(long)]
    queue: Option<String>,
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    format: Format,
}

/// Holds (`hold: true`) or releases each job in turn; stops at the first refusal.
pub async fn hold(a: JobIdsArgs, hold: bool) -> anyhow::Result<u8> {
    let client = a.conn.client()?;
    let mut done = Vec::with_capacity(a.ids.len());
    for id in a.ids {
        let r = match hold {
            true => client.hold(id).await?,
            false => client.release(id).await?,
        };
        if !a.format.is_data() {
            let what = if r.hold { "held" } else { "released" };
            out!("job {} {what} ({})", r.id, r.state);
        }
        done.push(r);
    }
    if a.format.is_data() {
        output::data(a.format, &done)?;
    }
    Ok(0)
}

pub async fn update(a: UpdateArgs) -> anyhow::Result<u8> {
    let req = JobUpdateRequest {
        priority: a.priority,
        queue: a.queue,
    };
    let r: JobControlled = a.conn.client()?.update_job(a.id, &req).await?;
    match a.format {
        Format::Json | Format::Yaml => output::data(a.format, &r)?,
        _ => out!(
            "job {} ({}): queue {}, priority {}",
            r.id,
            r.state,
            r.queue,
            r.priority
        ),
    }
    Ok(0)
}

#[derive(Args, Debug)]
pub struct RequeueArgs {
    #[command(flatten)]
    conn: Conn,
    #[arg(value_parser = parse_job_id)]
    id: JobId,
    /// These task indices, written as an array is (`3`, `1,4-7`).
    #[arg(long, conflicts_with = "all")]
    tasks: Option<String>,
    /// Every ended task, succeeded ones too.
    #[arg(long)]
    all: bool,
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    format: Format,
}

pub async fn requeue(a: RequeueArgs) -> anyhow::Result<u8> {
    let req = RequeueRequest {
        tasks: a.tasks,
        all: a.all,
    };
    let r = a.conn.client()?.requeue(a.id, &req).await?;
    match a.format {
        Format::Json | Format::Yaml => output::data(a.format, &r)?,
        _ => out!(
            "job {} requeued: {} ({})",
            r.id,
            match r.requeued {
                1 => "1 task".to_string(),
                n => format!("{n} tasks"),
            },
            r.state
        ),
    }
    Ok(0)
}

/// Deletes each job in turn; stops at the first refusal.
pub async fn delete(a: JobIdsArgs) -> anyhow::Result<u8> {
    let client = a.conn.client()?;
    let mut done = Vec::with_capacity(a.ids.len());
    for id in a.ids {
        let r = client.delete_job(id).await?;
        if !a.format.is_data() {
            out!("job {} deleted", r.id);
        }
        done.push(r);
    }
    if a.format.is_data() {
        output::data(a.format, &done)?;
    }
    Ok(0)
}

//! `zenith job show|logs|cancel|wait|explain|hold|release|update ID`.

use super::{parse_job_id, Conn};
use crate::output::{self, Format};
use clap::{Args, Subcommand};
use futures_util::StreamExt;
use std::io::Write;
use zenith_client::Output;
use zenith_model::{DurationMs, JobId};

#[derive(Subcommand, Debug)]
pub enum JobVerb {
    /// Show a job with its attempts.
    Show(ShowArgs),
    /// Print a task's output.
    Logs(LogsArgs),
    /// Cancel a queued or running job.
    Cancel(IdArgs),
    /// Wait until jobs finish: exit 0 when all succeeded, else the job's own code (see
    /// --timeout).
    Wait(WaitArgs),
    /// Say why a queued job is not running.
    Explain(ShowArgs),
    /// Keep live jobs' queued tasks from starting (what runs goes on).
    Hold(super::job_control::JobIdsArgs),
    /// Let held jobs run again.
    Release(super::job_control::JobIdsArgs),
    /// Change a live job's priority or queue.
    Update(super::job_control::UpdateArgs),
    /// Run ended tasks again: by default the ones that did not succeed.
    Requeue(super::job_control::RequeueArgs),
    /// Forget ended jobs with their attempts and logs.
    Delete(super::job_control::JobIdsArgs),
}

#[derive(Args, Debug)]
pub struct IdArgs {
    #[command(flatten)]
    conn: Conn,
    #[arg(value_parser = parse_job_id)]
    id: JobId,
}

/// A job ID and the output format (`show`, `explain`).
#[derive(Args, Debug)]
pub struct ShowArgs {
    #[command(flatten)]
    conn: Conn,
    #[arg(value_parser = parse_job_id)]
    id: JobId,
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    format: Format,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    #[command(flatten)]
    conn: Conn,
    #[arg(value_parser = parse_job_id)]
    id: JobId,
    /// Task index (default: the job's first task).
    #[arg(long)]
    task: Option<u32>,
    /// Keep streaming until the task's attempt ends (waits for it to start).
    #[arg(long, short = 'f')]
    follow: bool,
    /// Print stderr instead of stdout.
    #[arg(long)]
    stderr: bool,
}

#[derive(Args, Debug)]
pub struct WaitArgs {
    #[command(flatten)]
    conn: Conn,
    #[arg(value_parser = parse_job_id, required = true)]
    ids: Vec<JobId>,
    /// Give up after this long (exit 124). Otherwise the exit status is 0 when every job
    /// succeeded, a single one-task job's own exit code (128+N for signal N) when it failed,
    /// and 1 for any other failure.
    #[arg(long, value_parser = DurationMs::parse)]
    timeout: Option<DurationMs>,
}

pub async fn run(verb: JobVerb) -> anyhow::Result<u8> {
    match verb {
        JobVerb::Show(a) => show(a).await,
        JobVerb::Logs(a) => logs(a).await,
        JobVerb::Cancel(a) => {
            a.conn.client()?.cancel(a.id).await?;
            out!("cancelling job {}", a.id);
            Ok(0)
        }
        JobVerb::Wait(a) => wait(a).await,
        JobVerb::Hold(a) => super::job_control::hold(a, true).await,
        JobVerb::Release(a) => super::job_control::hold(a, false).await,
        JobVerb::Update(a) => super::job_control::update(a).await,
        JobVerb::Requeue(a) => super::job_control::requeue(a).await,
        JobVerb::Delete(a) => super::job_control::delete(a).await,
        JobVerb::Explain(a) => {
            let e = a.conn.client()?.explain(a.id).await?;
            if a.format.is_data() {
                output::data(a.format, &e)?;
                return Ok(0);
            }
            out!(
                "job {} {}: {}",
                e.id,
                output::job_state_phrase(e.state),
                output::safe(&e.message)
            );
            Ok(0)
        }
    }
}

async fn show(a: ShowArgs) -> anyhow::Result<u8> {
    let j = a.conn.client()?.get(a.id).await?;
    if a.format.is_data() {
        output::data(a.format, &j)?;
        return Ok(0);
    }
    let s = &j.summary;
    out!("id:        {}", s.id);
    out!("name:      {}", output::safe(&s.name));
    out!("state:     {}", s.state);
    if let Some(r) = &s.reason {
        out!("reason:    {}", output::safe(r));
    }
    out!("queue:     {} (priority {})", s.queue, s.priority);
    if j.spec.hold {
        out!("held:      yes (zenith job release {})", s.id);
    }
    if !j.spec.after.is_empty() {
        let after: Vec<String> = j.spec.after.iter().map(ToString::to_string).collect();
        out!("after:     {}", after.join(", "));
    }
    if let Some(g) = &j.spec.gang {
        out!(
            "gang:      {} nodes × {} task(s) each, started together",
            g.nodes,
            g.tasks_per_node
        );
    }
    out!("command:   {}", output::safe(&j.spec.command.join(" ")));
    out!(
        "tasks:     {} total, {} queued, {} running, {} succeeded, {} failed, {} cancelled",
        s.task_count,
        s.tasks.queued,
        s.tasks.running,
        s.tasks.succeeded,
        s.tasks.failed,
        s.tasks.cancelled
    );
    out!("attempts:  {}", j.attempts_total);
    if !j.attempts.is_empty() {
        let now = output::now_ms();
        let rows: Vec<Vec<String>> = j
            .attempts
            .iter()
            .map(|at| {
                let dur = at.finished_at.unwrap_or(now).saturating_sub(at.started_at);
                vec![
                    at.id.to_string(),
                    at.task.to_string(),
                    at.node.to_string(),
                    at.state.clone(),
                    at.exit_code
                        .map(|c| c.to_string())
                        .or(at.signal.map(|s| format!("signal {s}")))
                        .unwrap_or_default(),
                    format!("{:.3}s", dur as f64 / 1000.0),
                    at.reason.clone().unwrap_or_default(),
                ]
            })
            .collect();
        out!();
        output::table(
            &[
                "ATTEMPT", "TASK", "NODE", "STATE", "EXIT", "DURATION", "REASON",
            ],
            &rows,
        );
    }
    Ok(0)
}

async fn logs(a: LogsArgs) -> anyhow::Result<u8> {
    let client = a.conn.client()?;
    let out = if a.stderr {
        Output::Stderr
    } else {
        Output::Stdout
    };
    let mut stream = Box::pin(client.logs(a.id, a.task, out, a.follow).await?);
    let mut stdout = std::io::stdout().lock();
    while let Some(chunk) = stream.next().await {
        stdout.write_all(&chunk?)?;
        stdout.flush()?;
    }
    Ok(0)
}

async fn wait(a: WaitArgs) -> anyhow::Result<u8> {
    super::wait::run(a.conn.client()?, a.ids, a.timeout).await
}

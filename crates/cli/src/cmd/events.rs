//! `zenith events`: committed transitions as they happen.

use super::{parse_job_id, Conn};
use crate::output::Format;
use clap::{Args, ValueEnum};
use futures_util::StreamExt;
use zenith_model::JobId;
use zenith_protocol::api::Event;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Kind {
    Job,
    Attempt,
    Node,
    Run,
    Step,
}

#[derive(Args, Debug)]
pub struct EventsArgs {
    #[command(flatten)]
    conn: Conn,
    /// Only events of this job.
    #[arg(long, value_parser = parse_job_id)]
    job: Option<JobId>,
    /// Only events of this flow run (its run and step transitions).
    #[arg(long)]
    run: Option<u64>,
    /// Only these kinds (repeatable).
    #[arg(long, value_enum)]
    kind: Vec<Kind>,
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    format: Format,
}

/// `: reason`, or nothing.
fn suffix(reason: &Option<String>) -> String {
    reason
        .as_ref()
        .map(|r| format!(": {r}"))
        .unwrap_or_default()
}

/// One line per event for people.
pub fn describe(e: &Event) -> String {
    match e {
        Event::Job {
            job,
            state,
            tasks,
            reason,
        } => {
            let done = tasks.succeeded + tasks.failed + tasks.cancelled;
            let why = suffix(reason);
            format!(
                "job {job} {state} ({done}/{} tasks done){why}",
                tasks.total()
            )
        }
        Event::Attempt {
            job,
            task,
            attempt,
            node,
            state,
            reason,
            ..
        } => {
            let why = suffix(reason);
            format!("attempt {attempt} of job {job} task {task} on {node} {state}{why}")
        }
        Event::Node { node, state } => format!("node {node} {}", state.as_str()),
        Event::Run {
            run,
            flow,
            state,
            reason,
        } => {
            let why = suffix(reason);
            format!("run {run} of flow {flow} {state}{why}")
        }
        Event::Step {
            run,
            step,
            state,
            reason,
        } => {
            let why = suffix(reason);
            format!("run {run} step {step} {state}{why}")
        }
        Event::Lagged { missed } => format!("(fell behind: {missed} batches of events missed)"),
    }
}

pub async fn run(a: EventsArgs) -> anyhow::Result<u8> {
    let client = a.conn.client()?;
    let kinds: Vec<&str> = a
        .kind
        .iter()
        .map(|k| match k {
            Kind::Job => "job",
            Kind::Attempt => "attempt",
            Kind::Node => "node",
            Kind::Run => "run",
            Kind::Step => "step",
        })
        .collect();
    let mut stream = Box::pin(client.events_filtered(a.job, a.run, &kinds).await?);
    while let Some(e) = stream.next().await {
        let e = e?;
        match a.format {
            Format::Json | Format::Yaml => crate::output::data_line(a.format, &e)?,
            Format::Table | Format::Wide => out!("{}", crate::output::safe(&describe(&e))),
        }
    }
    Ok(0)
}

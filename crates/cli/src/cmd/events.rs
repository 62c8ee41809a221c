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

/// One line per event for people: its time (UTC), then what changed.
pub fn describe(e: &Event) -> String {
    let (time, what) = match e {
        Event::Job {
            job,
            state,
            tasks,
            reason,
            submitted,
            time,
        } => {
            let done = tasks.succeeded + tasks.failed + tasks.cancelled;
            let why = suffix(reason);
            let total = tasks.total();
            let submitted = if *submitted { "submitted, " } else { "" };
            let what = match total {
                1 => format!("job {job} {submitted}{state}{why}"),
                n => format!("job {job} {submitted}{state} ({done}/{n} tasks done){why}"),
            };
            (*time, what)
        }
        Event::Attempt {
            job,
            task,
            number,
            node,
            node_name,
            state,
            reason,
            time,
            ..
        } => {
            let why = suffix(reason);
            let on = if node_name.is_empty() {
                node.to_string()
            } else {
                node_name.clone()
            };
            let attempt = match number {
                0 => String::new(),
                n => format!(" attempt {n}"),
            };
            (
                *time,
                format!("job {job} task {task}{attempt} on {on} {state}{why}"),
            )
        }
        Event::Node {
            node,
            name,
            state,
            time,
        } => {
            let shown = if name.is_empty() || name == &node.0 {
                node.to_string()
            } else {
                format!("{name} ({node})")
            };
            (*time, format!("node {shown} {}", state.as_str()))
        }
        Event::Run {
            run,
            flow,
            state,
            reason,
            time,
        } => {
            let why = suffix(reason);
            (*time, format!("run {run} of flow {flow} {state}{why}"))
        }
        Event::Step {
            run,
            step,
            state,
            reason,
            time,
        } => {
            let why = suffix(reason);
            (*time, format!("run {run} step {step} {state}{why}"))
        }
        Event::Lagged { missed } => {
            return format!("(fell behind: {missed} batches of events missed)");
        }
    };
    match time {
        0 => what,
        t => format!("{}  {what}", crate::output::rfc3339_ms(t)),
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

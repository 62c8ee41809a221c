//! `zenith run`, `zenith flows` and `zenith flow validate|apply|show|logs|cancel|approve|delete`.

use super::{Conn, UsageError};
use crate::output::{self, Format};
use clap::{Args, Subcommand};
use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use zenith_client::Output;
use zenith_flowspec::{check_all, parse_yaml, Templates, MAX_REPORTED_ERRORS};
use zenith_model::flow::{limits::MAX_SPEC_BYTES, RunId, StepState};
use zenith_model::{DurationMs, JobId};
use zenith_protocol::flows::{RunView, StepView};

/// Parses a run ID argument.
/// A clap `value_parser`: clap prints a String error as given, after the argument's name.
fn parse_run_id(s: &str) -> Result<RunId, String> {
    s.parse::<u64>()
        .map(RunId)
        .map_err(|_| format!("run IDs are positive integers, not {s:?}"))
}

#[derive(Subcommand, Debug)]
pub enum FlowVerb {
    /// Check a flow file without running it (exit 2 with the field at fault when invalid).
    Validate { file: std::path::PathBuf },
    /// Store a flow under its name (replacing one of that name) and activate its schedule.
    Apply(ApplyArgs),
    /// Show a run with its steps.
    Show(ShowArgs),
    /// Print a step's output.
    Logs(LogsArgs),
    /// Cancel a run: pending steps are cancelled, running ones killed.
    Cancel(RunArgs),
    /// Approve a step waiting for approval.
    Approve(ApproveArgs),
    /// Remove an applied flow (its schedule stops; runs already started go on).
    Delete(DeleteArgs),
    /// Print the JSON Schema of the flow spec (for editors; also docs/flow.schema.json).
    Schema,
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    #[command(flatten)]
    conn: Conn,
    file: std::path::PathBuf,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    #[command(flatten)]
    conn: Conn,
    name: String,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    conn: Conn,
    #[arg(value_parser = parse_run_id)]
    run: RunId,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    #[command(flatten)]
    conn: Conn,
    #[arg(value_parser = parse_run_id)]
    run: RunId,
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    format: Format,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    #[command(flatten)]
    conn: Conn,
    #[arg(value_parser = parse_run_id)]
    run: RunId,
    step: String,
    /// Which instance of a fan-out step (needed when it has several).
    #[arg(long)]
    instance: Option<u32>,
    /// Only stdout (by default both: stdout here, stderr on stderr).
    #[arg(long, conflicts_with = "stderr")]
    stdout: bool,
    /// Only stderr (printed on stdout, to be piped).
    #[arg(long)]
    stderr: bool,
    /// Wait for the step to start, then follow its output until it ends.
    #[arg(long, short = 'f')]
    follow: bool,
}

#[derive(Args, Debug)]
pub struct ApproveArgs {
    #[command(flatten)]
    conn: Conn,
    #[arg(value_parser = parse_run_id)]
    run: RunId,
    step: String,
}

/// `zenith run FILE|NAME [-p k=v]... [--wait]`
#[derive(Args, Debug)]
pub struct StartArgs {
    #[command(flatten)]
    conn: Conn,
    /// A flow file, or the name of an applied flow.
    flow: String,
    /// Set a parameter, K=V (repeatable).
    #[arg(short = 'p', long = "param", value_parser = super::parse_kv)]
    params: Vec<(String, String)>,
    /// Show progress and exit 0 when the run succeeds, 1 when it does not.
    #[arg(long)]
    wait: bool,
    /// With --wait: give up after this long (exit 1; the run goes on).
    #[arg(long, value_parser = DurationMs::parse, requires = "wait")]
    timeout: Option<DurationMs>,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    conn: Conn,
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    format: Format,
}

/// Reads a flow file, refusing huge ones before reading them.
fn read_flow(path: &Path) -> anyhow::Result<String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| UsageError(format!("cannot read {}: {e}", path.display())))?;
    if meta.len() > MAX_SPEC_BYTES as u64 {
        return Err(UsageError(format!(
            "{} is larger than {MAX_SPEC_BYTES} bytes",
            path.display()
        ))
        .into());
    }
    Ok(std::fs::read_to_string(path)
        .map_err(|e| UsageError(format!("cannot read {}: {e}", path.display())))?)
}

pub async fn run(verb: FlowVerb) -> anyhow::Result<u8> {
    match verb {
        FlowVerb::Validate { file } => {
            let text = read_flow(&file)?;
            let spec = parse_yaml(&text).map_err(|e| UsageError(e.to_string()))?;
            // Every error at once, each with its path.
            if let Err(errors) = check_all(&spec, &Templates::new()) {
                let mut text = match errors.len() {
                    1 => String::new(),
                    n if n >= MAX_REPORTED_ERRORS => format!("{n} errors (the first {n}):"),
                    n => format!("{n} errors:"),
                };
                for e in &errors {
                    if !text.is_empty() {
                        text.push_str("\n  ");
                    }
                    text.push_str(&e.to_string());
                }
                return Err(UsageError(text).into());
            }
            out!(
                "{}: flow {} is valid ({})",
                file.display(),
                spec.name,
                output::count(spec.steps.len() as u64, "step", "steps")
            );
            Ok(0)
        }
        FlowVerb::Apply(a) => {
            let text = read_flow(&a.file)?;
            let spec = parse_yaml(&text).map_err(|e| UsageError(e.to_string()))?;
            a.conn.client()?.apply_flow(&spec.name, &text).await?;
            match &spec.schedule {
                Some(s) => out!(
                    "applied flow {} (schedule {s} {})",
                    spec.name,
                    spec.timezone.as_deref().unwrap_or("UTC")
                ),
                None => out!("applied flow {}", spec.name),
            }
            Ok(0)
        }
        FlowVerb::Show(a) => {
            let v = a.conn.client()?.run(a.run).await?;
            if a.format.is_data() {
                output::data(a.format, &v)?;
            } else {
                print_run(&v);
            }
            Ok(0)
        }
        FlowVerb::Logs(a) => logs(a).await,
        FlowVerb::Cancel(a) => {
            a.conn.client()?.cancel_run(a.run).await?;
            out!("cancelling run {}", a.run);
            Ok(0)
        }
        FlowVerb::Approve(a) => {
            a.conn.client()?.approve(a.run, &a.step).await?;
            out!("approved step {} of run {}", a.step, a.run);
            Ok(0)
        }
        FlowVerb::Schema => {
            output::json(&zenith_flowspec::json_schema())?;
            Ok(0)
        }
        FlowVerb::Delete(a) => {
            a.conn.client()?.delete_flow(&a.name).await?;
            out!("deleted flow {}", a.name);
            Ok(0)
        }
    }
}

pub async fn start(a: StartArgs) -> anyhow::Result<u8> {
    let client = a.conn.client()?;
    let params: BTreeMap<String, String> = a.params.into_iter().collect();
    let path = Path::new(&a.flow);
    let looks_like_file = path.exists()
        || a.flow.contains('/')
        || a.flow.ends_with(".yaml")
        || a.flow.ends_with(".yml");
    let id = if looks_like_file {
        let text = read_flow(path)?;
        client.run_flow(&text, &params).await?
    } else {
        client.run_applied(&a.flow, &params).await?
    };
    out!("{id}");
    if !a.wait {
        return Ok(0);
    }
    super::run_wait::wait(&client, id, a.timeout).await
}

fn print_run(v: &RunView) {
    out!("id:        {}", v.id);
    out!("flow:      {}", output::safe(&v.name));
    out!("state:     {}", v.state);
    if let Some(r) = &v.reason {
        out!("reason:    {}", output::safe(r));
    }
    out!("trigger:   {}", v.trigger);
    if !v.params.is_empty() {
        let p: Vec<String> = v.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out!("params:    {}", output::safe(&p.join(" ")));
    }
    out!("retries:   {}", v.retries_used);
    out!();
    // Fan-out steps: one summary line (instances are in `-o json` and `flow logs --instance`).
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut i = 0;
    while i < v.steps.len() {
        let s = &v.steps[i];
        if s.index.is_none() {
            let outputs: Vec<String> = s.outputs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            rows.push(vec![
                s.name.clone(),
                s.state.to_string(),
                s.attempts.to_string(),
                outputs.join(" "),
                s.reason.clone().unwrap_or_default(),
            ]);
            i += 1;
            continue;
        }
        let group: Vec<&StepView> = v.steps[i..]
            .iter()
            .take_while(|x| x.name == s.name)
            .collect();
        let failed = group.iter().find(|x| x.state == StepState::Failed);
        rows.push(vec![
            s.name.clone(),
            s.step_state.to_string(),
            group.iter().map(|x| x.attempts).sum::<u32>().to_string(),
            format!(
                "{} items, {} succeeded",
                group.len(),
                group
                    .iter()
                    .filter(|x| x.state == StepState::Succeeded)
                    .count()
            ),
            failed
                .map(|f| {
                    format!(
                        "item {}: {}",
                        f.index.unwrap_or(0),
                        f.reason.clone().unwrap_or_default()
                    )
                })
                .unwrap_or_default(),
        ]);
        i += group.len();
    }
    output::table(&["STEP", "STATE", "ATTEMPTS", "OUTPUTS", "REASON"], &rows);
}

async fn logs(a: LogsArgs) -> anyhow::Result<u8> {
    let client = a.conn.client()?;
    let job = loop {
        let v = client.run(a.run).await?;
        let run_over = v.state.is_final();
        match step_job(&v, &a)? {
            Some(job) => break job,
            // Not started yet: with --follow, wait for it (while the run can still start it).
            None if a.follow && !run_over => {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            None => {
                return Err(UsageError(format!(
                    "step {} has not run (run {} is {})",
                    a.step, a.run, v.state
                ))
                .into())
            }
        }
    };
    let mut streams = Vec::new();
    if !a.stderr {
        streams.push(Output::Stdout);
    }
    if !a.stdout {
        streams.push(Output::Stderr);
    }
    // Both: each to its own descriptor, as the step wrote them, followed together. One asked
    // for: to stdout, to be piped.
    let both = streams.len() == 2;
    let mut merged = futures_util::stream::SelectAll::new();
    for which in streams {
        let s = client.logs(job, None, which, a.follow).await?;
        merged.push(Box::pin(s.map(move |chunk| (which, chunk))));
    }
    while let Some((which, chunk)) = merged.next().await {
        let chunk = chunk?;
        match which {
            Output::Stderr if both => {
                let mut e = std::io::stderr().lock();
                e.write_all(&chunk)?;
                e.flush()?;
            }
            _ => {
                let mut o = std::io::stdout().lock();
                o.write_all(&chunk)?;
                o.flush()?;
            }
        }
    }
    Ok(0)
}

/// The job that ran the step (the instance asked for, when it fans out); `None` while it has
/// not started.
fn step_job(v: &RunView, a: &LogsArgs) -> anyhow::Result<Option<JobId>> {
    let entries: Vec<&StepView> = v.steps.iter().filter(|s| s.name == a.step).collect();
    if entries.is_empty() {
        return Err(UsageError(format!("run {} has no step {:?}", a.run, a.step)).into());
    }
    let fanned = entries.iter().any(|s| s.index.is_some());
    let chosen = match (a.instance, fanned) {
        (Some(i), true) => entries.iter().find(|s| s.index == Some(i)).ok_or_else(|| {
            UsageError(format!(
                "step {} has instances 0 to {}, not {i}",
                a.step,
                entries.len().saturating_sub(1)
            ))
        })?,
        (Some(i), false) if i > 0 => {
            return Err(
                UsageError(format!("step {} does not fan out: no instance {i}", a.step)).into(),
            )
        }
        (None, true) if entries.len() > 1 => {
            return Err(UsageError(format!(
                "step {} has {} instances: pick one with --instance 0..{}",
                a.step,
                entries.len(),
                entries.len() - 1
            ))
            .into())
        }
        _ => entries[0],
    };
    Ok(chosen.job)
}

pub async fn list(a: ListArgs) -> anyhow::Result<u8> {
    let l = a.conn.client()?.flows().await?;
    if a.format.is_data() {
        output::data(a.format, &l)?;
        return Ok(0);
    }
    let now = output::now_ms();
    if !l.flows.is_empty() {
        let rows: Vec<Vec<String>> = l
            .flows
            .iter()
            .map(|f| {
                vec![
                    f.name.clone(),
                    f.steps.to_string(),
                    f.schedule.clone().unwrap_or_else(|| "-".into()),
                    f.timezone.clone().unwrap_or_else(|| "-".into()),
                    f.next_fire
                        .map(|t| in_or_ago(now, t))
                        .unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        output::table(&["FLOW", "STEPS", "SCHEDULE", "TIMEZONE", "NEXT"], &rows);
        out!();
    }
    let rows: Vec<Vec<String>> = l
        .runs
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.name.clone(),
                r.state.to_string(),
                r.trigger.to_string(),
                output::ago(now, r.created_at),
                r.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    output::table(
        &["RUN", "FLOW", "STATE", "TRIGGER", "CREATED", "REASON"],
        &rows,
    );
    Ok(0)
}

/// "in 5s" for a time ahead, "3s ago" for one behind.
fn in_or_ago(now: u64, t: u64) -> String {
    if t >= now {
        format!("in {}", DurationMs((t - now) / 1000 * 1000))
    } else {
        output::ago(now, t)
    }
}

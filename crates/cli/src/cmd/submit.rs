//! `zenith submit [OPTIONS] -- CMD ARGS...` (a program, no shell), or
//! `zenith submit [OPTIONS] SCRIPT [ARGS...]` (a batch script with `#ZENITH` option lines,
//! `submit_script.rs`): prints the new job's ID, or the job with `-o json|yaml`.

use super::{parse_kv, parse_kv_count};
use super::{Conn, UsageError};

use clap::Args;
use std::collections::BTreeMap;
use zenith_model::resources::{parse_bytes, parse_cpus};
use zenith_model::{ArrayRange, Backoff, Constraint, Dependency, DurationMs, JobSpec};

#[derive(Args, Debug, Clone)]
pub struct SubmitArgs {
    #[command(flatten)]
    conn: Conn,
    /// A name for the job (default: the program name).
    #[arg(long)]
    name: Option<String>,
    /// CPU cores per task; fractions allowed (default 1).
    #[arg(long, value_parser = parse_cpus)]
    cpus: Option<u64>,
    /// Memory per task, e.g. 512M, 2G.
    #[arg(long, value_parser = parse_bytes)]
    memory: Option<u64>,
    /// GPUs per task.
    #[arg(long)]
    gpus: Option<u64>,
    /// A custom resource per task, NAME=COUNT (repeatable).
    #[arg(long = "resource", value_parser = parse_kv_count)]
    resources: Vec<(String, u64)>,
    /// Queue name.
    #[arg(long, default_value = "default")]
    queue: String,
    /// Higher runs first within the queue.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    priority: i32,
    /// Retries after a failed attempt.
    #[arg(long, default_value_t = 0)]
    retries: u32,
    /// Backoff between retries: fixed, linear (n × delay) or exponential.
    #[arg(long, default_value = "exponential")]
    backoff: Backoff,
    /// First retry delay, e.g. 1s.
    #[arg(long, value_parser = DurationMs::parse)]
    retry_delay: Option<DurationMs>,
    /// Longest retry delay.
    #[arg(long, value_parser = DurationMs::parse)]
    max_retry_delay: Option<DurationMs>,
    /// Kill an attempt running longer than this, e.g. 30s, 2h.
    #[arg(long, value_parser = DurationMs::parse)]
    timeout: Option<DurationMs>,
    /// A task array, START-END[:STEP][%MAX_RUNNING]: one task per index (every STEP-th),
    /// each with ZENITH_TASK_INDEX; at most MAX_RUNNING of them running at once.
    #[arg(long)]
    array: Option<ArrayRange>,
    /// A gang across N distinct nodes, started all together or not at all (MPI, distributed
    /// training): each task gets ZENITH_RANK, ZENITH_NODE_RANK, ZENITH_LOCAL_RANK,
    /// ZENITH_NUM_NODES, ZENITH_WORLD_SIZE, ZENITH_RENDEZVOUS (with MASTER_ADDR/MASTER_PORT)
    /// and ZENITH_HOSTFILE; if one ends early, the whole gang runs again (or fails).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024), conflicts_with = "array")]
    nodes: Option<u32>,
    /// Tasks of a gang on each of its nodes (each asks --cpus/--memory/--gpus).
    #[arg(long, requires = "nodes", value_parser = clap::value_parser!(u32).range(1..=256))]
    tasks_per_node: Option<u32>,
    /// Run only once job ID has ended as asked: ID[:ok] (succeeded), ID:fail (failed or
    /// cancelled) or ID:any (repeatable; all must hold). If one ends otherwise, this job is
    /// cancelled, saying why.
    #[arg(long)]
    after: Vec<Dependency>,
    /// Submit it held: it starts only after `zenith job release ID`.
    #[arg(long)]
    hold: bool,
    /// An environment variable, K=V (repeatable).
    #[arg(long = "env", short = 'e', value_parser = parse_kv)]
    env: Vec<(String, String)>,
    /// Working directory on the node (absolute; a relative path is made absolute here).
    #[arg(long)]
    cwd: Option<std::path::PathBuf>,
    /// What the node's labels must say (repeatable, all must hold): K=V, K!=V (also met
    /// without K), 'K in (a,b)', 'K exists', K~V (contains, any case) or K>=N (a number or
    /// size).
    #[arg(long = "constraint", short = 'c')]
    constraints: Vec<Constraint>,
    /// A soft constraint (same forms as --constraint; repeatable): among the nodes that fit,
    /// those meeting more of these are chosen first.
    #[arg(long = "prefer")]
    prefer: Vec<Constraint>,
    /// Spread the job's tasks over the values of this node label (e.g. zone): each task
    /// goes where the fewest of them run.
    #[arg(long)]
    spread: Option<String>,
    /// Only nodes whose GPU model contains this, any case (`H100`, `a100`): the constraint
    /// `gpu.model~H100` on the label agents advertise for the GPUs they find.
    #[arg(long)]
    gpu_model: Option<String>,
    /// Only nodes whose GPUs each have at least this much memory, e.g. 40G (the constraint
    /// `gpu.memory>=40G`).
    #[arg(long, value_parser = parse_gpu_memory)]
    gpu_memory: Option<String>,
    /// A label on the job, K=V (repeatable).
    #[arg(long = "label", short = 'l', value_parser = parse_kv)]
    labels: Vec<(String, String)>,
    /// Idempotency key: a retried submission with the same key returns the same job
    /// (default: a fresh random key, used for the automatic retries of this command).
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Print the whole job (as `zenith job show` does) as JSON or YAML instead of its ID.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    format: crate::output::Format,
    /// The same as `-o json` (kept for scripts written before -o).
    #[arg(long, hide = true)]
    json: bool,
    /// After --: a program and its arguments, run as given (no shell). Without --: a batch
    /// script here (`#!` line, `#ZENITH` option lines) and its arguments, or a program on
    /// the node's PATH when no such file is here.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// `zenith submit` parsed again with a script's `#ZENITH` options in front (the command
/// line's own, later, win).
#[derive(clap::Parser, Debug)]
#[command(
    name = "zenith submit",
    args_override_self = true,
    no_binary_name = true
)]
struct WithDirectives {
    #[command(flatten)]
    a: SubmitArgs,
}

impl SubmitArgs {
    fn spec(&self) -> anyhow::Result<JobSpec> {
        let mut spec = JobSpec::new(self.command.clone());
        spec.name = self.name.clone().unwrap_or_default();
        if let Some(c) = self.cpus {
            spec.resources.cpu_millis = c;
        }
        if let Some(m) = self.memory {
            spec.resources.memory = m;
        }
        spec.resources.gpus = self.gpus.unwrap_or(0);
        spec.resources.custom = self.resources.iter().cloned().collect();
        spec.queue = self.queue.clone();
        spec.priority = self.priority;
        spec.retry.limit = self.retries;
        spec.retry.backoff = self.backoff;
        if let Some(d) = self.retry_delay {
            spec.retry.delay = d;
        }
        if let Some(d) = self.max_retry_delay {
            spec.retry.max_delay = d;
        }
        spec.timeout = self.timeout;
        spec.array = self.array.clone();
        spec.gang = self.nodes.map(|nodes| zenith_model::Gang {
            nodes,
            tasks_per_node: self.tasks_per_node.unwrap_or(1),
        });
        spec.env = self.env.iter().cloned().collect::<BTreeMap<_, _>>();
        if let Some(cwd) = &self.cwd {
            let abs = if cwd.is_absolute() {
                cwd.clone()
            } else {
                std::env::current_dir()?.join(cwd)
            };
            spec.cwd = Some(abs.to_string_lossy().into_owned());
        }
        spec.constraints = self.constraints.clone();
        spec.prefer = self.prefer.clone();
        spec.spread = self.spread.clone();
        // GPU model and memory are constraints on the labels agents advertise (`gpus.rs`).
        if let Some(m) = &self.gpu_model {
            spec.constraints.push(Constraint {
                key: "gpu.model".into(),
                op: zenith_model::ConstraintOp::Contains(m.clone()),
            });
        }
        if let Some(m) = &self.gpu_memory {
            spec.constraints.push(Constraint {
                key: "gpu.memory".into(),
                op: zenith_model::ConstraintOp::AtLeast(m.clone()),
            });
        }
        spec.after = self.after.clone();
        spec.hold = self.hold;
        spec.labels = self.labels.iter().cloned().collect();
        spec.namespace = self.conn.namespace.clone().unwrap_or_default();
        spec.validate()
            .map_err(|e| UsageError(format!("invalid job: {e}")))?;
        Ok(spec)
    }
}

/// The words after `submit` on this process's command line, and whether one is `--`.
fn submit_words() -> (Vec<String>, bool) {
    let all: Vec<String> = std::env::args().collect();
    let words: Vec<String> = match all.iter().position(|w| w == "submit") {
        Some(i) => all[i + 1..].to_vec(),
        None => Vec::new(),
    };
    let dashed = words.iter().any(|w| w == "--");
    (words, dashed)
}

/// A script given without `--` becomes its interpreter's command, with its `#ZENITH` options
/// applied under the command line's.
fn with_script(a: SubmitArgs) -> anyhow::Result<SubmitArgs> {
    let (words, dashed) = submit_words();
    let Some(first) = a.command.first().filter(|_| !dashed) else {
        return Ok(a);
    };
    let Some(script) = super::submit_script::read(std::path::Path::new(first), &a.command[1..])?
    else {
        return Ok(a);
    };
    let mut a = match script.directives.is_empty() {
        true => a,
        false => {
            let argv = script.directives.iter().chain(words.iter());
            let parsed = <WithDirectives as clap::Parser>::try_parse_from(argv)
                .map_err(|e| UsageError(format!("#ZENITH options in {first}: {}", e.render())))?;
            if parsed.a.command != a.command {
                return Err(UsageError(format!(
                    "#ZENITH lines in {first} hold options only (--cpus 2), not a command"
                ))
                .into());
            }
            parsed.a
        }
    };
    a.name.get_or_insert(script.name);
    a.command = script.command;
    Ok(a)
}

/// A relative program path runs in the agent's work directory, not here: say so when the file
/// is here and no --cwd was given.
fn relative_path_hint(a: &SubmitArgs) {
    let Some(program) = a.command.first() else {
        return;
    };
    let relative = program.contains('/') && !program.starts_with('/');
    if relative && a.cwd.is_none() && std::path::Path::new(program).exists() {
        eprintln!(
            "hint: {program} is relative to the directory the job runs in (the agent's work directory unless --cwd is given): add --cwd . when the agent runs on this machine, or send the script itself: zenith submit {program}"
        );
    }
}

pub async fn run(a: SubmitArgs) -> anyhow::Result<u8> {
    let a = with_script(a)?;
    relative_path_hint(&a);
    let spec = a.spec()?;
    let client = a.conn.client()?;
    let id = match a
        .idempotency_key
        .clone()
        .or_else(zenith_client::new_idempotency_key)
    {
        Some(key) => client.submit_idempotent(&spec, &key).await?,
        None => client.submit(&spec).await?,
    };
    let format = match a.json {
        true => crate::output::Format::Json,
        false => a.format,
    };
    if format.is_data() {
        let job = client.get(id).await?;
        crate::output::data(format, &job)?;
    } else {
        out!("{id}");
    }
    Ok(0)
}

/// A size such as `40G`, checked here so that a typo is a usage error naming the flag.
fn parse_gpu_memory(s: &str) -> Result<String, String> {
    zenith_model::resources::parse_bytes(s)
        .map(|_| s.trim().to_string())
        .map_err(|e| e.to_string())
}

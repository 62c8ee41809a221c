//! Runs attempts as processes: no shell, own process group, stdout/stderr to files, the whole
//! group killed on cancel/timeout (SIGTERM, a grace period, SIGKILL) and swept after the
//! leader exits. A run goes prepare (output files) -> start -> watch (one waiter task) ->
//! stop (kill) -> cleanup (group swept); each step tolerates the failure of
//! the one before.

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

mod kill;
use zenith_model::flow::ArtifactOut;
use zenith_model::{AttemptId, AttemptOutcome, NodeId, Resources};
use zenith_protocol::agent::{Assignment, AttemptResult};

/// Attempt IDs remembered to refuse duplicate assignments.
const SEEN_LIMIT: usize = 100_000;

struct Proc {
    pgid: Option<i32>,
    /// GPU indices bound to this attempt (`CUDA_VISIBLE_DEVICES`), returned when it ends.
    gpus: Vec<u32>,
    /// A kill was requested: processes that escaped the group are hunted down at the end.
    killing: bool,
    /// Output parameters to read when it ends (flow steps).
    outputs: Vec<String>,
    /// A scratch working directory made for this attempt, removed when it ends.
    scratch: Option<PathBuf>,
    /// What it holds of the node, given back when it ends.
    resources: Resources,
    /// When its process was spawned (its run time goes with the result).
    spawned: Option<tokio::time::Instant>,
}

#[derive(Default)]
struct Table {
    running: HashMap<AttemptId, Proc>,
    /// Assignments waiting for resources (the node's backlog), started in order as they
    /// fit; bounded by what the server assigns (`prefetch` beyond capacity).
    waiting: VecDeque<Assignment>,
    /// What the node offers, and what of it no started attempt holds.
    total: Resources,
    free: Resources,
    /// A `promote` is under way (a start that fails at once ends inside it).
    promoting: bool,
    /// Ended attempts whose results are on their way to the outbox (bounded by the result
    /// channel): still known to the server, so reports list them.
    ended: HashSet<AttemptId>,
    seen: HashSet<AttemptId>,
    seen_order: VecDeque<AttemptId>,
    /// GPU indices of this node not bound to a running attempt.
    free_gpus: std::collections::BTreeSet<u32>,
}

/// Shared by the stream reader (starts, kills) and the reporter (what is running).
#[derive(Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

struct Inner {
    node: NodeId,
    work_dir: PathBuf,
    log_dir: PathBuf,
    /// `$ZENITH_OUTPUTS` of each attempt that declares outputs: `<data>/outputs/<attempt>/`.
    outputs_dir: PathBuf,
    grace: Duration,
    /// `/dev/null`, opened once: every job's stdin is a duplicate of it.
    dev_null: std::fs::File,
    /// The node offers GPUs: every job gets `CUDA_VISIBLE_DEVICES` (empty when it asked for none).
    has_gpus: bool,
    table: Mutex<Table>,
    results: mpsc::Sender<AttemptResult>,
    metrics: Arc<crate::metrics::AgentMetrics>,
    /// Moves flow artifacts through the server.
    transfer: Option<crate::artifacts::Transfer>,
    guardian: Arc<crate::guardian::Guardian>,
}

/// Where an attempt's output goes on the agent.
pub fn log_path(log_dir: &Path, attempt: AttemptId, stream: &str) -> PathBuf {
    log_dir.join(format!("{}.{stream}", attempt.0))
}

/// How an executor is set up.
pub struct Setup {
    pub node: NodeId,
    pub data_dir: PathBuf,
    pub work_dir: PathBuf,
    /// Between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// What the node offers (GPUs are bound by index from `resources.gpus`).
    pub resources: Resources,
    pub transfer: Option<crate::artifacts::Transfer>,
    /// Kills this agent's jobs if the agent dies.
    pub guardian: Arc<crate::guardian::Guardian>,
}

impl Executor {
    pub fn new(
        setup: Setup,
        results: mpsc::Sender<AttemptResult>,
        metrics: Arc<crate::metrics::AgentMetrics>,
    ) -> std::io::Result<Self> {
        let Setup {
            node,
            data_dir,
            work_dir,
            grace,
            resources,
            transfer,
            guardian,
        } = setup;
        let gpus = resources.gpus;
        let data_dir = data_dir.as_path();
        let log_dir = data_dir.join("logs");
        std::fs::create_dir_all(&log_dir)?;
        let outputs_dir = data_dir.join("outputs");
        // Left over from a previous run of the agent: those attempts are gone.
        let _ = std::fs::remove_dir_all(&outputs_dir);
        std::fs::create_dir_all(&outputs_dir)?;
        std::fs::create_dir_all(&work_dir)?;
        Ok(Executor {
            inner: Arc::new(Inner {
                node,
                work_dir,
                log_dir,
                outputs_dir,
                grace,
                dev_null: std::fs::File::open("/dev/null")?,
                has_gpus: gpus > 0,
                table: Mutex::new(Table {
                    free_gpus: (0..gpus.min(1024) as u32).collect(),
                    free: resources.clone(),
                    total: resources,
                    ..Table::default()
                }),
                results,
                metrics,
                transfer,
                guardian,
            }),
        })
    }

    pub fn log_dir(&self) -> &Path {
        &self.inner.log_dir
    }

    /// Attempts started and not yet in the outbox (running, or ended with the result on its
    /// way there), and those in the backlog waiting for resources (in the order they will
    /// start), read together: an attempt moving from one state to the next is in exactly one
    /// of them or already in the outbox.
    pub fn attempts(&self) -> (Vec<AttemptId>, Vec<AttemptId>) {
        self.inner
            .table
            .lock()
            .map(|t| {
                (
                    t.running.keys().chain(t.ended.iter()).copied().collect(),
                    t.waiting.iter().map(|a| a.attempt).collect(),
                )
            })
            .unwrap_or_default()
    }

    /// Whether assignments wait in the backlog for resources (the node is saturated with
    /// short work).
    pub fn has_waiting(&self) -> bool {
        self.inner
            .table
            .lock()
            .map(|t| !t.waiting.is_empty())
            .unwrap_or(false)
    }

    /// These attempts' results are now in the outbox.
    pub fn stashed(&self, ids: &[AttemptId]) {
        if let Ok(mut t) = self.inner.table.lock() {
            for id in ids {
                t.ended.remove(id);
            }
        }
    }

    /// Takes an assignment unless it was seen before (fencing against duplicate delivery):
    /// it starts now if the node has room, else waits in the backlog for its turn.
    pub fn start(&self, a: Assignment) {
        {
            let Ok(mut t) = self.inner.table.lock() else {
                return;
            };
            if !t.seen.insert(a.attempt) {
                tracing::debug!(attempt = %a.attempt, "duplicate assignment refused");
                return;
            }
            t.seen_order.push_back(a.attempt);
            while t.seen_order.len() > SEEN_LIMIT {
                if let Some(old) = t.seen_order.pop_front() {
                    t.seen.remove(&old);
                }
            }
            t.waiting.push_back(a);
            self.inner.metrics.waiting.set(t.waiting.len() as i64);
        }
        self.promote();
    }

    /// Starts waiting assignments in order while the first fits what is free. One that can
    /// never fit this node ends as failed to start instead of blocking the rest.
    fn promote(&self) {
        {
            let Ok(mut t) = self.inner.table.lock() else {
                return;
            };
            if t.promoting {
                // The loop below is already running further up this call stack.
                return;
            }
            t.promoting = true;
        }
        loop {
            let next = {
                let Ok(mut t) = self.inner.table.lock() else {
                    return;
                };
                let Some(head) = t.waiting.front() else {
                    t.promoting = false;
                    break;
                };
                // `None`: it fits what is free; else why it can never fit this node.
                let refusal = if head.resources.fits_in(&t.free) {
                    None
                } else if let Some(s) = head.resources.first_shortfall(&t.total) {
                    Some(format!("needs more than this node offers: {s}"))
                } else {
                    t.promoting = false;
                    break;
                };
                t.waiting.pop_front().map(|a| (a, refusal))
            };
            match next {
                Some((a, None)) => self.launch(a),
                Some((a, Some(message))) => {
                    self.end_unstarted(a.attempt, AttemptOutcome::StartFailed { message })
                }
                None => break,
            }
        }
        if let Ok(t) = self.inner.table.lock() {
            self.inner.metrics.waiting.set(t.waiting.len() as i64);
        }
    }

    /// Ends an attempt that never started (refused, or killed while waiting).
    fn end_unstarted(&self, attempt: AttemptId, outcome: AttemptOutcome) {
        if let Ok(mut t) = self.inner.table.lock() {
            t.running.insert(
                attempt,
                Proc {
                    pgid: None,
                    gpus: Vec::new(),
                    killing: false,
                    outputs: Vec::new(),
                    scratch: None,
                    resources: Resources::default(),
                    spawned: None,
                },
            );
        }
        self.finish(attempt, None, outcome);
    }

    /// Starts an assignment that fits: takes its resources and GPUs, then the process.
    fn launch(&self, a: Assignment) {
        {
            let Ok(mut t) = self.inner.table.lock() else {
                return;
            };
            // Bind concrete GPUs: the resources check above counted them.
            let wanted = a.resources.gpus as usize;
            if t.free_gpus.len() < wanted {
                let message = format!(
                    "{wanted} GPUs wanted, {} free on this node",
                    t.free_gpus.len()
                );
                drop(t);
                self.end_unstarted(a.attempt, AttemptOutcome::StartFailed { message });
                return;
            }
            let gpus: Vec<u32> = t.free_gpus.iter().copied().take(wanted).collect();
            for g in &gpus {
                t.free_gpus.remove(g);
            }
            t.free.take(&a.resources);
            t.running.insert(
                a.attempt,
                Proc {
                    pgid: None,
                    gpus,
                    killing: false,
                    outputs: a.io.outputs.clone(),
                    scratch: None,
                    resources: a.resources.clone(),
                    spawned: None,
                },
            );
            self.inner.metrics.running.set(t.running.len() as i64);
        }
        let attempt = a.attempt;
        let _span =
            tracing::debug_span!("attempt", job = %a.job, task = a.task, attempt = %a.attempt)
                .entered();
        tracing::debug!("starting");
        let gpus = self
            .inner
            .table
            .lock()
            .ok()
            .and_then(|t| t.running.get(&attempt).map(|p| p.gpus.clone()))
            .unwrap_or_default();
        if a.io.moves_files() {
            let this = self.clone();
            tokio::spawn(async move { this.prepare_and_spawn(a, gpus).await });
            return;
        }
        self.spawn_and_watch(a, &gpus);
    }

    /// Flow steps that move artifacts: a scratch working directory (unless the step names a
    /// `cwd`) and the input artifacts placed in it, then the process.
    async fn prepare_and_spawn(self, mut a: Assignment, gpus: Vec<u32>) {
        let attempt = a.attempt;
        let Some(transfer) = self.inner.transfer.clone() else {
            let message = "this agent cannot move artifacts".to_string();
            return self.finish(attempt, None, AttemptOutcome::StartFailed { message });
        };
        let dir = match &a.cwd {
            Some(c) => PathBuf::from(c),
            None => {
                let d = self
                    .inner
                    .work_dir
                    .join("attempts")
                    .join(attempt.to_string());
                if let Err(e) = std::fs::create_dir_all(&d) {
                    let message = format!("scratch directory {}: {e}", d.display());
                    return self.finish(attempt, None, AttemptOutcome::StartFailed { message });
                }
                if let Ok(mut t) = self.inner.table.lock() {
                    if let Some(p) = t.running.get_mut(&attempt) {
                        p.scratch = Some(d.clone());
                    }
                }
                a.cwd = Some(d.to_string_lossy().into_owned());
                d
            }
        };
        for input in &a.io.inputs {
            if let Err(e) = transfer.fetch(&input.key, &dir.join(&input.path)).await {
                let message = truncate(format!("input artifact {}: {e}", input.key));
                return self.finish(attempt, None, AttemptOutcome::StartFailed { message });
            }
        }
        // Gone from the table counts as killed.
        if self.kill_requested(attempt).unwrap_or(true) {
            return self.finish(attempt, None, AttemptOutcome::Signaled { signal: 9 });
        }
        self.spawn_and_watch(a, &gpus);
    }

    fn spawn_and_watch(&self, a: Assignment, gpus: &[u32]) {
        let attempt = a.attempt;
        match self.spawn(&a, gpus) {
            Ok(child) => {
                // The job leads its own process group (`process_group(0)`): its PID is the
                // group's ID.
                let pgid = child.id().map(|p| p as i32);
                if let Some(pg) = pgid {
                    self.inner.guardian.started(pg);
                }
                if let Ok(mut t) = self.inner.table.lock() {
                    if let Some(p) = t.running.get_mut(&attempt) {
                        p.pgid = pgid;
                        p.spawned = Some(tokio::time::Instant::now());
                    }
                }
                self.inner.metrics.attempts_started.inc();
                let this = self.clone();
                let uploads = match a.io.artifacts.is_empty() {
                    true => None,
                    false => Some((a.io.artifacts.clone(), a.cwd.clone().map(PathBuf::from))),
                };
                // The attempt's span covers the process's whole life on this node.
                let span =
                    tracing::debug_span!("run", job = a.job.0, task = a.task, attempt = attempt.0);
                tokio::spawn(tracing::Instrument::instrument(
                    async move { this.watch(attempt, child, pgid, uploads).await },
                    span,
                ));
            }
            Err(e) => {
                let outcome = AttemptOutcome::StartFailed {
                    message: truncate(format!("{}: {e}", a.command[0])),
                };
                self.finish(attempt, None, outcome);
            }
        }
    }

    fn spawn(&self, a: &Assignment, gpus: &[u32]) -> std::io::Result<tokio::process::Child> {
        let program = a
            .command
            .first()
            .ok_or_else(|| std::io::Error::other("empty command"))?;
        let out = std::fs::File::create(log_path(&self.inner.log_dir, a.attempt, "stdout"))?;
        let err = std::fs::File::create(log_path(&self.inner.log_dir, a.attempt, "stderr"))?;
        let cwd = a
            .cwd
            .as_ref()
            .map(PathBuf::from)
            .unwrap_or_else(|| self.inner.work_dir.clone());
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(&a.command[1..])
            .envs(&a.env)
            .env("ZENITH_JOB_ID", a.job.to_string())
            .env("ZENITH_TASK_INDEX", a.task.to_string())
            .env("ZENITH_ATTEMPT", a.attempt_number.to_string())
            .env("ZENITH_ATTEMPT_ID", a.attempt.to_string())
            .env("ZENITH_NODE_ID", self.inner.node.as_str())
            .current_dir(cwd)
            .stdin(Stdio::from(self.inner.dev_null.try_clone()?))
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0);
        if self.inner.has_gpus {
            let list: Vec<String> = gpus.iter().map(u32::to_string).collect();
            cmd.env("CUDA_VISIBLE_DEVICES", list.join(","));
        }
        if !a.io.outputs.is_empty() {
            let dir = self.inner.outputs_dir.join(a.attempt.to_string());
            std::fs::create_dir_all(&dir)?;
            cmd.env("ZENITH_OUTPUTS", dir);
        }
        // No pre-exec hook: the job starts through posix_spawn; the guardian kills it if the
        // agent dies.
        cmd.spawn()
    }

    async fn watch(
        self,
        attempt: AttemptId,
        mut child: tokio::process::Child,
        pgid: Option<i32>,
        uploads: Option<(Vec<ArtifactOut>, Option<PathBuf>)>,
    ) {
        let outcome = match child.wait().await {
            Ok(status) => {
                use std::os::unix::process::ExitStatusExt;
                match (status.code(), status.signal()) {
                    (Some(code), _) => AttemptOutcome::Exited { code },
                    (None, Some(signal)) => AttemptOutcome::Signaled { signal },
                    (None, None) => AttemptOutcome::Exited { code: -1 },
                }
            }
            Err(e) => AttemptOutcome::StartFailed {
                message: truncate(format!("wait failed: {e}")),
            },
        };
        let outcome = match uploads {
            Some((artifacts, dir)) if outcome.succeeded() => self
                .upload(
                    attempt,
                    &artifacts,
                    dir.as_deref().unwrap_or(&self.inner.work_dir),
                )
                .await
                .map(|()| outcome)
                .unwrap_or_else(|message| AttemptOutcome::OutputsFailed { message }),
            _ => outcome,
        };
        self.finish(attempt, pgid, outcome);
    }

    /// Whether a kill of this running attempt was requested; `None` when it is not in the
    /// table (ended, or never started here).
    fn kill_requested(&self, attempt: AttemptId) -> Option<bool> {
        let t = self.inner.table.lock().ok()?;
        t.running.get(&attempt).map(|p| p.killing)
    }

    /// Uploads a succeeded step's artifacts (not when it is being killed).
    async fn upload(
        &self,
        attempt: AttemptId,
        artifacts: &[ArtifactOut],
        dir: &Path,
    ) -> Result<(), String> {
        let Some(t) = self.inner.transfer.clone() else {
            return Err("this agent cannot move artifacts".into());
        };
        for a in artifacts {
            if self.kill_requested(attempt).unwrap_or(false) {
                return Ok(());
            }
            let bytes = t
                .put(attempt, &a.key, &dir.join(&a.path))
                .await
                .map_err(|e| truncate(format!("artifact {} ({}): {e}", a.name, a.path)))?;
            self.inner.metrics.artifact_bytes.inc_by(bytes);
        }
        Ok(())
    }

    fn finish(&self, attempt: AttemptId, pgid: Option<i32>, outcome: AttemptOutcome) {
        // Sweep whatever the job left behind in its process group.
        if let Some(pg) = pgid {
            let _ = killpg(Pid::from_raw(pg), Signal::SIGKILL);
            self.inner.guardian.ended(pg);
        }
        let (killed, wanted, scratch, spawned) = match self.inner.table.lock() {
            Ok(mut t) => match t.running.remove(&attempt) {
                Some(p) => {
                    t.free_gpus.extend(p.gpus);
                    t.free.give(&p.resources);
                    t.ended.insert(attempt);
                    (p.killing, p.outputs, p.scratch, p.spawned)
                }
                None => (false, Vec::new(), None, None),
            },
            Err(_) => (false, Vec::new(), None, None),
        };
        let ran_ms = spawned.map(|s| u64::try_from(s.elapsed().as_millis()).unwrap_or(u64::MAX));
        if let Some(d) = scratch {
            let _ = std::fs::remove_dir_all(d);
        }
        let (outcome, outputs) = self.collect_outputs(attempt, &wanted, outcome);
        if killed {
            // A killed job leaves nothing: also processes that left its group (setsid,
            // double fork), found by the attempt ID in their environment.
            self.signal_escapees(attempt, Signal::SIGKILL);
        }
        tracing::debug!(%attempt, ?outcome, "attempt ended");
        self.inner.metrics.ended(&outcome);
        let running = self
            .inner
            .table
            .lock()
            .map(|t| t.running.len())
            .unwrap_or(0);
        self.inner.metrics.running.set(running as i64);
        let results = self.inner.results.clone();
        let r = AttemptResult {
            attempt,
            outcome,
            outputs,
            ran_ms,
        };
        if results.try_send(r.clone()).is_err() {
            tokio::spawn(async move {
                let _ = results.send(r).await;
            });
        }
        // Its resources are free: the next in the backlog starts now, not after a round
        // trip to the server.
        self.promote();
        self.inner.guardian.flush();
    }

    /// Reads the declared output parameters of an attempt that exited (one trailing newline
    /// trimmed) and removes its outputs directory. A missing or oversized output turns an exit
    /// code of 0 into `OutputsFailed`.
    fn collect_outputs(
        &self,
        attempt: AttemptId,
        wanted: &[String],
        outcome: AttemptOutcome,
    ) -> (AttemptOutcome, BTreeMap<String, String>) {
        let mut out = BTreeMap::new();
        if wanted.is_empty() {
            return (outcome, out);
        }
        let dir = self.inner.outputs_dir.join(attempt.to_string());
        let mut problem = None;
        if outcome.exit_code().is_some() {
            for name in wanted {
                match read_output(&dir.join(name)) {
                    Ok(v) => {
                        out.insert(name.clone(), v);
                    }
                    Err(e) => {
                        problem.get_or_insert(format!("{name}: {e}"));
                    }
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        match (outcome, problem) {
            (AttemptOutcome::Exited { code: 0 }, Some(message)) => {
                (AttemptOutcome::OutputsFailed { message }, BTreeMap::new())
            }
            (o, _) => (o, out),
        }
    }
}

/// One output value: at most 64 KiB of UTF-8, one trailing newline trimmed.
fn read_output(path: &Path) -> Result<String, String> {
    let limit = zenith_model::flow::limits::MAX_OUTPUT_BYTES as u64;
    let meta = std::fs::metadata(path).map_err(|_| "not written".to_string())?;
    if meta.len() > limit {
        return Err(format!("larger than {limit} bytes"));
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let mut s = String::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    Ok(s)
}

fn truncate(mut s: String) -> String {
    if s.len() > 1024 {
        let mut cut = 1024;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

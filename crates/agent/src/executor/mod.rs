//! Runs attempts as processes: no shell, own process group, stdout/stderr to files, the whole
//! group killed on cancel/timeout (SIGTERM, a grace period, SIGKILL) and swept after the
//! leader exits. A run goes prepare (output files) -> start -> watch (one waiter task) ->
//! stop (kill) -> cleanup (group swept); each step tolerates the failure of
//! the one before.
//!
//! This module holds the state shared by the steps (the attempt table); `admission` takes
//! assignments into the node's backlog and decides what starts, `attempt` carries a started
//! attempt from prepare to its result, `kill` stops attempts.

use parking_lot::Mutex;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use zenith_model::{AttemptId, NodeId, Resources};
use zenith_protocol::agent::{Assignment, AttemptResult};

mod admission;
mod attempt;
pub(crate) use attempt::disk_full;
mod kill;
mod leave;

struct Proc {
    pgid: Option<i32>,
    /// GPU indices bound to this attempt (`CUDA_VISIBLE_DEVICES`), returned when it ends.
    gpus: Vec<u32>,
    /// A kill was requested: processes that escaped the group are hunted down at the end.
    killing: bool,
    /// Stopped because the agent is leaving: it ends `evicted` (requeued elsewhere) unless
    /// it succeeded.
    evicted: bool,
    /// Output parameters to read when it ends (flow steps).
    outputs: Vec<String>,
    /// A scratch working directory made for this attempt, removed when it ends.
    scratch: Option<PathBuf>,
    /// A gang member's hostfile, removed when it ends.
    hostfile: Option<PathBuf>,
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
    free_gpus: BTreeSet<u32>,
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
    /// Held only for short, non-blocking updates, never across an `.await` or a call back
    /// into the executor. A `parking_lot` mutex cannot be poisoned: a panic in one attempt's
    /// step must not make every later assignment silently vanish.
    table: Mutex<Table>,
    results: mpsc::Sender<AttemptResult>,
    metrics: Arc<crate::metrics::AgentMetrics>,
    /// Moves flow artifacts through the server.
    transfer: Option<crate::artifacts::Transfer>,
    guardian: Arc<crate::guardian::Guardian>,
    /// The agent is stopping: assignments are refused, ending `evicted` (`leave.rs`).
    leaving: std::sync::atomic::AtomicBool,
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
        crate::warn_unless_gone(
            std::fs::remove_dir_all(&outputs_dir),
            &outputs_dir,
            "outputs of a previous agent run",
        );
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
                leaving: Default::default(),
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
        let t = self.inner.table.lock();
        (
            t.running.keys().chain(t.ended.iter()).copied().collect(),
            t.waiting.iter().map(|a| a.attempt).collect(),
        )
    }

    /// These attempts' results are now in the outbox.
    pub fn stashed(&self, ids: &[AttemptId]) {
        let mut t = self.inner.table.lock();
        for id in ids {
            t.ended.remove(id);
        }
    }
}

/// Caps a message that goes into a result (an error can quote a long path or server body).
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

//! The engine: Zenith's cluster state as a pure, deterministic state machine.
//!
//! Every change enters through a method of [`Engine`] (a *command*: submit, cancel, node
//! registered, heartbeat, attempt finished, tick) that takes `now` from the caller. Commands
//! mutate the in-memory state and leave behind two things for the shell to execute:
//! [`Effect`]s (dispatch or kill an attempt on a node) and [`Changes`] (record images to
//! persist). The server commits the changes in one group commit and only then sends the
//! effects and the acknowledgements, so nothing is ever sent that the store does not hold.
//!
//! No tokio, no clock, no I/O; tested by simulation with `sanity_check()` after every step.

mod backlog;
mod changes;
mod command;
mod control;
mod fairshare;
mod flows;
mod gang;
mod idempotency;
mod lifecycle;
mod namespaces;
mod nodes;
mod ops;
mod preempt;
mod queue;
mod requeue;
mod reserve;
mod restore;
mod sanity;
mod schedule;
mod start;
mod state;
mod stats;

pub use changes::Changes;
pub use command::{AttemptReport, Command, Leaving, NodeReport, Outcome, RunOf};
pub use control::{JobUpdate, RECENT_ENDS};
pub use fairshare::{QuotaHit, DECAY_EVERY_MS, MAX_IDLE_PARTIES};
pub use flows::RunLive;
pub use idempotency::{IdempotencyKey, Submitted, SCOPE_LEN};
pub use nodes::{NodeRegistration, NodeReply};
pub use requeue::{EndedJob, RequeueTasks};
pub use reserve::{Reservation, RESERVE_SCAN};
pub use restore::Loaded;
pub use state::{Engine, JobLive, NodeInfo};
pub use stats::{Counters, Levels, Observation, MAX_OBSERVATIONS};
/// Why a job does not run (from placement), for explain views.
pub use zenith_placement::Explanation;

use std::sync::Arc;
use zenith_model::{AttemptId, JobId, JobSpec, NodeId};

/// Tunables of the engine; the server fills them from its config.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// A node silent for this long is lost and its attempts are requeued.
    pub heartbeat_timeout_ms: u64,
    /// An attempt dispatched longer ago than this that the node does not report is lost
    /// (covers an assignment that never reached the agent).
    pub dispatch_grace_ms: u64,
    /// Lost nodes are forgotten this long after their last heartbeat.
    pub lost_node_ttl_ms: u64,
    /// Most dispatches one scheduling pass makes; the rest wait for the next pass.
    pub max_dispatch_per_pass: usize,
    /// A task requeued after node loss this many times fails instead.
    pub max_node_loss_requeues: u32,
    /// Most jobs kept live (queued or running) at once; submissions beyond are refused.
    pub max_live_jobs: usize,
    /// Most tasks kept live at once, over all jobs.
    pub max_live_tasks: u64,
    /// An idempotency key is remembered this long after its first use.
    pub idempotency_ttl_ms: u64,
    /// Most idempotency keys remembered at once (beyond: the oldest is evicted).
    pub max_idempotency_keys: usize,
    /// Most idempotency keys remembered for one client (beyond: its oldest is evicted).
    pub max_idempotency_keys_per_client: usize,
    /// Most flow runs live at once; new runs beyond are refused.
    pub max_live_runs: usize,
    /// Most applied flow definitions.
    pub max_flow_defs: usize,
    /// Recent usage counts half after this long (fair share, `fairshare.rs`).
    pub fair_share_half_life_ms: u64,
    /// Most namespaces with settings.
    pub max_namespaces: usize,
    /// Queues whose running attempts a higher-priority job may stop and requeue when it
    /// fits nowhere else (`preempt.rs`); empty: no preemption.
    pub preemptible_queues: std::collections::BTreeSet<String>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            heartbeat_timeout_ms: 15_000,
            dispatch_grace_ms: 10_000,
            lost_node_ttl_ms: 24 * 3600 * 1000,
            max_dispatch_per_pass: 20_000,
            max_node_loss_requeues: 10,
            max_live_jobs: 1_000_000,
            max_live_tasks: 10_000_000,
            idempotency_ttl_ms: 24 * 3600 * 1000,
            max_idempotency_keys: 100_000,
            max_idempotency_keys_per_client: 10_000,
            max_live_runs: 10_000,
            max_flow_defs: 10_000,
            fair_share_half_life_ms: 3600 * 1000,
            max_namespaces: 10_000,
            preemptible_queues: Default::default(),
        }
    }
}

/// What the shell must do after the changes of the same step are committed.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    Dispatch {
        node: NodeId,
        assignment: Assignment,
    },
    Kill {
        node: NodeId,
        attempt: AttemptId,
    },
}

/// One attempt to run on a node.
#[derive(Clone, Debug, PartialEq)]
pub struct Assignment {
    pub attempt: AttemptId,
    pub job: JobId,
    /// The task index (`ZENITH_TASK_INDEX`).
    pub task: u32,
    /// 1-based attempt number of this task (`ZENITH_ATTEMPT`).
    pub attempt_number: u32,
    pub spec: Arc<JobSpec>,
    /// Outputs and artifacts the agent handles around the process (flow steps).
    pub io: zenith_model::flow::StepIo,
    /// Goes to the node's backlog: the agent starts it when resources free there.
    pub queued: bool,
    /// A gang job's member: where it stands in the gang (`gang.rs`).
    pub gang: Option<Box<zenith_model::GangMember>>,
}

/// Commands the engine refuses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("job {0} is not live (unknown or already finished)")]
    JobNotLive(JobId),
    #[error("job {0} not found")]
    JobNotFound(JobId),
    /// Delete refused: the job has not ended.
    #[error("job {0} has not ended; cancel it first (zenith job cancel {0})")]
    NotEnded(JobId),
    #[error("job {0} cannot be requeued: {1}")]
    CannotRequeue(JobId, String),
    #[error("job {0} has no task {1}")]
    NoSuchTask(JobId, u32),
    /// A flow's step job: it is changed through its flow, not by hand.
    #[error("job {0} runs a flow step; change the flow or its run instead")]
    StepJob(JobId),
    /// `after` names a job that does not exist.
    #[error("after: job {0} not found")]
    UnknownDependency(JobId),
    #[error("too many live jobs (limit {0}); retry later")]
    TooManyJobs(usize),
    #[error("too many live tasks (limit {0}); retry later")]
    TooManyTasks(u64),
    #[error("node {0} is not registered")]
    UnknownNode(NodeId),
    #[error("node {0} still runs {1} attempts; drain it first (zenith node drain)")]
    NodeBusy(NodeId, usize),
    #[error("idempotency key {0:?} was used for a different request")]
    KeyReused(String),
    #[error("run {0} is not live (unknown or already finished)")]
    RunNotLive(zenith_model::flow::RunId),
    #[error("too many live flow runs (limit {0}); retry later")]
    TooManyRuns(usize),
    #[error("flow {0:?} forbids concurrent runs and run {1} is active")]
    FlowBusy(String, zenith_model::flow::RunId),
    #[error("no step named {0:?} in this run")]
    UnknownStep(String),
    #[error("step {0:?} is {1}, not waiting for approval")]
    NotWaitingApproval(String, zenith_model::flow::StepState),
    #[error("too many applied flows (limit {0})")]
    TooManyFlows(usize),
    #[error("no applied flow named {0:?}")]
    UnknownFlow(String),
    /// The flow's `schedule` (cron pattern or timezone) does not parse.
    #[error("{0}")]
    BadSchedule(zenith_model::ValidationError),
    /// A namespace's quota refuses the submission.
    #[error("{0}")]
    QuotaExceeded(QuotaHit),
    #[error("too many namespaces with settings (limit {0})")]
    TooManyNamespaces(usize),
    /// A run's parameters do not match its flow's.
    #[error("{0}")]
    BadParams(zenith_model::ValidationError),
}

/// A report the engine ignored because the attempt is no longer current (fencing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaleReport(pub AttemptId);

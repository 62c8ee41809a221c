//! Public API v1 bodies (`/api/v1/...`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;
use zenith_model::tenancy::DEFAULT_NAMESPACE;
use zenith_model::{
    AttemptId, AttemptOutcome, AttemptRecord, JobId, JobRecord, JobSpec, JobState, Millis, NodeId,
    NodeState, Reason, Resources, TaskCounts,
};

/// Every error: `{"error": {"code", "message", "field"}}`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Answer to a single submission (`POST /api/v1/jobs` with one spec object).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Submitted {
    pub id: JobId,
}

/// Answer to a batch submission (a list of specs), IDs in the order of the specs.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SubmittedBatch {
    pub ids: Vec<JobId>,
}

/// A job in listings.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct JobSummary {
    pub id: JobId,
    pub name: String,
    pub state: JobState,
    pub queue: String,
    /// The namespace it lives in.
    #[serde(default)]
    pub namespace: String,
    /// Who submitted it (empty for jobs older than users).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub submitter: String,
    pub priority: i32,
    pub tasks: TaskCounts,
    pub task_count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub created_at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Millis>,
}

/// `GET /api/v1/jobs`: newest first; pass `next_before` as `before` for the next page.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<JobSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<JobId>,
}

/// One attempt of one task.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AttemptView {
    pub id: AttemptId,
    pub task: u32,
    pub node: NodeId,
    pub started_at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Millis>,
    /// `running`, `succeeded`, `failed`, `cancelled` or `lost` (its node was lost; requeued).
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<AttemptOutcome>,
    /// "exit code 1", "timed_out", "node_lost", ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `GET /api/v1/jobs/{id}`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    #[serde(flatten)]
    pub summary: JobSummary,
    pub spec: JobSpec,
    pub attempts: Vec<AttemptView>,
    /// All attempts, of which `attempts` holds the first `attempts_limit`.
    pub attempts_total: u64,
}

/// `GET /api/v1/jobs/{id}/explain`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ExplainView {
    pub id: JobId,
    pub state: JobState,
    /// A sentence: "3 nodes: insufficient memory; 1 node: constraint gpu=a100 not met".
    pub message: String,
    pub nodes: u32,
    pub feasible: u32,
    pub rejections: BTreeMap<String, u32>,
    /// The namespace quota that holds the job back, e.g. `quota cpus 64/64 in namespace ml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<String>,
    /// What keeps its tasks out of the queue even where nodes fit: `held (...)`,
    /// `after job 5 (needs ok)`, `array throttle: 10 of 10 running`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<String>,
    /// A node reserved for it (`node n1 reserved for it; ...`), attempts preempted for it
    /// (`preempting 2 lower-priority attempts on node n1`), or a node it would fit on held
    /// for another job (`node n1 reserved for job 7`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation: Option<String>,
    /// A gang's need: `gang of 3 nodes × 1 task: room for 1 task now on 2 of 4 nodes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gang: Option<String>,
}

/// `GET /api/v1/version`, and the client's own side of `zenith version`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VersionView {
    pub version: String,
    /// The agent protocol this build speaks (`crate::agent::PROTOCOL_VERSION`).
    pub protocol: u32,
}

impl VersionView {
    /// This binary's build.
    pub fn this_build() -> VersionView {
        VersionView {
            version: env!("CARGO_PKG_VERSION").to_string(),
            protocol: crate::agent::PROTOCOL_VERSION,
        }
    }
}

/// `GET /api/v1/nodes`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct NodeView {
    pub id: NodeId,
    pub name: String,
    pub state: NodeState,
    pub resources: Resources,
    pub free: Resources,
    pub labels: BTreeMap<String, String>,
    /// Attempts started on the node.
    pub running: usize,
    /// Attempts assigned to the node's backlog, started by the agent as resources free.
    #[serde(default)]
    pub queued: usize,
    /// The largest backlog the agent accepts.
    #[serde(default)]
    pub prefetch: u32,
    pub registered_at: Millis,
    pub last_heartbeat: Millis,
    /// Its credential was revoked (`zenith node revoke`): it cannot come back.
    #[serde(default)]
    pub revoked: bool,
    /// Its agent reports its disk full (jobs failing there end `disk_full`).
    #[serde(default)]
    pub disk_full: bool,
    /// Whether it takes new work: `open`, `cordoned`, `draining` (cordoned with a deadline,
    /// attempts still running), `drained` (a drain with nothing left running) or `leaving`
    /// (its agent is stopping: what runs finishes within its shutdown grace).
    #[serde(default = "open")]
    pub schedule: String,
    /// When a draining (or leaving) node's remaining attempts are stopped and requeued
    /// elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_deadline: Option<Millis>,
}

fn open() -> String {
    "open".into()
}

/// `POST /api/v1/nodes/{node}/drain`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DrainRequest {
    /// Attempts still running this long from now are stopped and requeued elsewhere (e.g.
    /// "1h"); without it they may run to their end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<zenith_model::DurationMs>,
}

/// `POST /api/v1/nodes/{node}/revoke`: the node cut off, and how many of its attempts were
/// requeued elsewhere.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RevokeView {
    pub node: NodeId,
    pub name: String,
    pub requeued: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct NodeList {
    pub nodes: Vec<NodeView>,
}

/// The conversion of a stored job to its listing form.
pub fn job_summary(r: &JobRecord) -> JobSummary {
    let (name, queue, priority, task_count) = match &r.spec {
        Some(s) => (
            s.display_name().to_string(),
            s.queue.clone(),
            s.priority,
            s.task_count(),
        ),
        None => (String::new(), String::new(), 0, r.counts.total()),
    };
    let (namespace, submitter) = match &r.spec {
        Some(s) => (s.namespace().to_string(), s.submitter.clone()),
        None => (DEFAULT_NAMESPACE.to_string(), String::new()),
    };
    JobSummary {
        id: r.id,
        name,
        state: r.state,
        queue,
        namespace,
        submitter,
        priority,
        tasks: r.counts,
        task_count,
        reason: r.reason.as_ref().map(Reason::to_string),
        created_at: r.created_at,
        finished_at: r.finished_at,
    }
}

/// The conversion of a stored attempt to its API form.
pub fn attempt_view(a: &AttemptRecord) -> AttemptView {
    let state = match &a.outcome {
        None => "running",
        Some(o) if o.succeeded() => "succeeded",
        Some(AttemptOutcome::Cancelled) => "cancelled",
        Some(AttemptOutcome::NodeLost) => "lost",
        Some(AttemptOutcome::Evicted) => "evicted",
        Some(AttemptOutcome::Preempted) => "preempted",
        Some(AttemptOutcome::GangStopped) => "stopped",
        Some(_) => "failed",
    };
    AttemptView {
        id: a.id,
        task: a.task,
        node: a.node.clone(),
        started_at: a.started_at,
        finished_at: a.finished_at,
        state: state.to_string(),
        exit_code: a.outcome.as_ref().and_then(AttemptOutcome::exit_code),
        signal: a.outcome.as_ref().and_then(AttemptOutcome::signal),
        reason: a
            .outcome
            .as_ref()
            .filter(|o| !o.succeeded())
            .map(|o| Reason::of_outcome(o).to_string()),
        outcome: a.outcome.clone(),
    }
}

/// One line of `GET /api/v1/events` (server-sent events, `data: <json>`): a committed
/// transition of a job, an attempt or a node. `time` is when its batch was committed (epoch
/// milliseconds). Transitions of one record within one batch are merged: a job submitted and
/// started in the same batch reads `running` with `submitted: true`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    Job {
        job: JobId,
        state: JobState,
        tasks: TaskCounts,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// The job was submitted in this batch.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        submitted: bool,
        #[serde(default)]
        time: Millis,
    },
    Attempt {
        job: JobId,
        task: u32,
        /// The attempt's global ID (its fencing token).
        attempt: AttemptId,
        /// Which attempt of its task this is: 1 for the first, 2 for the first retry, ...
        #[serde(default)]
        number: u32,
        node: NodeId,
        /// The name the node's agent gave (empty when the node is gone).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        node_name: String,
        state: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(default)]
        time: Millis,
    },
    Node {
        node: NodeId,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        name: String,
        state: NodeState,
        #[serde(default)]
        time: Millis,
    },
    /// A flow run changed state.
    Run {
        run: zenith_model::flow::RunId,
        flow: String,
        state: zenith_model::flow::RunState,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(default)]
        time: Millis,
    },
    /// A step of a flow run changed state.
    Step {
        run: zenith_model::flow::RunId,
        step: String,
        state: zenith_model::flow::StepState,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(default)]
        time: Millis,
    },
    /// This subscriber fell behind and missed `missed` events; re-read state to resync.
    Lagged { missed: u64 },
}

impl Event {
    /// The job an event is about, if any.
    pub fn job(&self) -> Option<JobId> {
        match self {
            Event::Job { job, .. } | Event::Attempt { job, .. } => Some(*job),
            _ => None,
        }
    }

    /// The flow run an event is about, if any.
    pub fn run(&self) -> Option<zenith_model::flow::RunId> {
        match self {
            Event::Run { run, .. } | Event::Step { run, .. } => Some(*run),
            _ => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Event::Job { .. } => "job",
            Event::Attempt { .. } => "attempt",
            Event::Node { .. } => "node",
            Event::Run { .. } => "run",
            Event::Step { .. } => "step",
            Event::Lagged { .. } => "lagged",
        }
    }
}

/// What [`events_of`] needs besides the batch: its time, node names, and the first job ID
/// the batch may have created.
pub struct EventContext<'a> {
    pub time: Millis,
    pub first_new_job: u64,
    pub node_name: &'a dyn Fn(&NodeId) -> Option<String>,
}

/// Events describing one batch of committed record images.
pub fn events_of(changes: &zenith_model::records::Changes, cx: &EventContext) -> Vec<Event> {
    let time = cx.time;
    let mut out = Vec::new();
    let mut jobs: Vec<&JobRecord> = changes.jobs.values().collect();
    jobs.sort_by_key(|j| j.id);
    let mut attempts: Vec<&AttemptRecord> = changes.attempts.values().collect();
    attempts.sort_by_key(|a| a.id);
    for a in attempts {
        let v = attempt_view(a);
        let number = changes
            .tasks
            .get(&(a.job, a.task))
            .filter(|t| t.attempt == Some(a.id))
            .map_or(0, |t| t.attempts);
        out.push(Event::Attempt {
            job: a.job,
            task: a.task,
            attempt: a.id,
            number,
            node_name: (cx.node_name)(&a.node).unwrap_or_default(),
            node: a.node.clone(),
            state: v.state,
            exit_code: v.exit_code,
            reason: v.reason,
            time,
        });
    }
    for j in jobs {
        out.push(Event::Job {
            job: j.id,
            state: j.state,
            tasks: j.counts,
            reason: j.reason.as_ref().map(Reason::to_string),
            submitted: j.id.0 >= cx.first_new_job,
            time,
        });
    }
    let mut steps: Vec<_> = changes.steps.values().collect();
    steps.sort_by_key(|s| (s.run, s.step));
    for s in steps {
        out.push(Event::Step {
            run: s.run,
            step: s.name.clone(),
            state: s.state,
            reason: s.reason.as_ref().map(Reason::to_string),
            time,
        });
    }
    let mut runs: Vec<_> = changes.runs.values().collect();
    runs.sort_by_key(|r| r.id);
    for r in runs {
        out.push(Event::Run {
            run: r.id,
            flow: r.name.clone(),
            state: r.state,
            reason: r.reason.as_ref().map(Reason::to_string),
            time,
        });
    }
    let mut nodes: Vec<_> = changes.nodes.values().collect();
    nodes.sort_by(|a, b| a.id.cmp(&b.id));
    for n in nodes {
        out.push(Event::Node {
            node: n.id.clone(),
            name: n.name.clone(),
            state: n.state,
            time,
        });
    }
    out
}

/// `GET /api/v1/summary`: the cluster at a glance, from the control plane's memory.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct ClusterSummary {
    pub nodes_ready: u64,
    pub nodes_lost: u64,
    pub cpus_total: f64,
    pub cpus_free: f64,
    pub memory_total: u64,
    pub memory_free: u64,
    /// Attempts whose process runs (or is starting) on a node.
    pub running_attempts: u64,
    /// Attempts assigned to a node's backlog, started there as resources free.
    #[serde(default)]
    pub backlogged_attempts: u64,
    /// Live jobs per queue: (queue, queued, running).
    pub queues: Vec<QueueLevel>,
    pub runs_live: u64,
    pub flows_applied: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct QueueLevel {
    pub queue: String,
    pub queued: u64,
    pub running: u64,
}

/// `GET /api/v1/servers`: the servers sharing the store and who leads.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ServerList {
    /// `embedded` (one server, SQLite) or `postgres` (several, one leader).
    pub store: String,
    /// The server that answered.
    pub answered_by: String,
    /// The leader's URL, when a lease is held and unexpired.
    pub leader: Option<String>,
    pub epoch: i64,
    /// How long the current leader has held the lease.
    pub lease_age_ms: u64,
    /// Until the lease expires unless renewed (negative: expired that long ago).
    pub lease_expires_in_ms: i64,
    /// Writes committed by the leader in this epoch.
    pub commits_this_epoch: i64,
    pub members: Vec<ServerView>,
    /// Recent past terms, newest first.
    pub terms: Vec<TermView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ServerView {
    pub id: String,
    pub url: String,
    pub version: String,
    pub leader: bool,
    pub last_seen_ms_ago: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TermView {
    pub epoch: i64,
    pub url: String,
    pub held_ms: u64,
    pub commits: i64,
}

/// `PATCH /api/v1/jobs/{id}`: what to change on a live job.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobUpdateRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
}

impl JobUpdateRequest {
    /// Something to change, each within a spec's limits.
    pub fn validate(&self) -> Result<(), zenith_model::ValidationError> {
        if self.priority.is_none() && self.queue.is_none() {
            return Err(zenith_model::ValidationError::new(
                "",
                "give priority, queue or both",
            ));
        }
        let mut probe = zenith_model::JobSpec::new(vec!["probe".into()]);
        if let Some(p) = self.priority {
            probe.priority = p;
        }
        if let Some(q) = &self.queue {
            probe.queue = q.clone();
        }
        probe.validate()
    }
}

/// The answer to hold, release and update: the job's state and place after the change.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct JobControlled {
    pub id: JobId,
    pub state: JobState,
    pub hold: bool,
    pub priority: i32,
    pub queue: String,
}

/// `POST /api/v1/jobs/{id}/requeue`: which ended tasks run again. Neither field: every
/// ended task that did not succeed.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequeueRequest {
    /// Task indices, as an array is written (`3`, `1,4-7`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<String>,
    /// Every ended task, succeeded ones too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
}

/// The answer to requeue.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct JobRequeued {
    pub id: JobId,
    pub state: JobState,
    /// How many tasks went back to the queue.
    pub requeued: u32,
}

/// The answer to delete.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct JobDeleted {
    pub id: JobId,
    pub deleted: bool,
}

/// `POST /api/v1/jobs`: one spec, or a batch of 1 to 10,000 (answered with their IDs in order).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum SubmitBody {
    One(Box<JobSpec>),
    Batch(Vec<JobSpec>),
}

/// The answer to a single submission or a batch.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum SubmitAnswer {
    One(Submitted),
    Batch(SubmittedBatch),
}

/// The answer to cancelling a job or a flow run: accepted; the attempts are being stopped.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Cancelled {
    pub id: u64,
    pub cancelled: bool,
}

//! The engine's state: live jobs, their tasks, running attempts, nodes and timers.
//!
//! Bounds: `jobs` holds live jobs only (finished ones are persisted and dropped at once) and is
//! capped by `max_live_jobs`; `attempts` and `deadlines` hold running attempts only (bounded by
//! node capacity); `retry_timers` holds queued tasks waiting out a backoff (bounded by live
//! tasks); `nodes` drops lost nodes after `lost_node_ttl_ms`; `queues` drops empty queues;
//! `parties` is bounded as `fairshare.rs` says.

use crate::{Changes, Effect, EngineConfig};
use rustc_hash::FxHashMap;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use zenith_flowspec::Templates;
use zenith_model::flow::RunId;
use zenith_model::{
    AttemptId, AttemptOutcome, JobId, JobSpec, JobState, Millis, NodeId, NodeState, Reason,
    Resources, TaskCounts, TaskState,
};

/// A job's place in its queue: higher priority first, then older jobs.
pub(crate) type QueueKey = (Reverse<i32>, JobId);

pub(crate) struct Task {
    pub state: TaskState,
    /// Failed attempts, counted against the retry limit.
    pub failures: u32,
    /// Attempts started, of any outcome (`ZENITH_ATTEMPT` of the next one is this + 1).
    pub attempts: u32,
    pub node_losses: u32,
    /// The running attempt, if any.
    pub current: Option<AttemptId>,
    /// The latest attempt, running or ended.
    pub last_attempt: Option<AttemptId>,
    pub ready_at: Option<Millis>,
    pub reason: Option<Reason>,
}

impl Task {
    pub fn queued() -> Self {
        Task {
            state: TaskState::Queued,
            failures: 0,
            attempts: 0,
            node_losses: 0,
            current: None,
            last_attempt: None,
            ready_at: None,
            reason: None,
        }
    }
}

pub(crate) struct Job {
    pub spec: Arc<JobSpec>,
    pub tasks: Vec<Task>,
    /// Slots of tasks ready to place, in order.
    pub pending: VecDeque<u32>,
    pub counts: TaskCounts,
    pub cancel_requested: bool,
    pub reason: Option<Reason>,
    pub created_at: Millis,
    /// The job row has not been written yet (carry the spec in the next record).
    pub unsaved: bool,
    /// The flow step instance this job runs.
    pub owner: Option<zenith_model::flow::StepRef>,
    /// Hash of what placement looks at (resources, constraints); see [`shape_of`].
    pub shape: u64,
    /// Output parameters of the attempt that succeeded.
    pub outputs: BTreeMap<String, String>,
    /// Dependencies (`spec.after`) still live (`control.rs`).
    pub waiting_on: u32,
    /// With `spec.spread`: its running tasks per value of that node label (boxed and only
    /// made for such jobs, so others pay one pointer).
    // Boxed on purpose: 8 bytes in every live job instead of a 48-byte empty map (server
    // memory per queued job is a performance target, docs/performance.md).
    #[allow(clippy::box_collection)]
    pub spread_counts: Option<Box<HashMap<String, u32>>>,
}

/// Jobs of one shape fit the same nodes (and may backfill the same reserved ones). `DefaultHasher::new()` has fixed keys, so this is
/// deterministic.
pub(crate) fn shape_of(spec: &JobSpec) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    spec.resources.hash(&mut h);
    spec.constraints.hash(&mut h);
    // Whether a job may backfill a reserved node depends on its timeout (`reserve.rs`).
    spec.timeout.hash(&mut h);
    spec.gang.hash(&mut h);
    h.finish()
}

impl Job {
    pub fn state(&self) -> JobState {
        self.counts.job_state(self.cancel_requested)
    }

    pub fn queue_key(&self, id: JobId) -> QueueKey {
        (Reverse(self.spec.priority), id)
    }

    /// The index of the task in `slot`.
    pub fn index(&self, slot: u32) -> u32 {
        self.spec.index_of(slot)
    }

    /// Its pending tasks wait outside the queues: held, waiting for a dependency, or at its
    /// array throttle (`control.rs`).
    pub fn blocked(&self) -> bool {
        self.spec.hold || self.waiting_on > 0 || self.throttled()
    }

    /// As many tasks run as its array throttle (`%N`) allows.
    pub fn throttled(&self) -> bool {
        self.spec
            .array
            .as_ref()
            .and_then(|a| a.throttle)
            .is_some_and(|t| self.counts.running >= t)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KillReason {
    TimedOut,
    Cancelled,
    /// Its node's drain deadline passed: requeued elsewhere.
    Evicted,
    /// Stopped to make room for this (higher-priority) job (`preempt.rs`): requeued.
    Preempted {
        by: JobId,
    },
    /// Another member of its gang ended early (`gang.rs`).
    GangStopped,
}

impl KillReason {
    pub fn outcome(self) -> AttemptOutcome {
        match self {
            KillReason::TimedOut => AttemptOutcome::TimedOut,
            KillReason::Cancelled => AttemptOutcome::Cancelled,
            KillReason::Evicted => AttemptOutcome::Evicted,
            KillReason::Preempted { .. } => AttemptOutcome::Preempted,
            KillReason::GangStopped => AttemptOutcome::GangStopped,
        }
    }
}

pub(crate) struct Running {
    pub job: JobId,
    pub slot: u32,
    pub node: NodeId,
    pub started_at: Millis,
    pub deadline: Option<Millis>,
    pub killing: Option<KillReason>,
    /// Waiting in its node's backlog (`backlog.rs`): assigned, not started, holds no
    /// resources; `started_at` is when it was assigned until the agent starts it.
    pub queued: bool,
}

pub(crate) struct Node {
    pub name: String,
    pub total: Resources,
    pub free: Resources,
    pub labels: BTreeMap<String, String>,
    pub state: NodeState,
    pub registered_at: Millis,
    pub last_heartbeat: Millis,
    /// Every attempt assigned here, started or waiting in the backlog.
    pub running: BTreeSet<AttemptId>,
    /// Attempts assigned here that wait for resources on the agent, oldest (= first to
    /// start) first; at most `prefetch` are added (see `backlog.rs`).
    pub backlog: BTreeSet<AttemptId>,
    /// How many assignments the agent holds beyond what fits (its `--prefetch`).
    pub prefetch: u32,
    /// Moving average of how long attempts ran here (`None` until one ended): the backlog
    /// is only used while they are short (`backlog.rs`).
    pub recent_run_ms: Option<u64>,
    /// Cordoned since then: no new work (`lifecycle.rs`).
    pub cordoned_at: Option<Millis>,
    /// Draining: at this time its remaining attempts are stopped and requeued.
    pub drain_deadline: Option<Millis>,
    /// Its agent is stopping (SIGTERM) and lets what runs finish until then (`lifecycle.rs`);
    /// not kept in the store: the agent repeats it with every report until it leaves.
    pub leaving: Option<Millis>,
    /// Where gang members reach it (from its registration; not kept in the store: empty
    /// until the agent registers with this server).
    pub address: String,
}

impl Node {
    /// Takes new work: ready, not cordoned, its agent not stopping.
    pub fn open(&self) -> bool {
        self.state == NodeState::Ready && self.cordoned_at.is_none() && self.leaving.is_none()
    }

    /// Why it takes no new work (as explain names it); `None` when it is [`Node::open`].
    pub fn unavailable(&self) -> Option<&'static str> {
        match (
            self.state,
            self.leaving,
            self.cordoned_at,
            self.drain_deadline,
        ) {
            (NodeState::Lost, ..) => Some("lost"),
            (NodeState::Left, ..) => Some("left"),
            (NodeState::Ready, Some(_), ..) => Some("leaving"),
            (NodeState::Ready, None, Some(_), Some(_)) => Some("draining"),
            (NodeState::Ready, None, Some(_), None) => Some("cordoned"),
            (NodeState::Ready, None, None, _) => None,
        }
    }
}

/// The whole cluster state. Create with [`Engine::new`] or [`Engine::restore`].
pub struct Engine {
    pub(crate) cfg: EngineConfig,
    /// Boxed: the table then holds 16 bytes a slot instead of ~190, and a hash table runs
    /// between half and seven-eighths full (at 1,000,000 jobs it had 2^21 slots, so an inline
    /// job cost about 400 bytes of table).
    // Fx hashing: keys are IDs the server assigns (no attacker picks them), and SipHash was
    // a measurable share of a scheduling pass.
    pub(crate) jobs: FxHashMap<JobId, Box<Job>>,
    pub(crate) live_tasks: u64,
    pub(crate) queues: crate::queue::Queues,
    /// Fair-share standing and quotas of namespaces and users (`fairshare.rs`).
    pub(crate) parties: crate::fairshare::Parties,
    pub(crate) nodes: BTreeMap<NodeId, Node>,
    /// Nodes registered with a `prefetch` (the only ones a backlog scan looks at).
    pub(crate) prefetching: BTreeSet<NodeId>,
    /// When `tick` next checks nodes for silence.
    pub(crate) next_node_scan: Millis,
    /// When `tick` next looks for drain deadlines that passed.
    pub(crate) next_drain_scan: Millis,
    pub(crate) attempts: FxHashMap<AttemptId, Running>,
    pub(crate) deadlines: BTreeSet<(Millis, AttemptId)>,
    pub(crate) retry_timers: BTreeSet<(Millis, JobId, u32)>,
    pub(crate) next_job_id: u64,
    pub(crate) next_attempt_id: u64,
    pub(crate) last_now: Millis,
    /// Something changed that may let more work be placed.
    pub(crate) sched_dirty: bool,
    pub(crate) changes: Changes,
    /// Live jobs -> the live jobs submitted `--after` them (`control.rs`).
    pub(crate) dependents: FxHashMap<JobId, Vec<JobId>>,
    /// End states of the jobs that ended last (`control.rs`).
    pub(crate) recent_ends: crate::control::RecentEnds,
    /// Ended jobs whose dependents are still to be moved on, and whether that is under way.
    pub(crate) ended_pending: Vec<(JobId, JobState)>,
    pub(crate) resolving: bool,
    /// The node held for a job that does not fit yet (`reserve.rs`).
    pub(crate) reservation: Option<crate::Reservation>,
    pub(crate) effects: Vec<Effect>,
    pub(crate) counters: crate::Counters,
    /// Bounded by `max_idempotency_keys`; entries leave at `expires_at` (see `idempotency.rs`).
    pub(crate) idempotency: HashMap<String, zenith_model::IdempotencyRecord>,
    pub(crate) key_expiry: BTreeSet<(Millis, String)>,
    /// The same keys by scope (the client that sent them), each oldest first; a scope's
    /// entry goes with its last key.
    pub(crate) keys_by_scope: HashMap<String, BTreeSet<(Millis, String)>>,
    /// Drained by the server after every step; capped at `MAX_OBSERVATIONS`.
    pub(crate) observations: std::collections::VecDeque<crate::Observation>,
    pub(crate) runs: HashMap<RunId, crate::flows::FlowRun>,
    pub(crate) next_run_id: u64,
    /// Live runs by flow name, for the concurrency policy.
    pub(crate) active_by_name: HashMap<String, BTreeSet<RunId>>,
    pub(crate) run_deadlines: BTreeSet<(Millis, RunId)>,
    pub(crate) defs: BTreeMap<String, crate::flows::FlowDef>,
    pub(crate) cron_timers: BTreeSet<(Millis, String)>,
    pub(crate) templates: Templates,
}

/// A live job as the API shows it.
#[derive(Clone, Debug)]
pub struct JobLive {
    pub id: JobId,
    pub state: JobState,
    pub counts: TaskCounts,
}

/// A node as the API shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeInfo {
    pub id: NodeId,
    pub name: String,
    pub state: NodeState,
    pub total: Resources,
    pub free: Resources,
    pub labels: BTreeMap<String, String>,
    pub running: usize,
    /// Of `running`, attempts waiting in the node's backlog.
    pub queued: usize,
    pub prefetch: u32,
    pub registered_at: Millis,
    pub last_heartbeat: Millis,
    pub cordoned_at: Option<Millis>,
    pub drain_deadline: Option<Millis>,
    /// Its agent is stopping: what runs there may finish until then.
    pub leaving: Option<Millis>,
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Self {
        let half_life = cfg.fair_share_half_life_ms;
        Engine {
            cfg,
            jobs: FxHashMap::default(),
            live_tasks: 0,
            queues: Default::default(),
            parties: crate::fairshare::Parties::new(half_life),
            nodes: BTreeMap::new(),
            prefetching: BTreeSet::new(),
            next_node_scan: 0,
            next_drain_scan: 0,
            attempts: FxHashMap::default(),
            deadlines: BTreeSet::new(),
            retry_timers: BTreeSet::new(),
            next_job_id: 1,
            next_attempt_id: 1,
            last_now: 0,
            sched_dirty: false,
            changes: Changes::default(),
            dependents: FxHashMap::default(),
            recent_ends: Default::default(),
            ended_pending: Vec::new(),
            resolving: false,
            reservation: None,
            effects: Vec::new(),
            counters: crate::Counters::default(),
            idempotency: HashMap::new(),
            key_expiry: BTreeSet::new(),
            keys_by_scope: HashMap::new(),
            observations: std::collections::VecDeque::new(),
            runs: HashMap::new(),
            next_run_id: 1,
            active_by_name: HashMap::new(),
            run_deadlines: BTreeSet::new(),
            defs: BTreeMap::new(),
            cron_timers: BTreeSet::new(),
            templates: Templates::new(),
        }
    }

    /// Time only moves forward inside the engine: a `now` behind the last one is clamped.
    pub(crate) fn clamp(&mut self, now: Millis) -> Millis {
        self.last_now = self.last_now.max(now);
        self.last_now
    }

    /// Record images changed since the last call, for one group commit.
    pub fn take_changes(&mut self) -> Changes {
        self.changes.next_job_id = self.next_job_id;
        self.changes.next_attempt_id = self.next_attempt_id;
        self.changes.next_run_id = self.next_run_id;
        std::mem::take(&mut self.changes)
    }

    /// Effects produced since the last call, to run after the changes are committed.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    pub fn live_job(&self, id: JobId) -> Option<JobLive> {
        self.jobs.get(&id).map(|j| JobLive {
            id,
            state: j.state(),
            counts: j.counts,
        })
    }

    pub fn has_node(&self, id: &NodeId) -> bool {
        self.nodes.contains_key(id)
    }

    /// The ID the next submitted job will get.
    pub fn next_job_id(&self) -> u64 {
        self.next_job_id
    }

    /// The name its agent gave a node the engine knows.
    pub fn node_name(&self, id: &NodeId) -> Option<&str> {
        self.nodes.get(id).map(|n| n.name.as_str())
    }

    pub fn live_jobs(&self) -> usize {
        self.jobs.len()
    }

    pub fn running_attempts(&self) -> usize {
        self.attempts.len()
    }

    pub fn nodes(&self) -> Vec<NodeInfo> {
        self.nodes
            .iter()
            .map(|(id, n)| NodeInfo {
                id: id.clone(),
                name: n.name.clone(),
                state: n.state,
                total: n.total.clone(),
                free: n.free.clone(),
                labels: n.labels.clone(),
                running: n.running.len() - n.backlog.len(),
                queued: n.backlog.len(),
                prefetch: n.prefetch,
                registered_at: n.registered_at,
                last_heartbeat: n.last_heartbeat,
                cordoned_at: n.cordoned_at,
                drain_deadline: n.drain_deadline,
                leaving: n.leaving,
            })
            .collect()
    }

    /// Why a job's next queued task is not running: `None` when the job is not live.
    pub fn explain(&self, id: JobId) -> Option<(JobState, placement::Explanation)> {
        let job = self.jobs.get(&id)?;
        let candidates = self.nodes.values().map(|n| placement::Candidate {
            free: &n.free,
            total: &n.total,
            labels: &n.labels,
            unavailable: n.unavailable(),
        });
        // A gang member's node must hold all its tasks on that node.
        let per_node = match job.spec.gang {
            Some(g) => job.spec.resources.times(g.tasks_per_node),
            None => job.spec.resources.clone(),
        };
        Some((
            job.state(),
            placement::explain(candidates, &per_node, &job.spec.constraints),
        ))
    }
}

use zenith_placement as placement;

//! Durable record images: what the engine hands to the store and the store hands back at start.

use crate::flow::{FlowDefRecord, InstanceRecord, RunId, RunRecord, StepRecord, StepRef};
use crate::tenancy::{AuditRecord, UserTokenRecord};
use crate::{
    AttemptId, AttemptOutcome, JobId, JobSpec, JobState, Millis, NodeId, NodeState, Reason,
    Resources, TaskCounts, TaskState,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A job row. `spec` is carried only when the row is new (specs never change).
#[derive(Clone, Debug, PartialEq)]
pub struct JobRecord {
    pub id: JobId,
    pub spec: Option<Arc<JobSpec>>,
    pub state: JobState,
    pub counts: TaskCounts,
    pub cancel_requested: bool,
    /// Why the job failed, from its first failed task.
    pub reason: Option<Reason>,
    pub created_at: Millis,
    pub finished_at: Option<Millis>,
    /// The flow step instance this job runs, if any.
    pub owner: Option<StepRef>,
}

/// A task row; tasks that never left `queued` have none (a 1,000,000-task array is one job row).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskRecord {
    pub job: JobId,
    pub index: u32,
    pub state: TaskState,
    /// Failed attempts so far (counted against the retry limit).
    pub failures: u32,
    /// Attempts started so far, of any outcome.
    pub attempts: u32,
    /// The latest attempt.
    pub attempt: Option<AttemptId>,
    /// When a queued task waiting out a backoff becomes ready.
    pub ready_at: Option<Millis>,
    pub reason: Option<Reason>,
}

/// An attempt row: written at dispatch, rewritten when it ends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub id: AttemptId,
    pub job: JobId,
    pub task: u32,
    pub node: NodeId,
    pub started_at: Millis,
    pub finished_at: Option<Millis>,
    pub outcome: Option<AttemptOutcome>,
}

/// A node row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub id: NodeId,
    pub name: String,
    pub resources: Resources,
    pub labels: BTreeMap<String, String>,
    pub state: NodeState,
    pub registered_at: Millis,
    pub last_seen: Millis,
    /// Cordoned (no new work) since then; `None`: open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cordoned_at: Option<Millis>,
    /// Draining: at this time its remaining attempts are stopped and requeued elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_deadline: Option<Millis>,
}

/// A node's own credential, given at enrolment: only its SHA-256 is kept. A revoked key stays
/// (so the node ID cannot enroll again).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeKeyRecord {
    pub node: NodeId,
    pub name: String,
    /// Hex SHA-256 of the node's secret.
    pub hash: String,
    pub revoked: bool,
    pub enrolled_at: Millis,
}

/// A submission's idempotency key and what it created, kept until `expires_at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub key: String,
    pub job_ids: Vec<JobId>,
    /// Hash of the request that used the key; a different request with the same key is refused.
    pub fingerprint: u64,
    pub expires_at: Millis,
}

/// A map keyed by IDs the server assigns: Fx hashing (no attacker picks the keys, and
/// SipHash was a measurable share of the scheduler's hot path).
pub type IdMap<K, V> = rustc_hash::FxHashMap<K, V>;

/// The write-set of one engine step, persisted in one group commit. Keyed so that repeated
/// changes to one record within a batch cost one write.
#[derive(Debug, Default)]
pub struct Changes {
    pub jobs: IdMap<JobId, JobRecord>,
    pub tasks: IdMap<(JobId, u32), TaskRecord>,
    pub attempts: IdMap<AttemptId, AttemptRecord>,
    pub nodes: HashMap<NodeId, NodeRecord>,
    pub removed_nodes: Vec<NodeId>,
    /// Ended jobs deleted with their tasks, attempts and logs (`zenith job delete`), after
    /// every other write of the batch.
    pub deleted_jobs: Vec<JobId>,
    pub idempotency: Vec<IdempotencyRecord>,
    pub expired_keys: Vec<String>,
    pub runs: IdMap<RunId, RunRecord>,
    pub steps: IdMap<(RunId, u32), StepRecord>,
    pub instances: IdMap<(RunId, u32, u32), InstanceRecord>,
    /// Applied definitions written (`Some`) or deleted (`None`).
    pub defs: HashMap<String, Option<FlowDefRecord>>,
    /// Node credentials enrolled or revoked (written by the server, not the engine).
    pub node_keys: HashMap<NodeId, NodeKeyRecord>,
    /// People's API tokens created or revoked (`Some`) or forgotten (`None`), by token ID
    /// (written by the server).
    pub user_tokens: HashMap<String, Option<UserTokenRecord>>,
    /// Audit records to append (written by the server).
    pub audit: Vec<AuditRecord>,
    /// Namespace settings written (`Some`) or cleared (`None`), by name.
    pub namespaces: HashMap<String, Option<crate::namespace::NamespaceSettings>>,
    pub next_job_id: u64,
    pub next_attempt_id: u64,
    pub next_run_id: u64,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
            && self.tasks.is_empty()
            && self.attempts.is_empty()
            && self.nodes.is_empty()
            && self.removed_nodes.is_empty()
            && self.deleted_jobs.is_empty()
            && self.idempotency.is_empty()
            && self.expired_keys.is_empty()
            && self.runs.is_empty()
            && self.steps.is_empty()
            && self.instances.is_empty()
            && self.defs.is_empty()
            && self.node_keys.is_empty()
            && self.user_tokens.is_empty()
            && self.audit.is_empty()
            && self.namespaces.is_empty()
    }

    /// Folds a later batch into this one (the later image of a record wins; a job's spec,
    /// carried only by its first image, is kept).
    pub fn absorb(&mut self, later: Changes) {
        for (id, mut rec) in later.jobs {
            if rec.spec.is_none() {
                rec.spec = self.jobs.get(&id).and_then(|old| old.spec.clone());
            }
            self.jobs.insert(id, rec);
        }
        self.tasks.extend(later.tasks);
        self.attempts.extend(later.attempts);
        for id in &later.removed_nodes {
            self.nodes.remove(id);
        }
        for (id, n) in later.nodes {
            self.removed_nodes.retain(|r| r != &id);
            self.nodes.insert(id, n);
        }
        self.removed_nodes.extend(later.removed_nodes);
        self.deleted_jobs.extend(later.deleted_jobs);
        // A key that expires and is used again later: the later fact wins.
        for k in &later.expired_keys {
            self.idempotency.retain(|r| &r.key != k);
        }
        for r in &later.idempotency {
            self.expired_keys.retain(|k| k != &r.key);
        }
        self.expired_keys.extend(later.expired_keys);
        self.idempotency.extend(later.idempotency);
        for (id, mut rec) in later.runs {
            if rec.spec.is_none() {
                rec.spec = self.runs.get(&id).and_then(|old| old.spec.clone());
            }
            self.runs.insert(id, rec);
        }
        self.steps.extend(later.steps);
        self.instances.extend(later.instances);
        self.defs.extend(later.defs);
        self.node_keys.extend(later.node_keys);
        self.user_tokens.extend(later.user_tokens);
        self.audit.extend(later.audit);
        self.next_job_id = self.next_job_id.max(later.next_job_id);
        self.next_attempt_id = self.next_attempt_id.max(later.next_attempt_id);
        self.next_run_id = self.next_run_id.max(later.next_run_id);
    }

    /// Number of records, for batch-size accounting.
    pub fn len(&self) -> usize {
        self.jobs.len()
            + self.tasks.len()
            + self.attempts.len()
            + self.nodes.len()
            + self.removed_nodes.len()
            + self.deleted_jobs.len()
            + self.idempotency.len()
            + self.expired_keys.len()
            + self.runs.len()
            + self.steps.len()
            + self.instances.len()
            + self.defs.len()
            + self.node_keys.len()
            + self.user_tokens.len()
            + self.audit.len()
    }
}

/// The live records a store returns at start, from which the engine is rebuilt.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Jobs not yet final, each with its spec.
    pub jobs: Vec<JobRecord>,
    /// Task rows of those jobs (tasks without a row are queued, or cancelled if the job was).
    pub tasks: Vec<TaskRecord>,
    /// Attempts without an end.
    pub running: Vec<AttemptRecord>,
    pub nodes: Vec<NodeRecord>,
    /// Idempotency keys (possibly expired: the engine drops those at restore).
    pub idempotency: Vec<IdempotencyRecord>,
    /// Runs not yet final, each with its spec, and their step and instance rows.
    pub runs: Vec<RunRecord>,
    pub steps: Vec<StepRecord>,
    pub instances: Vec<InstanceRecord>,
    pub defs: Vec<FlowDefRecord>,
    /// Every node credential ever enrolled (revoked ones included); not the engine's.
    pub node_keys: Vec<NodeKeyRecord>,
    /// Every API token of a person (revoked and expired ones included); not the engine's.
    pub user_tokens: Vec<UserTokenRecord>,
    /// Settings of every namespace that has some.
    pub namespaces: Vec<crate::namespace::NamespaceSettings>,
    pub next_job_id: u64,
    pub next_attempt_id: u64,
    pub next_run_id: u64,
}

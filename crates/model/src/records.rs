//! Durable record images: what the engine hands to the store and the store hands back at start.

use crate::{AttemptId, AttemptOutcome, JobId, JobSpec, JobState, Millis, NodeId, NodeState, Resources, TaskCounts, TaskState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
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
    pub reason: Option<String>,
    pub created_at: Millis,
    pub finished_at: Option<Millis>,
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
    pub reason: Option<String>,
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
}

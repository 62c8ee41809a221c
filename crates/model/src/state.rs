//! Job, task, attempt and node states, and how a job's state summarises its tasks.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A job's state, summarised from its tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            _ => return None,
        })
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One task's state. `Queued` covers both ready and waiting out a retry backoff.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl TaskState {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Failed | TaskState::Cancelled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => TaskState::Queued,
            "running" => TaskState::Running,
            "succeeded" => TaskState::Succeeded,
            "failed" => TaskState::Failed,
            "cancelled" => TaskState::Cancelled,
            _ => return None,
        })
    }
}

/// Tasks of a job counted by state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskCounts {
    pub queued: u32,
    pub running: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub cancelled: u32,
}

impl TaskCounts {
    pub fn slot(&mut self, s: TaskState) -> &mut u32 {
        match s {
            TaskState::Queued => &mut self.queued,
            TaskState::Running => &mut self.running,
            TaskState::Succeeded => &mut self.succeeded,
            TaskState::Failed => &mut self.failed,
            TaskState::Cancelled => &mut self.cancelled,
        }
    }

    /// Moves one task from `from` to `to`.
    pub fn shift(&mut self, from: TaskState, to: TaskState) {
        let f = self.slot(from);
        *f = f.saturating_sub(1);
        *self.slot(to) += 1;
    }

    pub fn total(&self) -> u32 {
        self.queued + self.running + self.succeeded + self.failed + self.cancelled
    }

    /// The job's state: final once every task is final (failed wins over cancelled unless the
    /// user cancelled the job), otherwise running while any task runs.
    pub fn job_state(&self, cancel_requested: bool) -> JobState {
        if self.queued + self.running > 0 {
            if self.running > 0 {
                JobState::Running
            } else {
                JobState::Queued
            }
        } else if cancel_requested {
            JobState::Cancelled
        } else if self.failed > 0 {
            JobState::Failed
        } else if self.cancelled > 0 {
            JobState::Cancelled
        } else {
            JobState::Succeeded
        }
    }
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The process exited with this code.
    Exited { code: i32 },
    /// The process was killed by this signal (not by Zenith).
    Signaled { signal: i32 },
    /// Killed by Zenith because the job's timeout passed.
    TimedOut,
    /// Killed by Zenith because the job was cancelled.
    Cancelled,
    /// The node stopped heartbeating or lost the attempt; the task was requeued.
    NodeLost,
    /// The process could not be started (program not found, bad cwd, ...).
    StartFailed { message: String },
    /// The process exited 0 but its declared output parameters could not be read.
    OutputsFailed { message: String },
    /// The process failed while the node's disk was full: its output could not be written.
    DiskFull,
    /// Stopped by Zenith because its node was drained past its deadline; the task was
    /// requeued (not counted as a failure or a node loss).
    Evicted,
    /// Stopped by Zenith to make room for a higher-priority job (its queue is preemptible);
    /// the task was requeued (not counted as a failure).
    Preempted,
    /// Stopped by Zenith because another member of its gang ended early: the gang starts
    /// again together (or, when that member failed for good, this task is cancelled).
    GangStopped,
}

impl AttemptOutcome {
    pub fn succeeded(&self) -> bool {
        matches!(self, AttemptOutcome::Exited { code: 0 })
    }

    pub fn exit_code(&self) -> Option<i32> {
        match self {
            AttemptOutcome::Exited { code } => Some(*code),
            _ => None,
        }
    }

    pub fn signal(&self) -> Option<i32> {
        match self {
            AttemptOutcome::Signaled { signal } => Some(*signal),
            _ => None,
        }
    }

    /// The outcome's kind as a metric label: `exited_ok`, `exited_error`, `signaled`,
    /// `timed_out`, `cancelled`, `node_lost`, `start_failed`, `outputs_failed`, `disk_full`,
    /// `evicted`, `preempted`, `gang_stopped`.
    pub fn kind(&self) -> &'static str {
        match self {
            AttemptOutcome::Exited { code: 0 } => "exited_ok",
            AttemptOutcome::Exited { .. } => "exited_error",
            AttemptOutcome::Signaled { .. } => "signaled",
            AttemptOutcome::TimedOut => "timed_out",
            AttemptOutcome::Cancelled => "cancelled",
            AttemptOutcome::NodeLost => "node_lost",
            AttemptOutcome::StartFailed { .. } => "start_failed",
            AttemptOutcome::OutputsFailed { .. } => "outputs_failed",
            AttemptOutcome::DiskFull => "disk_full",
            AttemptOutcome::Evicted => "evicted",
            AttemptOutcome::Preempted => "preempted",
            AttemptOutcome::GangStopped => "gang_stopped",
        }
    }
}

/// A node's liveness as the server sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    Ready,
    /// Stopped heartbeating: what it ran was requeued.
    Lost,
    /// Its agent stopped and said so (SIGTERM): what it ran ended or was requeued before.
    Left,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Ready => "ready",
            NodeState::Lost => "lost",
            NodeState::Left => "left",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ready" => Some(NodeState::Ready),
            "lost" => Some(NodeState::Lost),
            "left" => Some(NodeState::Left),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_state_summarises_tasks() {
        let mut c = TaskCounts {
            queued: 3,
            ..Default::default()
        };
        assert_eq!(c.job_state(false), JobState::Queued);
        c.shift(TaskState::Queued, TaskState::Running);
        assert_eq!(c.job_state(false), JobState::Running);
        c.shift(TaskState::Running, TaskState::Failed);
        c.shift(TaskState::Queued, TaskState::Succeeded);
        c.shift(TaskState::Queued, TaskState::Succeeded);
        assert_eq!(c.job_state(false), JobState::Failed);
        assert_eq!(c.job_state(true), JobState::Cancelled);
        assert_eq!(
            TaskCounts {
                succeeded: 2,
                ..Default::default()
            }
            .job_state(false),
            JobState::Succeeded
        );
        assert_eq!(c.total(), 3);
    }
}

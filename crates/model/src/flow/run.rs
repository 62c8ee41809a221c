//! Flow runs: states, the link from a job to its step, and the durable records of runs,
//! steps, step instances and applied definitions.

use super::FlowSpec;
use crate::{JobId, Millis, Reason};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

crate::ids::numeric_id!(
    /// One run of a flow.
    RunId
);

/// A run's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

/// A step's (or one fan-out instance's) state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Pending,
    Running,
    Succeeded,
    Failed,
    Skipped,
    Cancelled,
    WaitingApproval,
}

/// How a run was started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// By a person or client (`zenith run`, `POST /api/v1/runs`).
    Manual,
    /// By the flow's cron schedule.
    Schedule,
}

macro_rules! str_enum {
    ($t:ty { $($v:ident = $s:literal),* $(,)? }) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $(<$t>::$v => $s),* }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some(<$t>::$v),)* _ => None }
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

str_enum!(RunState {
    Pending = "pending",
    Running = "running",
    Succeeded = "succeeded",
    Failed = "failed",
    Cancelled = "cancelled",
});

str_enum!(Trigger {
    Manual = "manual",
    Schedule = "schedule",
});

str_enum!(StepState {
    Pending = "pending",
    Running = "running",
    Succeeded = "succeeded",
    Failed = "failed",
    Skipped = "skipped",
    Cancelled = "cancelled",
    WaitingApproval = "waiting_approval",
});

impl RunState {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunState::Succeeded | RunState::Failed | RunState::Cancelled
        )
    }
}

impl StepState {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            StepState::Succeeded | StepState::Failed | StepState::Skipped | StepState::Cancelled
        )
    }
}

/// The step instance a job runs for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StepRef {
    pub run: RunId,
    pub step: u32,
    pub instance: u32,
}

/// A run row. `spec` is carried only when the row is new.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRecord {
    pub id: RunId,
    pub name: String,
    pub spec: Option<Arc<FlowSpec>>,
    pub params: BTreeMap<String, String>,
    pub state: RunState,
    pub reason: Option<Reason>,
    pub retries_used: u32,
    pub trigger: Trigger,
    pub cancel_requested: bool,
    pub deadline_at: Option<Millis>,
    pub created_at: Millis,
    pub finished_at: Option<Millis>,
    /// When the finished run is deleted (its `ttl`).
    pub expires_at: Option<Millis>,
}

/// A step row of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepRecord {
    pub run: RunId,
    pub step: u32,
    /// The step's name (for events; not stored: the run's spec has it).
    pub name: String,
    pub state: StepState,
    pub reason: Option<Reason>,
    /// Skipped because a dependency failed (dependents are skipped too).
    pub blocked: bool,
    /// Fan-out instances created (1 for a plain step once started).
    pub instances: u32,
}

/// One instance of a step (the only one, or one `forEach` item).
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceRecord {
    pub run: RunId,
    pub step: u32,
    pub instance: u32,
    pub state: StepState,
    pub job: Option<JobId>,
    pub item: Option<serde_json::Value>,
    pub outputs: BTreeMap<String, String>,
    pub attempts: u32,
    pub reason: Option<Reason>,
}

/// An applied (stored) flow definition and its schedule's next fire time.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowDefRecord {
    pub name: String,
    pub spec: Arc<FlowSpec>,
    pub updated_at: Millis,
    pub next_fire: Option<Millis>,
}

/// What an agent does around a flow step's process: output parameters to read, artifacts to
/// upload after success and artifacts to fetch before start. Artifact keys are
/// `<run>/<step>/<instance>/<name>`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepIo {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<ArtifactOut>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<ArtifactIn>,
}

impl StepIo {
    pub fn is_empty(&self) -> bool {
        self.outputs.is_empty() && self.artifacts.is_empty() && self.inputs.is_empty()
    }

    /// Whether the step moves artifacts (and so runs in its own scratch directory unless it
    /// names a `cwd`).
    pub fn moves_files(&self) -> bool {
        !self.artifacts.is_empty() || !self.inputs.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactOut {
    pub name: String,
    /// Relative to the working directory.
    pub path: String,
    pub key: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactIn {
    pub key: String,
    /// Relative to the working directory.
    pub path: String,
}

/// The storage key of an artifact.
pub fn artifact_key(run: RunId, step: u32, instance: u32, name: &str) -> String {
    format!("{run}/{step}/{instance}/{name}")
}

//! The flow spec (version 1) as users write it in YAML. Field names are camelCase as in the
//! docs (`continueOnFailure`, `retryBudget`); every field here is implemented and tested.

use crate::job::ExitRule;
use crate::{Backoff, DurationMs, Resources, RetryPolicy};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A whole flow definition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FlowSpec {
    /// `[a-z0-9-]`, at most 63 characters; unique within its namespace.
    pub name: String,
    /// Where the flow, its runs and their jobs live; empty: the caller's default namespace
    /// (set by the server when it accepts the flow).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Who applied or started it: set by the server, refused in a request.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[cfg_attr(feature = "schema", schemars(skip))]
    pub submitter: String,
    /// Parameter defaults, overridden per run (`zenith run FILE -p key=value`). Numbers and
    /// booleans are taken as their text (`count: 4` is `"4"`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "schema", schemars(with = "BTreeMap<String, Scalar>"))]
    pub params: BTreeMap<String, String>,
    #[serde(default)]
    pub concurrency: Concurrency,
    /// The whole run must finish within this; then running steps are killed and the run
    /// fails with reason `deadline_exceeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<DurationMs>,
    /// Most retries over all steps of one run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_budget: Option<u32>,
    /// A finished run, its logs and artifacts are deleted this long after it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<DurationMs>,
    /// Cron (5 fields, or 6 with seconds first); active once the flow is applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// IANA time zone of `schedule` (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    pub steps: Vec<StepSpec>,
}

impl FlowSpec {
    /// Its namespace (`default` when none is named).
    pub fn namespace(&self) -> &str {
        if self.namespace.is_empty() {
            crate::tenancy::DEFAULT_NAMESPACE
        } else {
            &self.namespace
        }
    }

    /// What names the applied flow and its runs across namespaces: `name` in `default`,
    /// `namespace/name` elsewhere.
    pub fn key(&self) -> String {
        flow_key(self.namespace(), &self.name)
    }
}

/// The key of flow `name` in namespace `ns` (see [`FlowSpec::key`]).
pub fn flow_key(ns: &str, name: &str) -> String {
    if ns == crate::tenancy::DEFAULT_NAMESPACE {
        name.to_string()
    } else {
        format!("{ns}/{name}")
    }
}

/// A YAML scalar where text is expected (`run: [sleep, 5]`, `params: {count: 4}`, `env:
/// {DEBUG: true}`): the parser takes it as its text; for the JSON Schema only.
#[cfg(feature = "schema")]
#[derive(schemars::JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)] // a schema shape, never built
enum Scalar {
    Text(String),
    Number(f64),
    Flag(bool),
}

/// What happens when a run of the same flow is already active.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Concurrency {
    #[default]
    Allow,
    /// The new run is refused (a scheduled one is skipped).
    Forbid,
    /// The active runs are cancelled and the new one starts.
    Replace,
}

/// What a step is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    /// Runs `run` or `script` as a job.
    #[default]
    Job,
    /// Waits until `zenith flow approve RUN STEP`.
    Approval,
}

/// One step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StepSpec {
    /// Unique in the flow; letters, digits and `_` so that templates can say `steps.<name>`.
    pub name: String,
    #[serde(rename = "type", default, skip_serializing_if = "is_job")]
    pub kind: StepKind,
    /// argv, each element a template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<Vec<Scalar>>"))]
    pub run: Option<Vec<String>>,
    /// Text run by `sh -eu`; template values are inserted shell-quoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "schema", schemars(with = "BTreeMap<String, Scalar>"))]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Run as a gang across several nodes: `{nodes: 4, tasksPerNode: 2}` (docs/scheduling.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gang: Option<crate::Gang>,
    /// What the node's labels must say, as a job's `--constraint` (`gpu=a100`,
    /// `gpu.memory>=40G`); all must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<crate::Constraint>,
    /// Soft constraints: among the nodes that fit, those meeting more of these first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefer: Vec<crate::Constraint>,
    /// The queue its job goes to (default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Its job's priority within the queue (higher first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends: Vec<String>,
    /// An expression; the step is `skipped` when it is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<StepRetry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationMs>,
    /// Dependents run even if this step failed, and the run's result ignores it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub continue_on_failure: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failure_policy: Vec<ExitRule>,
    #[serde(default, skip_serializing_if = "StepOutputs::is_empty")]
    pub outputs: StepOutputs,
    #[serde(default, skip_serializing_if = "StepInputs::is_empty")]
    pub inputs: StepInputs,
    /// Fan-out: one instance per item; `item` is visible to templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_each: Option<ForEach>,
}

fn is_job(k: &StepKind) -> bool {
    *k == StepKind::Job
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `retry:` of a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StepRetry {
    #[serde(default)]
    pub limit: u32,
    #[serde(default)]
    pub backoff: Backoff,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<DurationMs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delay: Option<DurationMs>,
}

impl StepRetry {
    pub fn policy(&self) -> RetryPolicy {
        let d = RetryPolicy::default();
        RetryPolicy {
            limit: self.limit,
            backoff: self.backoff,
            delay: self.delay.unwrap_or(d.delay),
            max_delay: self.max_delay.unwrap_or(d.max_delay),
        }
    }
}

/// `outputs:` of a step.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct StepOutputs {
    /// Read after success from `$ZENITH_OUTPUTS/<name>` (one trailing newline trimmed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<String>,
    /// Files or directories collected after success (uploaded to the server).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<ArtifactDecl>,
}

impl StepOutputs {
    pub fn is_empty(&self) -> bool {
        self.params.is_empty() && self.artifacts.is_empty()
    }
}

/// An artifact a step produces: `path` is relative to its working directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ArtifactDecl {
    pub name: String,
    pub path: String,
}

/// `inputs:` of a step.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct StepInputs {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<ArtifactInput>,
}

impl StepInputs {
    pub fn is_empty(&self) -> bool {
        self.artifacts.is_empty()
    }
}

/// An artifact placed in the working directory before the step starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ArtifactInput {
    /// `<step>.<artifact>`.
    pub from: String,
    pub path: String,
}

impl ArtifactInput {
    /// `(step, artifact)` of `from`.
    pub fn source(&self) -> Option<(&str, &str)> {
        self.from.split_once('.')
    }
}

/// `forEach:` a literal list, or an expression giving one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum ForEach {
    Items(Vec<serde_json::Value>),
    Expr(String),
}

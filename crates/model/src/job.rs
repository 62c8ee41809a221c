//! The job spec users submit (API body and CLI flags map onto it one to one) and its validation.

use crate::{
    ArrayRange, Constraint, Dependency, DurationMs, ParseError, Resources, ValidationError,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Limits on a spec, so that one submission cannot exhaust the server.
pub mod limits {
    pub const MAX_ARGS: usize = 4096;
    pub const MAX_ARGV_BYTES: usize = 1 << 20;
    pub const MAX_ENV: usize = 1024;
    pub const MAX_ENV_BYTES: usize = 1 << 20;
    pub const MAX_NAME: usize = 256;
    pub const MAX_CWD: usize = 4096;
    pub const MAX_LABELS: usize = 64;
    pub const MAX_CONSTRAINTS: usize = 32;
    pub const MAX_LABEL_BYTES: usize = 256;
    pub const MAX_RETRIES: u32 = 100;
    pub const MAX_ARRAY_TASKS: u64 = 1_000_000;
    pub const MAX_PRIORITY: i32 = 1_000_000;
    /// One year.
    pub const MAX_TIMEOUT_MS: u64 = 366 * 24 * 3600 * 1000;
    /// One day.
    pub const MAX_RETRY_DELAY_MS: u64 = 24 * 3600 * 1000;
}

/// Everything needed to run a job. Field names are the API's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// argv; `command[0]` is looked up on PATH; no shell is involved.
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Working directory on the node; absolute. Defaults to the agent's work directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(default = "default_resources")]
    pub resources: Resources,
    #[serde(default = "default_queue")]
    pub queue: String,
    /// Higher runs first within a queue.
    #[serde(default)]
    pub priority: i32,
    #[serde(default)]
    pub retry: RetryPolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationMs>,
    /// A task array, e.g. "1-1000", "1-99:2" (every second index), "1-1000%10" (at most 10
    /// running at once); absent means one task with index 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array: Option<ArrayRange>,
    /// Node label requirements, each "key=value".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<Constraint>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// What exit codes mean: the first rule listing an attempt's code decides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failure_policy: Vec<ExitRule>,
    /// The namespace it belongs to; empty in a request means the caller's default namespace
    /// (filled in at the API edge, so stored specs always name one, or are older than
    /// namespaces and belong to `default`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Who submitted it: set by the server from the caller's token, never by the caller.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub submitter: String,
    /// Held: its tasks are not started until it is released (`zenith job release`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hold: bool,
    /// Jobs that must end first, each "ID[:ok|:fail|:any]" (`dependency.rs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<Dependency>,
    /// A gang: its tasks run together across several nodes (`gang.rs`); not with `array`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gang: Option<crate::Gang>,
    /// Soft constraints: among the nodes that fit, those meeting more of these are chosen
    /// first; none need hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefer: Vec<Constraint>,
    /// A node label (e.g. `zone`) whose values the job's running tasks are spread over:
    /// each task goes where the fewest of them run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread: Option<String>,
}

/// `{exitCodes: [..], action: fail|ignore|retry}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ExitRule {
    #[serde(rename = "exitCodes", alias = "exit_codes")]
    pub exit_codes: Vec<i32>,
    pub action: ExitAction,
}

/// What an exit code listed in a rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum ExitAction {
    /// Fail now, without retries.
    Fail,
    /// Count the attempt as a success.
    Ignore,
    /// Retry as usual (the default for a non-zero code).
    Retry,
}

impl JobSpec {
    /// The action of the first rule listing `code`, if any.
    pub fn exit_action(&self, code: i32) -> Option<ExitAction> {
        self.failure_policy
            .iter()
            .find(|r| r.exit_codes.contains(&code))
            .map(|r| r.action)
    }
}

fn default_queue() -> String {
    "default".to_string()
}

/// One core, no memory reservation: the default when a spec says nothing.
pub fn default_resources() -> Resources {
    Resources {
        cpu_millis: 1000,
        ..Default::default()
    }
}

impl JobSpec {
    /// A spec with defaults for everything but the command.
    pub fn new(command: Vec<String>) -> Self {
        JobSpec {
            command,
            name: String::new(),
            env: BTreeMap::new(),
            cwd: None,
            resources: default_resources(),
            queue: default_queue(),
            priority: 0,
            retry: RetryPolicy::default(),
            timeout: None,
            array: None,
            constraints: Vec::new(),
            labels: BTreeMap::new(),
            failure_policy: Vec::new(),
            namespace: String::new(),
            submitter: String::new(),
            hold: false,
            after: Vec::new(),
            gang: None,
            prefer: Vec::new(),
            spread: None,
        }
    }

    /// The namespace it belongs to (`default` when it names none).
    pub fn namespace(&self) -> &str {
        if self.namespace.is_empty() {
            crate::tenancy::DEFAULT_NAMESPACE
        } else {
            &self.namespace
        }
    }

    /// Number of tasks (1 for a plain job).
    pub fn task_count(&self) -> u32 {
        match (&self.array, &self.gang) {
            (Some(a), _) => a.len(),
            (None, Some(g)) => g.size(),
            (None, None) => 1,
        }
    }

    /// The index of the task in `slot` (0 for a plain job).
    pub fn index_of(&self, slot: u32) -> u32 {
        self.array.as_ref().map_or(slot, |a| a.index_of(slot))
    }

    /// The slot of task `index`, if the job has such a task.
    pub fn slot_of(&self, index: u32) -> Option<u32> {
        match &self.array {
            Some(a) => a.slot_of(index),
            None => (index < self.task_count()).then_some(index),
        }
    }

    /// The default task of a job: its first.
    pub fn first_index(&self) -> u32 {
        self.index_of(0)
    }

    /// A display name: the given one or the program name.
    pub fn display_name(&self) -> &str {
        if self.name.is_empty() {
            self.command.first().map(String::as_str).unwrap_or("")
        } else {
            &self.name
        }
    }

    // Long by design: one check per field, in the order of the spec, each naming its field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        use limits::*;
        if self.command.is_empty() {
            return Err(ValidationError::new("command", "must not be empty"));
        }
        if self.command.len() > MAX_ARGS {
            return Err(ValidationError::new(
                "command",
                format!("at most {MAX_ARGS} arguments"),
            ));
        }
        let mut total = 0usize;
        for (i, a) in self.command.iter().enumerate() {
            if a.contains('\0') {
                return Err(ValidationError::new(
                    format!("command[{i}]"),
                    "must not contain NUL",
                ));
            }
            total += a.len();
        }
        if self.command[0].is_empty() {
            return Err(ValidationError::new("command[0]", "must not be empty"));
        }
        if total > MAX_ARGV_BYTES {
            return Err(ValidationError::new("command", "argv larger than 1 MiB"));
        }
        if self.name.len() > MAX_NAME || self.name.chars().any(char::is_control) {
            return Err(ValidationError::new(
                "name",
                "at most 256 bytes without control characters",
            ));
        }
        if self.env.len() > MAX_ENV {
            return Err(ValidationError::new(
                "env",
                format!("at most {MAX_ENV} variables"),
            ));
        }
        let mut env_bytes = 0usize;
        for (k, v) in &self.env {
            if !env_key_ok(k) {
                return Err(ValidationError::new(
                    format!("env.{k}"),
                    "name must be 1-256 bytes without '=' or NUL, not starting with a digit",
                ));
            }
            if v.contains('\0') {
                return Err(ValidationError::new(
                    format!("env.{k}"),
                    "value must not contain NUL",
                ));
            }
            env_bytes += k.len() + v.len();
        }
        if env_bytes > MAX_ENV_BYTES {
            return Err(ValidationError::new("env", "larger than 1 MiB"));
        }
        if let Some(cwd) = &self.cwd {
            if !cwd.starts_with('/') || cwd.len() > MAX_CWD || cwd.contains('\0') {
                return Err(ValidationError::new(
                    "cwd",
                    "must be an absolute path of at most 4096 bytes",
                ));
            }
        }
        self.resources
            .validate()
            .map_err(|e| e.within("resources"))?;
        if self.resources.cpu_millis < crate::resources::MIN_JOB_CPU_MILLIS {
            // A job of no CPU would escape the node's capacity: any number would fit.
            return Err(ValidationError::new(
                "resources.cpus",
                "must be at least 0.001 (one millicore)",
            ));
        }
        validate_word(&self.queue, "queue")?;
        if self.priority.unsigned_abs() > MAX_PRIORITY as u32 {
            return Err(ValidationError::new(
                "priority",
                format!("must be within ±{MAX_PRIORITY}"),
            ));
        }
        self.retry.validate().map_err(|e| e.within("retry"))?;
        if let Some(t) = self.timeout {
            if t.0 == 0 || t.0 > MAX_TIMEOUT_MS {
                return Err(ValidationError::new(
                    "timeout",
                    "must be between 1ms and 366 days",
                ));
            }
        }
        if let Some(a) = &self.array {
            // Parts, steps and order are checked where the text is parsed (the only way in).
            if a.throttle == Some(0) {
                return Err(ValidationError::new("array", "throttle must be at least 1"));
            }
            if u64::from(a.len()) > MAX_ARRAY_TASKS {
                return Err(ValidationError::new(
                    "array",
                    format!("at most {MAX_ARRAY_TASKS} tasks"),
                ));
            }
        }
        if let Some(g) = &self.gang {
            g.validate()?;
            if self.array.is_some() {
                return Err(ValidationError::new(
                    "gang",
                    "a gang job cannot also be an array",
                ));
            }
        }
        if self.after.len() > crate::dependency::MAX_DEPENDENCIES {
            return Err(ValidationError::new(
                "after",
                format!(
                    "at most {} dependencies",
                    crate::dependency::MAX_DEPENDENCIES
                ),
            ));
        }
        for (i, d) in self.after.iter().enumerate() {
            if self.after[..i].iter().any(|e| e.job == d.job) {
                return Err(ValidationError::new(
                    format!("after[{i}]"),
                    format!("job {} is named twice", d.job),
                ));
            }
        }
        validate_constraints(&self.constraints, "constraints")?;
        validate_constraints(&self.prefer, "prefer")?;
        if let Some(k) = &self.spread {
            validate_word(k, "spread")?;
        }
        validate_labels(&self.labels, "labels")?;
        validate_failure_policy(&self.failure_policy, "failure_policy")?;
        if !self.namespace.is_empty() {
            crate::tenancy::validate_namespace(&self.namespace, "namespace")?;
        }
        if !self.submitter.is_empty() {
            crate::tenancy::validate_user(&self.submitter, "submitter")?;
        }
        Ok(())
    }
}

/// An environment variable name: 1-256 bytes without '=' or NUL, not starting with a digit.
pub fn env_key_ok(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 256
        && !k.contains('=')
        && !k.contains('\0')
        && !k.bytes().next().is_some_and(|b| b.is_ascii_digit())
}

/// Most rules, and exit codes per rule, in a failure policy.
pub fn validate_failure_policy(rules: &[ExitRule], field: &str) -> Result<(), ValidationError> {
    if rules.len() > 64 {
        return Err(ValidationError::new(field, "at most 64 rules"));
    }
    for (i, r) in rules.iter().enumerate() {
        if r.exit_codes.is_empty() || r.exit_codes.len() > 256 {
            return Err(ValidationError::new(
                format!("{field}[{i}].exitCodes"),
                "must list 1-256 exit codes",
            ));
        }
        if let Some(c) = r.exit_codes.iter().find(|c| !(0..=255).contains(*c)) {
            return Err(ValidationError::new(
                format!("{field}[{i}].exitCodes"),
                format!("exit code {c} is outside 0-255"),
            ));
        }
    }
    Ok(())
}

/// A list of node constraints (`constraints`, `prefer`): at most
/// [`limits::MAX_CONSTRAINTS`], each well-formed.
fn validate_constraints(list: &[Constraint], field: &str) -> Result<(), ValidationError> {
    if list.len() > limits::MAX_CONSTRAINTS {
        return Err(ValidationError::new(
            field,
            format!("at most {}", limits::MAX_CONSTRAINTS),
        ));
    }
    for (i, c) in list.iter().enumerate() {
        c.validate()
            .map_err(|e| e.within(&format!("{field}[{i}]")))?;
    }
    Ok(())
}

/// Queue names and similar identifiers: 1-64 of `[A-Za-z0-9._-]`.
pub fn validate_word(v: &str, field: &str) -> Result<(), ValidationError> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            field,
            "must be 1-64 characters of letters, digits, '.', '_' or '-'",
        ))
    }
}

/// Label maps on jobs and nodes.
pub fn validate_labels(
    labels: &BTreeMap<String, String>,
    field: &str,
) -> Result<(), ValidationError> {
    use limits::*;
    if labels.len() > MAX_LABELS {
        return Err(ValidationError::new(
            field,
            format!("at most {MAX_LABELS} labels"),
        ));
    }
    for (k, v) in labels {
        validate_word(k, &format!("{field}.{k}"))?;
        if v.len() > MAX_LABEL_BYTES || v.chars().any(char::is_control) {
            return Err(ValidationError::new(
                format!("{field}.{k}"),
                "value must be at most 256 bytes without control characters",
            ));
        }
    }
    Ok(())
}

/// How often and how fast a failed task is tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Retries after the first attempt; 2 means at most 3 attempts.
    #[serde(default)]
    pub limit: u32,
    #[serde(default)]
    pub backoff: Backoff,
    #[serde(default = "default_delay")]
    pub delay: DurationMs,
    #[serde(default = "default_max_delay")]
    pub max_delay: DurationMs,
}

fn default_delay() -> DurationMs {
    DurationMs(1000)
}

fn default_max_delay() -> DurationMs {
    DurationMs(60_000)
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            limit: 0,
            backoff: Backoff::default(),
            delay: default_delay(),
            max_delay: default_max_delay(),
        }
    }
}

impl RetryPolicy {
    /// Delay before retry number `n` (1-based).
    pub fn delay_for(&self, n: u32) -> u64 {
        let base = self.delay.0;
        let d = match self.backoff {
            Backoff::Fixed => base,
            Backoff::Linear => base.saturating_mul(u64::from(n.max(1))),
            Backoff::Exponential => base.saturating_mul(
                1u64.checked_shl(n.saturating_sub(1).min(40))
                    .unwrap_or(u64::MAX),
            ),
        };
        d.min(self.max_delay.0.max(base))
    }

    fn validate(&self) -> Result<(), ValidationError> {
        use limits::*;
        if self.limit > MAX_RETRIES {
            return Err(ValidationError::new(
                "limit",
                format!("at most {MAX_RETRIES}"),
            ));
        }
        if self.delay.0 > MAX_RETRY_DELAY_MS {
            return Err(ValidationError::new("delay", "at most 1 day"));
        }
        if self.max_delay.0 > MAX_RETRY_DELAY_MS {
            return Err(ValidationError::new("max_delay", "at most 1 day"));
        }
        Ok(())
    }
}

/// Backoff between retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Backoff {
    Fixed,
    Linear,
    #[default]
    Exponential,
}

impl std::str::FromStr for Backoff {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s {
            "fixed" => Ok(Backoff::Fixed),
            "linear" => Ok(Backoff::Linear),
            "exponential" => Ok(Backoff::Exponential),
            _ => Err(ParseError::Backoff {
                text: s.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> JobSpec {
        JobSpec::new(vec!["echo".into(), "hi".into()])
    }

    #[test]
    fn defaults_from_json() {
        let s: JobSpec = serde_json::from_str(r#"{"command":["true"]}"#).unwrap();
        assert_eq!(s.queue, "default");
        assert_eq!(s.resources.cpu_millis, 1000);
        assert_eq!(s.task_count(), 1);
        s.validate().unwrap();
    }

    #[test]
    fn unknown_fields_rejected() {
        let e = serde_json::from_str::<JobSpec>(r#"{"command":["true"],"comand":1}"#).unwrap_err();
        assert!(e.to_string().contains("comand"), "{e}");
    }

    #[test]
    fn validation_names_fields() {
        let mut s = spec();
        s.command.push("a\0b".into());
        assert_eq!(s.validate().unwrap_err().field, "command[2]");
        let mut s = spec();
        s.env.insert("A=B".into(), "x".into());
        assert_eq!(s.validate().unwrap_err().field, "env.A=B");
        let mut s = spec();
        s.cwd = Some("relative".into());
        assert_eq!(s.validate().unwrap_err().field, "cwd");
        let mut s = spec();
        s.queue = "bad queue".into();
        assert_eq!(s.validate().unwrap_err().field, "queue");
        let mut s = spec();
        s.retry.limit = 1000;
        assert_eq!(s.validate().unwrap_err().field, "retry.limit");
        let mut s = spec();
        s.constraints.push(Constraint::eq("a b", "x"));
        assert_eq!(s.validate().unwrap_err().field, "constraints[0].key");
        let mut s = spec();
        s.array = Some(ArrayRange::new(0, 2_000_000));
        assert_eq!(s.validate().unwrap_err().field, "array");
        let mut s = spec();
        s.resources.custom.insert("bad name".into(), 1);
        assert_eq!(s.validate().unwrap_err().field, "resources.custom.bad name");
    }

    #[test]
    fn backoff_delays() {
        let r = RetryPolicy {
            limit: 5,
            backoff: Backoff::Exponential,
            delay: DurationMs(100),
            max_delay: DurationMs(350),
        };
        assert_eq!(
            (
                r.delay_for(1),
                r.delay_for(2),
                r.delay_for(3),
                r.delay_for(60)
            ),
            (100, 200, 350, 350)
        );
        let f = RetryPolicy {
            backoff: Backoff::Fixed,
            ..r
        };
        assert_eq!(f.delay_for(7), 100);
        let l = RetryPolicy {
            backoff: Backoff::Linear,
            ..r
        };
        assert_eq!(
            (l.delay_for(1), l.delay_for(3), l.delay_for(9)),
            (100, 300, 350)
        );
    }
}

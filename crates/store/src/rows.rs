//! Decoding stored rows into records, shared by both backends: each backend only says how to
//! read one column ([`Cols`]); what the columns mean is written once here.
//!
//! A decoder returns `Err(StoreError::Corrupt)` for a row whose content is bad (callers skip
//! it with [`keep_good`]) and any other error for a failed read (callers fail).

use crate::StoreError;
use std::collections::BTreeMap;
use std::sync::Arc;
use zenith_model::flow::{
    FlowDefRecord, FlowSpec, InstanceRecord, RunId, RunRecord, RunState, StepRecord, StepRef,
    StepState, Trigger,
};
use zenith_model::Reason;
use zenith_model::{
    AttemptId, AttemptOutcome, AttemptRecord, JobId, JobRecord, JobSpec, JobState, NodeId,
    NodeRecord, NodeState, TaskCounts, TaskRecord, TaskState,
};

/// Version tag of the JSON stored in `jobs.spec` and `flow_runs.spec`.
pub(crate) const SPEC_FORMAT: u32 = 1;

#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct StoredSpec<T> {
    pub v: u32,
    pub spec: T,
}

pub(crate) fn json<T: serde::Serialize>(v: &T) -> String {
    // Serialising plain data structs (no maps with non-string keys) cannot fail.
    serde_json::to_string(v).unwrap_or_default()
}

pub(crate) fn stored_spec<T: serde::Serialize>(spec: &T) -> String {
    json(&StoredSpec {
        v: SPEC_FORMAT,
        spec,
    })
}

pub(crate) fn corrupt(what: impl Into<String>, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: what.into(),
        detail: detail.to_string(),
    }
}

/// Reads one column of a result row. Integers are stored as 64-bit in both backends.
pub(crate) trait Cols {
    fn int(&self, i: usize) -> Result<i64, StoreError>;
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError>;
    fn text(&self, i: usize) -> Result<String, StoreError>;
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError>;

    fn u64(&self, i: usize) -> Result<u64, StoreError> {
        Ok(self.int(i)? as u64)
    }
    fn opt_u64(&self, i: usize) -> Result<Option<u64>, StoreError> {
        Ok(self.opt_int(i)?.map(|v| v as u64))
    }
    fn u32(&self, i: usize) -> Result<u32, StoreError> {
        let v = self.int(i)?;
        u32::try_from(v).map_err(|_| corrupt(format!("column {i}"), format!("{v} out of range")))
    }
    fn opt_u32(&self, i: usize) -> Result<Option<u32>, StoreError> {
        match self.opt_int(i)? {
            None => Ok(None),
            Some(_) => self.u32(i).map(Some),
        }
    }
    fn flag(&self, i: usize) -> Result<bool, StoreError> {
        Ok(self.int(i)? != 0)
    }
}

/// Keeps the good rows: a corrupt record is skipped with an error in the log instead of
/// failing the whole read (one bad row must not keep the server from starting, or a listing
/// from answering). Database errors still fail.
pub(crate) fn keep_good<T, E: Into<StoreError>>(
    rows: impl IntoIterator<Item = Result<Result<T, StoreError>, E>>,
) -> Result<Vec<T>, StoreError> {
    keep_good_in(Vec::new(), rows)
}

/// [`keep_good`] into `v`: a load sizes it first, so that a million rows are not collected
/// through a dozen reallocations (whose freed blocks the allocator keeps: after a restart the
/// server's memory stayed 6% above a fresh one's).
pub(crate) fn keep_good_in<T, E: Into<StoreError>>(
    mut v: Vec<T>,
    rows: impl IntoIterator<Item = Result<Result<T, StoreError>, E>>,
) -> Result<Vec<T>, StoreError> {
    for r in rows {
        match r.map_err(Into::into)? {
            Ok(x) => v.push(x),
            Err(e @ StoreError::Corrupt { .. }) => {
                tracing::error!(error = %e, "skipping a corrupt record")
            }
            Err(e) => return Err(e),
        }
    }
    Ok(v)
}

pub(crate) const JOB_COLS: &str = "id, state, spec, queued, running, succeeded, failed, cancelled, cancel_requested, reason, created_at, finished_at, run_id, run_step, run_instance";
pub(crate) const TASK_COLS: &str =
    "t.job_id, t.idx, t.state, t.failures, t.attempts, t.attempt_id, t.ready_at, t.reason";
pub(crate) const ATTEMPT_COLS: &str = "id, job_id, idx, node, started_at, finished_at, outcome";
/// [`ATTEMPT_COLS`] of `attempts a` in a join.
pub(crate) const ATTEMPT_COLS_A: &str =
    "a.id, a.job_id, a.idx, a.node, a.started_at, a.finished_at, a.outcome";
pub(crate) const NODE_COLS: &str =
    "id, name, resources, labels, state, registered_at, last_seen, cordoned_at, drain_deadline";
pub(crate) const RUN_COLS: &str = "id, name, spec, params, state, reason, retries_used, trigger, cancel_requested, deadline_at, created_at, finished_at, expires_at";
pub(crate) const STEP_COLS: &str = "run_id, step, state, reason, blocked, instances";
pub(crate) const INST_COLS: &str =
    "run_id, step, instance, state, job_id, item, outputs, attempts, reason";
pub(crate) const DEF_COLS: &str = "name, spec, updated_at, next_fire";

fn spec_of<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T, StoreError> {
    match serde_json::from_str::<StoredSpec<T>>(s) {
        Ok(s) if s.v == SPEC_FORMAT => Ok(s.spec),
        Ok(s) => Err(corrupt(what, format!("unknown spec format {}", s.v))),
        Err(e) => Err(corrupt(what, e)),
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| corrupt(what, e))
}

pub(crate) fn job(r: &impl Cols) -> Result<JobRecord, StoreError> {
    let id = JobId(r.u64(0)?);
    let what = format!("job {id}");
    let state_s = r.text(1)?;
    let state =
        JobState::parse(&state_s).ok_or_else(|| corrupt(&what, format!("state {state_s:?}")))?;
    let spec: JobSpec = spec_of(&what, &r.text(2)?)?;
    Ok(JobRecord {
        id,
        spec: Some(Arc::new(spec)),
        state,
        counts: TaskCounts {
            queued: r.u32(3)?,
            running: r.u32(4)?,
            succeeded: r.u32(5)?,
            failed: r.u32(6)?,
            cancelled: r.u32(7)?,
        },
        cancel_requested: r.flag(8)?,
        reason: r.opt_text(9)?.as_deref().map(Reason::parse),
        created_at: r.u64(10)?,
        finished_at: r.opt_u64(11)?,
        owner: match (r.opt_u64(12)?, r.opt_u32(13)?, r.opt_u32(14)?) {
            (Some(run), Some(step), Some(instance)) => Some(StepRef {
                run: RunId(run),
                step,
                instance,
            }),
            _ => None,
        },
    })
}

pub(crate) fn task(r: &impl Cols) -> Result<TaskRecord, StoreError> {
    let state_s = r.text(2)?;
    let state =
        TaskState::parse(&state_s).ok_or_else(|| corrupt("task", format!("state {state_s:?}")))?;
    Ok(TaskRecord {
        job: JobId(r.u64(0)?),
        index: r.u32(1)?,
        state,
        failures: r.u32(3)?,
        attempts: r.u32(4)?,
        attempt: r.opt_u64(5)?.map(AttemptId),
        ready_at: r.opt_u64(6)?,
        reason: r.opt_text(7)?.as_deref().map(Reason::parse),
    })
}

pub(crate) fn attempt(r: &impl Cols) -> Result<AttemptRecord, StoreError> {
    let id = AttemptId(r.u64(0)?);
    let outcome = match r.opt_text(6)? {
        None => None,
        Some(s) => Some(parse_json::<AttemptOutcome>(&format!("attempt {id}"), &s)?),
    };
    Ok(AttemptRecord {
        id,
        job: JobId(r.u64(1)?),
        task: r.u32(2)?,
        node: NodeId(r.text(3)?),
        started_at: r.u64(4)?,
        finished_at: r.opt_u64(5)?,
        outcome,
    })
}

pub(crate) fn node(r: &impl Cols) -> Result<NodeRecord, StoreError> {
    let id = r.text(0)?;
    let what = format!("node {id}");
    let state_s = r.text(4)?;
    Ok(NodeRecord {
        name: r.text(1)?,
        resources: parse_json(&what, &r.text(2)?)?,
        labels: parse_json(&what, &r.text(3)?)?,
        state: NodeState::parse(&state_s)
            .ok_or_else(|| corrupt(&what, format!("state {state_s:?}")))?,
        registered_at: r.u64(5)?,
        last_seen: r.u64(6)?,
        cordoned_at: r.opt_u64(7)?,
        drain_deadline: r.opt_u64(8)?,
        id: NodeId(id),
    })
}

pub(crate) fn run(r: &impl Cols) -> Result<RunRecord, StoreError> {
    let id = RunId(r.u64(0)?);
    let what = format!("run {id}");
    let spec: FlowSpec = spec_of(&what, &r.text(2)?)?;
    let params: BTreeMap<String, String> = parse_json(&what, &r.text(3)?)?;
    let state_s = r.text(4)?;
    let state =
        RunState::parse(&state_s).ok_or_else(|| corrupt(&what, format!("state {state_s:?}")))?;
    Ok(RunRecord {
        id,
        name: r.text(1)?,
        spec: Some(Arc::new(spec)),
        params,
        state,
        reason: r.opt_text(5)?.as_deref().map(Reason::parse),
        retries_used: r.u32(6)?,
        trigger: {
            let t = r.text(7)?;
            Trigger::parse(&t).ok_or_else(|| corrupt(&what, format!("trigger {t:?}")))?
        },
        cancel_requested: r.flag(8)?,
        deadline_at: r.opt_u64(9)?,
        created_at: r.u64(10)?,
        finished_at: r.opt_u64(11)?,
        expires_at: r.opt_u64(12)?,
    })
}

pub(crate) fn step(r: &impl Cols) -> Result<StepRecord, StoreError> {
    let run = RunId(r.u64(0)?);
    let state_s = r.text(2)?;
    let state = StepState::parse(&state_s)
        .ok_or_else(|| corrupt(format!("run {run} step"), format!("state {state_s:?}")))?;
    Ok(StepRecord {
        run,
        step: r.u32(1)?,
        name: String::new(),
        state,
        reason: r.opt_text(3)?.as_deref().map(Reason::parse),
        blocked: r.flag(4)?,
        instances: r.u32(5)?,
    })
}

pub(crate) fn instance(r: &impl Cols) -> Result<InstanceRecord, StoreError> {
    let run = RunId(r.u64(0)?);
    let what = format!("run {run} instance");
    let state_s = r.text(3)?;
    let state =
        StepState::parse(&state_s).ok_or_else(|| corrupt(&what, format!("state {state_s:?}")))?;
    let item = match r.opt_text(5)? {
        None => None,
        Some(s) => Some(parse_json(&what, &s)?),
    };
    Ok(InstanceRecord {
        run,
        step: r.u32(1)?,
        instance: r.u32(2)?,
        state,
        job: r.opt_u64(4)?.map(JobId),
        item,
        outputs: parse_json(&what, &r.text(6)?)?,
        attempts: r.u32(7)?,
        reason: r.opt_text(8)?.as_deref().map(Reason::parse),
    })
}

pub(crate) fn def(r: &impl Cols) -> Result<FlowDefRecord, StoreError> {
    let name = r.text(0)?;
    let spec: FlowSpec = spec_of(&format!("flow {name:?}"), &r.text(1)?)?;
    Ok(FlowDefRecord {
        name,
        spec: Arc::new(spec),
        updated_at: r.u64(2)?,
        next_fire: r.opt_u64(3)?,
    })
}

/// An attempt row followed by the job's `run_step` and `run_instance` (columns 7 and 8).
pub(crate) fn run_attempt(r: &impl Cols) -> Result<crate::RunAttemptRecord, StoreError> {
    Ok(crate::RunAttemptRecord {
        step: r.opt_u32(7)?.unwrap_or(0),
        instance: r.opt_u32(8)?.unwrap_or(0),
        attempt: attempt(r)?,
    })
}

/// The next free ID: the stored counter, never below the largest ID in use plus one.
pub(crate) fn next_id(counter: Option<String>, max_in_use: i64) -> u64 {
    counter
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(1)
        .max(max_in_use as u64 + 1)
}

/// A reason as the text it is stored as (the same text the API shows).
pub(crate) fn reason_text(r: &Option<Reason>) -> Option<String> {
    r.as_ref().map(Reason::to_string)
}

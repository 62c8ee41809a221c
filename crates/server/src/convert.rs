//! Conversions between the engine's vocabulary and the wire's: agent requests into engine
//! commands, engine answers and views into protocol bodies, engine refusals into API errors.
//! One place, so the control loop only gates, applies and replies.

use crate::error::ApiError;
use zenith_engine::{
    AttemptReport, EngineError, Explanation, NodeInfo, NodeRegistration, NodeReport,
};
use zenith_model::{JobId, JobState};
use zenith_protocol::agent::{Assignment, RegisterRequest, ReportRequest};
use zenith_protocol::api::{ExplainView, NodeView};

/// A registration request as the engine's command.
pub fn registration(req: RegisterRequest) -> NodeRegistration {
    NodeRegistration {
        address: req.address.unwrap_or_default(),
        id: req.node_id,
        name: req.name,
        resources: req.resources,
        labels: req.labels,
        known: req.known,
        waiting: req.waiting,
        prefetch: req.prefetch,
    }
}

/// A report request as the engine's command; `with_results: false` leaves the results in
/// the agent's outbox (the store refuses writes) and keeps only the heartbeat.
pub fn node_report(req: ReportRequest, with_results: bool) -> NodeReport {
    let results = if with_results {
        req.results
            .into_iter()
            .map(|r| AttemptReport {
                attempt: r.attempt,
                outcome: r.outcome,
                outputs: r.outputs,
                ran_ms: r.ran_ms,
            })
            .collect()
    } else {
        Vec::new()
    };
    NodeReport {
        node: req.node_id,
        results,
        known: req.known,
        waiting: req.waiting,
        leaving: req.leaving.map(|l| zenith_engine::Leaving {
            grace_ms: l.grace_ms,
            done: l.done,
        }),
    }
}

/// A dispatch as the message the agent receives.
pub fn assignment(a: &zenith_engine::Assignment) -> Assignment {
    Assignment {
        attempt: a.attempt,
        job: a.job,
        task: a.task,
        attempt_number: a.attempt_number,
        command: a.spec.command.clone(),
        env: a.spec.env.clone(),
        cwd: a.spec.cwd.clone(),
        resources: a.spec.resources.clone(),
        io: a.io.clone(),
        gang: a.gang.as_deref().cloned(),
    }
}

pub fn node_view(n: NodeInfo, revoked: bool, disk_full: bool) -> NodeView {
    NodeView {
        id: n.id,
        name: n.name,
        state: n.state,
        resources: n.total,
        free: n.free,
        labels: n.labels,
        running: n.running,
        queued: n.queued,
        prefetch: n.prefetch,
        registered_at: n.registered_at,
        last_heartbeat: n.last_heartbeat,
        revoked,
        disk_full,
        schedule: match (
            n.leaving,
            n.cordoned_at,
            n.drain_deadline,
            n.running + n.queued,
        ) {
            (Some(_), ..) => "leaving",
            (None, None, _, _) => "open",
            (None, Some(_), None, _) => "cordoned",
            (None, Some(_), Some(_), 0) => "drained",
            (None, Some(_), Some(_), _) => "draining",
        }
        .to_string(),
        drain_deadline: n.leaving.or(n.drain_deadline),
    }
}

/// What holds a job back besides the nodes, as the engine says it (`explain_view`).
pub struct Holds {
    /// Held, a dependency, its array throttle.
    pub blocked: Option<String>,
    pub quota: Option<zenith_engine::QuotaHit>,
    /// A node reserved for it or against it, or attempts preempted for it.
    pub reservation: Option<String>,
    /// A gang's need of several nodes at once.
    pub gang: Option<String>,
}

/// Why a job waits: what holds it back even where nodes fit first (held, a dependency,
/// its array throttle, else its namespace's quota, else a reservation), then what placement
/// says of the nodes.
pub fn explain_view(id: JobId, state: JobState, e: Explanation, holds: Holds) -> ExplainView {
    let Holds {
        blocked,
        quota,
        reservation,
        gang,
    } = holds;
    let quota = quota.map(|q| q.to_string());
    let first = blocked.as_ref().or(quota.as_ref()).or(gang.as_ref());
    let message = match first.or(reservation.as_ref()) {
        Some(first) => format!("{first}; nodes: {}", e.summary()),
        None => e.summary(),
    };
    ExplainView {
        id,
        state,
        message,
        nodes: e.nodes,
        feasible: e.feasible,
        rejections: e.rejections,
        quota,
        blocked,
        reservation,
        gang,
    }
}

/// The API's answer to a command the engine refused.
pub fn engine_error(e: EngineError) -> ApiError {
    match e {
        EngineError::JobNotLive(id) => {
            ApiError::Conflict(format!("job {id} is not queued or running"))
        }
        EngineError::KeyReused(_) | EngineError::StepJob(_) => ApiError::Conflict(e.to_string()),
        EngineError::UnknownDependency(id) => ApiError::Invalid(
            zenith_model::ValidationError::new("after", format!("job {id} not found")),
        ),
        EngineError::TooManyJobs(_) | EngineError::TooManyTasks(_) => {
            ApiError::Overloaded(e.to_string())
        }
        EngineError::UnknownNode(_) | EngineError::JobNotFound(_) => {
            ApiError::NotFound(e.to_string())
        }
        EngineError::NotEnded(_) | EngineError::CannotRequeue(..) => {
            ApiError::Conflict(e.to_string())
        }
        EngineError::NoSuchTask(..) => {
            ApiError::Invalid(zenith_model::ValidationError::new("tasks", e.to_string()))
        }
        EngineError::NodeBusy(..) => ApiError::Conflict(e.to_string()),
        EngineError::RunNotLive(_)
        | EngineError::FlowBusy(..)
        | EngineError::NotWaitingApproval(..) => ApiError::Conflict(e.to_string()),
        EngineError::TooManyRuns(_) | EngineError::TooManyFlows(_) => {
            ApiError::Overloaded(e.to_string())
        }
        EngineError::UnknownStep(_) => ApiError::NotFound(e.to_string()),
        EngineError::UnknownFlow(name) => {
            ApiError::NotFound(format!("no applied flow named {name:?}"))
        }
        EngineError::BadSchedule(v) | EngineError::BadParams(v) => ApiError::Invalid(v),
        EngineError::QuotaExceeded(hit) => ApiError::Quota {
            message: format!("{hit}: the submission would pass it"),
            limit: hit.limit,
        },
        EngineError::TooManyNamespaces(_) => ApiError::Overloaded(e.to_string()),
    }
}

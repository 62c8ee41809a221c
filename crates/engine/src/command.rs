//! Commands as data: every change a shell (the server's control loop, a simulation) makes to
//! the engine is a [`Command`] passed to [`Engine::apply`], which answers with an [`Outcome`].
//!
//! Effects and changes accumulate in the engine as before (`take_effects`, `take_changes`);
//! the outcome is only what the caller must answer. The per-command methods (`submit`,
//! `cancel`, `heartbeat`, …) stay public for engine tests that probe one step in isolation;
//! a shell goes through `apply`, so the control loop and the simulation speak the same
//! language and a recorded history of commands replays exactly.

use crate::idempotency::{IdempotencyKey, Submitted};
use crate::nodes::{NodeRegistration, NodeReply};
use crate::state::Engine;
use crate::EngineError;
use std::collections::BTreeMap;
use std::sync::Arc;
use zenith_flowspec::{merge_params, FlowPlan};
use zenith_model::flow::{FlowSpec, RunId, Trigger};
use zenith_model::{AttemptId, AttemptOutcome, JobId, JobSpec, Millis, NodeId};

/// One change to the engine.
#[derive(Clone, Debug)]
pub enum Command {
    /// Queue jobs; with a key, a repeated submission answers with the jobs it made first.
    Submit {
        specs: Vec<Arc<JobSpec>>,
        key: Option<IdempotencyKey>,
    },
    Cancel {
        job: JobId,
    },
    /// Hold a live job (`hold: true`) or release it.
    Hold {
        job: JobId,
        hold: bool,
    },
    /// Change a live job's priority or queue.
    UpdateJob {
        job: JobId,
        update: crate::JobUpdate,
    },
    /// Run ended tasks of a job again; `ended` carries the job's records when it is not
    /// live (read by the caller from the store).
    Requeue {
        job: JobId,
        tasks: crate::RequeueTasks,
        ended: Option<Box<crate::EndedJob>>,
    },
    /// Forget an ended job with its tasks, attempts and logs.
    DeleteJob {
        job: JobId,
    },
    /// A node (re-)registers; its attempts are reconciled.
    Register(NodeRegistration),
    /// An agent's report: ended attempts, and what it still knows (a heartbeat).
    Report(NodeReport),
    /// Time passes: lost nodes, retries, timeouts, deadlines, cron, expiry.
    Tick,
    /// Start a run of a validated flow, or of an applied one by name.
    SubmitRun {
        flow: RunOf,
        /// Parameters as given (merged with the spec's defaults here).
        params: BTreeMap<String, String>,
        trigger: Trigger,
    },
    ApplyFlow {
        spec: Arc<FlowSpec>,
        plan: Arc<FlowPlan>,
    },
    DeleteFlow {
        name: String,
    },
    CancelRun {
        run: RunId,
    },
    /// Approve a step waiting for approval.
    Approve {
        run: RunId,
        step: String,
    },
    /// The node is gone for good (its credential revoked): lost now, its attempts requeued.
    LoseNode {
        node: NodeId,
    },
    /// No new work on the node; with a deadline, what still runs then is requeued.
    Cordon {
        node: NodeId,
        drain_deadline: Option<Millis>,
    },
    Uncordon {
        node: NodeId,
    },
    /// Forget a node that runs nothing.
    RemoveNode {
        node: NodeId,
    },
    /// Set (`Some`, validated) or clear (`None`) a namespace's weight and quota.
    SetNamespace {
        name: String,
        settings: Option<zenith_model::namespace::NamespaceSettings>,
    },
}

/// Which flow a run is of.
#[derive(Clone, Debug)]
pub enum RunOf {
    /// A spec checked by the caller (`zenith_flowspec::check`).
    Spec(Arc<FlowSpec>, Arc<FlowPlan>),
    /// The definition applied under this name.
    Applied(String),
}

/// What a node's agent reports in one request.
#[derive(Clone, Debug)]
pub struct NodeReport {
    pub node: NodeId,
    /// Attempts that ended.
    pub results: Vec<AttemptReport>,
    /// Attempts the agent runs, holds in its backlog, or holds unacknowledged results for.
    pub known: Vec<AttemptId>,
    /// Of `known`, those still waiting in its backlog.
    pub waiting: Vec<AttemptId>,
    /// The agent is stopping (see `lifecycle.rs`).
    pub leaving: Option<Leaving>,
}

/// An agent's notice that it is stopping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaving {
    /// What runs may finish within this long from the first notice.
    pub grace_ms: u64,
    /// It has stopped everything and its results are acknowledged: this is its last report.
    pub done: bool,
}

/// How one attempt ended, as its agent saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptReport {
    pub attempt: AttemptId,
    pub outcome: AttemptOutcome,
    /// Output parameters it wrote (kept for a flow step when it succeeded).
    pub outputs: BTreeMap<String, String>,
    /// How long it ran by the agent's clock.
    pub ran_ms: Option<u64>,
}

/// The engine's answer to a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The command took effect; nothing to answer but success.
    Done,
    Submitted(Submitted),
    /// A registration's answer: what to kill.
    Registered(NodeReply),
    Reported {
        /// Every reported result, accepted or refused as stale (the agent may drop them).
        acked: Vec<AttemptId>,
        /// Of `acked`, those refused because the node no longer owns the attempt (fencing).
        stale: Vec<AttemptId>,
        /// The heartbeat's answer.
        reply: NodeReply,
    },
    RunStarted(RunId),
    /// How many tasks went back to the queue.
    Requeued(u32),
    /// Nodes the engine forgot (lost longer than the TTL): drop what is kept per node.
    Ticked {
        forgotten: Vec<NodeId>,
    },
}

impl Engine {
    /// Applies one command at `now`. Effects and changes are left in the engine for the
    /// shell to take; no scheduling pass runs here except in `Tick` (the shell calls
    /// [`Engine::schedule`] once per batch of commands).
    pub fn apply(&mut self, cmd: Command, now: Millis) -> Result<Outcome, EngineError> {
        match cmd {
            Command::Submit { specs, key } => self
                .submit_idempotent(key, specs, now)
                .map(Outcome::Submitted),
            Command::Cancel { job } => self.cancel(job, now).map(|()| Outcome::Done),
            Command::Hold { job, hold: true } => self.hold(job).map(|()| Outcome::Done),
            Command::Hold { job, hold: false } => self.release(job).map(|()| Outcome::Done),
            Command::UpdateJob { job, update } => {
                self.update_job(job, update).map(|()| Outcome::Done)
            }
            Command::Requeue { job, tasks, ended } => self
                .requeue(job, tasks, ended.map(|e| *e))
                .map(Outcome::Requeued),
            Command::DeleteJob { job } => self.delete_job(job).map(|()| Outcome::Done),
            Command::Register(reg) => Ok(Outcome::Registered(self.register_node(reg, now))),
            Command::Report(report) => Ok(self.report(report, now)),
            Command::Tick => Ok(Outcome::Ticked {
                forgotten: self.tick(now),
            }),
            Command::SubmitRun {
                flow,
                params,
                trigger,
            } => {
                let (spec, plan) = match flow {
                    RunOf::Spec(spec, plan) => (spec, plan),
                    RunOf::Applied(name) => {
                        self.flow_def(&name).ok_or(EngineError::UnknownFlow(name))?
                    }
                };
                let params = merge_params(&spec, &params).map_err(EngineError::BadParams)?;
                self.submit_run(spec, plan, params, trigger, now)
                    .map(Outcome::RunStarted)
            }
            Command::ApplyFlow { spec, plan } => {
                self.apply_flow(spec, plan, now).map(|()| Outcome::Done)
            }
            Command::DeleteFlow { name } => self.delete_flow(&name).map(|()| Outcome::Done),
            Command::CancelRun { run } => self.cancel_run(run, now).map(|()| Outcome::Done),
            Command::Approve { run, step } => self.approve(run, &step, now).map(|()| Outcome::Done),
            Command::LoseNode { node } => {
                self.mark_lost(&node, now);
                Ok(Outcome::Done)
            }
            Command::Cordon {
                node,
                drain_deadline,
            } => self
                .cordon(&node, drain_deadline, now)
                .map(|()| Outcome::Done),
            Command::Uncordon { node } => self.uncordon(&node).map(|()| Outcome::Done),
            Command::RemoveNode { node } => self.remove_node(&node, now).map(|()| Outcome::Done),
            Command::SetNamespace { name, settings } => {
                self.set_namespace(&name, settings).map(|()| Outcome::Done)
            }
        }
    }

    /// Results first (each frees its slot), then the backlogged attempts the agent started,
    /// then the heartbeat over what it still knows: the same order an agent's outbox sees.
    fn report(&mut self, r: NodeReport, now: Millis) -> Outcome {
        let mut acked = Vec::with_capacity(r.results.len());
        let mut stale = Vec::new();
        for res in r.results {
            let _span = tracing::debug_span!("report", attempt = res.attempt.0, node = %r.node, outcome = res.outcome.kind()).entered();
            if self
                .attempt_finished_with(
                    &r.node,
                    res.attempt,
                    res.outcome,
                    res.outputs,
                    res.ran_ms,
                    now,
                )
                .is_err()
            {
                tracing::debug!(attempt = %res.attempt, node = %r.node, "refused stale report");
                stale.push(res.attempt);
            }
            acked.push(res.attempt);
        }
        // An attempt reported as ended in this same request is no longer known.
        let known: Vec<AttemptId> = if acked.is_empty() {
            r.known
        } else {
            let done: std::collections::HashSet<AttemptId> = acked.iter().copied().collect();
            r.known.into_iter().filter(|a| !done.contains(a)).collect()
        };
        self.agent_started(&r.node, &known, &r.waiting, now);
        let reply = self.heartbeat(&r.node, &known, now);
        match r.leaving {
            Some(Leaving { done: true, .. }) => self.node_left(&r.node, now),
            Some(Leaving { grace_ms, .. }) => {
                self.node_leaving(&r.node, now.saturating_add(grace_ms))
            }
            None => {}
        }
        Outcome::Reported {
            acked,
            stale,
            reply,
        }
    }
}

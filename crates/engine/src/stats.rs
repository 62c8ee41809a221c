//! Counters and measurements the engine keeps for the server's metrics. Plain numbers: the
//! engine stays free of I/O; the server reads them and exports them.

use crate::state::Engine;
use std::collections::BTreeMap;
use zenith_model::{JobState, NodeState};

/// Monotonic totals since this engine was created (or restored).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub jobs_submitted: u64,
    pub jobs_succeeded: u64,
    pub jobs_failed: u64,
    pub jobs_cancelled: u64,
    pub attempts_started: u64,
    /// Ended attempts by outcome kind (`exited_ok`, `exited_error`, `signaled`, `timed_out`,
    /// `cancelled`, `node_lost`, `start_failed`).
    pub attempts_ended: BTreeMap<&'static str, u64>,
    pub retries_scheduled: u64,
    pub node_loss_requeues: u64,
    /// Backlogged attempts the agent reported started.
    pub backlog_started: u64,
    pub stale_reports: u64,
    pub runs_started: u64,
    pub runs_succeeded: u64,
    pub runs_failed: u64,
    pub runs_cancelled: u64,
    /// Runs refused by `concurrency: forbid`.
    pub runs_refused: u64,
    pub run_deadlines_exceeded: u64,
    /// Retries refused because the run's `retryBudget` was spent.
    pub retry_budget_exhausted: u64,
    pub schedules_fired: u64,
    /// Scheduled runs skipped because a run was active and the flow forbids overlap.
    pub schedules_skipped: u64,
    pub schedules_failed: u64,
    /// Idempotency keys dropped before their TTL to make room (see `idempotency.rs`).
    pub idempotency_keys_evicted: u64,
    /// Times a scheduling pass passed over a job because its namespace was at a quota.
    pub quota_deferrals: u64,
    /// Attempts stopped and requeued because their node's drain deadline passed or their
    /// agent stopped.
    pub evictions: u64,
    /// Attempts stopped and requeued to make room for a higher-priority job.
    pub preemptions: u64,
    /// Gang jobs placed (each try of a gang counts once).
    pub gangs_started: u64,
    /// Agents that stopped and said so (`lifecycle.rs`).
    pub node_leaves: u64,
    /// Nodes reserved for a job that did not fit (`reserve.rs`).
    pub reservations: u64,
    /// Ended tasks queued again (`requeue.rs`).
    pub tasks_requeued: u64,
    /// Ended jobs deleted by hand.
    pub jobs_deleted: u64,
}

/// Durations measured inside the engine, drained by the server after every step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observation {
    /// From submission (or becoming ready again) to dispatch, in milliseconds.
    QueueWait(u64),
    /// From dispatch to the end of an attempt, in milliseconds.
    RunTime(u64),
}

/// Levels at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Levels {
    /// Live jobs by (queue, state).
    pub jobs: BTreeMap<(String, JobState), u64>,
    pub nodes: BTreeMap<NodeState, u64>,
    pub running_attempts: u64,
    /// Of `running_attempts`, those waiting in a node's backlog.
    pub backlogged_attempts: u64,
    /// Fair-share parties kept: namespaces, and users in them (`fairshare.rs`).
    pub share_parties: u64,
    /// Ready nodes cordoned or draining (no new work).
    pub nodes_cordoned: u64,
    pub cpu_millis_total: u64,
    pub cpu_millis_free: u64,
    pub memory_total: u64,
    pub memory_free: u64,
    pub live_runs: u64,
    pub flow_defs: u64,
}

/// Most observations kept between two drains (older ones are dropped first).
pub const MAX_OBSERVATIONS: usize = 100_000;

impl Engine {
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Observations since the last call.
    pub fn take_observations(&mut self) -> Vec<Observation> {
        self.observations.drain(..).collect()
    }

    pub(crate) fn observe(&mut self, o: Observation) {
        if self.observations.len() >= MAX_OBSERVATIONS {
            self.observations.pop_front();
        }
        self.observations.push_back(o);
    }

    /// Current levels; O(live jobs + nodes), meant for a metrics scrape.
    pub fn levels(&self) -> Levels {
        let mut l = Levels::default();
        for job in self.jobs.values() {
            *l.jobs
                .entry((job.spec.queue.clone(), job.state()))
                .or_insert(0) += 1;
        }
        for n in self.nodes.values() {
            *l.nodes.entry(n.state).or_insert(0) += 1;
            l.backlogged_attempts += n.backlog.len() as u64;
            if n.state == NodeState::Ready && n.cordoned_at.is_some() {
                l.nodes_cordoned += 1;
            }
            if n.state == NodeState::Ready {
                l.cpu_millis_total += n.total.cpu_millis;
                l.cpu_millis_free += n.free.cpu_millis;
                l.memory_total += n.total.memory;
                l.memory_free += n.free.memory;
            }
        }
        l.running_attempts = self.attempts.len() as u64;
        l.live_runs = self.runs.len() as u64;
        l.flow_defs = self.defs.len() as u64;
        l.share_parties = self
            .parties
            .ns
            .values()
            .map(|n| 1 + n.users.len() as u64)
            .sum();
        l
    }
}

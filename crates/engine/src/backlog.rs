//! Node backlogs: work assigned to a node before resources free there, so that the agent
//! starts it the moment a slot frees instead of after a round trip to the server.
//!
//! A node registers with `prefetch` (the agent's `--prefetch`): how many assignments it
//! holds beyond what fits. When no node has free resources for a task, the scheduling pass
//! may append it to the backlog of a node it fits once empty, the least loaded first. Both
//! sides keep the backlog in attempt order (attempt IDs only grow, and a node receives its
//! assignments in that order) and start its head when it fits. The backlogged attempt holds
//! no resources here; its task counts as running. The agent names in every report and
//! registration the attempts that still wait; one it knows and does not name has started,
//! and takes its resources here then ([`Engine::agent_started`]). Cancelling, timing out,
//! losing the node and reconciliation treat backlogged attempts like started ones, except
//! that one lost before it started does not count against `max_node_loss_requeues`.
//!
//! A backlog pays off for short attempts (a round trip to the server is a large share of
//! their slot time) and costs long ones: work queued behind a long attempt waits for it, even
//! when another node or a later, higher-priority job would have run first. So a node takes
//! backlog only while the attempts that ended there ran [`BACKLOG_MAX_RUN_MS`] or less on
//! average (a moving average, none until one ended), and holds no more than about
//! [`BACKLOG_HORIZON_MS`] of such work ([`backlog_depth`]): enough to cover a round trip
//! while the server is busy, and a bound on the wait it adds for later, more urgent work.
//! `prefetch` caps it (what the agent agreed to hold).

/// A node whose attempts ran longer than this on average takes no backlog.
pub const BACKLOG_MAX_RUN_MS: u64 = 250;
/// A backlog holds about this much work at the node's recent run time per attempt.
pub const BACKLOG_HORIZON_MS: u64 = 100;

use crate::state::Engine;
use std::collections::HashSet;
use zenith_model::{AttemptId, JobId, JobSpec, Millis, NodeId};

impl Engine {
    /// The ready node with room in its backlog that `spec` (of job `job`) fits once the node
    /// is empty, with the shortest backlog (first in ID order among equals); not a node
    /// reserved for another job (`reserve.rs`).
    pub(crate) fn backlog_node(&self, spec: &JobSpec, job: JobId) -> Option<NodeId> {
        self.prefetching
            .iter()
            .filter_map(|id| self.nodes.get(id).map(|n| (id, n)))
            .filter(|(_, n)| {
                n.open()
                    && (n.backlog.len() as u64) < backlog_depth(n)
                    && spec.resources.fits_in(&n.total)
                    && spec.constraints.iter().all(|k| k.matches(&n.labels))
            })
            .filter(|(id, _)| {
                self.reservation
                    .as_ref()
                    .is_none_or(|r| &r.node != *id || r.job == job)
            })
            .min_by_key(|(_, n)| n.backlog.len())
            .map(|(id, _)| id.clone())
    }

    /// The agent of `node` reported the attempts it knows (`known`) and those of them still
    /// waiting for resources (`waiting`): backlogged attempts it knows and no longer lists
    /// have started.
    pub fn agent_started(
        &mut self,
        node: &NodeId,
        known: &[AttemptId],
        waiting: &[AttemptId],
        now: Millis,
    ) {
        let now = self.clamp(now);
        let Some(n) = self.nodes.get(node) else {
            return;
        };
        if n.backlog.is_empty() {
            return;
        }
        let known: HashSet<AttemptId> = known.iter().copied().collect();
        let waiting: HashSet<AttemptId> = waiting.iter().copied().collect();
        self.start_reported(node, &known, &waiting, now);
    }

    /// Starts, in order, the backlogged attempts the agent knows and does not list as
    /// waiting, while they fit: one whose place is still held by an attempt whose result has
    /// not arrived yet (the agent sends a result once its output is shipped) starts with
    /// a later report, so the node is never over-committed here.
    pub(crate) fn start_reported(
        &mut self,
        node: &NodeId,
        known: &HashSet<AttemptId>,
        waiting: &HashSet<AttemptId>,
        now: Millis,
    ) {
        let Some(n) = self.nodes.get(node) else {
            return;
        };
        let mut free = n.free.clone();
        let mut started = Vec::new();
        for aid in n.backlog.iter().copied() {
            if !known.contains(&aid) || waiting.contains(&aid) {
                break;
            }
            let Some(job) = self.attempts.get(&aid).and_then(|r| self.jobs.get(&r.job)) else {
                break;
            };
            if !job.spec.resources.fits_in(&free) {
                break;
            }
            free.take(&job.spec.resources);
            started.push(aid);
        }
        for aid in started {
            self.start_backlogged(aid, now);
        }
    }

    /// Moves a backlogged attempt to started: it takes its resources, its timeout starts.
    pub(crate) fn start_backlogged(&mut self, aid: AttemptId, now: Millis) {
        let Some(r) = self.attempts.get_mut(&aid).filter(|r| r.queued) else {
            return;
        };
        let Some(job) = self.jobs.get(&r.job) else {
            return;
        };
        r.queued = false;
        r.started_at = now;
        r.deadline = job.spec.timeout.map(|t| now.saturating_add(t.as_millis()));
        if let Some(d) = r.deadline {
            self.deadlines.insert((d, aid));
        }
        if let Some(n) = self.nodes.get_mut(&r.node) {
            n.backlog.remove(&aid);
            n.free.take(&job.spec.resources);
        }
        let record = crate::changes::started_record(aid, r, job.index(r.slot));
        self.changes.attempts.insert(aid, record);
        self.counters.backlog_started += 1;
    }

    /// Moves a started attempt back to the backlog: after a server restart the engine
    /// restores every open attempt as started, and the registering agent says which wait.
    pub(crate) fn unstart(&mut self, aid: AttemptId) {
        let Some(r) = self.attempts.get_mut(&aid) else {
            return;
        };
        if r.queued {
            return;
        }
        r.queued = true;
        if let Some(d) = r.deadline.take() {
            self.deadlines.remove(&(d, aid));
        }
        if let Some(n) = self.nodes.get_mut(&r.node) {
            n.backlog.insert(aid);
        }
    }
}

/// How many attempts node `n` may hold in its backlog now: none without a history of short
/// attempts; else as many as its started attempts get through in [`BACKLOG_HORIZON_MS`] at
/// their recent average run time (at least one), and at most `prefetch`. Attempts that ran
/// under a millisecond count as 1 ms: they get the whole `prefetch`.
pub(crate) fn backlog_depth(n: &crate::state::Node) -> u64 {
    let Some(avg) = n.recent_run_ms.filter(|ms| *ms <= BACKLOG_MAX_RUN_MS) else {
        return 0;
    };
    let slots = n.running.len().saturating_sub(n.backlog.len()).max(1) as u64;
    let by_time = (slots.saturating_mul(BACKLOG_HORIZON_MS) / avg.max(1)).max(1);
    by_time.min(u64::from(n.prefetch))
}

/// Folds the run time of an attempt that ended on node `n` into the node's moving average:
/// the agent's measure (`ran_ms`) when it sent one, else the engine's view (from the start it
/// saw to `now`; one that ended before the engine saw it start ran within one report
/// interval: 0). Killed attempts say nothing about how long work runs there.
pub(crate) fn note_run_time(
    n: &mut crate::state::Node,
    r: &crate::state::Running,
    now: Millis,
    ran_ms: Option<u64>,
) {
    if r.killing.is_some() {
        return;
    }
    let ran = match ran_ms {
        Some(ms) => ms,
        None if r.queued => 0,
        None => now.saturating_sub(r.started_at),
    };
    n.recent_run_ms = Some(match n.recent_run_ms {
        None => ran,
        // An eighth of the way to the new value (integer arithmetic, deterministic).
        Some(avg) => {
            let avg = i128::from(avg);
            (avg + (i128::from(ran) - avg) / 8).max(0) as u64
        }
    });
}

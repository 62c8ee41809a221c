//! Preemption (opt-in per queue): a job that fits on no node may stop running attempts of
//! lower priority in a preemptible queue (`EngineConfig::preemptible_queues`, the server's
//! `--preemptible-queue`) to make room for itself.
//!
//! The victims are chosen on one node: among the open nodes without a backlog that could ever
//! take the job (constraints, capacity), the one where the fewest attempts must stop, then the
//! least work is lost (run time so far). On that node the lowest-priority attempts go first,
//! the youngest first among equals, until the job fits in what is free plus what they hold.
//! Each victim is stopped (an `Effect::Kill`), ends `preempted` and is queued again (not a
//! failure); the node is reserved for the job (`reserve.rs`), so what frees goes to it.
//! Attempts already stopping for the job count as freed: a job preempts once, not once per
//! pass. A reservation held by a job of at least the same priority is left alone.

use crate::state::{Engine, KillReason, Node};
use crate::Reservation;
use std::cmp::Reverse;
use zenith_model::{AttemptId, JobId, JobSpec, Millis, NodeId};

/// What stopping for one job costs on one node: (attempts to stop, work lost in ms).
type Cost = (usize, u64);

impl Engine {
    /// Job `id` (of `spec`, `shape`) fits nowhere: stops lower-priority preemptible attempts
    /// on one node so that it will. Returns whether a node is now being freed for it (this
    /// call or an earlier one); the job then waits for the stopped attempts to end.
    pub(crate) fn preempt(&mut self, id: JobId, spec: &JobSpec, shape: u64, now: Millis) -> bool {
        if self.cfg.preemptible_queues.is_empty() {
            return false;
        }
        if let Some(r) = &self.reservation {
            let held_prio = self.jobs.get(&r.job).map(|j| j.spec.priority);
            if r.job != id && held_prio.is_some_and(|p| p >= spec.priority) {
                return false;
            }
        }
        let mut best: Option<(Cost, &NodeId, Vec<AttemptId>)> = None;
        let eligible = self.nodes.iter().filter(|(_, n)| {
            n.open()
                && n.backlog.is_empty()
                && spec.resources.fits_in(&n.total)
                && spec.constraints.iter().all(|k| k.matches(&n.labels))
        });
        for (nid, n) in eligible.take(crate::RESERVE_SCAN) {
            let Some((cost, victims)) = self.victims_on(n, id, spec, now) else {
                continue;
            };
            if best.as_ref().is_none_or(|(c, ..)| cost < *c) {
                best = Some((cost, nid, victims));
            }
        }
        let Some((_, node, victims)) = best else {
            return false;
        };
        let node = node.clone();
        for aid in victims {
            // Victims are not stopping yet (`victims_on`): the reason is theirs.
            self.stop_attempt(aid, KillReason::Preempted { by: id }, false);
            tracing::info!(attempt = %aid, by = %id, node = %node, "preempting");
        }
        if self
            .reservation
            .as_ref()
            .is_none_or(|r| r.node != node || r.job != id)
        {
            self.counters.reservations += 1;
        }
        self.reservation = Some(Reservation {
            job: id,
            node,
            start: None,
            shape,
            resources: spec.resources.clone(),
        });
        true
    }

    /// The attempts on `n` that must stop for job `id` to fit there, with their cost; `None`
    /// when stopping every one it may stop is not enough.
    fn victims_on(
        &self,
        n: &Node,
        id: JobId,
        spec: &JobSpec,
        now: Millis,
    ) -> Option<(Cost, Vec<AttemptId>)> {
        let mut avail = n.free.clone();
        let mut candidates = Vec::new();
        for aid in &n.running {
            let Some(r) = self.attempts.get(aid).filter(|r| !r.queued) else {
                continue;
            };
            let Some(job) = self.jobs.get(&r.job) else {
                continue;
            };
            match r.killing {
                // Already stopping for this job: its room is on the way.
                Some(KillReason::Preempted { by }) if by == id => {
                    avail.give(&job.spec.resources);
                }
                // Stopping for another job: that room is spoken for.
                Some(KillReason::Preempted { .. }) => {}
                // Ending anyway (cancel, timeout, drain): nobody claims it.
                Some(_) => avail.give(&job.spec.resources),
                None if job.spec.priority < spec.priority
                    && self.cfg.preemptible_queues.contains(&job.spec.queue) =>
                {
                    candidates.push((job.spec.priority, Reverse(r.started_at), *aid, r.job));
                }
                None => {}
            }
        }
        if spec.resources.fits_in(&avail) {
            return Some(((0, 0), Vec::new()));
        }
        // Lowest priority first, then the youngest (least work lost).
        candidates.sort_unstable();
        let mut victims = Vec::new();
        let mut lost = 0u64;
        for (_, Reverse(started), aid, job) in candidates {
            let Some(j) = self.jobs.get(&job) else {
                continue;
            };
            avail.give(&j.spec.resources);
            victims.push(aid);
            lost = lost.saturating_add(now.saturating_sub(started));
            if spec.resources.fits_in(&avail) {
                return Some(((victims.len(), lost), victims));
            }
        }
        None
    }

    /// How many attempts are stopping to make room for job `id`, and where.
    pub fn preempting_for(&self, id: JobId) -> Option<(usize, NodeId)> {
        let r = self.reservation.as_ref().filter(|r| r.job == id)?;
        let n = self.nodes.get(&r.node)?;
        let count = n
            .running
            .iter()
            .filter_map(|a| self.attempts.get(a))
            .filter(|a| a.killing == Some(KillReason::Preempted { by: id }))
            .count();
        (count > 0).then(|| (count, r.node.clone()))
    }
}

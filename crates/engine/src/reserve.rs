//! Reservations and EASY backfill: the first job of a scheduling pass that does not fit
//! reserves the node where it will fit soonest, so that smaller, later jobs cannot keep
//! overtaking it.
//!
//! When it will fit is known from the attempts running there: each with a timeout ends by
//! its deadline; one without may run forever. Walking them by deadline and adding up what
//! they free gives the earliest time the job surely fits (`start`), or none when that
//! depends on an attempt without a timeout. While the reservation holds, a smaller job may
//! start on that node only if its own timeout ends it by `start` (so it cannot delay the
//! reserved job); with no known `start`, none may. A job asking at least as much as the
//! reserved one in every resource is not held off: it can only take room the reserved job
//! could take too, and which of them gets it stays with fair share and priority (so queues
//! of same-sized jobs share a full cluster as before), and neither is a job of a party
//! (namespace, user) with a lower fair-share score than the reserved job's: a reservation
//! protects a big job against smaller ones, not against fair share. Other nodes take anything. One
//! reservation at a time (EASY), kept from pass to pass until the job is placed, leaves the
//! queue, or the node stops taking work; at most [`RESERVE_SCAN`] nodes are weighed.

use crate::state::{Engine, Node};
use zenith_model::{JobId, JobSpec, Millis, NodeId, Resources};

/// Nodes weighed when choosing where a job is reserved (a bound on the cost of a pass that
/// ends with the cluster full).
pub const RESERVE_SCAN: usize = 64;

/// A node held for a job that does not fit yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    pub job: JobId,
    pub node: NodeId,
    /// When the job surely fits there (from running attempts' deadlines), if known.
    pub start: Option<Millis>,
    /// The job's shape (`state::shape_of`): a pass's scan of that shape must not skip the
    /// node for other jobs.
    pub(crate) shape: u64,
    /// What the job asks for: a job asking at least as much in every resource may use the
    /// node all the same (it could only take room the reserved job could use too, so who
    /// gets it stays the pass's fair-share and priority order).
    pub(crate) resources: Resources,
}

impl Engine {
    /// The reservation in force, if any.
    pub fn reservation(&self) -> Option<&Reservation> {
        self.reservation.as_ref()
    }

    /// At the start of a pass: drops a reservation whose job no longer waits or whose node
    /// no longer takes work.
    pub(crate) fn check_reservation(&mut self) {
        let Some(r) = &self.reservation else { return };
        let job_waits = self
            .jobs
            .get(&r.job)
            .is_some_and(|j| !j.pending.is_empty() && !j.blocked());
        let node_open = self.nodes.get(&r.node).is_some_and(Node::open);
        if !job_waits || !node_open {
            self.reservation = None;
        }
    }

    /// Whether node `node` is held for another job than `job` (of `spec`) that `job` could
    /// delay: it may start there only if its timeout ends it by the reservation's start.
    pub(crate) fn reserved_against(
        &self,
        node: &NodeId,
        job: JobId,
        spec: &JobSpec,
        now: Millis,
    ) -> bool {
        let Some(r) = &self.reservation else {
            return false;
        };
        if &r.node != node || r.job == job || r.resources.fits_in(&spec.resources) {
            return false;
        }
        if self
            .jobs
            .get(&r.job)
            .is_some_and(|held| self.fair_share_before(spec, &held.spec))
        {
            return false;
        }
        let ends_by = spec.timeout.map(|t| now.saturating_add(t.as_millis()));
        !matches!((ends_by, r.start), (Some(e), Some(s)) if e <= s)
    }

    /// Job `job` (of `spec`) did not fit: unless a reservation holds already (for a job it
    /// does not outrank in the same queue), reserve the node among the first
    /// [`RESERVE_SCAN`] that could ever take it where it fits soonest (a known time first,
    /// the earliest; then the node missing least of its CPUs). Returns whether it took the
    /// reservation from another job (then the node may take it now: try again).
    pub(crate) fn reserve(&mut self, job: JobId, spec: &JobSpec, shape: u64) -> bool {
        let replaced = match &self.reservation {
            None => false,
            Some(r) if r.job == job || !self.outranks(job, r.job) => return false,
            Some(_) => true,
        };
        self.reservation = None;
        let mut best: Option<((bool, Millis, u64), &NodeId)> = None;
        let fitting = self.nodes.iter().filter(|(_, n)| {
            n.open()
                && spec.resources.fits_in(&n.total)
                && spec.constraints.iter().all(|k| k.matches(&n.labels))
        });
        for (id, n) in fitting.take(RESERVE_SCAN) {
            let start = self.fits_at(n, spec);
            let missing = spec.resources.cpu_millis.saturating_sub(n.free.cpu_millis);
            let key = (start.is_none(), start.unwrap_or(0), missing);
            if best.as_ref().is_none_or(|(k, _)| key < *k) {
                best = Some((key, id));
            }
        }
        self.reservation = best.map(|((unknown, start, _), id)| Reservation {
            job,
            node: id.clone(),
            start: (!unknown).then_some(start),
            shape,
            resources: spec.resources.clone(),
        });
        if let Some(r) = &self.reservation {
            self.counters.reservations += 1;
            tracing::debug!(job = %r.job, node = %r.node, start = ?r.start, "reserved");
        }
        replaced && self.reservation.is_some()
    }

    /// A job of `a`'s party is owed capacity before one of `b`'s: a lower fair-share score
    /// (namespaces first, then users in one). A reservation never holds a node against a
    /// party further from its share than the reserved job's.
    fn fair_share_before(&self, a: &JobSpec, b: &JobSpec) -> bool {
        let (na, nb) = (a.namespace(), b.namespace());
        if na != nb {
            return self.ns_score(na) < self.ns_score(nb);
        }
        a.submitter != b.submitter
            && self.user_score(na, &a.submitter) < self.user_score(nb, &b.submitter)
    }

    /// `a` comes before `b` in the same queue (higher priority, or as high and older).
    fn outranks(&self, a: JobId, b: JobId) -> bool {
        match (self.jobs.get(&a), self.jobs.get(&b)) {
            (Some(ja), Some(jb)) => {
                crate::queue::leaf_of(&ja.spec) == crate::queue::leaf_of(&jb.spec)
                    && ja.queue_key(a) < jb.queue_key(b)
            }
            _ => false,
        }
    }

    /// When `spec` surely fits on `n`, from the deadlines of what runs there; `None` when
    /// that waits on an attempt without a timeout.
    fn fits_at(&self, n: &Node, spec: &JobSpec) -> Option<Millis> {
        let mut ends: Vec<(Option<Millis>, &zenith_model::Resources)> = n
            .running
            .iter()
            .filter_map(|aid| self.attempts.get(aid))
            .filter(|r| !r.queued)
            .filter_map(|r| Some((r.deadline, &self.jobs.get(&r.job)?.spec.resources)))
            .collect();
        // Deadlines first, earliest first; attempts without one last.
        ends.sort_by_key(|(d, _)| (d.is_none(), *d));
        let mut free = n.free.clone();
        for (deadline, res) in ends {
            free.give(res);
            if spec.resources.fits_in(&free) {
                return deadline;
            }
        }
        None
    }
}

impl Engine {
    /// What a reservation means for queued job `id`, as explain says it: that a node is
    /// freed for it (by preemption or by what ends there), or that a node it would fit on
    /// now is held for another job.
    pub fn reservation_note(&self, id: JobId) -> Option<String> {
        let r = self.reservation.as_ref()?;
        let node = self.nodes.get(&r.node)?;
        if r.job == id {
            if let Some((count, _)) = self.preempting_for(id) {
                let s = if count == 1 { "" } else { "s" };
                return Some(format!(
                    "preempting {count} lower-priority attempt{s} on node {}",
                    node.name
                ));
            }
            return Some(match r.start {
                Some(t) => format!(
                    "node {} reserved for it; it fits there within {}",
                    node.name,
                    zenith_model::DurationMs(
                        t.saturating_sub(self.last_now).max(1000) / 1000 * 1000
                    )
                ),
                None => format!(
                    "node {} reserved for it (when work running there ends)",
                    node.name
                ),
            });
        }
        let job = self.jobs.get(&id)?;
        let fits = job.spec.resources.fits_in(&node.free)
            && job.spec.constraints.iter().all(|k| k.matches(&node.labels));
        (fits && self.reserved_against(&r.node, id, &job.spec, self.last_now))
            .then(|| format!("node {} reserved for job {}", node.name, r.job))
    }
}

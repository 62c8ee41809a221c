//! The batched scheduling pass: queued tasks in fair-share order between parties (namespaces,
//! then users in one: `fairshare.rs`), in priority order within a queue, placed through
//! `zenith_placement`, with the reservation made in the same step as the decision.

use crate::state::{Engine, QueueKey};
use rustc_hash::{FxHashMap, FxHashSet};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use zenith_model::{JobId, Millis, NodeId};
use zenith_placement as placement;

/// One queue's candidates in a pass: the next job of each shape still in play, best first.
type Candidates = BinaryHeap<Reverse<(QueueKey, u64)>>;

/// Parties by score, lowest first (the score's bits: non-negative floats order as integers),
/// then by index (namespace, user name order): deterministic.
type ByScore = BinaryHeap<Reverse<(u64, usize)>>;

struct QueueTurn {
    name: String,
    candidates: Candidates,
}

/// A user's queues in a pass; they take turns job by job.
struct UserTurn {
    name: String,
    queues: Vec<QueueTurn>,
    next: usize,
}

struct NsTurn {
    name: String,
    users: Vec<UserTurn>,
    by_score: ByScore,
}

/// The pass's scan state shared by every placement in it.
#[derive(Default)]
struct Scan {
    /// Per shape: nodes before this one are known not to fit it for the rest of the pass
    /// (resources are only taken during a pass), so its next scan starts here.
    from: FxHashMap<u64, NodeId>,
    /// Shapes no node's backlog can take for the rest of the pass.
    backlogs_full: FxHashSet<u64>,
    /// (shape, priority) pairs that found nothing to preempt in this pass.
    no_preempt: FxHashSet<(u64, i32)>,
}

impl Engine {
    /// Places as many queued tasks as fit, at most `max_dispatch_per_pass`. While several
    /// parties have queued work, each placement goes to the namespace, then the user in it,
    /// with the lowest fair-share score (`fairshare.rs`), one task at a time; a party alone
    /// places in bulk. A user's queues take turns job by job; within a queue, higher
    /// priority first, then older jobs. A job that does not fit (nodes or quota) is passed
    /// over (later jobs that do fit still run), so small jobs backfill around large ones.
    /// Jobs are grouped by shape (`queue.rs`): once a job does not fit, the rest of its shape
    /// in that queue is skipped for the pass without a look at the nodes, so a long queue
    /// costs nothing while the cluster is full.
    pub fn schedule(&mut self, now: Millis) {
        let now = self.clamp(now);
        if !self.sched_dirty {
            return;
        }
        self.sched_dirty = false;
        self.check_reservation();
        let mut budget = self.cfg.max_dispatch_per_pass;
        let mut nss = self.turns();
        // Each party starts the pass at its score now (a tie-free 0 would hand the first
        // freed slot of every pass to the first namespace by name).
        let contended = nss.len() > 1;
        let mut by_score = ByScore::new();
        for (i, ns) in nss.iter_mut().enumerate() {
            let score = if contended {
                self.ns_score(&ns.name)
            } else {
                0
            };
            by_score.push(Reverse((score, i)));
            if ns.users.len() > 1 {
                let scores: Vec<u64> = ns
                    .users
                    .iter()
                    .map(|u| self.user_score(&ns.name, &u.name))
                    .collect();
                ns.by_score = scores
                    .into_iter()
                    .enumerate()
                    .map(|(ui, sc)| Reverse((sc, ui)))
                    .collect();
            }
        }
        let mut scan = Scan::default();
        while budget > 0 {
            let Some(Reverse((_, ni))) = by_score.pop() else {
                break;
            };
            let NsTurn {
                name,
                users,
                by_score: users_by_score,
            } = &mut nss[ni];
            let Some(Reverse((_, ui))) = users_by_score.pop() else {
                continue;
            };
            let alone = by_score.is_empty() && users_by_score.is_empty();
            let quantum = if alone { budget } else { 1 };
            let (placed, more) = self.turn(name, &mut users[ui], quantum, now, &mut scan);
            budget -= placed;
            let ns = &mut nss[ni];
            if more {
                let score = if alone {
                    0
                } else {
                    self.user_score(&ns.name, &ns.users[ui].name)
                };
                ns.by_score.push(Reverse((score, ui)));
            }
            if !ns.by_score.is_empty() {
                let score = if alone { 0 } else { self.ns_score(&ns.name) };
                by_score.push(Reverse((score, ni)));
            }
        }
        if budget == 0 {
            // More may fit: continue in the next pass.
            self.sched_dirty = true;
        }
    }

    /// [`Engine::preempt`] unless the same shape and priority found nothing earlier in the
    /// pass (what may be stopped only shrinks during a pass).
    fn try_preempt(
        &mut self,
        id: JobId,
        spec: &zenith_model::JobSpec,
        shape: u64,
        now: Millis,
        scan: &mut Scan,
    ) -> bool {
        if self.cfg.preemptible_queues.is_empty()
            || scan.no_preempt.contains(&(shape, spec.priority))
        {
            return false;
        }
        let freeing = self.preempt(id, spec, shape, now);
        if !freeing {
            scan.no_preempt.insert((shape, spec.priority));
        }
        freeing
    }

    /// Every party with queued work and its queues' first candidates.
    fn turns(&self) -> Vec<NsTurn> {
        let mut nss: Vec<NsTurn> = Vec::new();
        for ((ns, user, queue), q) in self.queues.iter() {
            if nss.last().is_none_or(|n| n.name != ns) {
                nss.push(NsTurn {
                    name: ns.to_string(),
                    users: Vec::new(),
                    by_score: ByScore::new(),
                });
            }
            let Some(n) = nss.last_mut() else { continue };
            if n.users.last().is_none_or(|u| u.name != user) {
                let i = n.users.len();
                n.users.push(UserTurn {
                    name: user.to_string(),
                    queues: Vec::new(),
                    next: 0,
                });
                n.by_score.push(Reverse((0, i)));
            }
            if let Some(u) = n.users.last_mut() {
                u.queues.push(QueueTurn {
                    name: queue.to_string(),
                    candidates: q.heads().map(Reverse).collect(),
                });
            }
        }
        nss
    }

    pub(crate) fn ns_score(&self, ns: &str) -> u64 {
        let p = &self.parties;
        p.ns.get(ns)
            .map_or(0, |n| n.party.score(&p.total, p.weight(ns)).to_bits())
    }

    pub(crate) fn user_score(&self, ns: &str, user: &str) -> u64 {
        let p = &self.parties;
        p.ns.get(ns)
            .and_then(|n| n.users.get(user))
            .map_or(0, |u| u.score(&p.total, p.user_weight(ns, user)).to_bits())
    }

    /// One turn of `user`: the next of its queues with a candidate places up to `quantum`
    /// tasks of its best job. Returns how many were placed and whether the user has
    /// candidates left.
    fn turn(
        &mut self,
        ns: &str,
        user: &mut UserTurn,
        quantum: usize,
        now: Millis,
        scan: &mut Scan,
    ) -> (usize, bool) {
        while !user.queues.is_empty() {
            let qi = user.next % user.queues.len();
            let Some(Reverse((key, shape))) = user.queues[qi].candidates.pop() else {
                user.queues.swap_remove(qi);
                continue;
            };
            user.next = qi + 1;
            let (placed, empty) = self.place_job(key.1, quantum, now, scan);
            let q = &mut user.queues[qi];
            if empty {
                let leaf = (ns, user.name.as_str(), q.name.as_str());
                self.queues.remove(leaf, shape, key);
                // The shape still fits: its next job is a candidate.
                if let Some(next) = self.queues.get(leaf).and_then(|q| q.next_after(shape, key)) {
                    q.candidates.push(Reverse((next, shape)));
                }
            } else if placed == quantum {
                // Stopped by its quantum, not by a misfit: its next task comes next turn.
                q.candidates.push(Reverse((key, shape)));
            }
            if placed > 0 {
                return (placed, true);
            }
        }
        (0, false)
    }

    /// Places pending tasks of one job until it has none or no node fits. Returns how many
    /// were placed and whether the job leaves the queue (no pending tasks left, or at its
    /// array throttle).
    // Long by design: the placement hot path, holding one borrow of the job and its shape's
    // scan position across the loop (split, each piece would look the job up again).
    fn place_job(
        &mut self,
        id: JobId,
        budget: usize,
        now: Millis,
        scan: &mut Scan,
    ) -> (usize, bool) {
        let mut placed = 0;
        loop {
            let Some(job) = self.jobs.get(&id) else {
                return (placed, true);
            };
            let Some(&slot) = job.pending.front() else {
                return (placed, true);
            };
            if placed >= budget {
                return (placed, false);
            }
            if job.spec.gang.is_some() {
                // All members at once, or none (`gang.rs`).
                return self.place_gang(id, now);
            }
            if job.throttled() {
                // Out of the queue until one of its tasks ends (`control.rs`); the pass goes
                // on with the next job of its shape.
                return (placed, true);
            }
            let spec = job.spec.clone();
            if !self.parties.settings.is_empty()
                && self
                    .parties
                    .running_hit(spec.namespace(), &spec.resources)
                    .is_some()
            {
                self.counters.quota_deferrals += 1;
                return (placed, false);
            }
            let io = job.owner.map(|o| self.step_io(o)).unwrap_or_default();
            let shape = job.shape;
            let start = scan.from.get(&shape).cloned();
            let nodes = match &start {
                Some(from) => self.nodes.range(from.clone()..),
                None => self.nodes.range::<NodeId, _>(..),
            };
            let reserved = self.reservation.is_some();
            let candidates = nodes.map(|(nid, n)| {
                (
                    nid,
                    placement::Candidate {
                        free: &n.free,
                        total: &n.total,
                        labels: &n.labels,
                        // A node with a backlog starts its work in order: new work queues
                        // behind it (below), so free resources there are already spoken for;
                        // a node held for another job takes only what ends in time.
                        // Why does not matter here: the choice is only made, not explained.
                        unavailable: (!(n.open() && n.backlog.is_empty())
                            || (reserved && self.reserved_against(nid, id, &spec, now)))
                        .then_some("busy"),
                    },
                )
            });
            let spread_counts = match spec.spread {
                Some(_) => self.jobs.get(&id).and_then(|j| j.spread_counts.as_deref()),
                None => None,
            };
            let prefs = placement::Preferences {
                prefer: &spec.prefer,
                spread: spec.spread.as_deref().zip(spread_counts),
            };
            let sel =
                placement::select_scan(candidates, &spec.resources, &spec.constraints, &prefs);
            let (node_id, queued) = match sel {
                // A reserved node skipped for this job must not move the scan of the reserved
                // job's shape past it (that job may fit there).
                Some(sel) if self.reservation.as_ref().is_some_and(|r| r.shape == shape) => {
                    (sel.chosen.clone(), false)
                }
                Some(sel) => {
                    scan.from.insert(shape, sel.first_feasible.clone());
                    (sel.chosen.clone(), false)
                }
                None if self.prefetching.is_empty() || scan.backlogs_full.contains(&shape) => {
                    if self.try_preempt(id, &spec, shape, now, scan) {
                        return (placed, false);
                    }
                    if self.reserve(id, &spec, shape) {
                        continue;
                    }
                    return (placed, false);
                }
                None => match self.backlog_node(&spec, id) {
                    // A job that may preempt does so rather than wait in a backlog.
                    _ if self.try_preempt(id, &spec, shape, now, scan) => return (placed, false),
                    Some(n) => (n, true),
                    None => {
                        scan.backlogs_full.insert(shape);
                        if self.reserve(id, &spec, shape) {
                            continue;
                        }
                        return (placed, false);
                    }
                },
            };
            if self.reservation.as_ref().is_some_and(|r| r.job == id) {
                self.reservation = None;
            }
            self.start_task(id, slot, node_id, queued, None, io, now);
            placed += 1;
        }
    }
}

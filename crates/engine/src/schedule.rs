//! The batched scheduling pass: queued tasks in priority order per queue, placed through
//! `zenith_placement`, with the reservation made in the same step as the decision.

use crate::state::{Engine, QueueKey, Running};
use crate::{Assignment, Effect};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use zenith_model::{AttemptId, JobId, Millis, NodeId, NodeState, TaskState};
use zenith_placement as placement;

/// One queue's candidates in a pass: the next job of each shape still in play, best first.
type Candidates = BinaryHeap<Reverse<(QueueKey, u64)>>;

impl Engine {
    /// Places as many queued tasks as fit, at most `max_dispatch_per_pass`. Queues take turns
    /// job by job so that one busy queue does not starve another; within a queue, higher
    /// priority first, then older jobs. A job that does not fit is passed over (later jobs
    /// that do fit still run), so small jobs backfill around large ones. Jobs are grouped by
    /// shape (`queue.rs`): once a job does not fit, the rest of its shape is skipped for the
    /// pass without a look at the nodes, so a long queue costs nothing while the cluster is full.
    pub fn schedule(&mut self, now: Millis) {
        let now = self.clamp(now);
        if !self.sched_dirty {
            return;
        }
        self.sched_dirty = false;
        let mut budget = self.cfg.max_dispatch_per_pass;
        // Per queue: the next candidate of each shape still in play, best first.
        let mut turns: Vec<(String, Candidates)> = self
            .queues
            .iter()
            .map(|(name, q)| (name.clone(), q.heads().map(Reverse).collect()))
            .collect();
        let mut drained: Vec<(String, u64, QueueKey)> = Vec::new();
        // Per shape: nodes before this one are known not to fit it for the rest of the pass
        // (resources are only taken during a pass), so its next scan starts here.
        let mut scan_from: HashMap<u64, NodeId> = HashMap::new();
        // Shapes no node's backlog can take for the rest of the pass.
        let mut backlogs_full: HashSet<u64> = HashSet::new();
        while budget > 0 && !turns.is_empty() {
            let mut i = 0;
            while i < turns.len() && budget > 0 {
                let Some(Reverse((key, shape))) = turns[i].1.pop() else {
                    turns.swap_remove(i);
                    continue;
                };
                let (placed, empty) =
                    self.place_job(key.1, budget, now, &mut scan_from, &mut backlogs_full);
                budget -= placed;
                if empty {
                    drained.push((turns[i].0.clone(), shape, key));
                    // The shape still fits: its next job is a candidate.
                    let next = self
                        .queues
                        .get(&turns[i].0)
                        .and_then(|q| q.next_after(shape, key));
                    if let Some(next) = next {
                        turns[i].1.push(Reverse((next, shape)));
                    }
                }
                i += 1;
            }
        }
        if budget == 0 {
            // More may fit: continue in the next pass.
            self.sched_dirty = true;
        }
        for (q, shape, key) in drained {
            self.unqueue(&q, shape, key);
        }
    }

    /// Places pending tasks of one job until it has none or no node fits. Returns how many
    /// were placed and whether the job has no pending tasks left.
    // Long by design: the placement hot path, holding one borrow of the job and its shape's
    // scan position across the loop (split, each piece would look the job up again).
    fn place_job(
        &mut self,
        id: JobId,
        budget: usize,
        now: Millis,
        scan_from: &mut HashMap<u64, NodeId>,
        backlogs_full: &mut HashSet<u64>,
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
            let spec = job.spec.clone();
            let io = job.owner.map(|o| self.step_io(o)).unwrap_or_default();
            let shape = job.shape;
            let start = scan_from.get(&shape).cloned();
            let nodes = match &start {
                Some(from) => self.nodes.range(from.clone()..),
                None => self.nodes.range::<NodeId, _>(..),
            };
            let candidates = nodes.map(|(nid, n)| {
                (
                    nid,
                    placement::Candidate {
                        free: &n.free,
                        total: &n.total,
                        labels: &n.labels,
                        // A node with a backlog starts its work in order: new work queues
                        // behind it (below), so free resources there are already spoken for.
                        ready: n.state == NodeState::Ready && n.backlog.is_empty(),
                    },
                )
            });
            let sel = placement::select_scan(candidates, &spec.resources, &spec.constraints);
            let (node_id, queued) = match sel {
                Some(sel) => {
                    scan_from.insert(shape, sel.first_feasible.clone());
                    (sel.chosen.clone(), false)
                }
                None if self.prefetching.is_empty() || backlogs_full.contains(&shape) => {
                    return (placed, false)
                }
                None => match self.backlog_node(&spec) {
                    Some(n) => (n, true),
                    None => {
                        backlogs_full.insert(shape);
                        return (placed, false);
                    }
                },
            };
            let aid = AttemptId(self.next_attempt_id);
            self.next_attempt_id += 1;
            let Some(job) = self.jobs.get_mut(&id) else {
                return (placed, true);
            };
            job.pending.pop_front();
            let index = job.first_index + slot;
            let Some(t) = job.tasks.get_mut(slot as usize) else {
                continue;
            };
            let first_start = t.attempts == 0;
            t.state = TaskState::Running;
            t.current = Some(aid);
            t.last_attempt = Some(aid);
            t.attempts += 1;
            let attempt_number = t.attempts;
            job.counts.shift(TaskState::Queued, TaskState::Running);
            let queued_for = now.saturating_sub(job.created_at);
            if let Some(n) = self.nodes.get_mut(&node_id) {
                if queued {
                    n.backlog.insert(aid);
                } else {
                    n.free.take(&spec.resources);
                }
                n.running.insert(aid);
            }
            // A backlogged attempt's timeout runs from its start.
            let deadline = spec
                .timeout
                .filter(|_| !queued)
                .map(|t| now.saturating_add(t.as_millis()));
            if let Some(d) = deadline {
                self.deadlines.insert((d, aid));
            }
            let r = Running {
                job: id,
                slot,
                node: node_id.clone(),
                started_at: now,
                deadline,
                killing: None,
                queued,
            };
            self.note_attempt_started(aid, &r, index);
            self.attempts.insert(aid, r);
            self.note_task(id, slot);
            self.note_job(id);
            self.effects.push(Effect::Dispatch {
                node: node_id,
                assignment: Assignment {
                    attempt: aid,
                    job: id,
                    task: index,
                    attempt_number,
                    spec,
                    io,
                    queued,
                },
            });
            self.counters.attempts_started += 1;
            if first_start {
                self.observe(crate::Observation::QueueWait(queued_for));
            }
            placed += 1;
        }
    }
}

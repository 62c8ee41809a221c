//! Gang jobs (`spec.gang`): all their tasks start together, `tasks_per_node` on each of
//! `nodes` distinct nodes, or none starts; when one member ends early (fails, its node is
//! lost, it is evicted or preempted), the others are stopped and the whole gang runs again
//! as one — or, when that member failed for good, the gang fails and the others are
//! cancelled.
//!
//! A gang is placed only when no member runs and every member is queued and ready (a member
//! that succeeded in a try that another member spoiled runs again with the rest). Nodes are
//! the open ones without a backlog that take `tasks_per_node` × the job's resources now and
//! meet its constraints, those meeting more of its `prefer` first, then fullest first
//! (bin-packing); a node reserved for another job is
//! left alone (`reserve.rs`). A gang does not reserve nodes or preempt: it waits until
//! enough nodes are free together.

use crate::state::{Engine, KillReason};
use zenith_model::{GangMember, JobId, Millis, NodeId, TaskState};
use zenith_placement as placement;

/// Rendezvous ports are taken from this range (by the gang's first attempt ID).
const RENDEZVOUS_PORTS: (u16, u16) = (20_000, 40_000);

impl Engine {
    /// Places every task of gang job `id` at once if its nodes can be found now. Returns how
    /// many tasks started and whether the job leaves the queue.
    pub(crate) fn place_gang(&mut self, id: JobId, now: Millis) -> (usize, bool) {
        let Some(job) = self.jobs.get(&id) else {
            return (0, true);
        };
        let Some(gang) = job.spec.gang else {
            return (0, true);
        };
        let c = &job.counts;
        if c.failed > 0 || c.cancelled > 0 {
            // Ending: what is pending is being cancelled (`gang_member_ended`).
            return (0, true);
        }
        let ready = job.pending.len() as u64 + u64::from(c.succeeded);
        if c.running > 0 || ready != u64::from(gang.size()) {
            return (0, false);
        }
        let spec = job.spec.clone();
        let per_node = spec.resources.times(gang.tasks_per_node);
        let reserved = self.reservation.is_some();
        let mut fits: Vec<((usize, u64), NodeId)> = self
            .nodes
            .iter()
            .filter(|(nid, n)| {
                n.open()
                    && n.backlog.is_empty()
                    && !(reserved && self.reserved_against(nid, id, &spec, now))
            })
            .filter_map(|(nid, n)| {
                let c = placement::Candidate {
                    free: &n.free,
                    total: &n.total,
                    labels: &n.labels,
                    unavailable: None,
                };
                let met = spec.prefer.iter().filter(|k| k.matches(&n.labels)).count();
                placement::check(&c, &per_node, &spec.constraints)
                    .is_ok()
                    .then(|| ((met, placement::score(&c, &per_node)), nid.clone()))
            })
            .collect();
        if fits.len() < gang.nodes as usize {
            return (0, false);
        }
        // Most soft constraints met, then fullest first; ties by node ID (deterministic).
        fits.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        fits.truncate(gang.nodes as usize);
        let nodes: Vec<NodeId> = fits.into_iter().map(|(_, n)| n).collect();
        let hosts: Vec<String> = nodes
            .iter()
            .map(|n| match self.nodes.get(n) {
                Some(node) if !node.address.is_empty() => node.address.clone(),
                Some(node) => node.name.clone(),
                None => n.to_string(),
            })
            .collect();
        let span = u64::from(RENDEZVOUS_PORTS.1 - RENDEZVOUS_PORTS.0);
        let port = RENDEZVOUS_PORTS.0 as u64 + self.next_attempt_id % span;
        let rendezvous = format!("{}:{port}", hosts.first().map_or("", String::as_str));
        let io = job.owner.map(|o| self.step_io(o)).unwrap_or_default();
        // Members that succeeded in a spoiled try run again with the rest.
        let Some(job) = self.jobs.get_mut(&id) else {
            return (0, true);
        };
        let mut slots: Vec<u32> = job.pending.drain(..).collect();
        for (slot, t) in job.tasks.iter_mut().enumerate() {
            if t.state == TaskState::Succeeded {
                t.state = TaskState::Queued;
                job.counts.shift(TaskState::Succeeded, TaskState::Queued);
                slots.push(slot as u32);
            }
        }
        slots.sort_unstable();
        let mut placed = 0;
        for slot in slots {
            let node_rank = slot / gang.tasks_per_node;
            let Some(node) = nodes.get(node_rank as usize) else {
                continue;
            };
            let member = Box::new(GangMember {
                rank: slot,
                node_rank,
                local_rank: slot % gang.tasks_per_node,
                tasks_per_node: gang.tasks_per_node,
                hosts: hosts.clone(),
                rendezvous: rendezvous.clone(),
            });
            if self.start_task(id, slot, node.clone(), false, Some(member), io.clone(), now) {
                placed += 1;
            }
        }
        self.counters.gangs_started += 1;
        tracing::info!(job = %id, nodes = ?nodes, "gang started");
        (placed, true)
    }

    /// For explain: what a queued gang waits for, e.g. `gang of 3 nodes × 1 task: room for
    /// 1 task now on 2 of 4 nodes`.
    pub fn gang_note(&self, id: JobId) -> Option<String> {
        let job = self.jobs.get(&id)?;
        let gang = job.spec.gang?;
        if job.counts.queued == 0 {
            return None;
        }
        let per_node = job.spec.resources.times(gang.tasks_per_node);
        let open = self.nodes.values().filter(|n| n.open());
        let (mut total, mut room) = (0u32, 0u32);
        for n in open {
            total += 1;
            let c = placement::Candidate {
                free: &n.free,
                total: &n.total,
                labels: &n.labels,
                unavailable: None,
            };
            if n.backlog.is_empty()
                && placement::check(&c, &per_node, &job.spec.constraints).is_ok()
            {
                room += 1;
            }
        }
        let tasks = |n: u32| {
            if n == 1 {
                "1 task".to_string()
            } else {
                format!("{n} tasks")
            }
        };
        Some(format!(
            "gang of {} nodes × {}: room for {} now on {room} of {total} {}",
            gang.nodes,
            tasks(gang.tasks_per_node),
            tasks(gang.tasks_per_node),
            if total == 1 { "node" } else { "nodes" },
        ))
    }

    /// A member of gang job `job` ended and its task went to `next`: unless it succeeded,
    /// the gang stops — the other running members are stopped (they end `gang_stopped`), and
    /// when `next` is final (the member failed for good) the members still queued are
    /// cancelled so the job ends failed.
    pub(crate) fn gang_member_ended(&mut self, job_id: JobId, next: TaskState) {
        if next == TaskState::Succeeded {
            return;
        }
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return;
        };
        if job.spec.gang.is_none() {
            return;
        }
        let mut stop = Vec::new();
        let mut cancelled = Vec::new();
        for (slot, t) in job.tasks.iter_mut().enumerate() {
            match t.state {
                TaskState::Running => stop.extend(t.current),
                TaskState::Queued if next.is_final() => {
                    if let Some(at) = t.ready_at.take() {
                        self.retry_timers.remove(&(at, job_id, slot as u32));
                    }
                    t.state = TaskState::Cancelled;
                    t.reason = Some(zenith_model::Reason::GangStopped);
                    job.counts.shift(TaskState::Queued, TaskState::Cancelled);
                    cancelled.push(slot as u32);
                }
                _ => {}
            }
        }
        if next.is_final() {
            job.pending.clear();
        }
        for slot in cancelled {
            self.note_task(job_id, slot);
        }
        for aid in stop {
            self.stop_attempt(aid, KillReason::GangStopped, false);
        }
    }
}

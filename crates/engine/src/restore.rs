//! Rebuilding the engine from the store's live records after a restart.

use crate::state::{Engine, Job, Node, Running, Task};
use crate::EngineConfig;
use std::collections::{BTreeSet, HashMap, VecDeque};
use zenith_model::{
    AttemptId, AttemptRecord, JobRecord, Millis, NodeRecord, NodeState, TaskCounts, TaskRecord,
    TaskState,
};

pub use zenith_model::records::Loaded;

impl Engine {
    /// Rebuilds state from `loaded`. Every node gets a fresh heartbeat grace from `now`, so a
    /// restarted server does not declare its whole cluster lost; attempts on unknown nodes
    /// are lost at once and requeued.
    pub fn restore(cfg: EngineConfig, loaded: Loaded, now: Millis) -> Self {
        let mut e = Engine::new(cfg);
        e.last_now = now;
        e.next_job_id = loaded.next_job_id.max(1);
        e.next_attempt_id = loaded.next_attempt_id.max(1);
        e.next_run_id = loaded.next_run_id.max(1);
        e.restore_keys(loaded.idempotency, now);
        for s in loaded.namespaces {
            e.parties.settings.insert(s.name.clone(), s);
        }
        e.parties.last_fold = now;
        e.restore_flows(
            loaded.defs,
            loaded.runs,
            loaded.steps,
            loaded.instances,
            now,
        );
        e.restore_nodes(loaded.nodes, now);
        e.refresh_totals();
        e.restore_jobs(loaded.jobs);
        e.restore_tasks(loaded.tasks);
        let lost = e.restore_running(loaded.running);
        for aid in lost {
            e.lose_attempt(aid, now);
        }
        // Jobs whose every task is already final (nothing else to wait for) retire now.
        let done: Vec<_> = e
            .jobs
            .iter()
            .filter(|(_, j)| j.state().is_final())
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            e.after_task_change(id, now);
        }
        e.reconcile_runs(now);
        e.sched_dirty = true;
        e
    }

    /// Nodes as they were; ready ones get a fresh heartbeat grace from `now`.
    fn restore_nodes(&mut self, nodes: Vec<NodeRecord>, now: Millis) {
        for n in nodes {
            self.nodes.insert(
                n.id.clone(),
                Node {
                    name: n.name,
                    free: n.resources.clone(),
                    total: n.resources,
                    labels: n.labels,
                    state: n.state,
                    registered_at: n.registered_at,
                    last_heartbeat: if n.state == NodeState::Ready {
                        now
                    } else {
                        n.last_seen
                    },
                    running: BTreeSet::new(),
                    backlog: BTreeSet::new(),
                    prefetch: 0,
                    recent_run_ms: None,
                    cordoned_at: n.cordoned_at,
                    drain_deadline: n.drain_deadline,
                    leaving: None,
                    address: String::new(),
                },
            );
        }
    }

    /// Jobs with every task queued (or cancelled, when cancel was requested) until their
    /// task rows say otherwise.
    fn restore_jobs(&mut self, jobs: Vec<JobRecord>) {
        self.jobs.reserve(jobs.len());
        for rec in jobs {
            let Some(spec) = rec.spec else { continue };
            let n = spec.task_count();
            let default = if rec.cancel_requested {
                TaskState::Cancelled
            } else {
                TaskState::Queued
            };
            let tasks = (0..n)
                .map(|_| {
                    let mut t = Task::queued();
                    t.state = default;
                    t
                })
                .collect();
            self.jobs.insert(
                rec.id,
                Box::new(Job {
                    tasks,
                    pending: VecDeque::new(),
                    counts: TaskCounts::default(),
                    cancel_requested: rec.cancel_requested,
                    reason: rec.reason,
                    created_at: rec.created_at,
                    unsaved: false,
                    owner: rec.owner,
                    outputs: Default::default(),
                    shape: crate::state::shape_of(&spec),
                    waiting_on: 0,
                    spread_counts: None,
                    spec,
                }),
            );
        }
    }

    /// Task rows: tasks that ever left `queued`.
    fn restore_tasks(&mut self, tasks: Vec<TaskRecord>) {
        for tr in tasks {
            let Some(job) = self.jobs.get_mut(&tr.job) else {
                continue;
            };
            let Some(slot) = job.spec.slot_of(tr.index) else {
                continue;
            };
            let Some(t) = job.tasks.get_mut(slot as usize) else {
                continue;
            };
            t.state = tr.state;
            t.failures = tr.failures;
            t.last_attempt = tr.attempt;
            t.attempts = tr.attempts;
            t.ready_at = if tr.state == TaskState::Queued {
                tr.ready_at
            } else {
                None
            };
            t.reason = tr.reason;
        }
    }

    /// Reattaches open attempts to their tasks and nodes, rebuilds queues, timers and counts;
    /// returns the attempts whose node is unknown (to be lost).
    fn restore_running(&mut self, running: Vec<AttemptRecord>) -> Vec<AttemptId> {
        let running: HashMap<AttemptId, AttemptRecord> =
            running.into_iter().map(|a| (a.id, a)).collect();
        let mut lost = Vec::new();
        let ids: Vec<_> = self.jobs.keys().copied().collect();
        for id in ids {
            let Some(job) = self.jobs.get_mut(&id) else {
                continue;
            };
            for (slot, t) in job.tasks.iter_mut().enumerate() {
                let slot = slot as u32;
                if t.state == TaskState::Running {
                    // The task row says running: its attempt must still be open.
                    match t.last_attempt.and_then(|a| running.get(&a)) {
                        Some(a) => {
                            let deadline = job
                                .spec
                                .timeout
                                .map(|d| a.started_at.saturating_add(d.as_millis()));
                            let r = Running {
                                job: id,
                                slot,
                                node: a.node.clone(),
                                started_at: a.started_at,
                                deadline,
                                killing: None,
                                // Until the agent registers and names what still waits.
                                queued: false,
                            };
                            match self.nodes.get_mut(&a.node) {
                                Some(n) => {
                                    n.free.take(&job.spec.resources);
                                    n.running.insert(a.id);
                                    if let Some(key) = &job.spec.spread {
                                        let v = n.labels.get(key).cloned().unwrap_or_default();
                                        *job.spread_counts
                                            .get_or_insert_with(Default::default)
                                            .entry(v)
                                            .or_insert(0) += 1;
                                    }
                                }
                                None => lost.push(a.id),
                            }
                            if let Some(d) = deadline {
                                self.deadlines.insert((d, a.id));
                            }
                            t.current = Some(a.id);
                            self.attempts.insert(a.id, r);
                            let spec = &job.spec;
                            self.parties
                                .take(spec.namespace(), &spec.submitter, &spec.resources);
                        }
                        None => t.state = TaskState::Queued,
                    }
                }
                if t.state == TaskState::Queued {
                    match t.ready_at {
                        Some(at) => {
                            self.retry_timers.insert((at, id, slot));
                        }
                        None => job.pending.push_back(slot),
                    }
                }
                *job.counts.slot(t.state) += 1;
            }
            self.live_tasks += u64::from(job.counts.total());
            let (ns, user) = (job.spec.namespace(), job.spec.submitter.as_str());
            self.parties
                .job_added(ns, user, u64::from(job.counts.total()));
        }
        for id in self.jobs.keys().copied().collect::<Vec<_>>() {
            self.wait_for_dependencies(id);
            self.enqueue(id);
        }
        lost
    }
}

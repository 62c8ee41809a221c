//! Running ended tasks again (`zenith job requeue`) and deleting ended jobs (`zenith job
//! delete`).
//!
//! Requeue works on a live job (an array whose failed tasks should run again while others
//! still run) and on one that ended: the caller reads an ended job's records from the store
//! and passes them in ([`EndedJob`]), and the job becomes live again under its own ID with
//! every task in its stored state; then the chosen tasks go back to the queue. Their
//! attempt history stays (a new attempt counts on from the last), their failure count starts
//! again (the retry limit applies anew). Dependencies that have ended are dropped (the
//! person asked for the job to run); live ones are waited for again.
//!
//! Delete forgets an ended job with its tasks, attempts and logs (the store removes them
//! with the batch); the engine remembers the deletion among its recent ends, so that a
//! requeue read from the store just before cannot bring it back.

use crate::state::{Engine, Job, Task};
use crate::EngineError;
use std::collections::VecDeque;
use std::sync::Arc;
use zenith_model::{JobId, JobRecord, TaskCounts, TaskRecord, TaskState};

/// Which tasks of a job run again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequeueTasks {
    /// Every ended task that did not succeed (failed or cancelled).
    NotSucceeded,
    /// Every ended task.
    All,
    /// These task indices (each must have ended).
    Indices(Vec<u32>),
}

/// An ended job as stored: its record (with spec) and its task rows.
#[derive(Clone, Debug)]
pub struct EndedJob {
    pub record: JobRecord,
    pub tasks: Vec<TaskRecord>,
}

impl Engine {
    /// Queues the chosen ended tasks of job `id` again; `ended` carries the job's records
    /// when it is not live. Returns how many tasks were requeued.
    pub fn requeue(
        &mut self,
        id: JobId,
        which: RequeueTasks,
        ended: Option<EndedJob>,
    ) -> Result<u32, EngineError> {
        if self.recent_ends.deleted(id) {
            return Err(EngineError::JobNotFound(id));
        }
        if !self.jobs.contains_key(&id) {
            let ended = ended.ok_or(EngineError::JobNotLive(id))?;
            let job = self.revive(id, ended)?;
            let slots = chosen_slots(id, &job, &which)?;
            self.insert_revived(id, job);
            return Ok(self.requeue_slots(id, slots));
        }
        let job = self.jobs.get(&id).ok_or(EngineError::JobNotLive(id))?;
        if job.owner.is_some() {
            return Err(EngineError::StepJob(id));
        }
        if job.cancel_requested {
            return Err(EngineError::CannotRequeue(
                id,
                "it is being cancelled; requeue it once it has ended".into(),
            ));
        }
        let slots = chosen_slots(id, job, &which)?;
        Ok(self.requeue_slots(id, slots))
    }

    /// Deletes an ended job (see the module's description).
    pub fn delete_job(&mut self, id: JobId) -> Result<(), EngineError> {
        if let Some(job) = self.jobs.get(&id) {
            if job.owner.is_some() {
                return Err(EngineError::StepJob(id));
            }
            return Err(EngineError::NotEnded(id));
        }
        if self.recent_ends.deleted(id) {
            return Err(EngineError::JobNotFound(id));
        }
        self.recent_ends.note_deleted(id);
        self.changes.deleted_jobs.push(id);
        self.counters.jobs_deleted += 1;
        Ok(())
    }

    /// The job as it ended, live again with no task queued yet.
    fn revive(&self, id: JobId, ended: EndedJob) -> Result<Job, EngineError> {
        let rec = ended.record;
        if rec.owner.is_some() {
            return Err(EngineError::StepJob(id));
        }
        if !rec.state.is_final() {
            // The store says live but the engine does not know it: not for us to guess.
            return Err(EngineError::JobNotLive(id));
        }
        if self.jobs.len() >= self.cfg.max_live_jobs {
            return Err(EngineError::TooManyJobs(self.cfg.max_live_jobs));
        }
        let mut spec = rec.spec.ok_or(EngineError::JobNotLive(id))?;
        let n = spec.task_count();
        if self.live_tasks + u64::from(n) > self.cfg.max_live_tasks {
            return Err(EngineError::TooManyTasks(self.cfg.max_live_tasks));
        }
        // Ended dependencies no longer hold it back; live ones (requeued too) do.
        if spec.after.iter().any(|d| !self.jobs.contains_key(&d.job)) {
            Arc::make_mut(&mut spec)
                .after
                .retain(|d| self.jobs.contains_key(&d.job));
        }
        // A task without a row never started: it was cancelled before it could.
        let mut tasks: Vec<Task> = (0..n)
            .map(|_| {
                let mut t = Task::queued();
                t.state = TaskState::Cancelled;
                t
            })
            .collect();
        for tr in ended.tasks {
            let Some(t) = spec
                .slot_of(tr.index)
                .and_then(|s| tasks.get_mut(s as usize))
            else {
                continue;
            };
            if !tr.state.is_final() {
                return Err(EngineError::JobNotLive(id));
            }
            t.state = tr.state;
            t.failures = tr.failures;
            t.attempts = tr.attempts;
            t.last_attempt = tr.attempt;
            t.reason = tr.reason;
        }
        let mut counts = TaskCounts::default();
        for t in &tasks {
            *counts.slot(t.state) += 1;
        }
        Ok(Job {
            tasks,
            pending: VecDeque::new(),
            counts,
            cancel_requested: false,
            reason: None,
            created_at: rec.created_at,
            // The spec is written again: its dependencies may have changed.
            unsaved: true,
            owner: None,
            outputs: Default::default(),
            shape: crate::state::shape_of(&spec),
            waiting_on: 0,
            spread_counts: None,
            spec,
        })
    }

    fn insert_revived(&mut self, id: JobId, job: Job) {
        let n = job.counts.total();
        let (ns, user) = (job.spec.namespace(), job.spec.submitter.as_str());
        self.parties.job_added(ns, user, u64::from(n));
        self.live_tasks += u64::from(n);
        // Tasks that never started have no row; ones that stay cancelled need one now,
        // or a restart would read them as queued.
        let unstarted: Vec<u32> = (0..n)
            .filter(|s| job.tasks[*s as usize].attempts == 0)
            .collect();
        self.jobs.insert(id, Box::new(job));
        for slot in unstarted {
            self.write_task_row(id, slot);
        }
        self.wait_for_dependencies(id);
    }

    /// Moves ended tasks back to the queue.
    fn requeue_slots(&mut self, id: JobId, slots: Vec<u32>) -> u32 {
        let Some(job) = self.jobs.get_mut(&id) else {
            return 0;
        };
        let mut moved = 0;
        for &slot in &slots {
            let Some(t) = job.tasks.get_mut(slot as usize) else {
                continue;
            };
            if !t.state.is_final() {
                continue;
            }
            job.counts.shift(t.state, TaskState::Queued);
            t.state = TaskState::Queued;
            t.failures = 0;
            t.node_losses = 0;
            t.reason = None;
            t.ready_at = None;
            job.pending.push_back(slot);
            moved += 1;
        }
        job.reason = None;
        for slot in slots {
            self.write_task_row(id, slot);
        }
        self.enqueue(id);
        self.note_job(id);
        self.counters.tasks_requeued += u64::from(moved);
        self.sched_dirty = true;
        moved
    }

    /// Writes a task's row whether or not it ever started.
    fn write_task_row(&mut self, id: JobId, slot: u32) {
        if let Some(rec) = self.task_record(id, slot, true) {
            self.changes.tasks.insert((id, slot), rec);
        }
    }
}

/// The slots of the ended tasks `which` names, in order.
fn chosen_slots(id: JobId, job: &Job, which: &RequeueTasks) -> Result<Vec<u32>, EngineError> {
    let ended = |t: &Task| t.state.is_final();
    let slots: Vec<u32> = match which {
        RequeueTasks::NotSucceeded => (0..job.tasks.len() as u32)
            .filter(|s| {
                let t = &job.tasks[*s as usize];
                ended(t) && t.state != TaskState::Succeeded
            })
            .collect(),
        RequeueTasks::All => (0..job.tasks.len() as u32)
            .filter(|s| ended(&job.tasks[*s as usize]))
            .collect(),
        RequeueTasks::Indices(indices) => {
            let mut slots = Vec::with_capacity(indices.len());
            for &index in indices {
                let slot = job
                    .spec
                    .slot_of(index)
                    .ok_or(EngineError::NoSuchTask(id, index))?;
                let t = &job.tasks[slot as usize];
                if !ended(t) {
                    return Err(EngineError::CannotRequeue(
                        id,
                        format!("task {index} is {}, not ended", t.state.as_str()),
                    ));
                }
                slots.push(slot);
            }
            slots.sort_unstable();
            slots.dedup();
            slots
        }
    };
    if slots.is_empty() {
        let why = match which {
            RequeueTasks::NotSucceeded => {
                "every ended task succeeded (--all runs them again)".to_string()
            }
            _ => "no task has ended".to_string(),
        };
        return Err(EngineError::CannotRequeue(id, why));
    }
    Ok(slots)
}

//! Job commands: submit, cancel, attempt finished or lost, and how a task's end moves its job.

use crate::changes::job_record;
use crate::queue::leaf_of;
use crate::state::{Engine, Job, KillReason, Running, Task};
use crate::{EngineError, StaleReport};
use std::collections::VecDeque;
use std::sync::Arc;
use zenith_model::{
    AttemptId, AttemptOutcome, ExitAction, JobId, JobSpec, Millis, NodeId, Reason, TaskCounts,
    TaskState,
};

impl Engine {
    /// Accepts validated specs as new queued jobs; all or none.
    pub fn submit(
        &mut self,
        specs: Vec<Arc<JobSpec>>,
        now: Millis,
    ) -> Result<Vec<JobId>, EngineError> {
        let now = self.clamp(now);
        if self.jobs.len() + specs.len() > self.cfg.max_live_jobs {
            return Err(EngineError::TooManyJobs(self.cfg.max_live_jobs));
        }
        let tasks: u64 = specs.iter().map(|s| u64::from(s.task_count())).sum();
        if self.live_tasks + tasks > self.cfg.max_live_tasks {
            return Err(EngineError::TooManyTasks(self.cfg.max_live_tasks));
        }
        self.check_submit_quotas(&specs)?;
        // Dependencies first, all or none: each outstanding one, or why the job cannot run.
        let mut afters = Vec::with_capacity(specs.len());
        for spec in &specs {
            afters.push(match spec.after.is_empty() {
                true => Ok(Vec::new()),
                false => self.check_after(&spec.after)?,
            });
        }
        let mut ids = Vec::with_capacity(specs.len());
        let mut never = Vec::new();
        for (mut spec, after) in specs.into_iter().zip(afters) {
            let id = JobId(self.next_job_id);
            self.next_job_id += 1;
            let n = spec.task_count();
            match after {
                Ok(outstanding) if outstanding.len() != spec.after.len() => {
                    Arc::make_mut(&mut spec).after = outstanding;
                }
                Ok(_) => {}
                Err(reason) => never.push((id, reason)),
            }
            let job = Job {
                tasks: (0..n).map(|_| Task::queued()).collect(),
                pending: (0..n).collect::<VecDeque<u32>>(),
                counts: TaskCounts {
                    queued: n,
                    ..Default::default()
                },
                cancel_requested: false,
                reason: None,
                created_at: now,
                unsaved: true,
                owner: None,
                outputs: Default::default(),
                shape: crate::state::shape_of(&spec),
                waiting_on: 0,
                spread_counts: None,
                spec,
            };
            let (ns, user) = (job.spec.namespace(), job.spec.submitter.as_str());
            self.parties.job_added(ns, user, u64::from(n));
            self.jobs.insert(id, Box::new(job));
            self.wait_for_dependencies(id);
            self.enqueue(id);
            self.live_tasks += u64::from(n);
            self.counters.jobs_submitted += 1;
            self.note_job(id);
            ids.push(id);
        }
        // A dependency that ended otherwise than needed: the job ends at once, saying so.
        for (id, reason) in never {
            if let Some(job) = self.jobs.get_mut(&id) {
                job.reason = Some(reason);
            }
            self.cancel(id, now)?;
        }
        self.sched_dirty = true;
        Ok(ids)
    }

    /// Cancels a live job: queued tasks end at once, running ones are killed and end when
    /// their node reports (or is lost).
    pub fn cancel(&mut self, id: JobId, now: Millis) -> Result<(), EngineError> {
        let now = self.clamp(now);
        let job = self.jobs.get_mut(&id).ok_or(EngineError::JobNotLive(id))?;
        job.cancel_requested = true;
        job.pending.clear();
        let mut kills = Vec::new();
        let mut touched = Vec::new();
        for (slot, t) in job.tasks.iter_mut().enumerate() {
            let slot = slot as u32;
            match t.state {
                TaskState::Queued => {
                    if let Some(at) = t.ready_at.take() {
                        self.retry_timers.remove(&(at, id, slot));
                    }
                    t.state = TaskState::Cancelled;
                    job.counts.shift(TaskState::Queued, TaskState::Cancelled);
                    touched.push(slot);
                }
                TaskState::Running => {
                    if let Some(aid) = t.current {
                        kills.push(aid);
                    }
                }
                _ => {}
            }
        }
        let (spec, shape, key) = (job.spec.clone(), job.shape, job.queue_key(id));
        self.queues.remove(leaf_of(&spec), shape, key);
        for slot in touched {
            self.note_task(id, slot);
        }
        for aid in kills {
            self.stop_attempt(aid, KillReason::Cancelled, true);
        }
        self.after_task_change(id, now);
        Ok(())
    }

    /// An agent reports how an attempt ended. Reports for attempts this node does not own
    /// any more (requeued after node loss, already reported) are refused.
    pub fn attempt_finished(
        &mut self,
        node: &NodeId,
        aid: AttemptId,
        outcome: AttemptOutcome,
        now: Millis,
    ) -> Result<(), StaleReport> {
        self.attempt_finished_with(node, aid, outcome, Default::default(), None, now)
    }

    /// [`Engine::attempt_finished`] with the output parameters the attempt wrote (kept when
    /// it succeeded, for the flow step it runs) and how long it ran by the agent's clock
    /// (`ran_ms`, for the node's backlog; without it the engine's own view counts).
    pub fn attempt_finished_with(
        &mut self,
        node: &NodeId,
        aid: AttemptId,
        outcome: AttemptOutcome,
        outputs: std::collections::BTreeMap<String, String>,
        ran_ms: Option<u64>,
        now: Millis,
    ) -> Result<(), StaleReport> {
        let now = self.clamp(now);
        match self.attempts.get(&aid) {
            Some(r) if &r.node == node => {}
            _ => {
                self.counters.stale_reports += 1;
                return Err(StaleReport(aid));
            }
        }
        let Some(r) = self.release_attempt(aid, Some((now, ran_ms))) else {
            return Err(StaleReport(aid));
        };
        let outcome = match r.killing {
            Some(_) if outcome.succeeded() => outcome,
            Some(reason) => reason.outcome(),
            None => outcome,
        };
        if let Some(job) = self.jobs.get_mut(&r.job) {
            job.outputs = outputs;
        }
        self.end_attempt(aid, r, outcome, now);
        Ok(())
    }

    /// Stops running attempt `aid` for `reason`: its node gets a kill, and it ends with that
    /// reason's outcome unless it was already stopping for another (the first reason wins).
    /// `again`: send the kill also when it was already stopping (a cancel or timeout repeats
    /// it; others send it once).
    pub(crate) fn stop_attempt(&mut self, aid: AttemptId, reason: KillReason, again: bool) {
        let Some(r) = self.attempts.get_mut(&aid) else {
            return;
        };
        let first = r.killing.is_none();
        if first {
            r.killing = Some(reason);
        }
        if first || again {
            self.effects.push(crate::Effect::Kill {
                node: r.node.clone(),
                attempt: aid,
            });
        }
    }

    /// Removes a running attempt from every index and gives its resources back. `reported`:
    /// the time its agent reported it ended and how long it ran by the agent's clock (its run
    /// time then counts for the node's backlog, `backlog.rs`).
    pub(crate) fn release_attempt(
        &mut self,
        aid: AttemptId,
        reported: Option<(Millis, Option<u64>)>,
    ) -> Option<Running> {
        let r = self.attempts.remove(&aid)?;
        if let Some(d) = r.deadline {
            self.deadlines.remove(&(d, aid));
        }
        if let Some(n) = self.nodes.get_mut(&r.node) {
            if let Some((now, ran_ms)) = reported {
                crate::backlog::note_run_time(n, &r, now, ran_ms);
            }
            n.running.remove(&aid);
            if r.queued {
                n.backlog.remove(&aid);
            } else if let Some(job) = self.jobs.get(&r.job) {
                n.free.give(&job.spec.resources);
            }
        }
        if let Some(job) = self.jobs.get_mut(&r.job) {
            let spec = &job.spec;
            self.parties
                .give(spec.namespace(), &spec.submitter, &spec.resources);
            if let (Some(key), Some(counts)) = (&spec.spread, job.spread_counts.as_mut()) {
                let value = self.nodes.get(&r.node).and_then(|n| n.labels.get(key));
                if let Some(c) = counts.get_mut(value.map_or("", String::as_str)) {
                    *c = c.saturating_sub(1);
                }
            }
        }
        self.sched_dirty = true;
        Some(r)
    }

    /// Moves the attempt's task on after the attempt ended with `outcome`.
    // Long by design: the one place a task's next state is decided from an attempt's end
    // (success, cancel, node loss, failure policy, retry budget, retry or fail), on the
    // report hot path; the branches share the task borrow.
    pub(crate) fn end_attempt(
        &mut self,
        aid: AttemptId,
        r: Running,
        outcome: AttemptOutcome,
        now: Millis,
    ) {
        *self
            .counters
            .attempts_ended
            .entry(outcome.kind())
            .or_insert(0) += 1;
        self.observe(crate::Observation::RunTime(
            now.saturating_sub(r.started_at),
        ));
        let Some(job) = self.jobs.get(&r.job) else {
            return;
        };
        let action = outcome.exit_code().and_then(|c| job.spec.exit_action(c));
        let owner = job.owner;
        let wants_retry = !outcome.succeeded()
            && action != Some(ExitAction::Ignore)
            && action != Some(ExitAction::Fail)
            && !job.cancel_requested
            && outcome != AttemptOutcome::Cancelled
            && outcome != AttemptOutcome::NodeLost
            && outcome != AttemptOutcome::Evicted
            && outcome != AttemptOutcome::Preempted
            && outcome != AttemptOutcome::GangStopped
            && job
                .tasks
                .get(r.slot as usize)
                .is_some_and(|t| t.failures < job.spec.retry.limit);
        let budget = if wants_retry {
            self.spend_retry(owner)
        } else {
            Ok(())
        };
        if budget.is_err() {
            self.counters.retry_budget_exhausted += 1;
        }
        let Some(job) = self.jobs.get_mut(&r.job) else {
            return;
        };
        let index = job.index(r.slot);
        let cancel = job.cancel_requested;
        let retry = job.spec.retry;
        let max_losses = self.cfg.max_node_loss_requeues;
        let Some(t) = job.tasks.get_mut(r.slot as usize) else {
            return;
        };
        t.current = None;
        let next = if outcome.succeeded() || action == Some(ExitAction::Ignore) {
            TaskState::Succeeded
        } else if cancel || outcome == AttemptOutcome::Cancelled {
            TaskState::Cancelled
        } else if outcome == AttemptOutcome::Evicted {
            // Its node was drained: it runs again elsewhere, counted as neither a failure
            // nor a node loss.
            self.counters.evictions += 1;
            TaskState::Queued
        } else if outcome == AttemptOutcome::GangStopped {
            // Another member of its gang ended early (`gang.rs`): run again with the gang,
            // unless that member failed for good.
            if job.counts.failed > 0 {
                t.reason = Some(Reason::GangStopped);
                TaskState::Cancelled
            } else {
                TaskState::Queued
            }
        } else if outcome == AttemptOutcome::Preempted {
            // Room for a higher-priority job (`preempt.rs`): it runs again, not a failure.
            self.counters.preemptions += 1;
            TaskState::Queued
        } else if outcome == AttemptOutcome::NodeLost {
            // Lost before it started (in a backlog): the task never ran there.
            if !r.queued {
                t.node_losses += 1;
            }
            if t.node_losses > max_losses {
                t.reason = Some(Reason::NodeLostTimes {
                    times: t.node_losses,
                });
                TaskState::Failed
            } else {
                self.counters.node_loss_requeues += 1;
                TaskState::Queued
            }
        } else if action == Some(ExitAction::Fail) {
            t.failures += 1;
            t.reason = Some(Reason::FailurePolicy {
                cause: Box::new(Reason::of_outcome(&outcome)),
            });
            TaskState::Failed
        } else if let Err(spent) = budget {
            t.failures += 1;
            t.reason = Some(Reason::RetryBudgetSpent {
                cause: Box::new(Reason::of_outcome(&outcome)),
                budget: spent.budget,
            });
            TaskState::Failed
        } else {
            t.failures += 1;
            if t.failures <= retry.limit {
                let at = now.saturating_add(retry.delay_for(t.failures));
                t.ready_at = Some(at);
                self.retry_timers.insert((at, r.job, r.slot));
                self.counters.retries_scheduled += 1;
                TaskState::Queued
            } else {
                t.reason = Some(Reason::of_outcome(&outcome));
                TaskState::Failed
            }
        };
        t.state = next;
        job.counts.shift(TaskState::Running, next);
        if next == TaskState::Failed && job.reason.is_none() {
            job.reason = Some(Reason::Task {
                index,
                cause: Box::new(t.reason.clone().unwrap_or(Reason::Failed)),
            });
        }
        if next == TaskState::Queued && t.ready_at.is_none() {
            // Requeued after node loss: run again soon, ahead of never-run tasks.
            job.pending.push_front(r.slot);
        }
        self.gang_member_ended(r.job, next);
        // Requeued, or a slot under its array throttle freed.
        self.enqueue(r.job);
        self.note_attempt_finished(aid, &r, index, outcome, now);
        self.note_task(r.job, r.slot);
        self.after_task_change(r.job, now);
    }

    /// Updates the job record, and retires the job once every task is final.
    pub(crate) fn after_task_change(&mut self, id: JobId, now: Millis) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        if !job.state().is_final() {
            self.note_job(id);
            return;
        }
        let Some(mut job) = self.jobs.remove(&id) else {
            return;
        };
        self.dependency_ended(id, job.state(), now);
        self.queues
            .remove(leaf_of(&job.spec), job.shape, job.queue_key(id));
        let (ns, user) = (job.spec.namespace(), job.spec.submitter.as_str());
        self.parties
            .job_removed(ns, user, u64::from(job.counts.total()));
        for (slot, t) in job.tasks.iter().enumerate() {
            if let Some(at) = t.ready_at {
                self.retry_timers.remove(&(at, id, slot as u32));
            }
        }
        self.live_tasks = self
            .live_tasks
            .saturating_sub(u64::from(job.counts.total()));
        match job.state() {
            zenith_model::JobState::Succeeded => self.counters.jobs_succeeded += 1,
            zenith_model::JobState::Failed => self.counters.jobs_failed += 1,
            _ => self.counters.jobs_cancelled += 1,
        }
        let mut rec = job_record(id, &mut job, Some(now));
        if let Some(old) = self.changes.jobs.get(&id) {
            if rec.spec.is_none() {
                rec.spec = old.spec.clone();
            }
        }
        let state = rec.state;
        self.changes.jobs.insert(id, rec);
        if let Some(owner) = job.owner {
            let attempts = job.tasks.iter().map(|t| t.attempts).sum();
            let task_reason = job.tasks.iter().find_map(|t| t.reason.clone());
            let reason = task_reason.or_else(|| job.reason.take()).or_else(|| {
                (state == zenith_model::JobState::Cancelled).then_some(Reason::Cancelled)
            });
            let outputs = std::mem::take(&mut job.outputs);
            self.instance_job_ended(owner, state, outputs, attempts, reason, now);
        }
    }

    /// Makes tasks whose backoff has passed ready again.
    pub(crate) fn fire_retry_timers(&mut self, now: Millis) {
        while let Some(&(at, id, slot)) = self.retry_timers.first() {
            if at > now {
                break;
            }
            self.retry_timers.pop_first();
            let Some(job) = self.jobs.get_mut(&id) else {
                continue;
            };
            let Some(t) = job.tasks.get_mut(slot as usize) else {
                continue;
            };
            if t.state == TaskState::Queued && t.ready_at == Some(at) {
                t.ready_at = None;
                job.pending.push_back(slot);
                self.enqueue(id);
                self.note_task(id, slot);
            }
        }
    }

    /// Sends kills for attempts whose timeout passed.
    pub(crate) fn fire_deadlines(&mut self, now: Millis) {
        while let Some(&(at, aid)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            if let Some(r) = self.attempts.get_mut(&aid) {
                r.deadline = None;
            }
            self.stop_attempt(aid, KillReason::TimedOut, true);
        }
    }
}

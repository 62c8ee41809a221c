//! Job control: hold and release, changing a live job's priority or queue, dependencies
//! between jobs (`--after`) and array throttles (`%N`).
//!
//! A job with pending tasks is in the queues unless it is *blocked*: held, waiting for a
//! job it depends on, or running as many tasks as its array throttle allows
//! ([`Engine::enqueue`] is the one way back in). Dependencies: a live dependency counts in
//! the job's `waiting_on` and lists the job in `dependents`; one that ended as needed is
//! removed from the job's `after` (persisted with the spec, so a restart only waits for
//! what is still outstanding); one that ended otherwise cancels the job with reason
//! `after job N failed (needed ok)`, and so on down a chain, iteratively.
//!
//! Bounds: `dependents` holds live jobs only (at most `MAX_DEPENDENCIES` entries per live
//! job); `recent_ends` keeps the last [`RECENT_ENDS`] jobs that ended, so that a submission
//! naming a job that ended while it was in flight still finds its state.

use crate::queue::leaf_of;
use crate::state::Engine;
use crate::EngineError;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use zenith_model::{Dependency, JobId, JobSpec, JobState, Millis, Reason};

/// Jobs whose end state is kept after they leave the engine.
pub const RECENT_ENDS: usize = 65_536;

/// The end states of the jobs that ended last (`None`: deleted since), oldest dropped first.
#[derive(Default)]
pub(crate) struct RecentEnds {
    states: HashMap<JobId, Option<JobState>>,
    order: VecDeque<JobId>,
}

impl RecentEnds {
    pub fn note(&mut self, id: JobId, state: JobState) {
        self.put(id, Some(state));
    }

    /// The job was deleted: no longer a dependency anyone can name, nor one to requeue.
    pub fn note_deleted(&mut self, id: JobId) {
        self.put(id, None);
    }

    pub fn deleted(&self, id: JobId) -> bool {
        matches!(self.states.get(&id), Some(None))
    }

    fn put(&mut self, id: JobId, state: Option<JobState>) {
        if self.states.insert(id, state).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > RECENT_ENDS {
            if let Some(old) = self.order.pop_front() {
                self.states.remove(&old);
            }
        }
    }

    pub fn get(&self, id: JobId) -> Option<JobState> {
        self.states.get(&id).copied().flatten()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.order.len()
    }
}

/// What may change on a live job.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobUpdate {
    pub priority: Option<i32>,
    pub queue: Option<String>,
}

impl Engine {
    /// Holds a live job: its pending tasks are not started until [`Engine::release`]; what
    /// runs goes on.
    pub fn hold(&mut self, id: JobId) -> Result<(), EngineError> {
        self.change_spec(id, |s| s.hold = true)
    }

    pub fn release(&mut self, id: JobId) -> Result<(), EngineError> {
        self.change_spec(id, |s| s.hold = false)
    }

    /// Changes a live job's priority or queue (its pending tasks take the new place).
    pub fn update_job(&mut self, id: JobId, u: JobUpdate) -> Result<(), EngineError> {
        self.change_spec(id, |s| {
            if let Some(p) = u.priority {
                s.priority = p;
            }
            if let Some(q) = u.queue {
                s.queue = q;
            }
        })
    }

    /// Takes the job out of the queues, changes its spec (written with the next record) and
    /// queues it again where it now belongs.
    fn change_spec(&mut self, id: JobId, f: impl FnOnce(&mut JobSpec)) -> Result<(), EngineError> {
        let job = self.jobs.get_mut(&id).ok_or(EngineError::JobNotLive(id))?;
        if job.owner.is_some() {
            return Err(EngineError::StepJob(id));
        }
        let key = job.queue_key(id);
        self.queues.remove(leaf_of(&job.spec), job.shape, key);
        f(Arc::make_mut(&mut job.spec));
        job.unsaved = true;
        self.enqueue(id);
        self.note_job(id);
        self.sched_dirty = true;
        Ok(())
    }

    /// Queues a live job that has pending tasks and is not blocked (see the module's
    /// description); safe to call when it is queued already.
    pub(crate) fn enqueue(&mut self, id: JobId) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        if job.pending.is_empty() || job.blocked() {
            return;
        }
        self.queues
            .insert(leaf_of(&job.spec), job.shape, job.queue_key(id));
        self.sched_dirty = true;
    }

    /// End states of jobs that left the engine earlier, read by the caller from the store
    /// for a submission that names them in `after` (see [`RECENT_ENDS`]).
    pub fn note_ended(&mut self, states: &BTreeMap<JobId, JobState>) {
        for (id, s) in states {
            if s.is_final() && !self.jobs.contains_key(id) {
                self.recent_ends.note(*id, *s);
            }
        }
    }

    /// At submit: resolves `spec.after` against live jobs and jobs that ended (kept, or
    /// noted by [`Engine::note_ended`]). Returns the dependencies still outstanding, or the
    /// reason the job can never run.
    pub(crate) fn check_after(
        &self,
        after: &[Dependency],
    ) -> Result<Result<Vec<Dependency>, Reason>, EngineError> {
        let mut outstanding = Vec::new();
        for d in after {
            if self.jobs.contains_key(&d.job) {
                outstanding.push(*d);
                continue;
            }
            let state = self
                .recent_ends
                .get(d.job)
                .ok_or(EngineError::UnknownDependency(d.job))?;
            match d.on.met_by(state) {
                Some(true) => {}
                _ => {
                    return Ok(Err(Reason::AfterNotMet {
                        job: d.job,
                        needed: d.on,
                        state,
                    }))
                }
            }
        }
        Ok(Ok(outstanding))
    }

    /// A new (or restored) job waits for its outstanding dependencies that are live. (A
    /// restored job's outstanding ones are all live: a dependency's end and its dependents'
    /// changes are committed together.)
    pub(crate) fn wait_for_dependencies(&mut self, id: JobId) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        let deps: Vec<JobId> = job
            .spec
            .after
            .iter()
            .map(|d| d.job)
            .filter(|d| self.jobs.contains_key(d))
            .collect();
        if let Some(job) = self.jobs.get_mut(&id) {
            job.waiting_on = deps.len() as u32;
        }
        for dep in deps {
            self.dependents.entry(dep).or_default().push(id);
        }
    }

    /// Job `id` ended in `state`: its dependents move on (queued, or cancelled when they
    /// can never run, and then their own dependents, iteratively).
    pub(crate) fn dependency_ended(&mut self, id: JobId, state: JobState, now: Millis) {
        self.recent_ends.note(id, state);
        self.ended_pending.push((id, state));
        if self.resolving {
            return;
        }
        self.resolving = true;
        while let Some((dep, state)) = self.ended_pending.pop() {
            for child in self.dependents.remove(&dep).unwrap_or_default() {
                self.resolve_one(child, dep, state, now);
            }
        }
        self.resolving = false;
    }

    fn resolve_one(&mut self, child: JobId, dep: JobId, state: JobState, now: Millis) {
        let Some(job) = self.jobs.get_mut(&child) else {
            return;
        };
        let Some(d) = job.spec.after.iter().find(|d| d.job == dep).copied() else {
            return;
        };
        if d.on.met_by(state) == Some(true) {
            Arc::make_mut(&mut job.spec).after.retain(|x| x.job != dep);
            job.unsaved = true;
            job.waiting_on = job.waiting_on.saturating_sub(1);
            self.enqueue(child);
            self.note_job(child);
            return;
        }
        job.reason = Some(Reason::AfterNotMet {
            job: dep,
            needed: d.on,
            state,
        });
        // Live (checked above): cannot fail.
        let _ = self.cancel(child, now);
    }

    /// Why a live job's pending tasks wait outside the queues, if they do: "held", "after
    /// job 5 (needs ok)", "array throttle: 10 of 10 running".
    pub fn blocked_reason(&self, id: JobId) -> Option<String> {
        let job = self.jobs.get(&id)?;
        if job.pending.is_empty() {
            return None;
        }
        if job.spec.hold {
            return Some(format!("held (zenith job release {id})"));
        }
        if job.waiting_on > 0 {
            let deps: Vec<String> = job
                .spec
                .after
                .iter()
                .filter(|d| self.jobs.contains_key(&d.job))
                .map(|d| format!("job {} (needs {})", d.job, d.on.as_str()))
                .collect();
            return Some(format!("after {}", deps.join(", ")));
        }
        if job.throttled() {
            return Some(format!(
                "array throttle: {} of {} running",
                job.counts.running,
                job.spec
                    .array
                    .as_ref()
                    .and_then(|a| a.throttle)
                    .unwrap_or(0)
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_ends_keep_the_last_ones_only() {
        let mut r = RecentEnds::default();
        for i in 0..(RECENT_ENDS as u64 + 10) {
            r.note(JobId(i), JobState::Succeeded);
        }
        assert_eq!(r.len(), RECENT_ENDS);
        assert_eq!(r.get(JobId(0)), None, "the oldest dropped");
        assert_eq!(
            r.get(JobId(RECENT_ENDS as u64 + 9)),
            Some(JobState::Succeeded)
        );
    }
}

//! Filling the write-set of one engine step ([`Changes`]): record images keyed so that
//! repeated changes to one record in a batch cost one write.

use crate::state::{Engine, Job, Running};
use zenith_model::{
    AttemptId, AttemptOutcome, AttemptRecord, JobId, JobRecord, Millis, NodeId, NodeRecord,
    TaskRecord,
};

pub use zenith_model::records::Changes;

pub(crate) fn job_record(id: JobId, job: &mut Job, finished_at: Option<Millis>) -> JobRecord {
    let spec = if job.unsaved {
        job.unsaved = false;
        Some(job.spec.clone())
    } else {
        None
    };
    JobRecord {
        id,
        spec,
        state: job.state(),
        counts: job.counts,
        cancel_requested: job.cancel_requested,
        reason: job.reason.clone(),
        created_at: job.created_at,
        finished_at,
        owner: job.owner,
    }
}

impl Engine {
    pub(crate) fn note_job(&mut self, id: JobId) {
        if let Some(job) = self.jobs.get_mut(&id) {
            let mut rec = job_record(id, job, None);
            if let Some(old) = self.changes.jobs.get(&id) {
                // A record replaced within one batch keeps the spec of its first image.
                if rec.spec.is_none() {
                    rec.spec = old.spec.clone();
                }
            }
            self.changes.jobs.insert(id, rec);
        }
    }

    /// Task rows exist only for tasks that have started at least once (`requeue.rs` writes
    /// others when it must).
    pub(crate) fn note_task(&mut self, id: JobId, slot: u32) {
        if let Some(rec) = self.task_record(id, slot, false) {
            self.changes.tasks.insert((id, slot), rec);
        }
    }

    /// The row of a task: always, or (`always` false) only once it has started.
    pub(crate) fn task_record(&self, id: JobId, slot: u32, always: bool) -> Option<TaskRecord> {
        let job = self.jobs.get(&id)?;
        let t = job.tasks.get(slot as usize)?;
        if t.attempts == 0 && !always {
            return None;
        }
        Some(TaskRecord {
            job: id,
            index: job.index(slot),
            state: t.state,
            failures: t.failures,
            attempts: t.attempts,
            attempt: t.last_attempt,
            ready_at: t.ready_at,
            reason: t.reason.clone(),
        })
    }

    pub(crate) fn note_attempt_started(&mut self, aid: AttemptId, r: &Running, index: u32) {
        self.changes
            .attempts
            .insert(aid, started_record(aid, r, index));
    }

    pub(crate) fn note_attempt_finished(
        &mut self,
        aid: AttemptId,
        r: &Running,
        index: u32,
        outcome: AttemptOutcome,
        now: Millis,
    ) {
        self.changes.attempts.insert(
            aid,
            AttemptRecord {
                finished_at: Some(now),
                outcome: Some(outcome),
                ..started_record(aid, r, index)
            },
        );
    }

    pub(crate) fn note_node(&mut self, id: &NodeId) {
        if let Some(n) = self.nodes.get(id) {
            self.changes.nodes.insert(
                id.clone(),
                NodeRecord {
                    id: id.clone(),
                    name: n.name.clone(),
                    resources: n.total.clone(),
                    labels: n.labels.clone(),
                    state: n.state,
                    registered_at: n.registered_at,
                    last_seen: n.last_heartbeat,
                    cordoned_at: n.cordoned_at,
                    drain_deadline: n.drain_deadline,
                },
            );
        }
    }
}

/// The record of an attempt that started (or was assigned to a node's backlog).
pub(crate) fn started_record(aid: AttemptId, r: &Running, index: u32) -> AttemptRecord {
    AttemptRecord {
        id: aid,
        job: r.job,
        task: index,
        node: r.node.clone(),
        started_at: r.started_at,
        finished_at: None,
        outcome: None,
    }
}

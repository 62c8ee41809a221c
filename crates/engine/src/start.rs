//! Starting one task on a node: the attempt, its indexes, its deadline, fair-share holdings,
//! its records and the dispatch effect.

use crate::state::{Engine, Running};
use crate::{Assignment, Effect};
use zenith_model::flow::StepIo;
use zenith_model::{AttemptId, GangMember, JobId, Millis, NodeId, TaskState};

impl Engine {
    /// Starts the task in `slot` of job `id` as a new attempt on `node_id` (taking it off
    /// the front of the job's pending list when it is there), or in that node's backlog when
    /// `queued`; `io` is what the job's flow step moves (`Engine::step_io`). Returns whether
    /// it did (the job or the task is gone otherwise).
    // One lookup of the job: this is the placement hot path.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start_task(
        &mut self,
        id: JobId,
        slot: u32,
        node_id: NodeId,
        queued: bool,
        gang: Option<Box<GangMember>>,
        io: StepIo,
        now: Millis,
    ) -> bool {
        let aid = AttemptId(self.next_attempt_id);
        let Some(job) = self.jobs.get_mut(&id) else {
            return false;
        };
        if job.pending.front() == Some(&slot) {
            job.pending.pop_front();
        }
        let spec = job.spec.clone();
        let index = job.index(slot);
        let Some(t) = job.tasks.get_mut(slot as usize) else {
            return false;
        };
        self.next_attempt_id += 1;
        let first_start = t.attempts == 0;
        t.state = TaskState::Running;
        t.current = Some(aid);
        t.last_attempt = Some(aid);
        t.attempts += 1;
        let attempt_number = t.attempts;
        job.counts.shift(TaskState::Queued, TaskState::Running);
        let queued_for = now.saturating_sub(job.created_at);
        if let Some(n) = self.nodes.get_mut(&node_id) {
            if let Some(key) = &spec.spread {
                let value = n.labels.get(key).cloned().unwrap_or_default();
                *job.spread_counts
                    .get_or_insert_with(Default::default)
                    .entry(value)
                    .or_insert(0) += 1;
            }
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
        self.parties
            .take(spec.namespace(), &spec.submitter, &spec.resources);
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
                gang,
            },
        });
        self.counters.attempts_started += 1;
        if first_start {
            self.observe(crate::Observation::QueueWait(queued_for));
        }
        true
    }
}

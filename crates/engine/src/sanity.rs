//! `sanity_check()`: the engine's invariants, checked after every step in tests.

use crate::state::Engine;
use std::collections::HashSet;
use zenith_model::{NodeState, Resources, TaskCounts, TaskState};

impl Engine {
    /// Verifies every cross-index invariant; returns the first violation found.
    // String: a description of a broken invariant for a failing test to print; no caller
    // acts on which one it was.
    // Long by design: one short block per invariant, read top to bottom like a checklist.
    pub fn sanity_check(&self) -> Result<(), String> {
        // Nodes: free + reserved == total, never over-committed.
        for (id, n) in &self.nodes {
            let mut used = Resources::default();
            for aid in &n.running {
                let r = self
                    .attempts
                    .get(aid)
                    .ok_or(format!("node {id} runs unknown attempt {aid}"))?;
                if &r.node != id {
                    return Err(format!("attempt {aid} on node {id} claims node {}", r.node));
                }
                let job = self
                    .jobs
                    .get(&r.job)
                    .ok_or(format!("attempt {aid} of unknown job {}", r.job))?;
                if r.queued != n.backlog.contains(aid) {
                    return Err(format!(
                        "attempt {aid}: queued flag and node backlog differ"
                    ));
                }
                if r.queued && r.deadline.is_some() {
                    return Err(format!("backlogged attempt {aid} has a deadline"));
                }
                if !r.queued {
                    used.give(&job.spec.resources);
                }
            }
            if (n.prefetch > 0) != self.prefetching.contains(id) {
                return Err(format!("node {id}: prefetch index out of date"));
            }
            if !n.backlog.is_subset(&n.running) {
                return Err(format!("node {id}: backlog attempt not on the node"));
            }
            if !used.fits_in(&n.total) {
                return Err(format!("node {id} over-committed"));
            }
            let mut sum = n.free.clone();
            sum.give(&used);
            if sum.cpu_millis != n.total.cpu_millis
                || sum.memory != n.total.memory
                || sum.gpus != n.total.gpus
            {
                return Err(format!("node {id}: free + used != total"));
            }
            if n.state != NodeState::Ready && !n.running.is_empty() {
                return Err(format!(
                    "{} node {id} still runs attempts",
                    n.state.as_str()
                ));
            }
        }
        if let Some(id) = self
            .prefetching
            .iter()
            .find(|id| !self.nodes.contains_key(*id))
        {
            return Err(format!("prefetch index holds unknown node {id}"));
        }
        // Attempts: each is the current attempt of a running task, on a known node.
        for (aid, r) in &self.attempts {
            let job = self
                .jobs
                .get(&r.job)
                .ok_or(format!("attempt {aid} of unknown job"))?;
            let t = job
                .tasks
                .get(r.slot as usize)
                .ok_or(format!("attempt {aid} of unknown task"))?;
            if t.current != Some(*aid) || t.state != TaskState::Running {
                return Err(format!("attempt {aid} is not its task's current attempt"));
            }
            let n = self
                .nodes
                .get(&r.node)
                .ok_or(format!("attempt {aid} on unknown node"))?;
            if !n.running.contains(aid) {
                return Err(format!("attempt {aid} missing from node {}", r.node));
            }
            if let Some(d) = r.deadline {
                if !self.deadlines.contains(&(d, *aid)) {
                    return Err(format!("attempt {aid} deadline not indexed"));
                }
            }
        }
        if self.deadlines.len() > self.attempts.len() {
            return Err("stale deadlines".into());
        }
        // Jobs: counts match tasks; pending is exactly the ready queued tasks; queue index.
        let mut live_tasks = 0u64;
        for (id, job) in &self.jobs {
            let mut c = TaskCounts::default();
            let pending: HashSet<u32> = job.pending.iter().copied().collect();
            if pending.len() != job.pending.len() {
                return Err(format!("job {id}: duplicate pending task"));
            }
            for (slot, t) in job.tasks.iter().enumerate() {
                *c.slot(t.state) += 1;
                let slot = slot as u32;
                let ready = t.state == TaskState::Queued && t.ready_at.is_none();
                if ready != pending.contains(&slot) {
                    return Err(format!("job {id} task slot {slot}: pending index wrong"));
                }
                if let Some(at) = t.ready_at {
                    if !self.retry_timers.contains(&(at, *id, slot)) {
                        return Err(format!("job {id} task slot {slot}: retry timer missing"));
                    }
                }
                match (t.state, t.current) {
                    (TaskState::Running, Some(aid)) if self.attempts.contains_key(&aid) => {}
                    (TaskState::Running, _) => {
                        return Err(format!("job {id} slot {slot}: running without attempt"))
                    }
                    (_, Some(_)) => {
                        return Err(format!(
                            "job {id} slot {slot}: attempt on a task not running"
                        ))
                    }
                    _ => {}
                }
            }
            if c != job.counts {
                return Err(format!(
                    "job {id}: counts {:?} != tasks {:?}",
                    job.counts, c
                ));
            }
            if job.state().is_final() {
                return Err(format!("job {id} is final but still live"));
            }
            let queued = self
                .queues
                .get(crate::queue::leaf_of(&job.spec))
                .is_some_and(|q| q.contains(job.shape, &job.queue_key(*id)));
            if !job.pending.is_empty() && !queued && !job.blocked() {
                return Err(format!("job {id} has pending tasks but is not queued"));
            }
            if queued && (job.spec.hold || job.waiting_on > 0) {
                return Err(format!("job {id} is held or waiting but queued"));
            }
            live_tasks += u64::from(c.total());
        }
        if live_tasks != self.live_tasks {
            return Err(format!(
                "live task count {} != {}",
                self.live_tasks, live_tasks
            ));
        }
        if self.queues.has_empty() {
            return Err("an empty namespace or user kept in the queues".into());
        }
        self.check_parties()?;
        for (q, set) in self.queues.iter() {
            if set.is_empty() {
                return Err(format!("empty queue {q:?} kept"));
            }
            if set.keys().count() != set.len() {
                return Err(format!("queue {q:?} length out of step"));
            }
            for (_, id) in set.keys() {
                if !self.jobs.contains_key(id) {
                    return Err(format!("queue {q:?} holds retired job {id}"));
                }
            }
        }
        if self.key_expiry.len() != self.idempotency.len()
            || self
                .key_expiry
                .iter()
                .any(|(at, k)| self.idempotency.get(k).is_none_or(|r| r.expires_at != *at))
        {
            return Err("idempotency index out of step with its expiry index".into());
        }
        let by_scope: usize = self.keys_by_scope.values().map(|s| s.len()).sum();
        if by_scope != self.idempotency.len()
            || self.keys_by_scope.iter().any(|(scope, set)| {
                set.is_empty()
                    || set.iter().any(|e| {
                        !self.key_expiry.contains(e) || crate::idempotency::scope_of(&e.1) != scope
                    })
            })
        {
            return Err("idempotency keys by scope out of step with the keys".into());
        }
        for (_, id, _) in &self.retry_timers {
            if !self.jobs.contains_key(id) {
                return Err(format!("retry timer for retired job {id}"));
            }
        }
        self.sanity_check_flows()
    }

    /// Runs and their jobs point at each other; every index holds live runs only.
    // String: as `sanity_check`.
    fn sanity_check_flows(&self) -> Result<(), String> {
        for (id, job) in &self.jobs {
            let Some(o) = job.owner else { continue };
            let inst = self
                .runs
                .get(&o.run)
                .and_then(|r| r.steps.get(o.step as usize))
                .and_then(|s| s.instances.get(o.instance as usize))
                .ok_or(format!("job {id} owned by a missing run instance {o:?}"))?;
            if inst.job != Some(*id) || inst.state.is_final() {
                return Err(format!("run instance {o:?} does not own live job {id}"));
            }
        }
        let mut active = 0;
        for (rid, run) in &self.runs {
            let open = run.steps.iter().filter(|s| !s.state.is_final()).count();
            if open != run.open {
                return Err(format!("run {rid}: open count {} != {open}", run.open));
            }
            if open == 0 {
                return Err(format!("run {rid} has no open step but is live"));
            }
            for s in &run.steps {
                for i in &s.instances {
                    if !i.state.is_final() && i.job.is_none_or(|j| !self.jobs.contains_key(&j)) {
                        return Err(format!("run {rid}: open instance without a live job"));
                    }
                }
            }
            if !self
                .active_by_name
                .get(&run.spec.key())
                .is_some_and(|s| s.contains(rid))
            {
                return Err(format!("run {rid} missing from the active index"));
            }
        }
        for set in self.active_by_name.values() {
            active += set.len();
        }
        if active != self.runs.len() {
            return Err("active-run index holds finished runs".into());
        }
        for (_, rid) in &self.run_deadlines {
            if !self.runs.contains_key(rid) {
                return Err(format!("deadline of finished run {rid}"));
            }
        }
        for (at, name) in &self.cron_timers {
            if self.defs.get(name).is_none_or(|d| d.next_fire != Some(*at)) {
                return Err(format!("cron timer of {name} out of step"));
            }
        }
        Ok(())
    }
}

impl Engine {
    /// Every party's holdings and live counts equal the sums over running attempts and live
    /// jobs, and no party over a running quota... is required: a raised quota is checked
    /// only at placement, a lowered one lets what runs finish.
    fn check_parties(&self) -> Result<(), String> {
        use crate::fairshare::Alloc;
        use std::collections::HashMap;
        let mut held: HashMap<(&str, &str), Alloc> = HashMap::new();
        let mut live: HashMap<(&str, &str), (u64, u64)> = HashMap::new();
        for job in self.jobs.values() {
            let key = (job.spec.namespace(), job.spec.submitter.as_str());
            let l = live.entry(key).or_default();
            l.0 += 1;
            l.1 += u64::from(job.counts.total());
        }
        for r in self.attempts.values() {
            let job = self.jobs.get(&r.job).ok_or("attempt of a retired job")?;
            let a = held
                .entry((job.spec.namespace(), job.spec.submitter.as_str()))
                .or_default();
            a.cpu_millis += job.spec.resources.cpu_millis;
            a.memory += job.spec.resources.memory;
            a.gpus += job.spec.resources.gpus;
            a.running += 1;
        }
        for (ns, n) in &self.parties.ns {
            let mut sum = Alloc::default();
            let (mut jobs, mut tasks) = (0, 0);
            for (user, u) in &n.users {
                let key = (ns.as_str(), user.as_str());
                let want = held.remove(&key).unwrap_or_default();
                let (j, t) = live.remove(&key).unwrap_or_default();
                if u.alloc != want || (u.live_jobs, u.live_tasks) != (j, t) {
                    return Err(format!(
                        "party {ns}/{user}: holds {:?} jobs {} tasks {}, attempts say {want:?} {j} {t}",
                        u.alloc, u.live_jobs, u.live_tasks
                    ));
                }
                sum.cpu_millis += want.cpu_millis;
                sum.memory += want.memory;
                sum.gpus += want.gpus;
                sum.running += want.running;
                jobs += j;
                tasks += t;
            }
            if n.party.alloc != sum || (n.party.live_jobs, n.party.live_tasks) != (jobs, tasks) {
                return Err(format!("namespace {ns}: totals out of step with its users"));
            }
        }
        if let Some(k) = held.keys().chain(live.keys()).next() {
            return Err(format!("party {k:?} has work but no entry"));
        }
        Ok(())
    }
}

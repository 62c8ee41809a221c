//! Writing one batch of engine changes to PostgreSQL: each table is one statement over arrays
//! (`UNNEST`), so a commit costs a round trip per touched table whatever the batch size.

use crate::postgres::Tx;
use crate::rows::{json, stored_spec};
use crate::StoreError;
use std::collections::HashMap;
use zenith_model::records::Changes;
use zenith_model::{IdempotencyRecord, JobRecord};

/// A stored optional time or ID.
pub(crate) fn opt(v: Option<u64>) -> Option<i64> {
    v.map(|x| x as i64)
}

/// Deletes jobs with their tasks and attempts; returns the attempts' IDs.
pub(crate) fn delete_jobs(tx: &mut Tx<'_, '_>, jobs: &[i64]) -> Result<Vec<i64>, StoreError> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let gone = tx
        .query(
            "DELETE FROM attempts WHERE job_id = ANY($1) RETURNING id",
            &[&jobs],
        )?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    tx.execute("DELETE FROM tasks WHERE job_id = ANY($1)", &[&jobs])?;
    tx.execute("DELETE FROM jobs WHERE id = ANY($1)", &[&jobs])?;
    Ok(gone)
}

pub(crate) fn commit_jobs(tx: &mut Tx<'_, '_>, ch: &Changes) -> Result<(), StoreError> {
    #[derive(Default)]
    struct Cols {
        id: Vec<i64>,
        state: Vec<&'static str>,
        counts: [Vec<i64>; 5],
        cancel: Vec<i64>,
        reason: Vec<Option<String>>,
        finished: Vec<Option<i64>>,
    }
    impl Cols {
        fn push(&mut self, j: &JobRecord) {
            let c = &j.counts;
            self.id.push(j.id.0 as i64);
            self.state.push(j.state.as_str());
            for (v, n) in self.counts.iter_mut().zip([
                c.queued,
                c.running,
                c.succeeded,
                c.failed,
                c.cancelled,
            ]) {
                v.push(i64::from(n));
            }
            self.cancel.push(i64::from(j.cancel_requested));
            self.reason.push(crate::rows::reason_text(&j.reason));
            self.finished.push(opt(j.finished_at));
        }
    }
    let (mut new, mut upd) = (Cols::default(), Cols::default());
    let mut name = Vec::new();
    let mut queue = Vec::new();
    let mut namespace = Vec::new();
    let mut priority = Vec::new();
    let mut spec = Vec::new();
    let mut task_count = Vec::new();
    let mut created = Vec::new();
    let mut run = Vec::new();
    let mut step = Vec::new();
    let mut instance = Vec::new();
    for j in ch.jobs.values() {
        match &j.spec {
            Some(s) => {
                new.push(j);
                name.push(s.display_name().to_string());
                queue.push(s.queue.clone());
                namespace.push(s.namespace().to_string());
                priority.push(i64::from(s.priority));
                spec.push(stored_spec(s.as_ref()));
                task_count.push(i64::from(s.task_count()));
                created.push(j.created_at as i64);
                run.push(j.owner.map(|o| o.run.0 as i64));
                step.push(j.owner.map(|o| i64::from(o.step)));
                instance.push(j.owner.map(|o| i64::from(o.instance)));
            }
            None => upd.push(j),
        }
    }
    if !new.id.is_empty() {
        let [q, r, s, f, c] = &new.counts;
        tx.execute(
            "INSERT INTO jobs (id, name, queue, priority, state, spec, task_count, queued, running, \
             succeeded, failed, cancelled, cancel_requested, reason, created_at, finished_at, \
             run_id, run_step, run_instance, namespace) \
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[], \
             $6::text[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], \
             $12::bigint[], $13::bigint[], $14::text[], $15::bigint[], $16::bigint[], $17::bigint[], \
             $18::bigint[], $19::bigint[], $20::text[]) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, queue = excluded.queue, \
             priority = excluded.priority, state = excluded.state, spec = excluded.spec, \
             task_count = excluded.task_count, queued = excluded.queued, running = excluded.running, \
             succeeded = excluded.succeeded, failed = excluded.failed, cancelled = excluded.cancelled, \
             cancel_requested = excluded.cancel_requested, reason = excluded.reason, \
             created_at = excluded.created_at, finished_at = excluded.finished_at, \
             run_id = excluded.run_id, run_step = excluded.run_step, run_instance = excluded.run_instance, \
             namespace = excluded.namespace",
            &[
                &new.id, &name, &queue, &priority, &new.state, &spec, &task_count, q, r, s, f, c,
                &new.cancel, &new.reason, &created, &new.finished, &run, &step, &instance,
                &namespace,
            ],
        )?;
    }
    if !upd.id.is_empty() {
        let [q, r, s, f, c] = &upd.counts;
        tx.execute(
            "UPDATE jobs SET state = u.state, queued = u.queued, running = u.running, \
             succeeded = u.succeeded, failed = u.failed, cancelled = u.cancelled, \
             cancel_requested = u.cancel_requested, reason = u.reason, finished_at = u.finished_at \
             FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], \
             $6::bigint[], $7::bigint[], $8::bigint[], $9::text[], $10::bigint[]) \
             AS u(id, state, queued, running, succeeded, failed, cancelled, cancel_requested, reason, finished_at) \
             WHERE jobs.id = u.id",
            &[&upd.id, &upd.state, q, r, s, f, c, &upd.cancel, &upd.reason, &upd.finished],
        )?;
    }
    Ok(())
}

pub(crate) fn commit_tasks(tx: &mut Tx<'_, '_>, ch: &Changes) -> Result<(), StoreError> {
    if ch.tasks.is_empty() {
        return Ok(());
    }
    let n = ch.tasks.len();
    let (mut job, mut idx, mut state) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut failures, mut attempts, mut attempt) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut ready, mut reason) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for t in ch.tasks.values() {
        job.push(t.job.0 as i64);
        idx.push(i64::from(t.index));
        state.push(t.state.as_str());
        failures.push(i64::from(t.failures));
        attempts.push(i64::from(t.attempts));
        attempt.push(t.attempt.map(|a| a.0 as i64));
        ready.push(opt(t.ready_at));
        reason.push(crate::rows::reason_text(&t.reason));
    }
    tx.execute(
        "INSERT INTO tasks (job_id, idx, state, failures, attempts, attempt_id, ready_at, reason) \
         SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[], \
         $6::bigint[], $7::bigint[], $8::text[]) \
         ON CONFLICT (job_id, idx) DO UPDATE SET state = excluded.state, failures = excluded.failures, \
         attempts = excluded.attempts, attempt_id = excluded.attempt_id, ready_at = excluded.ready_at, \
         reason = excluded.reason",
        &[&job, &idx, &state, &failures, &attempts, &attempt, &ready, &reason],
    )?;
    Ok(())
}

pub(crate) fn commit_attempts(tx: &mut Tx<'_, '_>, ch: &Changes) -> Result<(), StoreError> {
    if ch.attempts.is_empty() {
        return Ok(());
    }
    let (mut id, mut job, mut idx, mut node) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut started, mut finished, mut outcome) = (Vec::new(), Vec::new(), Vec::new());
    for a in ch.attempts.values() {
        id.push(a.id.0 as i64);
        job.push(a.job.0 as i64);
        idx.push(i64::from(a.task));
        node.push(a.node.as_str());
        started.push(a.started_at as i64);
        finished.push(opt(a.finished_at));
        outcome.push(a.outcome.as_ref().map(json));
    }
    tx.execute(
        "INSERT INTO attempts (id, job_id, idx, node, started_at, finished_at, outcome) \
         SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::bigint[], \
         $6::bigint[], $7::text[]) \
         ON CONFLICT (id) DO UPDATE SET finished_at = excluded.finished_at, outcome = excluded.outcome",
        &[&id, &job, &idx, &node, &started, &finished, &outcome],
    )?;
    Ok(())
}

pub(crate) fn commit_nodes_and_keys(tx: &mut Tx<'_, '_>, ch: &Changes) -> Result<(), StoreError> {
    if !ch.nodes.is_empty() {
        let (mut id, mut name, mut res, mut labels) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut state, mut reg, mut seen) = (Vec::new(), Vec::new(), Vec::new());
        let (mut cordoned, mut drain): (Vec<Option<i64>>, Vec<Option<i64>>) = (vec![], vec![]);
        for n in ch.nodes.values() {
            cordoned.push(n.cordoned_at.map(|v| v as i64));
            drain.push(n.drain_deadline.map(|v| v as i64));
            id.push(n.id.as_str());
            name.push(n.name.as_str());
            res.push(json(&n.resources));
            labels.push(json(&n.labels));
            state.push(n.state.as_str());
            reg.push(n.registered_at as i64);
            seen.push(n.last_seen as i64);
        }
        tx.execute(
            "INSERT INTO nodes (id, name, resources, labels, state, registered_at, last_seen, \
             cordoned_at, drain_deadline) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
             $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[]) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, resources = excluded.resources, \
             labels = excluded.labels, state = excluded.state, registered_at = excluded.registered_at, \
             last_seen = excluded.last_seen, cordoned_at = excluded.cordoned_at, \
             drain_deadline = excluded.drain_deadline",
            &[&id, &name, &res, &labels, &state, &reg, &seen, &cordoned, &drain],
        )?;
    }
    if !ch.removed_nodes.is_empty() {
        let gone: Vec<&str> = ch.removed_nodes.iter().map(|n| n.as_str()).collect();
        tx.execute("DELETE FROM nodes WHERE id = ANY($1)", &[&gone])?;
    }
    if !ch.expired_keys.is_empty() {
        tx.execute(
            "DELETE FROM idempotency WHERE key = ANY($1)",
            &[&ch.expired_keys],
        )?;
    }
    if !ch.idempotency.is_empty() {
        // A merged batch may carry one key twice: the later record wins, as in SQLite.
        let latest: HashMap<&str, &IdempotencyRecord> =
            ch.idempotency.iter().map(|r| (r.key.as_str(), r)).collect();
        let (mut key, mut ids, mut fp, mut exp) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (k, r) in latest {
            key.push(k);
            ids.push(json(&r.job_ids));
            fp.push(r.fingerprint as i64);
            exp.push(r.expires_at as i64);
        }
        tx.execute(
            "INSERT INTO idempotency (key, job_ids, fingerprint, expires_at) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[]) \
             ON CONFLICT (key) DO UPDATE SET job_ids = excluded.job_ids, \
             fingerprint = excluded.fingerprint, expires_at = excluded.expires_at",
            &[&key, &ids, &fp, &exp],
        )?;
    }
    Ok(())
}

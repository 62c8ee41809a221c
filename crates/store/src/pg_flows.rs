//! Flow records in PostgreSQL: runs, step rows, instance rows and applied definitions.

use crate::pg_commit::{delete_jobs, opt};
use crate::pg_reader::PgReader;
use crate::postgres::{decode, meta, Tx};
use crate::rows::{self, json, stored_spec, DEF_COLS, INST_COLS, RUN_COLS, STEP_COLS};
use crate::{RunFilter, StoreError};
use postgres::Transaction;
use zenith_model::flow::{FlowDefRecord, InstanceRecord, RunId, RunRecord, StepRecord};
use zenith_model::records::{Changes, Loaded};
use zenith_model::AttemptId;

/// Adds live runs (with their step and instance rows) and definitions to `out`.
pub(crate) fn load(tx: &mut Transaction<'_>, out: &mut Loaded) -> Result<(), StoreError> {
    let live = "SELECT id FROM flow_runs WHERE finished_at IS NULL";
    out.runs = decode(
        tx.query(
            &format!("SELECT {RUN_COLS} FROM flow_runs WHERE finished_at IS NULL"),
            &[],
        )?,
        rows::run,
    )?;
    out.steps = decode(
        tx.query(
            &format!("SELECT {STEP_COLS} FROM flow_steps WHERE run_id IN ({live})"),
            &[],
        )?,
        rows::step,
    )?;
    out.instances = decode(
        tx.query(
            &format!("SELECT {INST_COLS} FROM flow_instances WHERE run_id IN ({live})"),
            &[],
        )?,
        rows::instance,
    )?;
    out.defs = decode(
        tx.query(&format!("SELECT {DEF_COLS} FROM flow_defs"), &[])?,
        rows::def,
    )?;
    let max: i64 = tx
        .query_one("SELECT COALESCE(MAX(id), 0) FROM flow_runs", &[])?
        .try_get(0)?;
    out.next_run_id = rows::next_id(meta(tx, "next_run_id")?, max);
    Ok(())
}

/// Writes the flow part of one batch inside its transaction.
pub(crate) fn commit(tx: &mut Tx<'_, '_>, ch: &Changes) -> Result<(), StoreError> {
    commit_runs(tx, ch)?;
    if !ch.steps.is_empty() {
        let (mut run, mut step, mut state) = (Vec::new(), Vec::new(), Vec::new());
        let (mut reason, mut blocked, mut instances) = (Vec::new(), Vec::new(), Vec::new());
        for s in ch.steps.values() {
            run.push(s.run.0 as i64);
            step.push(i64::from(s.step));
            state.push(s.state.as_str());
            reason.push(crate::rows::reason_text(&s.reason));
            blocked.push(i64::from(s.blocked));
            instances.push(i64::from(s.instances));
        }
        tx.execute(
            "INSERT INTO flow_steps (run_id, step, state, reason, blocked, instances) \
             SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::bigint[]) \
             ON CONFLICT (run_id, step) DO UPDATE SET state = excluded.state, reason = excluded.reason, \
             blocked = excluded.blocked, instances = excluded.instances",
            &[&run, &step, &state, &reason, &blocked, &instances],
        )?;
    }
    if !ch.instances.is_empty() {
        let (mut run, mut step, mut inst, mut state) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut job, mut item, mut outputs) = (Vec::new(), Vec::new(), Vec::new());
        let (mut attempts, mut reason) = (Vec::new(), Vec::new());
        for i in ch.instances.values() {
            run.push(i.run.0 as i64);
            step.push(i64::from(i.step));
            inst.push(i64::from(i.instance));
            state.push(i.state.as_str());
            job.push(i.job.map(|j| j.0 as i64));
            item.push(i.item.as_ref().map(json));
            outputs.push(json(&i.outputs));
            attempts.push(i64::from(i.attempts));
            reason.push(crate::rows::reason_text(&i.reason));
        }
        tx.execute(
            "INSERT INTO flow_instances (run_id, step, instance, state, job_id, item, outputs, attempts, reason) \
             SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::bigint[], \
             $6::text[], $7::text[], $8::bigint[], $9::text[]) \
             ON CONFLICT (run_id, step, instance) DO UPDATE SET state = excluded.state, \
             job_id = excluded.job_id, item = excluded.item, outputs = excluded.outputs, \
             attempts = excluded.attempts, reason = excluded.reason",
            &[&run, &step, &inst, &state, &job, &item, &outputs, &attempts, &reason],
        )?;
    }
    for (name, d) in &ch.defs {
        match d {
            Some(d) => {
                tx.execute(
                    "INSERT INTO flow_defs (name, spec, updated_at, next_fire) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, \
                     updated_at = excluded.updated_at, next_fire = excluded.next_fire",
                    &[name, &stored_spec(d.spec.as_ref()), &(d.updated_at as i64), &opt(d.next_fire)],
                )?;
            }
            None => {
                tx.execute("DELETE FROM flow_defs WHERE name = $1", &[name])?;
            }
        }
    }
    Ok(())
}

fn commit_runs(tx: &mut Tx<'_, '_>, ch: &Changes) -> Result<(), StoreError> {
    for r in ch.runs.values() {
        let (id, state, retries) = (r.id.0 as i64, r.state.as_str(), i64::from(r.retries_used));
        let cancel = i64::from(r.cancel_requested);
        let (finished, expires) = (opt(r.finished_at), opt(r.expires_at));
        match &r.spec {
            Some(spec) => {
                tx.execute(
                    "INSERT INTO flow_runs (id, name, spec, params, state, reason, retries_used, trigger, \
                     cancel_requested, deadline_at, created_at, finished_at, expires_at, namespace) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
                     ON CONFLICT (id) DO UPDATE SET name = excluded.name, spec = excluded.spec, \
                     params = excluded.params, state = excluded.state, reason = excluded.reason, \
                     retries_used = excluded.retries_used, trigger = excluded.trigger, \
                     cancel_requested = excluded.cancel_requested, deadline_at = excluded.deadline_at, \
                     created_at = excluded.created_at, finished_at = excluded.finished_at, \
                     expires_at = excluded.expires_at, namespace = excluded.namespace",
                    &[
                        &id,
                        &r.name,
                        &stored_spec(spec.as_ref()),
                        &json(&r.params),
                        &state,
                        &crate::rows::reason_text(&r.reason),
                        &retries,
                        &r.trigger.as_str(),
                        &cancel,
                        &opt(r.deadline_at),
                        &(r.created_at as i64),
                        &finished,
                        &expires,
                        &spec.namespace(),
                    ],
                )?;
            }
            None => {
                tx.execute(
                    "UPDATE flow_runs SET state = $2, reason = $3, retries_used = $4, \
                     cancel_requested = $5, finished_at = $6, expires_at = $7 WHERE id = $1",
                    &[
                        &id,
                        &state,
                        &crate::rows::reason_text(&r.reason),
                        &retries,
                        &cancel,
                        &finished,
                        &expires,
                    ],
                )?;
            }
        }
    }
    Ok(())
}

/// Deletes up to `limit` finished runs whose `ttl` expired by `now` or that finished before
/// `before` (retention), with their rows and their jobs' rows.
pub(crate) fn sweep(
    tx: &mut Tx<'_, '_>,
    now: u64,
    before: u64,
    limit: usize,
) -> Result<(Vec<RunId>, Vec<AttemptId>), StoreError> {
    let runs: Vec<i64> = tx
        .query(
            "SELECT id FROM flow_runs WHERE finished_at IS NOT NULL \
             AND (expires_at <= $1 OR finished_at < $2) LIMIT $3",
            &[&(now as i64), &(before as i64), &(limit as i64)],
        )?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    if runs.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let jobs: Vec<i64> = tx
        .query("SELECT id FROM jobs WHERE run_id = ANY($1)", &[&runs])?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    let gone = delete_jobs(tx, &jobs)?;
    tx.execute(
        "DELETE FROM flow_instances WHERE run_id = ANY($1)",
        &[&runs],
    )?;
    tx.execute("DELETE FROM flow_steps WHERE run_id = ANY($1)", &[&runs])?;
    tx.execute("DELETE FROM flow_runs WHERE id = ANY($1)", &[&runs])?;
    Ok((
        runs.into_iter().map(|i| RunId(i as u64)).collect(),
        gone.into_iter().map(|a| AttemptId(a as u64)).collect(),
    ))
}

impl PgReader {
    pub(crate) fn list_runs_impl(&self, f: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        let before = f.before.map(|b| b.0 as i64).unwrap_or(i64::MAX);
        let limit = f.limit.clamp(1, 10_000) as i64;
        let mut sql = format!("SELECT {RUN_COLS} FROM flow_runs WHERE id < $1");
        let mut p: Vec<&(dyn postgres::types::ToSql + Sync)> = vec![&before, &limit];
        if let Some(name) = &f.name {
            p.push(name);
            sql.push_str(&format!(" AND name = ${}", p.len()));
        }
        if let Some(nss) = &f.namespaces {
            p.push(nss);
            sql.push_str(&format!(" AND namespace = ANY(${})", p.len()));
        }
        sql.push_str(" ORDER BY id DESC LIMIT $2");
        self.rows(&sql, &p, rows::run)
    }

    pub(crate) fn get_run_impl(&self, id: RunId) -> Result<Option<RunRecord>, StoreError> {
        let sql = format!("SELECT {RUN_COLS} FROM flow_runs WHERE id = $1");
        Ok(self.rows(&sql, &[&(id.0 as i64)], rows::run)?.pop())
    }

    pub(crate) fn run_attempts_impl(
        &self,
        id: RunId,
        after: Option<AttemptId>,
        limit: usize,
    ) -> Result<Vec<crate::RunAttemptRecord>, StoreError> {
        let after = after.map(|a| a.0 as i64).unwrap_or(0);
        let limit = limit.clamp(1, 100_000) as i64;
        self.rows(
            "SELECT a.id, a.job_id, a.idx, a.node, a.started_at, a.finished_at, a.outcome, \
             j.run_step, j.run_instance FROM jobs j JOIN attempts a ON a.job_id = j.id \
             WHERE j.run_id = $1 AND a.id > $2 ORDER BY a.id LIMIT $3",
            &[&(id.0 as i64), &after, &limit],
            rows::run_attempt,
        )
    }

    pub(crate) fn run_steps_impl(&self, id: RunId) -> Result<Vec<StepRecord>, StoreError> {
        let sql = format!("SELECT {STEP_COLS} FROM flow_steps WHERE run_id = $1 ORDER BY step");
        self.rows(&sql, &[&(id.0 as i64)], rows::step)
    }

    pub(crate) fn run_instances_impl(
        &self,
        id: RunId,
        limit: usize,
    ) -> Result<Vec<InstanceRecord>, StoreError> {
        let sql = format!(
            "SELECT {INST_COLS} FROM flow_instances WHERE run_id = $1 ORDER BY step, instance LIMIT $2"
        );
        self.rows(&sql, &[&(id.0 as i64), &(limit as i64)], rows::instance)
    }

    pub(crate) fn list_defs_impl(&self) -> Result<Vec<FlowDefRecord>, StoreError> {
        let sql = format!("SELECT {DEF_COLS} FROM flow_defs ORDER BY name LIMIT 10000");
        self.rows(&sql, &[], rows::def)
    }
}

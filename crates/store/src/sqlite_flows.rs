//! Flow records in SQLite: runs, step rows, instance rows and applied definitions.

use crate::rows::{self, json, keep_good, stored_spec, DEF_COLS, INST_COLS, RUN_COLS, STEP_COLS};
use crate::sqlite::SqliteReader;
use crate::{RunFilter, StoreError};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use zenith_model::flow::{FlowDefRecord, InstanceRecord, RunId, RunRecord, StepRecord};
use zenith_model::records::{Changes, Loaded};
use zenith_model::AttemptId;

/// Adds live runs (with their step and instance rows) and definitions to `out`.
pub(crate) fn load(conn: &Connection, out: &mut Loaded) -> Result<(), StoreError> {
    let mut st = conn.prepare(&format!(
        "SELECT {RUN_COLS} FROM flow_runs WHERE finished_at IS NULL"
    ))?;
    out.runs = keep_good(st.query_map([], |r| Ok(rows::run(r)))?)?;
    let mut st = conn.prepare(&format!(
        "SELECT {STEP_COLS} FROM flow_steps WHERE run_id IN (SELECT id FROM flow_runs WHERE finished_at IS NULL)"
    ))?;
    out.steps = keep_good(st.query_map([], |r| Ok(rows::step(r)))?)?;
    let mut st = conn.prepare(&format!(
        "SELECT {INST_COLS} FROM flow_instances WHERE run_id IN (SELECT id FROM flow_runs WHERE finished_at IS NULL)"
    ))?;
    out.instances = keep_good(st.query_map([], |r| Ok(rows::instance(r)))?)?;
    let mut st = conn.prepare(&format!("SELECT {DEF_COLS} FROM flow_defs"))?;
    out.defs = keep_good(st.query_map([], |r| Ok(rows::def(r)))?)?;
    let meta: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'next_run_id'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    let max: i64 = conn.query_row("SELECT COALESCE(MAX(id), 0) FROM flow_runs", [], |r| {
        r.get(0)
    })?;
    out.next_run_id = rows::next_id(meta, max);
    Ok(())
}

/// Writes the flow part of one batch inside its transaction.
pub(crate) fn commit(tx: &Transaction<'_>, ch: &Changes) -> Result<(), StoreError> {
    let mut ins_run = tx.prepare_cached(
        "INSERT OR REPLACE INTO flow_runs (id, name, spec, params, state, reason, retries_used, trigger, \
         cancel_requested, deadline_at, created_at, finished_at, expires_at, namespace) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?;
    let mut upd_run = tx.prepare_cached(
        "UPDATE flow_runs SET state = ?2, reason = ?3, retries_used = ?4, cancel_requested = ?5, \
         finished_at = ?6, expires_at = ?7 WHERE id = ?1",
    )?;
    for r in ch.runs.values() {
        match &r.spec {
            Some(spec) => {
                ins_run.execute(params![
                    r.id.0 as i64,
                    r.name,
                    stored_spec(spec.as_ref()),
                    json(&r.params),
                    r.state.as_str(),
                    crate::rows::reason_text(&r.reason),
                    r.retries_used,
                    r.trigger.as_str(),
                    r.cancel_requested,
                    r.deadline_at.map(|v| v as i64),
                    r.created_at as i64,
                    r.finished_at.map(|v| v as i64),
                    r.expires_at.map(|v| v as i64),
                    spec.namespace(),
                ])?;
            }
            None => {
                upd_run.execute(params![
                    r.id.0 as i64,
                    r.state.as_str(),
                    crate::rows::reason_text(&r.reason),
                    r.retries_used,
                    r.cancel_requested,
                    r.finished_at.map(|v| v as i64),
                    r.expires_at.map(|v| v as i64),
                ])?;
            }
        }
    }
    let mut up_step = tx.prepare_cached(
        "INSERT OR REPLACE INTO flow_steps (run_id, step, state, reason, blocked, instances) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for s in ch.steps.values() {
        up_step.execute(params![
            s.run.0 as i64,
            s.step,
            s.state.as_str(),
            crate::rows::reason_text(&s.reason),
            s.blocked,
            s.instances
        ])?;
    }
    let mut up_inst = tx.prepare_cached(
        "INSERT OR REPLACE INTO flow_instances (run_id, step, instance, state, job_id, item, outputs, attempts, reason) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for i in ch.instances.values() {
        up_inst.execute(params![
            i.run.0 as i64,
            i.step,
            i.instance,
            i.state.as_str(),
            i.job.map(|j| j.0 as i64),
            i.item.as_ref().map(json),
            json(&i.outputs),
            i.attempts,
            crate::rows::reason_text(&i.reason),
        ])?;
    }
    let mut put_def = tx.prepare_cached(
        "INSERT OR REPLACE INTO flow_defs (name, spec, updated_at, next_fire) VALUES (?1, ?2, ?3, ?4)",
    )?;
    let mut del_def = tx.prepare_cached("DELETE FROM flow_defs WHERE name = ?1")?;
    for (name, d) in &ch.defs {
        match d {
            Some(d) => {
                put_def.execute(params![
                    name,
                    stored_spec(d.spec.as_ref()),
                    d.updated_at as i64,
                    d.next_fire.map(|v| v as i64),
                ])?;
            }
            None => {
                del_def.execute(params![name])?;
            }
        }
    }
    Ok(())
}

/// Deletes up to `limit` finished runs whose `ttl` expired by `now` or that finished before
/// `before` (retention), with their rows and their jobs' rows. Returns the runs and the
/// attempts removed, so that their artifacts and logs can go too.
pub(crate) fn sweep(
    conn: &mut Connection,
    now: u64,
    before: u64,
    limit: usize,
) -> Result<(Vec<RunId>, Vec<AttemptId>), StoreError> {
    let tx = conn.transaction()?;
    let ids: Vec<i64> = {
        let mut st = tx.prepare_cached(
            "SELECT id FROM flow_runs WHERE finished_at IS NOT NULL \
             AND (expires_at <= ?1 OR finished_at < ?2) LIMIT ?3",
        )?;
        let rows = st.query_map(params![now as i64, before as i64, limit as i64], |r| {
            r.get(0)
        })?;
        rows.collect::<Result<_, _>>()?
    };
    let mut attempts = Vec::new();
    {
        let mut sel = tx.prepare_cached(
            "SELECT a.id FROM attempts a JOIN jobs j ON j.id = a.job_id WHERE j.run_id = ?1",
        )?;
        let mut del_a = tx.prepare_cached(
            "DELETE FROM attempts WHERE job_id IN (SELECT id FROM jobs WHERE run_id = ?1)",
        )?;
        let mut del_t = tx.prepare_cached(
            "DELETE FROM tasks WHERE job_id IN (SELECT id FROM jobs WHERE run_id = ?1)",
        )?;
        let mut del_j = tx.prepare_cached("DELETE FROM jobs WHERE run_id = ?1")?;
        let mut del_i = tx.prepare_cached("DELETE FROM flow_instances WHERE run_id = ?1")?;
        let mut del_s = tx.prepare_cached("DELETE FROM flow_steps WHERE run_id = ?1")?;
        let mut del_r = tx.prepare_cached("DELETE FROM flow_runs WHERE id = ?1")?;
        for id in &ids {
            for a in sel.query_map(params![id], |r| r.get::<_, i64>(0))? {
                attempts.push(AttemptId(a? as u64));
            }
            del_a.execute(params![id])?;
            del_t.execute(params![id])?;
            del_j.execute(params![id])?;
            del_i.execute(params![id])?;
            del_s.execute(params![id])?;
            del_r.execute(params![id])?;
        }
    }
    tx.commit()?;
    Ok((ids.into_iter().map(|i| RunId(i as u64)).collect(), attempts))
}

impl SqliteReader {
    pub(crate) fn list_runs_impl(&self, f: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        self.with(|c| {
            let before = f.before.map(|b| b.0 as i64).unwrap_or(i64::MAX);
            let limit = f.limit.clamp(1, 10_000) as i64;
            let mut sql = format!("SELECT {RUN_COLS} FROM flow_runs WHERE id < ?1");
            let mut p: Vec<&dyn rusqlite::ToSql> = vec![&before, &limit];
            if let Some(name) = &f.name {
                p.push(name);
                sql.push_str(&format!(" AND name = ?{}", p.len()));
            }
            if let Some(nss) = &f.namespaces {
                crate::sqlite::namespace_in(&mut sql, &mut p, nss);
            }
            sql.push_str(" ORDER BY id DESC LIMIT ?2");
            let mut st = c.prepare_cached(&sql)?;
            let rows = keep_good(st.query_map(p.as_slice(), |r| Ok(rows::run(r)))?)?;
            Ok(rows)
        })
    }

    pub(crate) fn get_run_impl(&self, id: RunId) -> Result<Option<RunRecord>, StoreError> {
        self.with(|c| {
            let mut st =
                c.prepare_cached(&format!("SELECT {RUN_COLS} FROM flow_runs WHERE id = ?1"))?;
            st.query_row(params![id.0 as i64], |r| Ok(rows::run(r)))
                .optional()?
                .transpose()
        })
    }

    pub(crate) fn run_attempts_impl(
        &self,
        id: RunId,
        after: Option<AttemptId>,
        limit: usize,
    ) -> Result<Vec<crate::RunAttemptRecord>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT a.id, a.job_id, a.idx, a.node, a.started_at, a.finished_at, a.outcome, \
                 j.run_step, j.run_instance FROM jobs j JOIN attempts a ON a.job_id = j.id \
                 WHERE j.run_id = ?1 AND a.id > ?2 ORDER BY a.id LIMIT ?3",
            )?;
            let after = after.map(|a| a.0 as i64).unwrap_or(0);
            let limit = limit.clamp(1, 100_000) as i64;
            let rows = st.query_map(params![id.0 as i64, after, limit], |r| {
                Ok(rows::run_attempt(r))
            })?;
            keep_good(rows)
        })
    }

    pub(crate) fn run_steps_impl(&self, id: RunId) -> Result<Vec<StepRecord>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {STEP_COLS} FROM flow_steps WHERE run_id = ?1 ORDER BY step"
            ))?;
            let rows = keep_good(st.query_map(params![id.0 as i64], |r| Ok(rows::step(r)))?)?;
            Ok(rows)
        })
    }

    pub(crate) fn run_instances_impl(
        &self,
        id: RunId,
        limit: usize,
    ) -> Result<Vec<InstanceRecord>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {INST_COLS} FROM flow_instances WHERE run_id = ?1 ORDER BY step, instance LIMIT ?2"
            ))?;
            let rows =
                keep_good(st.query_map(params![id.0 as i64, limit as i64], |r| Ok(rows::instance(r)))?)?;
            Ok(rows)
        })
    }

    pub(crate) fn list_defs_impl(&self) -> Result<Vec<FlowDefRecord>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {DEF_COLS} FROM flow_defs ORDER BY name LIMIT 10000"
            ))?;
            let rows = keep_good(st.query_map([], |r| Ok(rows::def(r)))?)?;
            Ok(rows)
        })
    }
}

//! The PostgreSQL read side used by API handlers.

use crate::postgres::{connect, decode, Params, PgConn};
use crate::rows::{self, ATTEMPT_COLS, JOB_COLS, TASK_COLS};
use crate::{JobFilter, StoreError, StoreReader};
use postgres::types::ToSql;
use postgres::{Client, Row};
use std::sync::{Arc, Mutex};
use zenith_model::{AttemptId, AttemptRecord, JobId, JobRecord, TaskRecord};

/// Connections shared by API handlers; callers run it on a blocking thread. At most `keep`
/// idle connections are kept; a connection found closed (database restarted) is dropped.
#[derive(Clone)]
pub struct PgReader {
    url: String,
    pool: Arc<Mutex<Vec<PgConn>>>,
    keep: usize,
}

impl PgReader {
    pub(crate) fn new(url: &str, keep: usize) -> PgReader {
        PgReader {
            url: url.to_string(),
            pool: Arc::new(Mutex::new(Vec::new())),
            keep: keep.max(1),
        }
    }

    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = self.pool.lock().map_err(|_| StoreError::Poisoned)?.pop();
        let mut client = match pooled {
            Some(c) if !c.is_closed() => c,
            _ => connect(&self.url)?,
        };
        let out = f(&mut client);
        if !client.is_closed() {
            if let Ok(mut p) = self.pool.lock() {
                if p.len() < self.keep {
                    p.push(client);
                }
            }
        }
        out
    }

    /// Runs one query and decodes its rows.
    pub(crate) fn rows<T>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        f: impl Fn(&Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        self.with(|c| decode(c.query(sql, params)?, f))
    }
}

impl StoreReader for PgReader {
    fn list_jobs(&self, f: &JobFilter) -> Result<Vec<JobRecord>, StoreError> {
        let before = f.before.map(|b| b.0 as i64).unwrap_or(i64::MAX);
        let limit = f.limit.clamp(1, 10_000) as i64;
        let state = f.state.map(|s| s.as_str());
        let mut sql = format!("SELECT {JOB_COLS} FROM jobs WHERE id < $1");
        let mut p: Params<'_> = vec![&before, &limit];
        if let Some(s) = &state {
            p.push(s);
            sql.push_str(&format!(" AND state = ${}", p.len()));
        }
        if let Some(q) = &f.queue {
            p.push(q);
            sql.push_str(&format!(" AND queue = ${}", p.len()));
        }
        if let Some(nss) = &f.namespaces {
            p.push(nss);
            sql.push_str(&format!(" AND namespace = ANY(${})", p.len()));
        }
        sql.push_str(" ORDER BY id DESC LIMIT $2");
        self.rows(&sql, &p, rows::job)
    }

    fn get_job(&self, id: JobId) -> Result<Option<JobRecord>, StoreError> {
        let sql = format!("SELECT {JOB_COLS} FROM jobs WHERE id = $1");
        Ok(self.rows(&sql, &[&(id.0 as i64)], rows::job)?.pop())
    }

    fn attempts(&self, job: JobId, limit: usize) -> Result<(Vec<AttemptRecord>, u64), StoreError> {
        let id = job.0 as i64;
        let total: i64 = self.with(|c| {
            Ok(
                c.query_one("SELECT COUNT(*) FROM attempts WHERE job_id = $1", &[&id])?
                    .try_get(0)?,
            )
        })?;
        let sql =
            format!("SELECT {ATTEMPT_COLS} FROM attempts WHERE job_id = $1 ORDER BY id LIMIT $2");
        let rows = self.rows(&sql, &[&id, &(limit as i64)], rows::attempt)?;
        Ok((rows, total as u64))
    }

    fn latest_attempt(&self, job: JobId, task: u32) -> Result<Option<AttemptRecord>, StoreError> {
        let sql = format!(
            "SELECT {ATTEMPT_COLS} FROM attempts WHERE job_id = $1 AND idx = $2 ORDER BY id DESC LIMIT 1"
        );
        Ok(self
            .rows(&sql, &[&(job.0 as i64), &i64::from(task)], rows::attempt)?
            .pop())
    }

    fn get_attempt(&self, id: AttemptId) -> Result<Option<AttemptRecord>, StoreError> {
        let sql = format!("SELECT {ATTEMPT_COLS} FROM attempts WHERE id = $1");
        Ok(self.rows(&sql, &[&(id.0 as i64)], rows::attempt)?.pop())
    }

    fn tasks(&self, job: JobId, limit: usize) -> Result<Vec<TaskRecord>, StoreError> {
        let sql =
            format!("SELECT {TASK_COLS} FROM tasks t WHERE t.job_id = $1 ORDER BY t.idx LIMIT $2");
        self.rows(&sql, &[&(job.0 as i64), &(limit as i64)], rows::task)
    }

    fn list_runs(
        &self,
        f: &crate::RunFilter,
    ) -> Result<Vec<zenith_model::flow::RunRecord>, StoreError> {
        self.list_runs_impl(f)
    }

    fn get_run(
        &self,
        id: zenith_model::flow::RunId,
    ) -> Result<Option<zenith_model::flow::RunRecord>, StoreError> {
        self.get_run_impl(id)
    }

    fn run_steps(
        &self,
        id: zenith_model::flow::RunId,
    ) -> Result<Vec<zenith_model::flow::StepRecord>, StoreError> {
        self.run_steps_impl(id)
    }

    fn run_instances(
        &self,
        id: zenith_model::flow::RunId,
        limit: usize,
    ) -> Result<Vec<zenith_model::flow::InstanceRecord>, StoreError> {
        self.run_instances_impl(id, limit)
    }

    fn list_flow_defs(&self) -> Result<Vec<zenith_model::flow::FlowDefRecord>, StoreError> {
        self.list_defs_impl()
    }

    fn audit(
        &self,
        f: &crate::AuditFilter,
    ) -> Result<Vec<zenith_model::tenancy::AuditRecord>, StoreError> {
        self.with(|c| crate::audit::read_pg(c, f))
    }

    fn run_attempts(
        &self,
        id: zenith_model::flow::RunId,
        after: Option<AttemptId>,
        limit: usize,
    ) -> Result<Vec<crate::RunAttemptRecord>, StoreError> {
        self.run_attempts_impl(id, after, limit)
    }
}

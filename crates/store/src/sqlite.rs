//! The embedded backend: SQLite in WAL mode with `synchronous=FULL`, one writer connection
//! and a small pool of read-only connections.

use crate::rows::{
    self, json, keep_good, keep_good_in, stored_spec, Cols, ATTEMPT_COLS, ATTEMPT_COLS_A, JOB_COLS,
    NODE_COLS, TASK_COLS,
};
use crate::{JobFilter, Store, StoreError, StoreReader};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use zenith_model::records::{Changes, Loaded};
use zenith_model::{AttemptId, AttemptRecord, IdempotencyRecord, JobId, JobRecord, TaskRecord};

/// Schema migrations, one file each, applied in order; `PRAGMA user_version` holds the last
/// applied. A released migration is never edited.
const MIGRATIONS: &[&str] = &[
    include_str!("schema_v1.sql"),
    include_str!("schema_v2.sql"),
    include_str!("schema_v3.sql"),
    include_str!("schema_v4.sql"),
    include_str!("schema_v5.sql"),
    include_str!("schema_v6.sql"),
    include_str!("schema_v7.sql"),
];

/// The schema version this build writes (`PRAGMA user_version` after opening).
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// Appends ` AND namespace IN (?i, ...)` for `nss` to `sql`, whose parameters are `p`.
pub(crate) fn namespace_in<'a>(
    sql: &mut String,
    p: &mut Vec<&'a dyn rusqlite::ToSql>,
    nss: &'a [String],
) {
    let mut marks = Vec::with_capacity(nss.len());
    for ns in nss {
        p.push(ns);
        marks.push(format!("?{}", p.len()));
    }
    sql.push_str(&format!(" AND namespace IN ({})", marks.join(", ")));
}

fn db_path(dir: &Path) -> PathBuf {
    dir.join("zenith.db")
}

/// The writer. Create it once per data directory.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating and migrating as needed) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
            path: dir.display().to_string(),
            source,
        })?;
        let path = db_path(dir);
        let mut conn = Connection::open(&path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // SQLite's page cache (default 2 MiB) is a cap, not an allocation. At the default the
        // writer re-read B-tree pages from the OS on every commit under load (a third of its
        // time in `pread` copies and page lookups); 32 MiB keeps the pages a commit touches:
        // scheduler ceiling 40-43k -> 47-50k jobs/s (docs/performance.md, Profile 9).
        conn.pragma_update(None, "cache_size", -32_768)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut conn)?;
        Ok(SqliteStore { conn, path })
    }

    /// Caps the database at about `bytes` (whole pages); writes beyond fail as a full disk
    /// would. A cap below the current size holds it at the current size.
    pub fn set_size_limit(&mut self, bytes: u64) -> Result<(), StoreError> {
        let page: i64 = self.conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let pages = (bytes / page.max(512) as u64).max(1) as i64;
        let _: i64 = self
            .conn
            .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
                r.get(0)
            })?;
        Ok(())
    }

    /// A read side sharing this database, with `connections` read-only connections.
    pub fn reader(&self, connections: usize) -> Result<SqliteReader, StoreError> {
        let mut pool = Vec::with_capacity(connections);
        for _ in 0..connections.max(1) {
            let c = Connection::open_with_flags(
                &self.path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            c.busy_timeout(std::time::Duration::from_secs(5))?;
            pool.push(c);
        }
        Ok(SqliteReader {
            pool: Arc::new(Mutex::new(pool)),
            path: self.path.clone(),
        })
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let supported = MIGRATIONS.len() as i64;
    if version > supported {
        return Err(StoreError::TooNew {
            found: version,
            supported,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

impl Cols for Row<'_> {
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        Ok(self.get(i)?)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.get(i)?)
    }
    fn text(&self, i: usize) -> Result<String, StoreError> {
        Ok(self.get(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        Ok(self.get(i)?)
    }
}

impl Store for SqliteStore {
    fn load(&mut self) -> Result<Loaded, StoreError> {
        let mut out = Loaded::default();
        {
            // Live jobs are those queued or running (`jobs_state`); finished ones have a
            // final state and `finished_at`.
            let live: i64 = self.conn.query_row(
                "SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running')",
                [],
                |r| r.get(0),
            )?;
            let mut st = self.conn.prepare(&format!(
                "SELECT {JOB_COLS} FROM jobs WHERE state IN ('queued', 'running')"
            ))?;
            out.jobs = keep_good_in(
                Vec::with_capacity(live.max(0) as usize),
                st.query_map([], |r| Ok(rows::job(r)))?,
            )?;
            let mut st = self.conn.prepare(&format!(
                "SELECT {TASK_COLS} FROM tasks t JOIN jobs j ON j.id = t.job_id WHERE j.state IN ('queued', 'running')"
            ))?;
            out.tasks = keep_good(st.query_map([], |r| Ok(rows::task(r)))?)?;
            // Open attempts are those of running tasks of live jobs.
            let mut st = self.conn.prepare(&format!(
                "SELECT {ATTEMPT_COLS_A} FROM jobs j JOIN tasks t ON t.job_id = j.id \
                 JOIN attempts a ON a.id = t.attempt_id \
                 WHERE j.state = 'running' AND t.state = 'running' AND a.finished_at IS NULL"
            ))?;
            out.running = keep_good(st.query_map([], |r| Ok(rows::attempt(r)))?)?;
            let mut st = self
                .conn
                .prepare(&format!("SELECT {NODE_COLS} FROM nodes"))?;
            out.nodes = keep_good(st.query_map([], |r| Ok(rows::node(r)))?)?;
        }
        crate::sqlite_flows::load(&self.conn, &mut out)?;
        out.node_keys = crate::meta_rows::load_sqlite(&self.conn)?;
        out.user_tokens = crate::meta_rows::load_sqlite(&self.conn)?;
        out.namespaces = crate::meta_rows::load_sqlite(&self.conn)?;
        {
            let mut st = self
                .conn
                .prepare("SELECT key, job_ids, fingerprint, expires_at FROM idempotency")?;
            let rows = st.query_map([], |r| {
                let key: String = r.get(0)?;
                let ids: String = r.get(1)?;
                Ok((key, ids, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?))
            })?;
            for row in rows {
                let (key, ids, fp, exp) = row?;
                let job_ids: Vec<JobId> = serde_json::from_str(&ids)
                    .map_err(|e| rows::corrupt(format!("idempotency key {key:?}"), e))?;
                out.idempotency.push(IdempotencyRecord {
                    key,
                    job_ids,
                    fingerprint: fp as u64,
                    expires_at: exp as u64,
                });
            }
        }
        // Never reuse an ID even if the counters lag the rows.
        let max_job: i64 =
            self.conn
                .query_row("SELECT COALESCE(MAX(id), 0) FROM jobs", [], |r| r.get(0))?;
        let max_att: i64 =
            self.conn
                .query_row("SELECT COALESCE(MAX(id), 0) FROM attempts", [], |r| {
                    r.get(0)
                })?;
        out.next_job_id = rows::next_id(self.get_meta("next_job_id")?, max_job);
        out.next_attempt_id = rows::next_id(self.get_meta("next_attempt_id")?, max_att);
        Ok(out)
    }

    // Long by design: one transaction whose cached statements are prepared once and reused
    // across every table of the batch (the group commit's hot path).
    fn commit(&mut self, ch: &Changes) -> Result<Vec<AttemptId>, StoreError> {
        let tx = self.conn.transaction()?;
        let mut gone = Vec::new();
        {
            let mut ins_job = tx.prepare_cached(
                "INSERT OR REPLACE INTO jobs (id, name, queue, priority, state, spec, task_count, queued, running, \
                 succeeded, failed, cancelled, cancel_requested, reason, created_at, finished_at, \
                 run_id, run_step, run_instance, namespace) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)",
            )?;
            let mut upd_job = tx.prepare_cached(
                "UPDATE jobs SET state = ?2, queued = ?3, running = ?4, succeeded = ?5, failed = ?6, cancelled = ?7, \
                 cancel_requested = ?8, reason = ?9, finished_at = ?10 WHERE id = ?1",
            )?;
            for j in ch.jobs.values() {
                let c = &j.counts;
                match &j.spec {
                    Some(spec) => {
                        ins_job.execute(params![
                            j.id.0 as i64,
                            spec.display_name(),
                            spec.queue,
                            spec.priority,
                            j.state.as_str(),
                            stored_spec(spec.as_ref()),
                            spec.task_count(),
                            c.queued,
                            c.running,
                            c.succeeded,
                            c.failed,
                            c.cancelled,
                            j.cancel_requested,
                            crate::rows::reason_text(&j.reason),
                            j.created_at as i64,
                            j.finished_at.map(|v| v as i64),
                            j.owner.map(|o| o.run.0 as i64),
                            j.owner.map(|o| o.step),
                            j.owner.map(|o| o.instance),
                            spec.namespace(),
                        ])?;
                    }
                    None => {
                        upd_job.execute(params![
                            j.id.0 as i64,
                            j.state.as_str(),
                            c.queued,
                            c.running,
                            c.succeeded,
                            c.failed,
                            c.cancelled,
                            j.cancel_requested,
                            crate::rows::reason_text(&j.reason),
                            j.finished_at.map(|v| v as i64),
                        ])?;
                    }
                }
            }
            let mut up_task = tx.prepare_cached(
                "INSERT INTO tasks (job_id, idx, state, failures, attempts, attempt_id, ready_at, reason) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (job_id, idx) DO UPDATE SET \
                 state = excluded.state, failures = excluded.failures, attempts = excluded.attempts, \
                 attempt_id = excluded.attempt_id, ready_at = excluded.ready_at, reason = excluded.reason",
            )?;
            for t in ch.tasks.values() {
                up_task.execute(params![
                    t.job.0 as i64,
                    t.index,
                    t.state.as_str(),
                    t.failures,
                    t.attempts,
                    t.attempt.map(|a| a.0 as i64),
                    t.ready_at.map(|v| v as i64),
                    crate::rows::reason_text(&t.reason),
                ])?;
            }
            let mut up_att = tx.prepare_cached(
                "INSERT INTO attempts (id, job_id, idx, node, started_at, finished_at, outcome) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (id) DO UPDATE SET \
                 finished_at = excluded.finished_at, outcome = excluded.outcome",
            )?;
            for a in ch.attempts.values() {
                up_att.execute(params![
                    a.id.0 as i64,
                    a.job.0 as i64,
                    a.task,
                    a.node.as_str(),
                    a.started_at as i64,
                    a.finished_at.map(|v| v as i64),
                    a.outcome.as_ref().map(json),
                ])?;
            }
            let mut up_node = tx.prepare_cached(
                "INSERT OR REPLACE INTO nodes (id, name, resources, labels, state, registered_at, last_seen, \
                 cordoned_at, drain_deadline) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for n in ch.nodes.values() {
                up_node.execute(params![
                    n.id.as_str(),
                    n.name,
                    json(&n.resources),
                    json(&n.labels),
                    n.state.as_str(),
                    n.registered_at as i64,
                    n.last_seen as i64,
                    n.cordoned_at.map(|v| v as i64),
                    n.drain_deadline.map(|v| v as i64),
                ])?;
            }
            let mut del_node = tx.prepare_cached("DELETE FROM nodes WHERE id = ?1")?;
            for id in &ch.removed_nodes {
                del_node.execute(params![id.as_str()])?;
            }
            let mut del_key = tx.prepare_cached("DELETE FROM idempotency WHERE key = ?1")?;
            for k in &ch.expired_keys {
                del_key.execute(params![k])?;
            }
            let mut put_key = tx.prepare_cached(
                "INSERT OR REPLACE INTO idempotency (key, job_ids, fingerprint, expires_at) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for r in &ch.idempotency {
                put_key.execute(params![
                    r.key,
                    json(&r.job_ids),
                    r.fingerprint as i64,
                    r.expires_at as i64
                ])?;
            }
            let mut meta =
                tx.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?;
            if ch.next_job_id > 0 {
                meta.execute(params!["next_job_id", ch.next_job_id.to_string()])?;
            }
            if ch.next_attempt_id > 0 {
                meta.execute(params!["next_attempt_id", ch.next_attempt_id.to_string()])?;
            }
            if ch.next_run_id > 0 {
                meta.execute(params!["next_run_id", ch.next_run_id.to_string()])?;
            }
            crate::sqlite_flows::commit(&tx, ch)?;
            crate::meta_rows::commit_sqlite(&tx, ch)?;
            crate::audit::commit_sqlite(&tx, ch)?;
            for id in &ch.deleted_jobs {
                gone.extend(delete_job(&tx, id.0 as i64)?);
            }
        }
        tx.commit()?;
        Ok(gone)
    }

    fn sweep(
        &mut self,
        before: zenith_model::Millis,
        limit: usize,
    ) -> Result<(usize, Vec<AttemptId>), StoreError> {
        let tx = self.conn.transaction()?;
        let ids: Vec<i64> = {
            let mut st = tx.prepare_cached(
                "SELECT id FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ?1 LIMIT ?2",
            )?;
            let rows = st.query_map(params![before as i64, limit as i64], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut attempts = Vec::new();
        for id in &ids {
            attempts.extend(delete_job(&tx, *id)?);
        }
        tx.commit()?;
        Ok((ids.len(), attempts))
    }

    fn sweep_runs(
        &mut self,
        now: zenith_model::Millis,
        before: zenith_model::Millis,
        limit: usize,
    ) -> Result<(Vec<zenith_model::flow::RunId>, Vec<AttemptId>), StoreError> {
        crate::sqlite_flows::sweep(&mut self.conn, now, before, limit)
    }

    fn get_meta(&mut self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    fn init_meta(&mut self, values: &[(&str, &str)]) -> Result<bool, StoreError> {
        let tx = self.conn.transaction()?;
        let mut won = true;
        for (k, v) in values {
            won &= tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
                params![k, v],
            )? == 1;
        }
        tx.commit()?;
        Ok(won)
    }

    fn sweep_audit(
        &mut self,
        before: zenith_model::Millis,
        keep: u64,
    ) -> Result<usize, StoreError> {
        crate::audit::sweep_sqlite(&mut self.conn, before, keep)
    }

    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
            params![key, value],
        )?;
        Ok(())
    }
}

/// Read-only connections shared by API handlers; callers run it on a blocking thread.
#[derive(Clone)]
pub struct SqliteReader {
    pool: Arc<Mutex<Vec<Connection>>>,
    path: PathBuf,
}

impl SqliteReader {
    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self.pool.lock().map_err(|_| StoreError::Poisoned)?.pop();
        let conn = match conn {
            Some(c) => c,
            None => {
                // Pool exhausted: a temporary extra connection, dropped after use.
                let c = Connection::open_with_flags(&self.path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
                c.busy_timeout(std::time::Duration::from_secs(5))?;
                return f(&c);
            }
        };
        let out = f(&conn);
        if let Ok(mut p) = self.pool.lock() {
            p.push(conn);
        }
        out
    }
}

impl StoreReader for SqliteReader {
    fn list_jobs(&self, f: &JobFilter) -> Result<Vec<JobRecord>, StoreError> {
        self.with(|c| {
            let before = f.before.map(|b| b.0 as i64).unwrap_or(i64::MAX);
            let limit = f.limit.clamp(1, 10_000) as i64;
            let state = f.state.map(|s| s.as_str());
            let mut sql = format!("SELECT {JOB_COLS} FROM jobs WHERE id < ?1");
            let mut p: Vec<&dyn rusqlite::ToSql> = vec![&before, &limit];
            if let Some(s) = &state {
                p.push(s);
                sql.push_str(&format!(" AND state = ?{}", p.len()));
            }
            if let Some(q) = &f.queue {
                p.push(q);
                sql.push_str(&format!(" AND queue = ?{}", p.len()));
            }
            if let Some(nss) = &f.namespaces {
                crate::sqlite::namespace_in(&mut sql, &mut p, nss);
            }
            sql.push_str(" ORDER BY id DESC LIMIT ?2");
            let mut st = c.prepare_cached(&sql)?;
            let rows = st.query_map(p.as_slice(), |r| Ok(rows::job(r)))?;
            keep_good(rows)
        })
    }

    fn get_job(&self, id: JobId) -> Result<Option<JobRecord>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare_cached(&format!("SELECT {JOB_COLS} FROM jobs WHERE id = ?1"))?;
            let row = st
                .query_row(params![id.0 as i64], |r| Ok(rows::job(r)))
                .optional()?;
            row.transpose()
        })
    }

    fn attempts(&self, job: JobId, limit: usize) -> Result<(Vec<AttemptRecord>, u64), StoreError> {
        self.with(|c| {
            let total: i64 = c.query_row(
                "SELECT COUNT(*) FROM attempts WHERE job_id = ?1",
                params![job.0 as i64],
                |r| r.get(0),
            )?;
            let mut st = c.prepare_cached(&format!(
                "SELECT {ATTEMPT_COLS} FROM attempts WHERE job_id = ?1 ORDER BY id LIMIT ?2"
            ))?;
            let rows = st.query_map(params![job.0 as i64, limit as i64], |r| {
                Ok(rows::attempt(r))
            })?;
            Ok((keep_good(rows)?, total as u64))
        })
    }

    fn latest_attempt(&self, job: JobId, task: u32) -> Result<Option<AttemptRecord>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {ATTEMPT_COLS} FROM attempts WHERE job_id = ?1 AND idx = ?2 ORDER BY id DESC LIMIT 1"
            ))?;
            st.query_row(params![job.0 as i64, task], |r| Ok(rows::attempt(r))).optional()?.transpose()
        })
    }

    fn get_attempt(&self, id: AttemptId) -> Result<Option<AttemptRecord>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {ATTEMPT_COLS} FROM attempts WHERE id = ?1"
            ))?;
            st.query_row(params![id.0 as i64], |r| Ok(rows::attempt(r)))
                .optional()?
                .transpose()
        })
    }

    fn tasks(&self, job: JobId, limit: usize) -> Result<Vec<TaskRecord>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {TASK_COLS} FROM tasks t WHERE t.job_id = ?1 ORDER BY t.idx LIMIT ?2"
            ))?;
            let rows = st.query_map(params![job.0 as i64, limit as i64], |r| Ok(rows::task(r)))?;
            keep_good(rows)
        })
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

    fn run_attempts(
        &self,
        id: zenith_model::flow::RunId,
        after: Option<AttemptId>,
        limit: usize,
    ) -> Result<Vec<crate::RunAttemptRecord>, StoreError> {
        self.run_attempts_impl(id, after, limit)
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
        self.with(|c| crate::audit::read_sqlite(c, f))
    }
}

/// Deletes a job with its tasks and attempts; returns the attempts' IDs.
fn delete_job(tx: &rusqlite::Transaction<'_>, id: i64) -> Result<Vec<AttemptId>, StoreError> {
    let mut sel = tx.prepare_cached("SELECT id FROM attempts WHERE job_id = ?1")?;
    let attempts = sel
        .query_map(params![id], |r| r.get::<_, i64>(0))?
        .map(|a| a.map(|a| AttemptId(a as u64)))
        .collect::<Result<Vec<_>, _>>()?;
    tx.prepare_cached("DELETE FROM attempts WHERE job_id = ?1")?
        .execute(params![id])?;
    tx.prepare_cached("DELETE FROM tasks WHERE job_id = ?1")?
        .execute(params![id])?;
    tx.prepare_cached("DELETE FROM jobs WHERE id = ?1")?
        .execute(params![id])?;
    Ok(attempts)
}

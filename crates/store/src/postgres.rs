//! The PostgreSQL backend, for several servers sharing one database (docs/ha.md).
//!
//! Same records and group commit as the embedded backend; each table of a batch is written
//! with one statement over arrays (`UNNEST`), so a commit costs a handful of round trips
//! whatever its size. A store made for the leader carries a [`Fence`]: every write
//! transaction first bumps the lease row's commit count *where the epoch is still ours and the
//! lease unexpired* — a deposed or paused leader's transaction matches no row and is rolled
//! back, and while it holds that row lock no other server can take the lease over.
//!
//! The `postgres` crate (the blocking face of `tokio-postgres`) fits the store traits, which
//! are synchronous: the writer owns a thread and readers run on blocking threads.

use crate::rows::{
    self, json, keep_good, stored_spec, Cols, ATTEMPT_COLS, JOB_COLS, NODE_COLS, TASK_COLS,
};
use crate::{JobFilter, Store, StoreError, StoreReader};
use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Statement, Transaction};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zenith_model::records::{Changes, Loaded};
use zenith_model::{AttemptId, AttemptRecord, IdempotencyRecord, JobId, JobRecord, TaskRecord};

/// Schema migrations, applied in order under an advisory lock (so that servers starting
/// together migrate once); `zenith_schema.version` holds the last applied. A released
/// migration is never edited.
const MIGRATIONS: &[&str] = &[include_str!("pg_schema_v1.sql")];

/// Advisory lock key taken while migrating ("zenith" in ASCII).
const MIGRATE_LOCK: i64 = 0x7a656e697468;

/// Parameters of one statement.
pub(crate) type Params<'a> = Vec<&'a (dyn ToSql + Sync)>;

impl Cols for Row {
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        Ok(self.try_get(i)?)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(i)?)
    }
    fn text(&self, i: usize) -> Result<String, StoreError> {
        Ok(self.try_get(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(i)?)
    }
}

/// Runs a query and decodes its rows as they arrive (not all held at once: a load reads
/// every live job), skipping corrupt ones.
pub(crate) fn stream<T>(
    tx: &mut Transaction<'_>,
    sql: &str,
    f: impl Fn(&Row) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    use postgres::fallible_iterator::FallibleIterator;
    let rows = tx.query_raw(sql, std::iter::empty::<i64>())?;
    keep_good(rows.iterator().map(|r| r.map(|row| f(&row))))
}

/// Decodes every row with `f`, skipping corrupt ones.
pub(crate) fn decode<T>(
    rows: Vec<Row>,
    f: impl Fn(&Row) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    keep_good(rows.iter().map(|r| Ok::<_, StoreError>(f(r))))
}

/// A connection that may be dropped anywhere: the driver closes a connection by blocking on
/// its own runtime, which panics inside an async runtime (the server drops readers and
/// leases from async code), so the close happens on a short-lived thread of its own.
pub struct PgConn(Option<Client>);

impl std::ops::Deref for PgConn {
    type Target = Client;
    fn deref(&self) -> &Client {
        // Some until drop, which is the only place that takes it.
        self.0
            .as_ref()
            .unwrap_or_else(|| unreachable!("connection used after drop"))
    }
}

impl std::ops::DerefMut for PgConn {
    fn deref_mut(&mut self) -> &mut Client {
        self.0
            .as_mut()
            .unwrap_or_else(|| unreachable!("connection used after drop"))
    }
}

impl Drop for PgConn {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            let _ = std::thread::Builder::new()
                .name("zenith-pg-close".into())
                .spawn(move || drop(c));
        }
    }
}

/// Opens a connection with timeouts, so that a database that stops answering fails calls
/// instead of hanging them: 5 s to connect, 10 s for unacknowledged data (TCP_USER_TIMEOUT),
/// 30 s per statement.
pub fn connect(url: &str) -> Result<PgConn, StoreError> {
    let mut cfg: postgres::Config = url
        .parse()
        .map_err(|e: postgres::Error| StoreError::Config(format!("--store {url:?}: {e}")))?;
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(Duration::from_secs(5));
    }
    cfg.tcp_user_timeout(Duration::from_secs(10));
    cfg.keepalives_idle(Duration::from_secs(5));
    cfg.application_name("zenith");
    cfg.options("-c statement_timeout=30000 -c client_min_messages=warning");
    Ok(PgConn(Some(cfg.connect(NoTls)?)))
}

/// The writer's fence: the lease it must still hold for a write to commit.
pub struct Fence {
    pub holder: String,
    pub epoch: i64,
    /// Called (from the writer thread) when a write found the lease gone.
    pub on_lost: Arc<dyn Fn() + Send + Sync>,
}

/// The write side. Reconnects by itself after the database restarts.
pub struct PgStore {
    url: String,
    client: PgConn,
    /// Statements prepared on `client` (writes repeat a few dozen texts): one round trip per
    /// statement instead of two. Cleared with the connection.
    prepared: HashMap<String, Statement>,
    fence: Option<Fence>,
}

/// A write transaction with the writer's prepared statements.
pub(crate) struct Tx<'a, 'c> {
    tx: Transaction<'c>,
    prepared: &'a mut HashMap<String, Statement>,
}

impl Tx<'_, '_> {
    fn statement(&mut self, sql: &str) -> Result<Statement, StoreError> {
        if let Some(s) = self.prepared.get(sql) {
            return Ok(s.clone());
        }
        let s = self.tx.prepare(sql)?;
        // Bounded: only the writer's fixed statement texts are cached.
        if self.prepared.len() < 256 {
            self.prepared.insert(sql.to_string(), s.clone());
        }
        Ok(s)
    }

    pub(crate) fn execute(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let st = self.statement(sql)?;
        Ok(self.tx.execute(&st, params)?)
    }

    pub(crate) fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let st = self.statement(sql)?;
        Ok(self.tx.query(&st, params)?)
    }
}

impl PgStore {
    /// Connects and creates or migrates the schema.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let mut client = connect(url)?;
        migrate(&mut client)?;
        Ok(PgStore {
            url: url.to_string(),
            client,
            prepared: HashMap::new(),
            fence: None,
        })
    }

    /// From now on every write checks `fence` in its transaction.
    pub fn set_fence(&mut self, fence: Fence) {
        self.fence = Some(fence);
    }

    /// A read side with up to `connections` pooled connections.
    pub fn reader(&self, connections: usize) -> PgReader {
        PgReader {
            url: self.url.clone(),
            pool: Arc::new(Mutex::new(Vec::new())),
            keep: connections.max(1),
        }
    }

    fn client(&mut self) -> Result<&mut Client, StoreError> {
        if self.client.is_closed() {
            tracing::info!("reconnecting to PostgreSQL");
            self.client = connect(&self.url)?;
            self.prepared.clear();
        }
        Ok(&mut self.client)
    }

    /// Runs `f` in a transaction that first checks the fence (when there is one).
    fn write<T>(
        &mut self,
        f: impl FnOnce(&mut Tx<'_, '_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let fence = self.fence.as_ref().map(|f| (f.holder.clone(), f.epoch));
        let result = (|| {
            self.client()?;
            let mut tx = Tx {
                tx: self.client.transaction()?,
                prepared: &mut self.prepared,
            };
            if let Some((holder, epoch)) = &fence {
                let n = tx.execute(
                    "UPDATE zenith_lease SET commits = commits + 1 \
                     WHERE id = 1 AND holder = $1 AND epoch = $2 AND expires_at > zenith_now_ms()",
                    &[holder, epoch],
                )?;
                if n != 1 {
                    return Err(StoreError::Fenced { epoch: *epoch });
                }
            }
            let out = f(&mut tx)?;
            tx.tx.commit()?;
            Ok(out)
        })();
        if let (Err(StoreError::Fenced { .. }), Some(f)) = (&result, &self.fence) {
            (f.on_lost)();
        }
        result
    }
}

fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS zenith_schema (version BIGINT NOT NULL)")?;
    let version: i64 = tx
        .query_opt("SELECT version FROM zenith_schema", &[])?
        .map(|r| r.try_get(0))
        .transpose()?
        .unwrap_or(0);
    let supported = MIGRATIONS.len() as i64;
    if version > supported {
        return Err(StoreError::TooNew {
            found: version,
            supported,
        });
    }
    for sql in MIGRATIONS.iter().skip(version as usize) {
        tx.batch_execute(sql)?;
    }
    tx.execute("DELETE FROM zenith_schema", &[])?;
    tx.execute("INSERT INTO zenith_schema VALUES ($1)", &[&supported])?;
    tx.commit()?;
    Ok(())
}

fn ids(v: &[i64]) -> Vec<AttemptId> {
    v.iter().map(|a| AttemptId(*a as u64)).collect()
}

fn opt(v: Option<u64>) -> Option<i64> {
    v.map(|x| x as i64)
}

impl Store for PgStore {
    fn load(&mut self) -> Result<Loaded, StoreError> {
        let c = self.client()?;
        let mut tx = c.build_transaction().read_only(true).start()?;
        let live_tasks = format!(
            "SELECT {TASK_COLS} FROM tasks t JOIN jobs j ON j.id = t.job_id \
             WHERE j.finished_at IS NULL"
        );
        let mut out = Loaded {
            jobs: stream(
                &mut tx,
                &format!("SELECT {JOB_COLS} FROM jobs WHERE finished_at IS NULL"),
                rows::job,
            )?,
            tasks: stream(&mut tx, &live_tasks, rows::task)?,
            running: stream(
                &mut tx,
                &format!("SELECT {ATTEMPT_COLS} FROM attempts WHERE finished_at IS NULL"),
                rows::attempt,
            )?,
            nodes: stream(
                &mut tx,
                &format!("SELECT {NODE_COLS} FROM nodes"),
                rows::node,
            )?,
            ..Loaded::default()
        };
        crate::pg_flows::load(&mut tx, &mut out)?;
        for r in tx.query(
            "SELECT key, job_ids, fingerprint, expires_at FROM idempotency",
            &[],
        )? {
            let key: String = r.try_get(0)?;
            let job_ids: Vec<JobId> = serde_json::from_str(&r.try_get::<_, String>(1)?)
                .map_err(|e| rows::corrupt(format!("idempotency key {key:?}"), e))?;
            out.idempotency.push(IdempotencyRecord {
                key,
                job_ids,
                fingerprint: r.try_get::<_, i64>(2)? as u64,
                expires_at: r.try_get::<_, i64>(3)? as u64,
            });
        }
        let max = |tx: &mut Transaction<'_>, sql: &str| -> Result<i64, StoreError> {
            Ok(tx.query_one(sql, &[])?.try_get(0)?)
        };
        let max_job = max(&mut tx, "SELECT COALESCE(MAX(id), 0) FROM jobs")?;
        let max_att = max(&mut tx, "SELECT COALESCE(MAX(id), 0) FROM attempts")?;
        out.next_job_id = rows::next_id(meta(&mut tx, "next_job_id")?, max_job);
        out.next_attempt_id = rows::next_id(meta(&mut tx, "next_attempt_id")?, max_att);
        tx.commit()?;
        Ok(out)
    }

    fn commit(&mut self, ch: &Changes) -> Result<(), StoreError> {
        self.write(|tx| {
            commit_jobs(tx, ch)?;
            commit_tasks(tx, ch)?;
            commit_attempts(tx, ch)?;
            commit_nodes_and_keys(tx, ch)?;
            let mut keys = Vec::new();
            let mut values = Vec::new();
            for (k, v) in [
                ("next_job_id", ch.next_job_id),
                ("next_attempt_id", ch.next_attempt_id),
                ("next_run_id", ch.next_run_id),
            ] {
                if v > 0 {
                    keys.push(k);
                    values.push(v.to_string());
                }
            }
            if !keys.is_empty() {
                tx.execute(
                    "INSERT INTO meta (key, value) SELECT * FROM UNNEST($1::text[], $2::text[]) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    &[&keys, &values],
                )?;
            }
            crate::pg_flows::commit(tx, ch)
        })
    }

    fn sweep(&mut self, before: u64, limit: usize) -> Result<(usize, Vec<AttemptId>), StoreError> {
        self.write(|tx| {
            let jobs: Vec<i64> = tx
                .query(
                    "SELECT id FROM jobs WHERE finished_at IS NOT NULL AND finished_at < $1 LIMIT $2",
                    &[&(before as i64), &(limit as i64)],
                )?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?;
            let gone = delete_jobs(tx, &jobs)?;
            Ok((jobs.len(), ids(&gone)))
        })
    }

    fn sweep_runs(
        &mut self,
        now: u64,
        before: u64,
        limit: usize,
    ) -> Result<(Vec<zenith_model::flow::RunId>, Vec<AttemptId>), StoreError> {
        self.write(|tx| crate::pg_flows::sweep(tx, now, before, limit))
    }

    fn get_meta(&mut self, key: &str) -> Result<Option<String>, StoreError> {
        let mut tx = self.client()?.transaction()?;
        let v = meta(&mut tx, key)?;
        tx.commit()?;
        Ok(v)
    }

    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&key, &value],
            )?;
            Ok(())
        })
    }

    fn init_meta(&mut self, values: &[(&str, &str)]) -> Result<bool, StoreError> {
        self.write(|tx| {
            // Servers starting together on an empty database: the first to insert wins, the
            // others wait on its row lock and then find the rows there.
            let mut won = true;
            for (k, v) in values {
                let n = tx.execute(
                    "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                    &[k, v],
                )?;
                won &= n == 1;
            }
            Ok(won)
        })
    }
}

pub(crate) fn meta(tx: &mut Transaction<'_>, key: &str) -> Result<Option<String>, StoreError> {
    Ok(tx
        .query_opt("SELECT value FROM meta WHERE key = $1", &[&key])?
        .map(|r| r.try_get(0))
        .transpose()?)
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

fn commit_jobs(tx: &mut Tx<'_, '_>, ch: &Changes) -> Result<(), StoreError> {
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
            self.reason.push(j.reason.clone());
            self.finished.push(opt(j.finished_at));
        }
    }
    let (mut new, mut upd) = (Cols::default(), Cols::default());
    let mut name = Vec::new();
    let mut queue = Vec::new();
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
             run_id, run_step, run_instance) \
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[], \
             $6::text[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], \
             $12::bigint[], $13::bigint[], $14::text[], $15::bigint[], $16::bigint[], $17::bigint[], \
             $18::bigint[], $19::bigint[]) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, queue = excluded.queue, \
             priority = excluded.priority, state = excluded.state, spec = excluded.spec, \
             task_count = excluded.task_count, queued = excluded.queued, running = excluded.running, \
             succeeded = excluded.succeeded, failed = excluded.failed, cancelled = excluded.cancelled, \
             cancel_requested = excluded.cancel_requested, reason = excluded.reason, \
             created_at = excluded.created_at, finished_at = excluded.finished_at, \
             run_id = excluded.run_id, run_step = excluded.run_step, run_instance = excluded.run_instance",
            &[
                &new.id, &name, &queue, &priority, &new.state, &spec, &task_count, q, r, s, f, c,
                &new.cancel, &new.reason, &created, &new.finished, &run, &step, &instance,
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

fn commit_tasks(tx: &mut Tx<'_, '_>, ch: &Changes) -> Result<(), StoreError> {
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
        reason.push(t.reason.clone());
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

fn commit_attempts(tx: &mut Tx<'_, '_>, ch: &Changes) -> Result<(), StoreError> {
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

fn commit_nodes_and_keys(tx: &mut Tx<'_, '_>, ch: &Changes) -> Result<(), StoreError> {
    if !ch.nodes.is_empty() {
        let (mut id, mut name, mut res, mut labels) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut state, mut reg, mut seen) = (Vec::new(), Vec::new(), Vec::new());
        for n in ch.nodes.values() {
            id.push(n.id.as_str());
            name.push(n.name.as_str());
            res.push(json(&n.resources));
            labels.push(json(&n.labels));
            state.push(n.state.as_str());
            reg.push(n.registered_at as i64);
            seen.push(n.last_seen as i64);
        }
        tx.execute(
            "INSERT INTO nodes (id, name, resources, labels, state, registered_at, last_seen) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
             $6::bigint[], $7::bigint[]) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, resources = excluded.resources, \
             labels = excluded.labels, state = excluded.state, registered_at = excluded.registered_at, \
             last_seen = excluded.last_seen",
            &[&id, &name, &res, &labels, &state, &reg, &seen],
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

/// Connections shared by API handlers; callers run it on a blocking thread. At most `keep`
/// idle connections are kept; a connection found closed (database restarted) is dropped.
#[derive(Clone)]
pub struct PgReader {
    url: String,
    pool: Arc<Mutex<Vec<PgConn>>>,
    keep: usize,
}

impl PgReader {
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

    fn run_attempts(
        &self,
        id: zenith_model::flow::RunId,
        after: Option<AttemptId>,
        limit: usize,
    ) -> Result<Vec<crate::RunAttemptRecord>, StoreError> {
        self.run_attempts_impl(id, after, limit)
    }
}

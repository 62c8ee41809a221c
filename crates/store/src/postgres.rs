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

use crate::pg_commit;
pub use crate::pg_reader::PgReader;
use crate::rows::{self, keep_good, Cols, ATTEMPT_COLS, JOB_COLS, NODE_COLS, TASK_COLS};
use crate::{Store, StoreError};
use postgres::types::ToSql;
use postgres::{Client, Row, Statement, Transaction};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use zenith_model::records::{Changes, Loaded};
use zenith_model::{AttemptId, IdempotencyRecord, JobId};

/// Schema migrations, applied in order under an advisory lock (so that servers starting
/// together migrate once); `zenith_schema.version` holds the last applied. A released
/// migration is never edited.
const MIGRATIONS: &[&str] = &[
    include_str!("pg_schema_v1.sql"),
    include_str!("pg_schema_v2.sql"),
    include_str!("pg_schema_v3.sql"),
    include_str!("pg_schema_v4.sql"),
];

/// The schema version this build writes (`zenith_schema.version` after connecting).
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

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
    let (pg_url, tls) = crate::pg_tls::connector(url)?;
    let mut cfg: postgres::Config =
        pg_url
            .parse()
            .map_err(|source: postgres::Error| StoreError::BadUrl {
                url: without_password(url),
                source,
            })?;
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(Duration::from_secs(5));
    }
    cfg.tcp_user_timeout(Duration::from_secs(10));
    cfg.keepalives_idle(Duration::from_secs(5));
    cfg.application_name("zenith");
    cfg.options("-c statement_timeout=30000 -c client_min_messages=warning");
    Ok(PgConn(Some(cfg.connect(tls)?)))
}

/// `url` with its password (if any) replaced by `***`, for error messages and logs.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
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
        PgReader::new(&self.url, connections)
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
        out.node_keys = crate::meta_rows::load_pg(&mut tx)?;
        out.user_tokens = crate::meta_rows::load_pg(&mut tx)?;
        out.namespaces = crate::meta_rows::load_pg(&mut tx)?;
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

    fn commit(&mut self, ch: &Changes) -> Result<Vec<AttemptId>, StoreError> {
        self.write(|tx| {
            pg_commit::commit_jobs(tx, ch)?;
            pg_commit::commit_tasks(tx, ch)?;
            pg_commit::commit_attempts(tx, ch)?;
            pg_commit::commit_nodes_and_keys(tx, ch)?;
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
            crate::pg_flows::commit(tx, ch)?;
            crate::meta_rows::commit_pg(tx, ch)?;
            crate::audit::commit_pg(tx, ch)?;
            let deleted: Vec<i64> = ch.deleted_jobs.iter().map(|j| j.0 as i64).collect();
            Ok(ids(&pg_commit::delete_jobs(tx, &deleted)?))
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
            let gone = pg_commit::delete_jobs(tx, &jobs)?;
            Ok((jobs.len(), ids(&gone)))
        })
    }

    fn sweep_audit(&mut self, before: u64, keep: u64) -> Result<usize, StoreError> {
        self.write(|tx| crate::audit::sweep_pg(tx, before, keep))
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

#[cfg(test)]
mod password_tests {
    #[test]
    fn a_bad_url_is_reported_without_its_password() {
        assert_eq!(
            super::without_password("postgres://z:s3cret@db:5432/x?sslmode=require"),
            "postgres://z:***@db:5432/x?sslmode=require"
        );
        assert_eq!(
            super::without_password("postgres://db/x"),
            "postgres://db/x"
        );
        let err = super::connect("postgres://z:s3cret@db:notaport/x")
            .err()
            .unwrap();
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }
}

//! Durable records of jobs, tasks, attempts and nodes.
//!
//! [`Store`] is the write side: one writer, group commit (one transaction per batch of engine
//! changes), load at start, retention sweep. [`StoreReader`] is the read side used by API
//! queries; it only ever sees committed data. The embedded backend is SQLite in the data
//! directory ([`sqlite::SqliteStore`]); several servers share PostgreSQL
//! ([`postgres::PgStore`]), where the leader's writes check its lease epoch inside each commit
//! ([`pg_lease`]).

mod audit;
mod meta_rows;
mod pg_commit;
mod pg_flows;
pub mod pg_lease;
mod pg_reader;
mod pg_tls;
pub mod postgres;
mod rows;
pub mod sqlite;

pub use audit::MAX_AUDIT_PAGE;
mod sqlite_flows;

use zenith_model::flow::{FlowDefRecord, InstanceRecord, RunId, RunRecord, StepRecord};
use zenith_model::records::{Changes, Loaded};
use zenith_model::tenancy::AuditRecord;
use zenith_model::{AttemptId, AttemptRecord, JobId, JobRecord, JobState, Millis, TaskRecord};

/// Errors of the store layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("stored record {what} is corrupt: {detail}")]
    Corrupt { what: String, detail: String },
    #[error("store schema version {found} is newer than this binary supports ({supported})")]
    TooNew { found: i64, supported: i64 },
    #[error("reader pool lock poisoned")]
    Poisoned,
    /// The TLS settings of a PostgreSQL URL (`sslmode`, `sslrootcert`) cannot be used.
    #[error("--store TLS: {0}")]
    Tls(String),
    #[error("PostgreSQL: {}", pg_reason(.0))]
    Pg(#[from] ::postgres::Error),
    #[error("this server no longer holds the leader lease (epoch {epoch}); write refused")]
    Fenced { epoch: i64 },
    /// A `--store` URL that does not parse.
    #[error("--store {url:?}: {source}")]
    BadUrl {
        url: String,
        source: ::postgres::Error,
    },
}

/// The database's own message where it sent one (the driver's text is often just "db error").
fn pg_reason(e: &::postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            // The cause says what went wrong (a refused certificate, a reset connection).
            let mut text = e.to_string();
            let mut cause = std::error::Error::source(e);
            while let Some(c) = cause {
                text.push_str(&format!(": {c}"));
                cause = c.source();
            }
            text
        }
    }
}

/// The write side, owned by exactly one writer thread.
pub trait Store: Send {
    /// Reads every live record, to rebuild the engine.
    fn load(&mut self) -> Result<Loaded, StoreError>;
    /// Persists one batch atomically and durably; returns the attempts whose rows went with
    /// `changes.deleted_jobs` (so their logs can go too).
    fn commit(&mut self, changes: &Changes) -> Result<Vec<AttemptId>, StoreError>;
    /// Deletes up to `limit` jobs that finished before `before`, with their tasks and
    /// attempts; returns how many jobs went and the attempts removed (so their logs can go too).
    fn sweep(
        &mut self,
        before: Millis,
        limit: usize,
    ) -> Result<(usize, Vec<AttemptId>), StoreError>;
    /// Deletes up to `limit` finished flow runs whose `ttl` expired by `now` or that finished
    /// before `before`, with their jobs; returns the runs and attempts removed.
    fn sweep_runs(
        &mut self,
        now: Millis,
        before: Millis,
        limit: usize,
    ) -> Result<(Vec<RunId>, Vec<AttemptId>), StoreError>;
    /// Reads a small named value (token hashes, settings).
    fn get_meta(&mut self, key: &str) -> Result<Option<String>, StoreError>;
    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError>;
    /// Writes `values` where their keys are absent, in one transaction; true when every key
    /// was absent (this caller initialised them).
    fn init_meta(&mut self, values: &[(&str, &str)]) -> Result<bool, StoreError>;
    /// Deletes audit records older than `before` and the oldest beyond the newest `keep`;
    /// returns how many went.
    fn sweep_audit(&mut self, before: Millis, keep: u64) -> Result<usize, StoreError>;
}

/// Filters and paging of the audit log: newest first, `before` is an ID cursor.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub user: Option<String>,
    /// Records at or after this time.
    pub since: Option<Millis>,
    /// Only refused or failed requests (status 400 and above).
    pub refused_only: bool,
    pub before: Option<u64>,
    pub limit: usize,
}

/// Filters and paging of a job listing: newest first, `before` is an ID cursor.
#[derive(Clone, Debug, Default)]
pub struct JobFilter {
    pub state: Option<JobState>,
    pub queue: Option<String>,
    /// Only jobs of these namespaces (`None`: every namespace).
    pub namespaces: Option<Vec<String>>,
    pub before: Option<JobId>,
    pub limit: usize,
}

/// Paging of a run listing: newest first, `before` is an ID cursor.
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    /// A flow's key (`name`, or `namespace/name` outside `default`).
    pub name: Option<String>,
    /// Runs of these namespaces only; `None`: every namespace.
    pub namespaces: Option<Vec<String>>,
    pub before: Option<RunId>,
    pub limit: usize,
}

/// The read side, shared by API handlers.
pub trait StoreReader: Send + Sync {
    fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError>;
    /// A job with its spec.
    fn get_job(&self, id: JobId) -> Result<Option<JobRecord>, StoreError>;
    /// The job's attempts in ID order, at most `limit`, plus the total count.
    fn attempts(&self, job: JobId, limit: usize) -> Result<(Vec<AttemptRecord>, u64), StoreError>;
    /// The latest attempt of one task.
    fn latest_attempt(&self, job: JobId, task: u32) -> Result<Option<AttemptRecord>, StoreError>;
    fn get_attempt(&self, id: AttemptId) -> Result<Option<AttemptRecord>, StoreError>;
    /// Task rows of a job (tasks that never started have none), at most `limit`.
    fn tasks(&self, job: JobId, limit: usize) -> Result<Vec<TaskRecord>, StoreError>;
    fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError>;
    /// A run with its spec.
    fn get_run(&self, id: RunId) -> Result<Option<RunRecord>, StoreError>;
    fn run_steps(&self, id: RunId) -> Result<Vec<StepRecord>, StoreError>;
    /// Instance rows of a run in (step, instance) order, at most `limit`.
    fn run_instances(&self, id: RunId, limit: usize) -> Result<Vec<InstanceRecord>, StoreError>;
    fn list_flow_defs(&self) -> Result<Vec<FlowDefRecord>, StoreError>;
    /// Attempts of a run's jobs with ID above `after`, in ID order, at most `limit`.
    fn run_attempts(
        &self,
        id: RunId,
        after: Option<AttemptId>,
        limit: usize,
    ) -> Result<Vec<RunAttemptRecord>, StoreError>;
    fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError>;
}

/// An attempt of a flow step's job, with the step and instance it ran.
#[derive(Clone, Debug, PartialEq)]
pub struct RunAttemptRecord {
    pub step: u32,
    pub instance: u32,
    pub attempt: AttemptRecord,
}

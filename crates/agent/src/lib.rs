//! The node agent: joins a server, runs the attempts it is assigned, reports their results
//! and output. It executes; it never decides placement.
//!
//! [`run`] is setup (this file: config checked, data directory locked, identity, outbox,
//! metrics server, executor) followed by the session loop (`run_loop`).

mod artifacts;
mod credential;
mod endpoints;
mod executor;
pub mod gpus;
pub mod guardian;
mod identity;
mod leave;
mod logship;
mod metrics;
mod outbox;
mod proc;
mod run_loop;
mod session;

pub use endpoints::ServerListError;
pub use identity::{detect_resources, hostname};
pub use proc::die_with_parent;

use nix::fcntl::{Flock, FlockArg};
use std::collections::BTreeMap;
use std::fs::File;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use zenith_model::Resources;
use zenith_protocol::agent::AttemptResult;

/// Everything an agent can be told.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Base URL of the server, e.g. `http://10.0.0.5:7700`, or several comma-separated
    /// (servers sharing a PostgreSQL store; the agent follows the leader).
    pub server: String,
    /// The agent join token: used once, to enroll the node and receive its own credential
    /// (kept 0600 in `data_dir`).
    pub token: String,
    /// Trust this CA (PEM) for https:// servers, besides the system's roots.
    pub ca_cert: Option<PathBuf>,
    /// Identity, outbox, local logs and the default work directory live here.
    pub data_dir: PathBuf,
    /// Display name of the node (default: hostname).
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// What the node offers (default: detected cores and memory).
    pub resources: Resources,
    /// Between SIGTERM and SIGKILL when an attempt is killed.
    pub kill_grace: Duration,
    /// When the agent is stopped while registered, how long what runs may finish before it
    /// is stopped and requeued elsewhere (`leave.rs`); no new work comes meanwhile.
    pub shutdown_grace: Duration,
    /// Where attempts without `cwd` run (default `<data_dir>/work`).
    pub work_dir: Option<PathBuf>,
    /// Serve the agent's Prometheus metrics at `/metrics` on this address.
    pub metrics_listen: Option<SocketAddr>,
    /// Assignments held beyond what fits, each started the moment resources free (the
    /// node's backlog; 0: only what fits).
    pub prefetch: u32,
    /// Where gang members reach this node; `None`: where the server sees it connect from.
    pub address: Option<String>,
    /// The node's GPUs as found (`gpus.rs`): sampled for the GPU metrics.
    pub gpus: Option<Arc<gpus::Inventory>>,
    /// The `zenith` binary, started as `zenith __guardian` to kill this agent's jobs if the
    /// agent dies (see `guardian`).
    pub guardian_exe: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot reach the server: {0}")]
    Http(#[from] reqwest::Error),
    #[error("server answered {status}: {body}")]
    Server { status: u16, body: String },
    #[error("data directory {0} is in use by another zenith agent")]
    InUse(String),
    /// `AgentConfig::server` is not a usable list of URLs.
    #[error(transparent)]
    ServerList(#[from] ServerListError),
    /// The server revoked this node (`zenith node revoke`): the agent stops.
    #[error("{0}")]
    Revoked(String),
    /// `AgentConfig::ca_cert` cannot be used.
    #[error(transparent)]
    Trust(#[from] zenith_client::TrustError),
}

/// Capacity of the executor -> reporter result channel.
const RESULT_CHANNEL: usize = 65_536;

/// Runs the agent until `shutdown` resolves. Server outages are ridden out: results wait in
/// the outbox and the agent keeps re-registering with backoff.
pub async fn run(cfg: AgentConfig, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
    let mut agent = Agent::start(cfg).await?;
    agent.serve(shutdown).await?;
    agent.stop();
    Ok(())
}

/// A started agent: what setup made, driven by the session loop (`run_loop`). Fields drop
/// in the order written: the data directory's lock goes last.
struct Agent {
    conn: Arc<session::Conn>,
    logs: logship::LogShipper,
    outbox: outbox::Outbox,
    exec: executor::Executor,
    /// Results of ended attempts, from the executor.
    results: mpsc::Receiver<AttemptResult>,
    /// Serves `/metrics` (when asked to) for as long as the agent runs.
    _metrics_server: Option<AbortOnDrop>,
    metrics: Arc<metrics::AgentMetrics>,
    /// Held for the agent's life (see [`lock_data_dir`]).
    _lock: Flock<File>,
}

impl Agent {
    /// Setup: checks the server list, takes the data directory and the node's identity,
    /// starts the metrics server, the guardian and the executor (killing what a previous
    /// run left behind) and opens the outbox.
    async fn start(cfg: AgentConfig) -> Result<Agent, AgentError> {
        let servers = Arc::new(endpoints::Endpoints::parse(&cfg.server)?);
        // Private to this user (0700), also when an older version left it readable: logs,
        // results and artifacts inside are then out of other local users' reach.
        std::fs::create_dir_all(&cfg.data_dir)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&cfg.data_dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let lock = lock_data_dir(&cfg.data_dir)?;
        let node = identity::node_id(&cfg.data_dir)?;
        let metrics = metrics::AgentMetrics::new(cfg.gpus.clone());
        let metrics_server = serve_metrics(cfg.metrics_listen, &metrics).await?;
        let (results_tx, results) = mpsc::channel(RESULT_CHANNEL);
        let work_dir = cfg
            .work_dir
            .clone()
            .unwrap_or_else(|| cfg.data_dir.join("work"));
        let http = zenith_client::http_client(cfg.ca_cert.as_deref(), Duration::from_secs(5))?;
        let credential = Arc::new(credential::Credential::open(
            &cfg.data_dir,
            &node,
            cfg.token.clone(),
        ));
        let transfer = artifacts::Transfer {
            http: http.clone(),
            servers: servers.clone(),
            credential: credential.clone(),
            node: node.clone(),
            spool: fresh_spool(&cfg.data_dir)?,
        };
        let exec = executor::Executor::new(
            executor::Setup {
                node: node.clone(),
                data_dir: cfg.data_dir.clone(),
                work_dir,
                grace: cfg.kill_grace,
                resources: cfg.resources.clone(),
                transfer: Some(transfer),
                guardian: Arc::new(guardian::Guardian::start(&cfg.guardian_exe)?),
            },
            results_tx,
            metrics.clone(),
        )?;
        let leftovers = exec.reap_leftovers();
        if leftovers > 0 {
            tracing::warn!(
                killed = leftovers,
                "killed process groups left by a previous agent run"
            );
        }
        let outbox = outbox::Outbox::open(&cfg.data_dir)?;
        let conn = Arc::new(session::Conn::new(
            http,
            cfg,
            credential,
            servers,
            node.clone(),
            metrics.clone(),
        ));
        tracing::info!(node = %node, server = %conn.cfg.server, "agent starting");
        Ok(Agent {
            conn,
            logs: logship::LogShipper::default(),
            outbox,
            exec,
            results,
            _metrics_server: metrics_server,
            metrics,
            _lock: lock,
        })
    }
}

/// Two agents on one data directory would share a node identity: the second is refused
/// (the lock is held until the returned value is dropped).
fn lock_data_dir(dir: &Path) -> Result<Flock<File>, AgentError> {
    let lock_file = private_file()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("agent.lock"))?;
    Flock::lock(lock_file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        if errno == nix::errno::Errno::EWOULDBLOCK {
            AgentError::InUse(dir.display().to_string())
        } else {
            AgentError::Io(std::io::Error::from(errno))
        }
    })
}

/// Serves `/metrics` on `addr` when one is given, until the returned handle is dropped.
async fn serve_metrics(
    addr: Option<SocketAddr>,
    metrics: &Arc<metrics::AgentMetrics>,
) -> std::io::Result<Option<AbortOnDrop>> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "agent metrics at /metrics");
    Ok(Some(AbortOnDrop(tokio::spawn(metrics::serve(
        listener,
        metrics.clone(),
    )))))
}

/// The directory for artifact tar files, emptied of those in flight when a previous run of
/// the agent stopped.
fn fresh_spool(data_dir: &Path) -> std::io::Result<PathBuf> {
    let spool = data_dir.join("spool");
    warn_unless_gone(
        std::fs::remove_dir_all(&spool),
        &spool,
        "spool of a previous agent run",
    );
    std::fs::create_dir_all(&spool)?;
    Ok(spool)
}

/// Reports the outcome of removing `what` at `path`, which the agent no longer needs.
/// Already gone is fine; any other failure only leaves files behind, so it is logged rather
/// than failing the step that cleans up.
fn warn_unless_gone(removed: std::io::Result<()>, path: &Path, what: &str) {
    match removed {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(what, path = %path.display(), error = %e, "cannot remove"),
    }
}

/// Aborts a task when dropped, so no stream reader outlives its session.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Options for a file only this user may read (0600): the agent's own files (logs, results,
/// artifacts, identity) stay private whatever mask its jobs run under (`--job-umask`).
pub(crate) fn private_file() -> std::fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.mode(0o600);
    o
}

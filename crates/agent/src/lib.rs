//! The node agent: joins a server, runs the attempts it is assigned, reports their results
//! and output. It executes; it never decides placement.

mod artifacts;
mod endpoints;
mod executor;
pub mod guardian;
mod identity;
mod logship;
mod metrics;
mod outbox;
mod proc;
mod session;

pub use identity::{detect_resources, hostname};
pub use proc::die_with_parent;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;
use zenith_model::Resources;

/// Everything an agent can be told.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Base URL of the server, e.g. `http://10.0.0.5:7700`, or several comma-separated
    /// (servers sharing a PostgreSQL store; the agent follows the leader).
    pub server: String,
    /// The agent join token.
    pub token: String,
    /// Identity, outbox, local logs and the default work directory live here.
    pub data_dir: PathBuf,
    /// Display name of the node (default: hostname).
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// What the node offers (default: detected cores and memory).
    pub resources: Resources,
    /// Between SIGTERM and SIGKILL when an attempt is killed.
    pub kill_grace: Duration,
    /// Where attempts without `cwd` run (default `<data_dir>/work`).
    pub work_dir: Option<PathBuf>,
    /// Serve the agent's Prometheus metrics at `/metrics` on this address.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Assignments held beyond what fits, each started the moment resources free (the
    /// node's backlog; 0: only what fits).
    pub prefetch: u32,
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
    #[error("{0}")]
    Config(String),
}

/// Capacity of the executor -> reporter result channel.
const RESULT_CHANNEL: usize = 65_536;
/// While work waits in the backlog, how long a result waits for others to share its outbox
/// sync and its report (one server commit).
const REPORT_LINGER: Duration = Duration::from_millis(5);

/// Runs the agent until `shutdown` resolves. Server outages are ridden out: results wait in
/// the outbox and the agent keeps re-registering with backoff.
pub async fn run(cfg: AgentConfig, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
    let servers =
        std::sync::Arc::new(endpoints::Endpoints::parse(&cfg.server).map_err(AgentError::Config)?);
    std::fs::create_dir_all(&cfg.data_dir)?;
    // Two agents on one data directory would share a node identity: refuse the second.
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(cfg.data_dir.join("agent.lock"))?;
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|_| AgentError::InUse(cfg.data_dir.display().to_string()))?;
    let node = identity::node_id(&cfg.data_dir)?;
    let metrics = metrics::AgentMetrics::new();
    let _metrics_server = match cfg.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            tracing::info!(%addr, "agent metrics at /metrics");
            Some(AbortOnDrop(tokio::spawn(metrics::serve(
                listener,
                metrics.clone(),
            ))))
        }
        None => None,
    };
    let (results_tx, mut results_rx) = mpsc::channel(RESULT_CHANNEL);
    let work_dir = cfg
        .work_dir
        .clone()
        .unwrap_or_else(|| cfg.data_dir.join("work"));
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .build()?;
    let spool = cfg.data_dir.join("spool");
    // Tar files in flight when a previous run of the agent stopped.
    let _ = std::fs::remove_dir_all(&spool);
    std::fs::create_dir_all(&spool)?;
    let transfer = artifacts::Transfer {
        http: http.clone(),
        servers: servers.clone(),
        token: cfg.token.clone(),
        node: node.clone(),
        spool,
    };
    let exec = executor::Executor::new(
        executor::Setup {
            node: node.clone(),
            data_dir: cfg.data_dir.clone(),
            work_dir,
            grace: cfg.kill_grace,
            resources: cfg.resources.clone(),
            transfer: Some(transfer),
            guardian: std::sync::Arc::new(guardian::Guardian::start(&cfg.guardian_exe)?),
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
    let mut outbox = outbox::Outbox::open(&cfg.data_dir)?;
    let mut logs = logship::LogShipper::default();
    let conn = std::sync::Arc::new(session::Conn::new(
        http,
        cfg,
        servers,
        node.clone(),
        metrics.clone(),
    ));
    tracing::info!(node = %node, server = %conn.cfg.server, "agent starting");
    tokio::pin!(shutdown);
    let mut retry = Duration::from_millis(100);
    let mut hopped = false;
    'connect: loop {
        let (mut known, waiting) = exec.attempts();
        known.extend(waiting.iter().copied());
        known.extend(outbox.pending().map(|r| r.attempt));
        let tried = conn.servers.current();
        let reg = tokio::select! {
            _ = &mut shutdown => break 'connect,
            r = conn.register(known, waiting) => r,
        };
        let reg = match reg {
            Ok(r) => r,
            Err(e) => {
                // Sent elsewhere (the next server, or the leader a standby named): go at once,
                // but only once in a row, so that servers pointing at each other during a
                // failover are not hammered.
                let moved = conn.servers.current() != tried && !hopped;
                hopped = moved;
                let wait = if moved {
                    Duration::from_millis(50)
                } else {
                    retry
                };
                tracing::warn!(error = %e, retry_ms = wait.as_millis() as u64, "registration failed");
                let pause = tokio::time::sleep(jitter(wait));
                tokio::pin!(pause);
                loop {
                    tokio::select! {
                        _ = &mut shutdown => break 'connect,
                        _ = &mut pause => break,
                        // Attempts keep finishing while the server is away: keep their results.
                        r = results_rx.recv() => stash(&exec, &mut outbox, r, &mut results_rx).await?,
                    }
                }
                if !moved {
                    retry = (retry * 2).min(Duration::from_secs(5));
                }
                continue;
            }
        };
        retry = Duration::from_millis(100);
        hopped = false;
        tracing::info!(session = reg.session, "registered");
        metrics.registrations.inc();
        conn.adopt_heartbeat_timeout(reg.heartbeat_timeout_ms);
        for k in &reg.kill {
            exec.kill(*k);
        }
        // The stream runs in its own task so that assignments start while a report is in
        // flight; it is aborted whenever this session ends.
        let stream_conn = conn.clone();
        let stream_exec = exec.clone();
        let session = reg.session;
        let mut stream = AbortOnDrop(tokio::spawn(async move {
            stream_conn.read_stream(session, stream_exec).await
        }));
        let mut tick = tokio::time::interval(Duration::from_millis(
            reg.heartbeat_interval_ms.clamp(50, 60_000),
        ));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => break 'connect,
                _ = &mut stream.0 => {
                    // The stream ended (server restart, partition): reconnect after a pause,
                    // so that a server that keeps dropping streams is not hammered.
                    tokio::select! {
                        _ = &mut shutdown => break 'connect,
                        _ = tokio::time::sleep(jitter(Duration::from_millis(300))) => {}
                    }
                    continue 'connect;
                }
                r = results_rx.recv() => {
                    // The node is saturated with short work, which starts from the backlog
                    // without waiting for the server: let the next few ms of results share
                    // one outbox sync, one report and one commit.
                    if exec.has_waiting() {
                        tokio::time::sleep(REPORT_LINGER).await;
                    }
                    stash(&exec, &mut outbox, r, &mut results_rx).await?
                }
                _ = tick.tick() => {}
            }
            match conn
                .report(reg.session, &exec, &mut outbox, &mut logs)
                .await
            {
                Ok(true) => continue 'connect,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, pending = outbox.len(), "report failed; results kept in the outbox");
                    tokio::select! {
                        _ = &mut shutdown => break 'connect,
                        _ = tokio::time::sleep(jitter(Duration::from_millis(500))) => {}
                    }
                }
            }
        }
    }
    let (mut running, waiting) = exec.attempts();
    running.extend(waiting);
    for a in &running {
        exec.kill(*a);
    }
    tracing::info!(killed = running.len(), "agent stopped");
    Ok(())
}

/// Aborts a task when dropped, so no stream reader outlives its session.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Moves a finished result, and any others waiting, into the outbox (one fsync).
async fn stash(
    exec: &executor::Executor,
    outbox: &mut outbox::Outbox,
    first: Option<zenith_protocol::agent::AttemptResult>,
    rx: &mut mpsc::Receiver<zenith_protocol::agent::AttemptResult>,
) -> std::io::Result<()> {
    let mut batch: Vec<_> = first.into_iter().collect();
    while let Ok(more) = rx.try_recv() {
        batch.push(more);
    }
    let ids: Vec<_> = batch.iter().map(|r| r.attempt).collect();
    outbox.add(batch).await?;
    exec.stashed(&ids);
    Ok(())
}

/// Adds up to 50% random jitter so that agents do not retry in lockstep.
fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    let frac = u16::from_le_bytes(b) as u64 % 500;
    d + d * frac as u32 / 1000
}

//! An in-process cluster (test tier c): the real server on a loopback port, on the embedded
//! store in a temporary directory, and N real agents running as tokio tasks of the same
//! runtime, each with its own data directory, name, cores and labels. The agents run real
//! processes. Tests talk to it through the typed client, as the CLI does.
//!
//! Every task has a shutdown path: [`Cluster::shutdown`] stops the agents (they kill their
//! jobs), then the server, and waits for each. Dropping a `Cluster` drops the stop senders,
//! which resolves every shutdown future; what the runtime has not finished when it ends is
//! dropped with it, and each agent's guardian (below) then kills the jobs still running.
//!
//! Synchronise by waiting on conditions ([`wait_until`], [`Cluster::wait_job`]), never by
//! sleeping.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use zenith_agent::{AgentConfig, AgentError};
use zenith_model::{JobId, NodeId, NodeState, Resources};
use zenith_protocol::api::{JobView, NodeView};
use zenith_protocol::flows::RunView;
use zenith_server::{ServerConfig, ServerError};

pub use zenith_client::{Client, ClientError, Output};

/// How long starting (tokens written, API up, every agent ready) and each stop may take.
const START_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// `ETXTBSY`: exec of a file that some process has open for writing (Linux).
const ETXTBSY: i32 = 26;

/// Stand-in for `zenith __guardian` (the test binary cannot be one): it reads the agent's
/// `+PGID`/`-PGID` lines and SIGKILLs the groups still listed when the pipe closes, as the
/// real guardian does, so a test that dies leaves no jobs behind.
const GUARDIAN_SCRIPT: &str = r#"#!/bin/sh
exec awk '/^\+[0-9]+$/ { g[substr($0, 2)] = 1; next }
/^-[0-9]+$/ { delete g[substr($0, 2)]; next }
END { for (p in g) system("kill -s KILL -- -" p " 2>/dev/null") }'
"#;

/// One agent of the cluster.
#[derive(Clone, Debug)]
pub struct AgentOpts {
    /// Node name (also names its data directory, so unique within a cluster).
    pub name: String,
    /// Cores offered.
    pub cpus: u64,
    /// Memory offered, bytes.
    pub memory: u64,
    pub labels: BTreeMap<String, String>,
    /// The node's backlog (default: 32 per core, as `zenith agent`).
    pub prefetch: Option<u32>,
}

impl AgentOpts {
    /// An agent with 2 cores, 4 GiB and no labels.
    pub fn new(name: &str) -> AgentOpts {
        AgentOpts {
            name: name.to_string(),
            cpus: 2,
            memory: 4 << 30,
            labels: BTreeMap::new(),
            prefetch: None,
        }
    }

    pub fn cpus(mut self, cpus: u64) -> AgentOpts {
        self.cpus = cpus;
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> AgentOpts {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }

    pub fn prefetch(mut self, prefetch: u32) -> AgentOpts {
        self.prefetch = Some(prefetch);
        self
    }
}

/// What to start.
#[derive(Clone, Debug)]
pub struct ClusterOpts {
    pub agents: Vec<AgentOpts>,
    /// How often agents report.
    pub heartbeat_interval: Duration,
    /// A node silent this long is lost.
    pub heartbeat_timeout: Duration,
    /// Between SIGTERM and SIGKILL when an attempt is killed.
    pub kill_grace: Duration,
    /// How long a stopping agent lets its jobs finish (`zenith agent --shutdown-grace`).
    pub shutdown_grace: Duration,
    /// Any other server setting, applied last.
    pub tune_server: fn(&mut ServerConfig),
}

impl Default for ClusterOpts {
    /// One agent, `agent-0`, with 2 cores; fast heartbeats; a 500 ms kill grace; stopping
    /// agents stop their jobs at once.
    fn default() -> Self {
        ClusterOpts {
            agents: vec![AgentOpts::new("agent-0")],
            heartbeat_interval: Duration::from_millis(200),
            heartbeat_timeout: Duration::from_secs(10),
            kill_grace: Duration::from_millis(500),
            shutdown_grace: Duration::ZERO,
            tune_server: |_| {},
        }
    }
}

impl ClusterOpts {
    /// The defaults with these agents.
    pub fn with_agents(agents: Vec<AgentOpts>) -> ClusterOpts {
        ClusterOpts {
            agents,
            ..ClusterOpts::default()
        }
    }
}

/// A task of the cluster and the way to stop it. Dropping `stop` also stops it.
struct Task<T> {
    stop: watch::Sender<bool>,
    handle: JoinHandle<T>,
}

impl<T> Task<T> {
    /// Asks the task to stop and waits for it (at most [`STOP_TIMEOUT`]).
    async fn stop(self, what: &str) -> T {
        let _ = self.stop.send(true);
        match tokio::time::timeout(STOP_TIMEOUT, self.handle).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => panic!("{what} panicked: {e}"),
            Err(_) => panic!("{what} did not stop within {STOP_TIMEOUT:?}"),
        }
    }
}

/// Resolves once `rx` says stop, or its sender is gone.
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

struct AgentSlot {
    cfg: AgentConfig,
    task: Option<Task<Result<(), AgentError>>>,
}

/// A running in-process cluster. See the module documentation.
pub struct Cluster {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The admin client (the whole public API).
    pub client: Client,
    pub admin_token: String,
    pub agent_token: String,
    server: Option<Task<Result<(), ServerError>>>,
    agents: Vec<AgentSlot>,
    server_dir: PathBuf,
    /// Removed last (fields drop in order).
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts the server and the agents; returns once every agent is a ready node.
    pub async fn start(opts: ClusterOpts) -> Cluster {
        let mut names: Vec<&str> = opts.agents.iter().map(|a| a.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), opts.agents.len(), "agent names must be unique");
        let dir = tempfile::Builder::new()
            .prefix("zenith-cluster-")
            .tempdir()
            .expect("temp dir");
        let server_dir = dir.path().join("server");
        let mut cfg = ServerConfig::new(server_dir.clone());
        cfg.heartbeat_interval_ms = opts.heartbeat_interval.as_millis() as u64;
        cfg.heartbeat_timeout_ms = opts.heartbeat_timeout.as_millis() as u64;
        // Tests poll; the per-client limit is not what they test.
        cfg.rate_limit_per_client = 100_000;
        (opts.tune_server)(&mut cfg);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let (stop, rx) = watch::channel(false);
        let server = Task {
            stop,
            handle: tokio::spawn(zenith_server::serve(cfg, listener, stopped(rx))),
        };
        let srv = &server;
        let sdir = &server_dir;
        let tokens = wait_until(
            START_TIMEOUT,
            "the server to write its tokens",
            move || async move {
                if srv.handle.is_finished() {
                    return Some(None);
                }
                Some(Some((
                    read_token(&sdir.join("admin.token"))?,
                    read_token(&sdir.join("agent.token"))?,
                )))
            },
        )
        .await;
        let Some((admin_token, agent_token)) = tokens else {
            let r = server.handle.await;
            panic!("the server stopped while starting: {r:?}");
        };
        let client = Client::new(&url, Some(admin_token.clone())).expect("client");
        let guardian = dir.path().join("guardian.sh");
        write_executable(&guardian, GUARDIAN_SCRIPT);
        let agents = opts
            .agents
            .iter()
            .map(|a| AgentSlot {
                cfg: agent_config(a, &url, &agent_token, dir.path(), &guardian, &opts),
                task: None,
            })
            .collect();
        let mut c = Cluster {
            url,
            client,
            admin_token,
            agent_token,
            server: Some(server),
            agents,
            server_dir,
            dir,
        };
        for i in 0..c.agents.len() {
            c.spawn_agent(i);
        }
        let names: Vec<String> = opts.agents.iter().map(|a| a.name.clone()).collect();
        let client = &c.client;
        let names = &names;
        let agents = &c.agents;
        let failed = wait_until(
            START_TIMEOUT,
            "every agent to be a ready node",
            move || async move {
                if let Some(i) = agents
                    .iter()
                    .position(|a| a.task.as_ref().is_some_and(|t| t.handle.is_finished()))
                {
                    return Some(Some(i));
                }
                let nodes = client.nodes().await.ok()?.nodes;
                names
                    .iter()
                    .all(|n| {
                        nodes
                            .iter()
                            .any(|v| &v.name == n && v.state == NodeState::Ready)
                    })
                    .then_some(None)
            },
        )
        .await;
        if let Some(i) = failed {
            let r = c.agents[i].task.take().map(|t| t.handle);
            if let Some(h) = r {
                panic!("agent {i} stopped while starting: {:?}", h.await);
            }
        }
        c
    }

    /// A scratch directory for the test's own files (removed with the cluster).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's data directory.
    pub fn server_dir(&self) -> &Path {
        &self.server_dir
    }

    /// Agent `i`'s data directory.
    pub fn agent_dir(&self, i: usize) -> &Path {
        &self.agents[i].cfg.data_dir
    }

    /// Agent `i`'s node ID (kept in its data directory, the same across restarts).
    pub fn node_id(&self, i: usize) -> NodeId {
        let raw = std::fs::read_to_string(self.agent_dir(i).join("node.id"))
            .expect("agent has written node.id");
        NodeId::parse(raw.trim()).expect("valid node.id")
    }

    /// Agent `i` as the server sees it, if it has registered.
    pub async fn node(&self, i: usize) -> Option<NodeView> {
        let id = self.node_id(i);
        let nodes = self.client.nodes().await.expect("list nodes").nodes;
        nodes.into_iter().find(|n| n.id == id)
    }

    fn spawn_agent(&mut self, i: usize) {
        let slot = &mut self.agents[i];
        assert!(slot.task.is_none(), "agent {i} is already running");
        let (stop, rx) = watch::channel(false);
        slot.task = Some(Task {
            stop,
            handle: tokio::spawn(run_agent(slot.cfg.clone(), rx)),
        });
    }

    /// Stops agent `i` as its process would on SIGTERM (it kills its jobs) and waits until
    /// it has; panics if it ended with an error.
    pub async fn stop_agent(&mut self, i: usize) {
        let task = self.agents[i].task.take();
        if let Some(t) = task {
            let what = format!("agent {i}");
            if let Err(e) = t.stop(&what).await {
                panic!("{what} failed: {e}");
            }
        }
    }

    /// Stops agent `i` (if running) and starts it again on its data directory (same node
    /// ID); returns once the server has heard from the new run and counts the node ready.
    pub async fn restart_agent(&mut self, i: usize) {
        self.stop_agent(i).await;
        // Stopped: nothing newer than this can come from the old run.
        let last = self.node(i).await.map(|n| n.last_heartbeat);
        self.spawn_agent(i);
        let id = self.node_id(i);
        let client = &self.client;
        let id = &id;
        let task = self.agents[i].task.as_ref().map(|t| &t.handle);
        wait_until(
            START_TIMEOUT,
            "the restarted agent to register",
            move || async move {
                assert!(
                    !task.is_some_and(JoinHandle::is_finished),
                    "agent {i} stopped while starting"
                );
                let nodes = client.nodes().await.ok()?.nodes;
                let n = nodes.into_iter().find(|n| &n.id == id)?;
                (n.state == NodeState::Ready && Some(n.last_heartbeat) > last).then_some(())
            },
        )
        .await;
    }

    /// Stops every agent, then the server, waiting for each; panics if one failed.
    pub async fn shutdown(mut self) {
        for i in 0..self.agents.len() {
            self.stop_agent(i).await;
        }
        if let Some(s) = self.server.take() {
            if let Err(e) = s.stop("server").await {
                panic!("server failed: {e}");
            }
        }
    }

    /// Waits until job `id` is final and returns it.
    pub async fn wait_job(&self, id: JobId, timeout: Duration) -> JobView {
        let client = &self.client;
        wait_until(
            timeout,
            &format!("job {id} to finish"),
            move || async move {
                let j = client.get(id).await.ok()?;
                j.summary.state.is_final().then_some(j)
            },
        )
        .await
    }

    /// Waits until flow run `id` has finished and returns it.
    pub async fn wait_run(&self, id: zenith_model::flow::RunId, timeout: Duration) -> RunView {
        let client = &self.client;
        wait_until(
            timeout,
            &format!("run {id} to finish"),
            move || async move {
                let r = client.run(id).await.ok()?;
                r.finished_at.is_some().then_some(r)
            },
        )
        .await
    }

    /// One task's stored output, as text (what `zenith job logs` prints).
    pub async fn logs(&self, id: JobId, task: u32, output: Output) -> String {
        use futures_util::StreamExt;
        let mut s = Box::pin(
            self.client
                .logs(id, Some(task), output, false)
                .await
                .expect("logs"),
        );
        let mut bytes = Vec::new();
        while let Some(chunk) = s.next().await {
            bytes.extend_from_slice(&chunk.expect("log chunk"));
        }
        String::from_utf8(bytes).expect("UTF-8 log")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Not awaited (Drop cannot): each task winds down while the runtime lives.
        for t in self.agents.iter().filter_map(|a| a.task.as_ref()) {
            let _ = t.stop.send(true);
        }
        if let Some(s) = &self.server {
            let _ = s.stop.send(true);
        }
    }
}

/// Polls `check` until it returns `Some`, every few milliseconds, and returns that; panics
/// naming `what` once `timeout` has passed.
pub async fn wait_until<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Runs one agent until `rx` says stop. A start that fails with `ETXTBSY` is retried: the
/// guardian script was just written, and a process forked meanwhile by another thread holds
/// it open for writing until that process execs.
async fn run_agent(cfg: AgentConfig, rx: watch::Receiver<bool>) -> Result<(), AgentError> {
    let mut tries = 0;
    loop {
        match zenith_agent::run(cfg.clone(), stopped(rx.clone())).await {
            Err(AgentError::Io(e)) if e.raw_os_error() == Some(ETXTBSY) && tries < 100 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            r => return r,
        }
    }
}

fn agent_config(
    a: &AgentOpts,
    url: &str,
    token: &str,
    root: &Path,
    guardian: &Path,
    opts: &ClusterOpts,
) -> AgentConfig {
    AgentConfig {
        server: url.to_string(),
        token: token.to_string(),
        ca_cert: None,
        data_dir: root.join(format!("agent-{}", a.name)),
        name: a.name.clone(),
        labels: a.labels.clone(),
        resources: Resources {
            cpu_millis: a.cpus * 1000,
            memory: a.memory,
            ..Default::default()
        },
        kill_grace: opts.kill_grace,
        shutdown_grace: opts.shutdown_grace,
        work_dir: None,
        metrics_listen: None,
        prefetch: a
            .prefetch
            .unwrap_or_else(|| (a.cpus * 32).min(10_000) as u32),
        address: None,
        gpus: None,
        guardian_exe: guardian.to_path_buf(),
    }
}

/// A whole token file (64 hex digits), once the server has written it.
fn read_token(path: &Path) -> Option<String> {
    let t = zenith_server::auth::read_token_file(path).ok()?;
    (t.len() == 64).then_some(t)
}

fn write_executable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("write script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod script");
}

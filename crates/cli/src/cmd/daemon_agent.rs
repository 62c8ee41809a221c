//! `zenith agent` and the local agent of `zenith up`: the node's options, the agent's
//! configuration (resources, GPUs found, labels), and the supervisor that restarts it.

use super::daemon::shutdown_signal;
use super::default_data_dir;
use super::{parse_kv, parse_kv_count};
use anyhow::Context;
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use zenith_model::resources::{parse_bytes, parse_cpus};
use zenith_model::DurationMs;

#[derive(Args, Debug, Clone)]
pub struct NodeOpts {
    /// Node name (default: hostname).
    #[arg(long)]
    name: Option<String>,
    /// A node label, K=V (repeatable); jobs select nodes with --constraint.
    #[arg(long = "label", value_parser = parse_kv)]
    labels: Vec<(String, String)>,
    /// CPU cores to offer (default: all).
    #[arg(long, value_parser = parse_cpus)]
    cpus: Option<u64>,
    /// Memory to offer, e.g. 8G (default: all).
    #[arg(long, value_parser = parse_bytes)]
    memory: Option<u64>,
    /// GPUs to offer (default: the ones found through NVML or /dev/nvidia*; 0 offers none).
    #[arg(long)]
    gpus: Option<u64>,
    /// A custom resource to offer, NAME=COUNT (repeatable).
    #[arg(long = "resource", value_parser = parse_kv_count)]
    resources: Vec<(String, u64)>,
    /// Jobs the node accepts beyond what fits, each started the moment resources free
    /// instead of after a round trip to the server (its backlog); 0 takes only what fits.
    /// Default: 32 per CPU core offered. The server fills a backlog only while the node's jobs
    /// run 250 ms or less on average, and with about 100 ms of such work at most, so long
    /// jobs never wait behind each other there.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    prefetch: Option<u32>,
    /// Where the other members of a gang job reach this node (host name or IP address);
    /// default: the address the server sees this agent connect from.
    #[arg(long)]
    advertise_address: Option<String>,
    /// Grace period between SIGTERM and SIGKILL when a job is killed.
    #[arg(long, default_value = "5s", value_parser = DurationMs::parse)]
    kill_grace: DurationMs,
    /// On SIGTERM, how long running jobs may finish: the node takes no new work at once, its
    /// backlog goes back to the queue, and what still runs after this is stopped and
    /// requeued elsewhere (outcome evicted) [default: 30s for `zenith agent`; 0s for
    /// `zenith up`, whose server stops too].
    #[arg(long, value_parser = DurationMs::parse)]
    shutdown_grace: Option<DurationMs>,
    /// File mode mask for jobs' processes, in octal (the files a job creates get 0666 less
    /// this). The agent's own files (logs, results, artifacts) are always private (0600 in a
    /// 0700 data directory).
    #[arg(long, default_value = "022", value_parser = parse_umask)]
    job_umask: u32,
    /// Serve the agent's own Prometheus metrics at /metrics on this address.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
}

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// Server URL, or several comma-separated (servers sharing a PostgreSQL store: the
    /// agent follows the leader).
    #[arg(long, env = "ZENITH_SERVER")]
    server: String,
    /// Agent join token (agent.token in the server's data directory): used once, to enroll
    /// this node; the node's own credential is then kept in its data directory.
    #[arg(long, env = "ZENITH_AGENT_TOKEN", hide_env_values = true)]
    token: String,
    /// CA certificate (PEM) to trust for an https:// server, besides the system's roots
    /// (e.g. tls/ca.pem from the server's data directory).
    #[arg(long, env = "ZENITH_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// Data directory of this agent (its identity lives here).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    node: NodeOpts,
}

fn agent_config(
    server: String,
    token: String,
    ca_cert: Option<PathBuf>,
    data_dir: PathBuf,
    n: &NodeOpts,
    guardian_exe: PathBuf,
) -> anyhow::Result<zenith_agent::AgentConfig> {
    let mut resources = zenith_agent::detect_resources();
    if let Some(c) = n.cpus {
        resources.cpu_millis = c;
    }
    if let Some(m) = n.memory {
        resources.memory = m;
    }
    // GPUs found by themselves (NVML, /dev/nvidia*, or a fake inventory); `--gpus N`
    // overrides the count, `--gpus 0` offers none.
    let gpus = match n.gpus {
        Some(0) => zenith_agent::gpus::Inventory::none(),
        _ => zenith_agent::gpus::Inventory::discover()?,
    };
    resources.gpus = n.gpus.unwrap_or(gpus.gpus.len() as u64);
    resources.custom = n.resources.iter().cloned().collect();
    // Labels given on the command line win over the ones found.
    let mut labels = gpus.labels();
    labels.extend(n.labels.iter().cloned());
    let gpus = (!gpus.gpus.is_empty()).then(|| std::sync::Arc::new(gpus));
    let cores = resources.cpu_millis.div_ceil(1000);
    Ok(zenith_agent::AgentConfig {
        address: n.advertise_address.clone(),
        prefetch: n
            .prefetch
            .unwrap_or_else(|| cores.saturating_mul(32).min(10_000) as u32),
        server,
        token,
        ca_cert,
        data_dir,
        name: n.name.clone().unwrap_or_else(zenith_agent::hostname),
        labels,
        gpus,
        resources,
        kill_grace: Duration::from_millis(n.kill_grace.as_millis()),
        shutdown_grace: n.shutdown_grace.map_or(DEFAULT_SHUTDOWN_GRACE, |g| {
            Duration::from_millis(g.as_millis())
        }),
        work_dir: None,
        metrics_listen: n.metrics_listen,
        guardian_exe,
    })
}

/// How long a stopping agent lets its jobs finish unless told (`--shutdown-grace`).
pub(super) const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

pub async fn agent(a: AgentArgs) -> anyhow::Result<u8> {
    let data_dir = a
        .data_dir
        .clone()
        .unwrap_or_else(|| default_data_dir().join("agent"));
    let exe = std::env::current_exe().context("cannot find the zenith binary for the guardian")?;
    job_umask(a.node.job_umask);
    // A token read from a file or a Secret often ends in a newline: it is not part of it.
    let cfg = agent_config(
        a.server.clone(),
        a.token.trim().to_string(),
        a.ca_cert.clone(),
        data_dir,
        &a.node,
        exe,
    )?;
    match zenith_agent::run(cfg, shutdown_signal()).await {
        Err(zenith_agent::AgentError::Revoked(why)) => {
            eprintln!("error: this node was revoked: {why}");
            Ok(REVOKED_EXIT)
        }
        r => r.map(|()| 0).map_err(Into::into),
    }
}

/// The command line of the local agent of `zenith up`.
pub(super) fn agent_args(
    url: &str,
    data_dir: &std::path::Path,
    n: &NodeOpts,
    log_format: &str,
    otlp: Option<&str>,
) -> Vec<String> {
    let mut v: Vec<String> = vec!["--log-format".into(), log_format.into()];
    if let Some(endpoint) = otlp {
        v.extend(["--otlp-endpoint".into(), endpoint.into()]);
    }
    v.extend([
        "agent".into(),
        "--server".into(),
        url.into(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--kill-grace".into(),
        format!("{}ms", n.kill_grace.as_millis()),
        "--shutdown-grace".into(),
        format!("{}ms", n.shutdown_grace.map_or(0, |g| g.as_millis())),
    ]);
    if let Some(name) = &n.name {
        v.extend(["--name".into(), name.clone()]);
    }
    for (k, val) in &n.labels {
        v.extend(["--label".into(), format!("{k}={val}")]);
    }
    if let Some(c) = n.cpus {
        v.extend(["--cpus".into(), format!("{}", c as f64 / 1000.0)]);
    }
    if let Some(m) = n.memory {
        v.extend(["--memory".into(), m.to_string()]);
    }
    if let Some(g) = n.gpus {
        v.extend(["--gpus".into(), g.to_string()]);
    }
    for (k, c) in &n.resources {
        v.extend(["--resource".into(), format!("{k}={c}")]);
    }
    if let Some(addr) = n.metrics_listen {
        v.extend(["--metrics-listen".into(), addr.to_string()]);
    }
    if let Some(p) = n.prefetch {
        v.extend(["--prefetch".into(), p.to_string()]);
    }
    if let Some(a) = &n.advertise_address {
        v.extend(["--advertise-address".into(), a.clone()]);
    }
    v.extend(["--job-umask".into(), format!("{:03o}", n.job_umask)]);
    v
}

/// An octal file mode mask such as `022` or `0077`.
// String: a clap value parser's error, shown to the user as it is.
fn parse_umask(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("{s:?} is not an octal mask between 000 and 777"))
}

/// The agent's process mask is the jobs' (they inherit it at spawn, which stays a plain
/// posix_spawn); its own files are private by their data directory (0700) and their modes.
fn job_umask(mask: u32) {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
}

/// The agent's exit code when the server revoked its node: restarting it cannot help.
pub(super) const REVOKED_EXIT: u8 = 78;

/// Runs the local agent process until `stop`, restarting it (with backoff) if it exits, but
/// not when its node was revoked.
pub(super) async fn supervise_agent(
    args: Vec<String>,
    token: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "cannot find this program to start the local agent");
            return;
        }
    };
    let mut backoff = Duration::from_millis(200);
    loop {
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.args(&args)
            .env("ZENITH_AGENT_TOKEN", &token)
            .env_remove("ZENITH_TOKEN")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        // If `zenith up` dies, so does its agent (and with it the agent's jobs).
        zenith_agent::die_with_parent(&mut cmd);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the local agent");
                return;
            }
        };
        let started = tokio::time::Instant::now();
        tokio::select! {
            status = child.wait() => {
                if *stop.borrow() {
                    return;
                }
                if status.as_ref().ok().and_then(|s| s.code()) == Some(i32::from(REVOKED_EXIT)) {
                    tracing::error!("the local node was revoked: the local agent stays stopped (the server goes on; restart zenith up with a new --data-dir to run jobs here again)");
                    return;
                }
                tracing::warn!(status = ?status.ok(), "the local agent exited; restarting it");
                if started.elapsed() > Duration::from_secs(10) {
                    backoff = Duration::from_millis(200);
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            _ = stop.changed() => {
                // Ask it to stop (it finishes reporting), then make sure.
                if let Some(pid) = child.id() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGTERM,
                    );
                }
                if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err() {
                    let _ = child.kill().await;
                }
                return;
            }
        }
    }
}

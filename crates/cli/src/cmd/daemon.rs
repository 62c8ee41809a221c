//! `zenith up`, `zenith server`, `zenith agent`: the long-running processes (the agent's
//! side in `daemon_agent.rs`).

pub use super::daemon_agent::{agent, AgentArgs};
use super::daemon_agent::{agent_args, supervise_agent, NodeOpts};
use super::default_data_dir;
use anyhow::Context;
use clap::Args;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use zenith_model::resources::parse_bytes;
use zenith_model::DurationMs;

#[derive(Args, Debug, Clone)]
pub struct ServerOpts {
    /// Data directory: database, tokens, logs.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7700")]
    listen: SocketAddr,
    /// A node silent this long is lost and its jobs requeued.
    #[arg(long, default_value = "15s", value_parser = DurationMs::parse)]
    heartbeat_timeout: DurationMs,
    /// How often agents report (heartbeat and results).
    #[arg(long, default_value = "1s", value_parser = DurationMs::parse)]
    heartbeat_interval: DurationMs,
    /// Finished jobs are deleted this long after they end.
    #[arg(long, default_value = "7d", value_parser = DurationMs::parse)]
    retention: DurationMs,
    /// Audit records are deleted this long after they were written.
    #[arg(long, default_value = "90d", value_parser = DurationMs::parse)]
    audit_retention: DurationMs,
    /// Most audit records kept; beyond, the oldest are deleted at the next sweep.
    #[arg(long, default_value_t = 1_000_000)]
    max_audit_records: u64,
    /// Fair share: a party's recent usage counts half after this long (docs/tenancy.md).
    #[arg(long, default_value = "1h", value_parser = DurationMs::parse)]
    fair_share_half_life: DurationMs,
    /// A queue whose running attempts a higher-priority job may stop and requeue (preempt)
    /// when it fits nowhere else (repeatable or comma-separated; docs/scheduling.md). Every
    /// server of an HA group should name the same queues.
    #[arg(long = "preemptible-queue", value_delimiter = ',', value_parser = parse_queue_name)]
    preemptible_queues: Vec<String>,
    /// Accept bearer JWTs signed by this OpenID Connect provider, e.g.
    /// https://login.example.com/realms/acme (docs/tenancy.md, "Sign-in with an identity provider").
    #[arg(long, requires = "oidc_audience")]
    oidc_issuer: Option<String>,
    /// What the tokens' `aud` must contain: Zenith's client ID at the provider.
    #[arg(long, requires = "oidc_issuer")]
    oidc_audience: Option<String>,
    /// The claim that names the user (`email` or `preferred_username` read better than `sub`).
    #[arg(long, default_value = "sub")]
    oidc_user_claim: String,
    /// The claim listing the user's groups.
    #[arg(long, default_value = "groups")]
    oidc_groups_claim: String,
    /// Groups that give roles: PREFIXadmin, PREFIXoperator, PREFIXNAMESPACE:submitter,
    /// PREFIXNAMESPACE:viewer.
    #[arg(long, default_value = "zenith:")]
    oidc_group_prefix: String,
    /// How often jobs past retention and flow runs past their ttl are deleted
    /// (default: 2s, or a quarter of the retention when that is shorter).
    #[arg(long, value_parser = DurationMs::parse)]
    sweep_interval: Option<DurationMs>,
    /// Cap the database size, e.g. 10G: at the cap new work is refused (503) until
    /// retention frees space (default: no cap; a full disk behaves the same way).
    #[arg(long, value_parser = parse_bytes)]
    store_max_size: Option<u64>,
    /// Most queued or running jobs at once; submissions beyond get 429 until some finish.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    max_live_jobs: u64,
    /// How long an idempotency key is remembered (a retry with it within this returns the
    /// same job).
    #[arg(long, default_value = "24h", value_parser = DurationMs::parse)]
    idempotency_ttl: DurationMs,
    /// Most idempotency keys kept; a new one beyond evicts the oldest.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    max_idempotency_keys: u64,
    /// Most idempotency keys kept per client token; a new one beyond evicts that client's
    /// oldest.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    max_idempotency_keys_per_client: u64,
    /// Largest flow artifact accepted, e.g. 1G.
    #[arg(long, default_value = "1G", value_parser = parse_bytes)]
    max_artifact_size: u64,
    /// Time a client has to send a request's head, from connecting and again whenever its
    /// connection sits idle between requests; slower connections are closed.
    #[arg(long, default_value = "30s", value_parser = DurationMs::parse)]
    header_timeout: DurationMs,
    /// Most open connections from one client address; beyond, new ones are closed at once.
    /// Agents count too: raise it when more agents than this reach the server through one
    /// address (a NAT).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_connections_per_client: u64,
    /// Requests per second each client address may make to the API (bursts of twice that);
    /// /healthz, /readyz and /metrics have a bucket of their own at the same rate.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    rate_limit: u32,
    /// Requests per second each client address may make to the agent protocol (bursts of
    /// twice that): agents behind one address (a NAT) share it.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..))]
    agent_rate_limit: u32,
    /// On the first start of a new store, the admin token from this file (one line, at least
    /// 32 characters, e.g. `openssl rand -hex 32`) instead of a random one: a deployment can
    /// hand the same secret to its clients up front. Later starts check that it is the same.
    #[arg(long, env = "ZENITH_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    /// The agents' join token from this file on the first start (as --admin-token-file), so
    /// agents can be given it before the server first runs.
    #[arg(long, env = "ZENITH_AGENT_TOKEN_FILE")]
    agent_token_file: Option<PathBuf>,
    #[command(flatten)]
    tls: super::tls_setup::TlsOpts,
}

#[derive(Args, Debug)]
pub struct UpArgs {
    #[command(flatten)]
    server: ServerOpts,
    #[command(flatten)]
    node: NodeOpts,
}

#[derive(Args, Debug)]
pub struct ServerArgs {
    #[command(flatten)]
    server: ServerOpts,
    /// Share a PostgreSQL database with other servers for high availability, e.g.
    /// postgres://zenith:secret@db:5432/zenith (default: the embedded store in the data
    /// directory). One server leads; the others stand by and take over (docs/ha.md).
    #[arg(long, env = "ZENITH_STORE", hide_env_values = true)]
    store: Option<String>,
    /// The URL other servers, clients and agents reach this server at
    /// (default: http://LISTEN-ADDRESS; required when listening on 0.0.0.0).
    #[arg(long)]
    advertise: Option<String>,
    /// With --store postgres: the leader renews its lease every third of this; a standby
    /// takes over at most this long after the leader stops [default: 10s].
    #[arg(long, value_parser = DurationMs::parse)]
    lease_ttl: Option<DurationMs>,
    /// CA certificate (PEM) to trust when forwarding to the leader over https://, besides
    /// the system's roots.
    #[arg(long, env = "ZENITH_CA_CERT")]
    ca_cert: Option<PathBuf>,
}

/// The HA settings of `zenith server`, checked.
fn ha_config(a: &ServerArgs, addr: SocketAddr) -> anyhow::Result<Option<zenith_server::HaConfig>> {
    let Some(url) = &a.store else {
        anyhow::ensure!(
            a.advertise.is_none() && a.lease_ttl.is_none(),
            "--advertise and --lease-ttl only apply with --store postgres://..."
        );
        return Ok(None);
    };
    anyhow::ensure!(
        a.server.store_max_size.is_none(),
        "--store-max-size caps the embedded store; with --store postgres://... size the database in PostgreSQL"
    );
    anyhow::ensure!(
        url.starts_with("postgres://") || url.starts_with("postgresql://"),
        "--store: expected a postgres:// URL (the embedded store needs no --store), got {url:?}"
    );
    let advertise = match &a.advertise {
        Some(u) => {
            anyhow::ensure!(
                u.starts_with("http://") || u.starts_with("https://"),
                "--advertise: expected an http:// URL, got {u:?}"
            );
            u.trim_end_matches('/').to_string()
        }
        None => {
            anyhow::ensure!(
                !addr.ip().is_unspecified(),
                "--advertise is required when listening on {addr}: other servers and agents need an address they can reach"
            );
            format!("http://{addr}")
        }
    };
    let ttl = a.lease_ttl.map_or(10_000, |t| t.as_millis());
    anyhow::ensure!(
        (300..=600_000).contains(&ttl),
        "--lease-ttl: between 300ms and 10m, got {ttl} ms"
    );
    Ok(Some(zenith_server::HaConfig {
        store_url: url.clone(),
        advertise_url: advertise,
        lease_ttl_ms: ttl,
    }))
}

/// A queue name as job specs must write it.
fn parse_queue_name(s: &str) -> Result<String, String> {
    zenith_model::validate_word(s, "queue")
        .map(|()| s.to_string())
        .map_err(|e| e.to_string())
}

fn server_config(o: &ServerOpts) -> anyhow::Result<zenith_server::ServerConfig> {
    let mut c =
        zenith_server::ServerConfig::new(o.data_dir.clone().unwrap_or_else(default_data_dir));
    c.preset_tokens = zenith_server::auth::PresetTokens::read(
        o.admin_token_file.as_deref(),
        o.agent_token_file.as_deref(),
    )?;
    c.heartbeat_timeout_ms = o.heartbeat_timeout.as_millis();
    c.heartbeat_interval_ms = o.heartbeat_interval.as_millis().max(50);
    c.retention_ms = o.retention.as_millis();
    c.audit_retention_ms = o.audit_retention.as_millis();
    c.max_audit_records = o.max_audit_records;
    c.fair_share_half_life_ms = o.fair_share_half_life.as_millis().max(1000);
    c.preemptible_queues = o.preemptible_queues.iter().cloned().collect();
    c.oidc = match (&o.oidc_issuer, &o.oidc_audience) {
        (Some(issuer), Some(audience)) => Some(zenith_server::oidc::OidcConfig {
            issuer: issuer.clone(),
            audience: audience.clone(),
            user_claim: o.oidc_user_claim.clone(),
            groups_claim: o.oidc_groups_claim.clone(),
            group_prefix: o.oidc_group_prefix.clone(),
        }),
        _ => None,
    };
    c.max_artifact_bytes = o.max_artifact_size;
    c.max_live_jobs = o.max_live_jobs as usize;
    c.idempotency_ttl_ms = o.idempotency_ttl.as_millis().max(1);
    c.max_idempotency_keys = o.max_idempotency_keys as usize;
    c.listen = zenith_server::listen::ListenLimits {
        header_timeout: std::time::Duration::from_millis(o.header_timeout.as_millis().max(100)),
        max_connections_per_client: o.max_connections_per_client as usize,
    };
    c.max_idempotency_keys_per_client = o.max_idempotency_keys_per_client as usize;
    c.max_store_bytes = o.store_max_size;
    c.rate_limit_per_client = o.rate_limit;
    c.agent_rate_limit_per_client = o.agent_rate_limit;
    // Sweep often enough that nothing outlives its retention by more than a quarter of it.
    c.sweep_every_ms = match o.sweep_interval {
        Some(d) => d.as_millis().clamp(100, 24 * 3600 * 1000),
        None => (c.retention_ms / 4).clamp(100, 2_000),
    };
    Ok(c)
}

/// Resolves on Ctrl-C or SIGTERM.
pub(super) async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}

async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

pub async fn server(a: ServerArgs) -> anyhow::Result<u8> {
    private_files();
    let mut cfg = server_config(&a.server)?;
    let listener = bind(a.server.listen).await?;
    let addr = listener.local_addr()?;
    cfg.ha = ha_config(&a, addr)?;
    cfg.ca_cert = a.ca_cert.clone();
    let advertise = cfg.ha.as_ref().map(|h| h.advertise_url.clone());
    let tls = super::tls_setup::decide(&a.server.tls, addr, &cfg.data_dir, advertise.as_deref())?;
    cfg.tls = tls.files.clone();
    let scheme = tls.scheme();
    write_server_url(&cfg.data_dir, &local_url(scheme, addr));
    eprintln!(
        "zenith server listening on {scheme}://{addr} (data in {})",
        cfg.data_dir.display()
    );
    print_tls_hint(&tls, scheme, addr, &cfg.data_dir);
    match &cfg.ha {
        Some(h) => {
            eprintln!(
                "  store: PostgreSQL, shared; this server is {} (lease TTL {} ms)",
                h.advertise_url, h.lease_ttl_ms
            );
            eprintln!(
                "  tokens: admin.token and agent.token are written into the data directory of the server that initialises the database"
            );
            eprintln!("  web UI: {scheme}://{addr}/ (any server; sign in with the admin token)");
        }
        None => {
            eprintln!(
                "  web UI: {scheme}://{addr}/ (sign in with the admin token: {})",
                cfg.data_dir.join("admin.token").display()
            );
            eprintln!(
                "  agent token: {}",
                cfg.data_dir.join("agent.token").display()
            );
        }
    }
    zenith_server::serve(cfg, listener, shutdown_signal()).await?;
    Ok(0)
}

pub async fn up(a: UpArgs, log_format: &str, otlp: Option<&str>) -> anyhow::Result<u8> {
    // The local agent is a process of its own and sets the jobs' mask itself.
    private_files();
    let mut cfg = server_config(&a.server)?;
    let data_dir = cfg.data_dir.clone();
    zenith_server::check_data_dir_free(&data_dir)?;
    let listener = bind(a.server.listen).await?;
    let addr = listener.local_addr()?;
    let tls = super::tls_setup::decide(&a.server.tls, addr, &data_dir, None)?;
    cfg.tls = tls.files.clone();
    let scheme = tls.scheme();
    // Where clients find it, written before it answers: a client that sees /readyz answer
    // finds the server by itself from then on.
    let url = local_url(scheme, addr);
    write_server_url(&data_dir, &url);
    let context_note = super::context::write_local(&url, &data_dir, tls.ca.as_deref());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut server_stop = stop_rx.clone();
    let server = tokio::spawn(zenith_server::serve(cfg, listener, async move {
        let _ = server_stop.changed().await;
    }));
    // The server writes the agent token before it accepts connections; wait for the file.
    let token_path = data_dir.join("agent.token");
    let mut token = None;
    for _ in 0..200 {
        if let Ok(t) = zenith_server::auth::read_token_file(&token_path) {
            if !t.is_empty() {
                token = Some(t);
                break;
            }
        }
        if server.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let Some(token) = token else {
        let _ = stop_tx.send(true);
        return match server.await? {
            Err(e) => Err(e.into()),
            Ok(()) => Err(anyhow::anyhow!(
                "server did not create {}",
                token_path.display()
            )),
        };
    };
    eprintln!(
        "zenith is up at {scheme}://{} (data in {})",
        shown_addr(addr),
        data_dir.display()
    );
    print_tls_hint(&tls, scheme, addr, &data_dir);
    // The admin token rides in the fragment, which browsers never send to the server; the
    // page stores it for the tab and drops it from the address bar. Only a person at a
    // terminal sees it: in a service's log (journald, a file) it would be a standing secret.
    let token_file = data_dir.join("admin.token");
    match zenith_server::auth::read_token_file(&token_file) {
        Ok(admin) if std::io::stderr().is_terminal() => eprintln!("  web UI: {url}/#token={admin}"),
        _ => eprintln!(
            "  web UI: {url}/ (sign in with the admin token in {}; `zenith ui` prints a link that signs you in)",
            token_file.display()
        ),
    }
    eprintln!("  {context_note}");
    eprintln!("  try: zenith submit -- echo hello");
    // The local agent runs as a child process of its own: jobs are forked from a small
    // process (fork cost grows with the parent's memory, and the server's grows with its
    // queue), and an agent crash does not take the server down. It is restarted if it dies.
    let mut args = agent_args(&url, &data_dir.join("agent"), &a.node, log_format, otlp);
    if let Some(ca) = &tls.ca {
        args.extend(["--ca-cert".into(), ca.display().to_string()]);
    }
    let agent = tokio::spawn(supervise_agent(args, token, stop_rx.clone()));
    let mut server = server;
    let early = tokio::select! {
        _ = shutdown_signal() => None,
        r = &mut server => Some(r),
    };
    let _ = stop_tx.send(true);
    agent.await?;
    match early {
        Some(r) => r??,
        None => server.await??,
    }
    Ok(0)
}

/// The URL clients and agents on this machine use: loopback when the server listens on every
/// address (a made certificate covers 127.0.0.1).
fn local_url(scheme: &str, addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        let ip = if addr.is_ipv4() { "127.0.0.1" } else { "[::1]" };
        format!("{scheme}://{ip}:{}", addr.port())
    } else {
        format!("{scheme}://{addr}")
    }
}

/// Writes `server.url` into the data directory: the CLI on this machine reads it when no
/// --server is given (a server on another port, or speaking HTTPS, is found).
fn write_server_url(data_dir: &std::path::Path, url: &str) {
    let path = data_dir.join(super::SERVER_URL_FILE);
    if let Err(e) = std::fs::create_dir_all(data_dir).and_then(|()| std::fs::write(&path, url)) {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the server's URL");
    }
}

/// The address to show people: this host's name in place of 0.0.0.0 / [::].
fn shown_addr(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("{}:{}", zenith_agent::hostname(), addr.port())
    } else {
        addr.to_string()
    }
}

/// With HTTPS: where the CA is and how another machine joins.
fn print_tls_hint(
    tls: &super::tls_setup::Decided,
    scheme: &str,
    addr: SocketAddr,
    data_dir: &std::path::Path,
) {
    let Some(ca) = &tls.ca else {
        return;
    };
    eprintln!(
        "  TLS: certificates made for you; clients and agents trust {}",
        ca.display()
    );
    eprintln!(
        "  another machine joins with ca.pem and agent.token from {} copied there:",
        data_dir.display()
    );
    eprintln!(
        "    zenith agent --server {scheme}://{} --ca-cert ca.pem --token \"$(cat agent.token)\"",
        shown_addr(addr)
    );
}

/// Everything this process creates is private to its user from here on (dirs 0700, files
/// 0600): the server's database, WAL, logs, artifacts and tokens. The server runs no jobs.
fn private_files() {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    raise_descriptor_limit();
}

/// A server holds a descriptor per connection (agents keep one open each): lift the soft
/// limit to the hard one, which the per-client cap and header timeout then keep in bounds.
fn raise_descriptor_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!(error = %e, soft, hard, "cannot raise the open-files limit");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the open-files limit"),
    }
}

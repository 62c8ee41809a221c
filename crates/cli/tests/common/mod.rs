//! Harness for end-to-end tests against the real `zenith` binary: temp data dirs, free
//! loopback ports, processes killed on drop, and waiting on conditions with deadlines.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_methods
)]

pub mod proxy;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_zenith")
}

/// A command for the binary with no ZENITH_* settings inherited from the environment, and a
/// CLI config file of this test process's own (`zenith up` writes a context into it; the
/// user's own config is never read or written by tests).
pub fn zenith() -> Command {
    let mut c = Command::new(bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("ZENITH_") {
            c.env_remove(k);
        }
    }
    c.env("ZENITH_CONFIG", test_config_path());
    c
}

/// This test process's CLI config file (in cargo's scratch directory for tests, inside the
/// build directory, so nothing piles up in /tmp).
pub fn test_config_path() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("zenith-config")
        .join(format!("{}.toml", std::process::id()))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` until it returns `Some`, failing the test after `secs`.
pub fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs blocking harness work (starting a cluster, CLI verbs) from an async test.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// Waits until something accepts connections on loopback `port`.
pub fn wait_listening(what: &str, port: u16) {
    wait_for(what, 30, || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .map(|_| ())
    });
}

/// A child process killed (SIGKILL) when dropped.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(mut cmd: Command, log: PathBuf) -> Proc {
        let f = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdout(Stdio::from(f.try_clone().unwrap()))
            .stderr(Stdio::from(f))
            .spawn()
            .unwrap();
        Proc { child, log }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub server: Option<Proc>,
    pub agents: Vec<Proc>,
    pub admin_token: String,
    pub agent_token: String,
    server_args: Vec<String>,
    all_in_one: bool,
}

impl Cluster {
    /// `zenith up` with a 2-core local agent.
    pub fn up(extra: &[&str]) -> Cluster {
        let mut c = Cluster::new(true, extra);
        c.start_server();
        c.wait_nodes(1);
        c
    }

    /// `zenith server` alone; add agents with [`Cluster::add_agent`].
    pub fn server(extra: &[&str]) -> Cluster {
        let mut c = Cluster::new(false, extra);
        c.start_server();
        c
    }

    /// `zenith server` with one agent per `(name, extra args)`, waiting until all are ready.
    pub fn with_agents(extra: &[&str], agents: &[(&str, &[&str])]) -> Cluster {
        let mut c = Cluster::server(extra);
        for (name, args) in agents {
            c.add_agent(name, args);
        }
        c.wait_nodes(agents.len());
        c
    }

    fn new(all_in_one: bool, extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let mut server_args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        if all_in_one {
            server_args.extend([
                "--cpus".into(),
                "2".into(),
                "--kill-grace".into(),
                "1s".into(),
            ]);
        }
        Cluster {
            dir,
            port: free_port(),
            server: None,
            agents: Vec::new(),
            admin_token: String::new(),
            agent_token: String::new(),
            server_args,
            all_in_one,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts (or restarts) the server process and waits until it answers.
    pub fn start_server(&mut self) {
        let mut cmd = zenith();
        cmd.arg(if self.all_in_one { "up" } else { "server" })
            .arg("--data-dir")
            .arg(self.data())
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .args(&self.server_args)
            .env("ZENITH_LOG", "info");
        let n = std::fs::read_dir(self.dir.path())
            .map(|d| d.count())
            .unwrap_or(0);
        self.server = Some(Proc::spawn(
            cmd,
            self.dir.path().join(format!("server-{n}.log")),
        ));
        let data = self.data();
        self.admin_token = wait_for("admin.token", 30, || read_token(&data.join("admin.token")));
        self.agent_token = wait_for("agent.token", 30, || read_token(&data.join("agent.token")));
        wait_listening("healthz", self.port);
    }

    pub fn kill_server(&mut self) {
        if let Some(mut p) = self.server.take() {
            p.kill9();
        }
    }

    /// Starts an agent with its own data dir; returns its index in `agents`.
    pub fn add_agent(&mut self, name: &str, extra: &[&str]) -> usize {
        let url = self.url();
        self.add_agent_via(name, &url, extra)
    }

    /// Starts an agent that reaches the server at `server_url` (e.g. through a proxy).
    pub fn add_agent_via(&mut self, name: &str, server_url: &str, extra: &[&str]) -> usize {
        let p = self.agent_proc_via(name, server_url, extra);
        self.agents.push(p);
        self.agents.len() - 1
    }

    /// Starts the agent `name` again over its existing data dir (same node identity).
    pub fn restart_agent(&mut self, idx: usize, name: &str, extra: &[&str]) {
        self.agents[idx].kill9();
        self.agents[idx] = self.agent_proc(name, extra);
    }

    /// Starts an agent with extra environment variables; returns its index in `agents`.
    pub fn add_agent_env(&mut self, name: &str, extra: &[&str], env: &[(&str, &str)]) -> usize {
        let p = self.agent_proc_env(name, &self.url(), extra, env);
        self.agents.push(p);
        self.agents.len() - 1
    }

    fn agent_proc(&self, name: &str, extra: &[&str]) -> Proc {
        self.agent_proc_via(name, &self.url(), extra)
    }

    fn agent_proc_via(&self, name: &str, server_url: &str, extra: &[&str]) -> Proc {
        self.agent_proc_env(name, server_url, extra, &[])
    }

    fn agent_proc_env(
        &self,
        name: &str,
        server_url: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Proc {
        let mut cmd = zenith();
        cmd.arg("agent")
            .arg("--server")
            .arg(server_url)
            .arg("--token")
            .arg(&self.agent_token)
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("agent-{name}")))
            .arg("--name")
            .arg(name)
            .args(["--kill-grace", "1s"])
            .args(extra)
            .env(
                "ZENITH_LOG",
                std::env::var("E2E_AGENT_LOG").unwrap_or("info".into()),
            )
            .envs(env.iter().copied());
        let n = std::fs::read_dir(self.dir.path())
            .map(|d| d.count())
            .unwrap_or(0);
        Proc::spawn(cmd, self.dir.path().join(format!("agent-{name}-{n}.log")))
    }

    /// Raw HTTP on this cluster's API with the admin token (a new client each call).
    pub fn api(&self) -> Api {
        Api::new(reqwest::Client::new(), self.url(), self.admin_token.clone())
    }

    /// Runs a client verb against this cluster.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_as(&self.admin_token, args)
    }

    /// Runs a client verb with `token` (and no `ZENITH_NAMESPACE` from the environment).
    pub fn cli_as(&self, token: &str, args: &[&str]) -> Output {
        zenith()
            .args(args)
            .env("ZENITH_SERVER", self.url())
            .env("ZENITH_TOKEN", token)
            .env_remove("ZENITH_NAMESPACE")
            .output()
            .unwrap()
    }

    /// Runs a client verb that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "zenith {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn submit(&self, args: &[&str]) -> u64 {
        let mut a = vec!["submit"];
        a.extend_from_slice(args);
        self.ok(&a).trim().parse().unwrap()
    }

    pub fn job(&self, id: u64) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["job", "show", &id.to_string(), "-o", "json"])).unwrap()
    }

    pub fn nodes(&self) -> Vec<serde_json::Value> {
        let v: serde_json::Value =
            serde_json::from_str(&self.ok(&["nodes", "-o", "json"])).unwrap();
        v["nodes"].as_array().unwrap().clone()
    }

    pub fn wait_nodes(&self, n: usize) {
        wait_for(&format!("{n} ready nodes"), 30, || {
            let out = self.cli(&["nodes", "-o", "json"]);
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            let ready = v["nodes"]
                .as_array()?
                .iter()
                .filter(|n| n["state"] == "ready")
                .count();
            (ready >= n).then_some(())
        });
    }

    /// Waits for a job to reach a final state and returns its JSON.
    pub fn wait_final(&self, id: u64, secs: u64) -> serde_json::Value {
        wait_for(&format!("job {id} to finish"), secs, || {
            let j = self.job(id);
            matches!(
                j["state"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            )
            .then_some(j)
        })
    }
}

/// A token file's contents, once the server has written them.
pub fn read_token(p: &Path) -> Option<String> {
    let t = std::fs::read_to_string(p).ok()?.trim().to_string();
    (!t.is_empty()).then_some(t)
}

/// Raw HTTP on a server's API, for what the CLI does not show: status codes, headers, error
/// bodies. Requests built with [`Api::request`] (and its shorthands) carry `token`.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    /// `http://HOST:PORT`, with no trailing slash; paths are appended to it.
    pub url: String,
    pub token: String,
}

impl Api {
    pub fn new(http: reqwest::Client, url: String, token: String) -> Api {
        Api { http, url, token }
    }

    /// The same client and server with another token (e.g. the agent token).
    pub fn with_token(&self, token: &str) -> Api {
        Api::new(self.http.clone(), self.url.clone(), token.to_string())
    }

    /// The same server and token through another client (its own address or timeout).
    pub fn with_client(&self, http: reqwest::Client) -> Api {
        Api::new(http, self.url.clone(), self.token.clone())
    }

    /// `method` on `path` (e.g. `/api/v1/jobs`) with no token.
    pub fn unauthenticated(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.url))
    }

    /// `method` on `path` with the token.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.unauthenticated(method, path).bearer_auth(&self.token)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::GET, path)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::POST, path)
    }

    /// GET `path` with the token; the answer's body as JSON, whatever its status.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        self.get(path).send().await.unwrap().json().await.unwrap()
    }

    /// POST `body` as JSON to `path` with the token; the answer's body as JSON, whatever its
    /// status.
    pub async fn post_json(&self, path: &str, body: &impl serde::Serialize) -> serde_json::Value {
        self.post(path)
            .json(body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// GET a route that needs no token (`/healthz`, `/readyz`).
    pub async fn get_unauthenticated(&self, path: &str) -> reqwest::Response {
        self.unauthenticated(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap()
    }

    /// Enrolls `node` with this API's token as the join token: an [`Api`] holding the node's
    /// own credential (what a real agent sends on `/agent/v1`).
    pub async fn enroll(&self, node: &str) -> Api {
        let body = serde_json::json!({"protocol_version": 2, "node_id": node, "name": node});
        let resp = self
            .post("/agent/v1/enroll")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "enroll {node}");
        let v: serde_json::Value = resp.json().await.unwrap();
        self.with_token(v["credential"].as_str().unwrap())
    }

    /// The `/metrics` page (it needs no token).
    pub async fn metrics(&self) -> String {
        self.get_unauthenticated("/metrics")
            .await
            .text()
            .await
            .unwrap()
    }
}

/// A client builder bound to its own loopback address, as a distinct client would be (the
/// server's per-client rate limits key on the address).
pub fn client_from(ip: std::net::Ipv4Addr) -> reqwest::ClientBuilder {
    reqwest::Client::builder().local_address(std::net::IpAddr::V4(ip))
}

/// One GET over a fresh HTTP/1.1 connection to loopback `port`, with no client library and
/// `Connection: close`: the whole response, head and body. For scrapes of processes that may
/// be stopped, and of ports the [`Api`] does not cover (an agent's metrics).
pub fn raw_get(
    port: u16,
    path: &str,
    token: Option<&str>,
    read_timeout: Option<Duration>,
) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(read_timeout)?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// Counts processes whose `/proc/PID/<file>` satisfies `pred`.
fn count_procs(file: &str, pred: impl Fn(&[u8]) -> bool) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .filter(|e| std::fs::read(e.path().join(file)).is_ok_and(|b| pred(&b)))
        .count()
}

/// Processes whose command line contains `marker`.
pub fn processes_matching(marker: &str) -> usize {
    count_procs("cmdline", |b| {
        String::from_utf8_lossy(b)
            .replace('\0', " ")
            .contains(marker)
    })
}

/// Processes whose environment holds every `key=value` of `kvs` exactly.
pub fn processes_with_env(kvs: &[&str]) -> usize {
    count_procs("environ", |b| {
        let vars: Vec<&[u8]> = b.split(|c| *c == 0).collect();
        kvs.iter().all(|kv| vars.contains(&kv.as_bytes()))
    })
}

/// A number from the environment (test scaling knobs), or `default`.
pub fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Resident memory of a process in kB (0 when it is gone).
pub fn rss_kb(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Lints a scrape with `promtool check metrics` when promtool is installed (scripts/deps.sh
/// installs it for the test suite). promtool reads the Prometheus text format, so the
/// OpenMetrics page is restated in it first: a counter family's HELP/TYPE lines name its
/// `_total` series, and `# EOF`/`# UNIT` lines go.
pub fn promtool_lint(openmetrics: &str) {
    let found = Command::new("promtool").arg("--version").output();
    if found.is_err() {
        eprintln!("promtool not installed: lint skipped");
        return;
    }
    let mut counters = std::collections::HashSet::new();
    for l in openmetrics.lines() {
        if let Some((name, "counter")) = l.strip_prefix("# TYPE ").and_then(|r| r.split_once(' ')) {
            counters.insert(name.to_string());
        }
    }
    let mut text = String::new();
    for l in openmetrics.lines() {
        if l == "# EOF" || l.starts_with("# UNIT ") {
            continue;
        }
        let meta = l
            .strip_prefix("# HELP ")
            .map(|r| ("# HELP ", r))
            .or_else(|| l.strip_prefix("# TYPE ").map(|r| ("# TYPE ", r)));
        match meta {
            Some((kind, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let name = if counters.contains(name) {
                    format!("{name}_total")
                } else {
                    name.to_string()
                };
                text.push_str(&format!("{kind}{name} {tail}\n"));
            }
            None => {
                text.push_str(l);
                text.push('\n');
            }
        }
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}\n--- scrape ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

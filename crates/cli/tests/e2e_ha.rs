//! High availability on a real PostgreSQL server (started by the test): several `zenith
//! server` processes share one database; the leader is killed, paused, or loses the database,
//! and clients and agents that know every server's URL carry on.
//!
//! Failover figures are printed (`--no-capture`): `ZENITH_HA_JOBS` (default 150) scales the
//! load of the kill test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;
use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use zenith_testkit::pg::PgServer;

struct Srv {
    port: u16,
    data: PathBuf,
    proc: Option<Proc>,
}

struct HaCluster {
    pg: PgServer,
    db: String,
    dir: tempfile::TempDir,
    servers: Vec<Srv>,
    ttl: String,
    admin: String,
    agent_token: String,
    agents: Vec<Proc>,
}

impl HaCluster {
    /// `n` servers on one new database; the first initialises it (and holds the tokens).
    fn start(n: usize, ttl: &str) -> HaCluster {
        let pg = PgServer::start();
        let db = pg.create_db("zenith");
        let dir = tempfile::tempdir().unwrap();
        let servers = (0..n)
            .map(|i| Srv {
                port: free_port(),
                data: dir.path().join(format!("server{i}")),
                proc: None,
            })
            .collect();
        let mut c = HaCluster {
            pg,
            db,
            dir,
            servers,
            ttl: ttl.into(),
            admin: String::new(),
            agent_token: String::new(),
            agents: Vec::new(),
        };
        c.start_server(0);
        let data = c.servers[0].data.clone();
        c.admin = wait_for("admin.token", 30, || read_token(&data.join("admin.token")));
        c.agent_token = wait_for("agent.token", 30, || read_token(&data.join("agent.token")));
        for i in 1..n {
            c.start_server(i);
        }
        for i in 0..n {
            c.wait_up(i);
        }
        c
    }

    fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.servers[i].port)
    }

    /// Every server's URL, comma-separated, starting at `first`.
    fn urls_from(&self, first: usize) -> String {
        let n = self.servers.len();
        (0..n)
            .map(|k| self.url((first + k) % n))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn start_server(&mut self, i: usize) {
        let mut cmd = zenith();
        cmd.arg("server")
            .args(["--store", &self.db, "--lease-ttl", &self.ttl])
            .arg("--data-dir")
            .arg(&self.servers[i].data)
            .args(["--listen", &format!("0.0.0.0:{}", self.servers[i].port)])
            // Listening on every address: the URL others use must be given, and plain HTTP
            // asked for (e2e_tls runs servers sharing a store over HTTPS).
            .args(["--advertise", &self.url(i), "--insecure-http"])
            .args(["--heartbeat-timeout", "30s", "--rate-limit", "100000"])
            .env("ZENITH_LOG", "info");
        let log = self.dir.path().join(format!(
            "server{i}-{}.log",
            Instant::now().elapsed().as_nanos()
        ));
        self.servers[i].proc = Some(Proc::spawn(cmd, log));
    }

    fn wait_up(&self, i: usize) {
        wait_listening("server port", self.servers[i].port);
    }

    fn add_agent(&mut self, name: &str, first: usize) {
        let mut cmd = zenith();
        cmd.arg("agent")
            .args([
                "--server",
                &self.urls_from(first),
                "--token",
                &self.agent_token,
            ])
            .arg("--data-dir")
            .arg(self.dir.path().join(name))
            .args(["--name", name, "--cpus", "4"])
            .env("ZENITH_LOG", "info");
        let log = self.dir.path().join(format!("{name}.log"));
        self.agents.push(Proc::spawn(cmd, log));
    }

    /// A `zenith` client verb against the servers starting at `first`.
    fn cli(&self, first: usize, args: &[&str]) -> std::process::Output {
        // Connection options go after the verb and before a job's `--` command.
        let split = args.iter().position(|a| *a == "--").unwrap_or(args.len());
        zenith()
            .args(&args[..split])
            .args(["--server", &self.urls_from(first), "--token", &self.admin])
            .args(&args[split..])
            .output()
            .unwrap()
    }

    /// `zenith servers -o json` as answered by server `via`.
    fn servers_json(&self, via: usize) -> Option<Value> {
        let out = zenith()
            .args([
                "servers",
                "-o",
                "json",
                "--server",
                &self.url(via),
                "--token",
                &self.admin,
            ])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())?
    }

    /// (index, epoch) of the leader, asked of server `via`.
    fn leader(&self, via: usize) -> Option<(usize, i64)> {
        let v = self.servers_json(via)?;
        let url = v["leader"].as_str()?;
        let i = (0..self.servers.len()).find(|&i| self.url(i) == url)?;
        Some((i, v["epoch"].as_i64()?))
    }

    /// (index, epoch) of the leader named by the lease that also says it leads (a server
    /// that stepped down while the database was away still holds an unexpired lease row).
    fn acting_leader(&self, via: usize) -> Option<(usize, i64)> {
        self.leader(via)
            .filter(|(i, _)| self.metric(*i, "zenith_leader") == Some(1.0))
    }

    /// Any live server other than `not`.
    fn other_than(&self, not: usize) -> usize {
        (0..self.servers.len())
            .find(|&i| i != not && self.servers[i].proc.is_some())
            .unwrap()
    }

    /// A metric's value from server `i`'s `/metrics`.
    fn metric(&self, i: usize, name: &str) -> Option<f64> {
        let body = raw_get(
            self.servers[i].port,
            "/metrics",
            None,
            Some(Duration::from_secs(5)),
        )
        .ok()?;
        body.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    fn signal(&self, i: usize, sig: &str) {
        let pid = self.servers[i].proc.as_ref().unwrap().pid().to_string();
        assert!(Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success());
    }

    fn jobs(&self, via: usize) -> Vec<Value> {
        let out = self.cli(via, &["jobs", "-o", "json", "--limit", "1000"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["jobs"].as_array().cloned().unwrap_or_default()
    }

    /// [`jobs`](Self::jobs), or `None` while the servers answer 503 (a failover settling).
    fn try_jobs(&self, via: usize) -> Option<Vec<Value>> {
        let out = self.cli(via, &["jobs", "-o", "json", "--limit", "1000"]);
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        v["jobs"].as_array().cloned()
    }
}

#[test]
fn kill9_of_the_leader_under_load_loses_and_repeats_nothing() {
    let jobs = env_num("ZENITH_HA_JOBS", 150) as usize;
    let mut c = HaCluster::start(3, "2s");
    let (leader, epoch) = wait_for("a leader", 30, || c.leader(0));
    c.add_agent("worker", c.other_than(leader));
    wait_for("the agent to register", 30, || {
        let out = c.cli(0, &["nodes", "-o", "json"]);
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        (v["nodes"].as_array()?.len() == 1).then_some(())
    });
    let runs = c.dir.path().join("runs.txt");
    let script = format!("echo $ZENITH_JOB_ID >> {}; sleep 0.3", runs.display());

    // The client: one `zenith submit` (idempotency key, retries) per job, through a list of
    // every server that starts with the leader.
    let urls = c.urls_from(leader);
    let admin = c.admin.clone();
    let (tx, rx) = std::sync::mpsc::channel::<u64>();
    let client = std::thread::spawn(move || {
        let mut acked = Vec::new();
        for i in 0..jobs {
            let out = zenith()
                .args([
                    "submit",
                    "--server",
                    &urls,
                    "--token",
                    &admin,
                    "--name",
                    &format!("load-{i}"),
                ])
                .args(["--", "sh", "-c", &script])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "submit {i} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let id: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
            acked.push(id);
            let _ = tx.send(id);
        }
        acked
    });
    for _ in 0..jobs / 3 {
        rx.recv_timeout(Duration::from_secs(60)).unwrap();
    }
    // A long job running when the leader dies must not be restarted by the failover.
    let long = c.cli(leader, &["submit", "--name", "long", "--", "sleep", "4"]);
    assert!(
        long.status.success(),
        "{}",
        String::from_utf8_lossy(&long.stderr)
    );
    let long = String::from_utf8_lossy(&long.stdout).trim().to_string();
    wait_for("the long job to run", 30, || {
        let out = c.cli(leader, &["job", "show", &long, "-o", "json"]);
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        (v["state"] == "running").then_some(())
    });

    // Kill the leader mid-load; time how long until another server leads.
    let killed_at = Instant::now();
    c.servers[leader].proc.take().unwrap().kill9();
    let via = c.other_than(leader);
    let (new_leader, new_epoch) = wait_for("a new leader", 30, || {
        c.leader(via).filter(|(i, _)| *i != leader)
    });
    let failover = killed_at.elapsed();
    eprintln!("failover: server {leader} killed, server {new_leader} leads epoch {new_epoch} after {failover:?} (lease TTL 2s)");
    assert!(new_epoch > epoch);
    assert!(
        failover < Duration::from_secs(2 + 5),
        "takeover took {failover:?}"
    );

    let acked = client.join().unwrap();
    assert_eq!(acked.len(), jobs);
    // Every acknowledged job exists once and succeeds; no job ran twice.
    let states = wait_for("every job to finish", 120, || {
        let all = c.try_jobs(via)?;
        let done = all
            .iter()
            .filter(|j| j["state"] != "queued" && j["state"] != "running")
            .count();
        (done == all.len() && all.len() >= jobs).then_some(all)
    });
    let by_id: BTreeMap<u64, &Value> = states
        .iter()
        .filter(|j| j["name"].as_str().is_some_and(|n| n.starts_with("load-")))
        .map(|j| (j["id"].as_u64().unwrap(), j))
        .collect();
    assert_eq!(by_id.len(), jobs, "one job per acknowledged submission");
    for id in &acked {
        assert_eq!(by_id[id]["state"], "succeeded", "job {id}: {}", by_id[id]);
    }
    let out = c.cli(via, &["job", "show", &long, "-o", "json"]);
    let long_job: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(long_job["state"], "succeeded", "{long_job}");
    assert_eq!(
        long_job["attempts"].as_array().map(|a| a.len()),
        Some(1),
        "the running job kept its one attempt: {long_job}"
    );
    let lines = std::fs::read_to_string(&runs).unwrap();
    let ran: Vec<u64> = lines.lines().map(|l| l.trim().parse().unwrap()).collect();
    let distinct: BTreeSet<u64> = ran.iter().copied().collect();
    assert_eq!(ran.len(), distinct.len(), "a job ran twice");
    assert_eq!(distinct, acked.iter().copied().collect::<BTreeSet<_>>());
    eprintln!("{jobs} jobs acknowledged, each stored once, succeeded, ran once");
}

#[test]
fn a_paused_leader_commits_nothing_after_losing_its_lease() {
    let c = HaCluster::start(2, "1s");
    let (old, epoch) = wait_for("a leader", 30, || c.leader(0));
    let other = 1 - old;
    c.signal(old, "-STOP");
    let (_, new_epoch) = wait_for("the standby to take over", 30, || {
        c.leader(other).filter(|(i, _)| *i == other)
    });
    assert_eq!(new_epoch, epoch + 1);
    let commits_before = c.pg.psql(
        "zenith",
        &format!("SELECT commits FROM zenith_terms WHERE epoch = {epoch}"),
    );

    // Submissions to it while it is stopped: the requests wait in its sockets and reach it the
    // moment it wakes, racing its own discovery that the lease moved on. Whatever it still
    // believes, none of its writes may land: an acknowledged job must exist, a refused one
    // must not.
    let port = c.servers[old].port;
    let admin = c.admin.clone();
    let (sent_tx, sent_rx) = std::sync::mpsc::channel();
    let senders: Vec<_> = (0..20)
        .map(|i| {
            let (t, sent) = (admin.clone(), sent_tx.clone());
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let body = format!(r#"{{"name":"after-cont-{i}","command":["true"]}}"#);
                let req = format!(
                    "POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\n\
                     Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.write_all(req.as_bytes()).unwrap();
                sent.send(()).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let mut resp = String::new();
                let _ = s.read_to_string(&mut resp);
                let status = resp.lines().next().unwrap_or("").to_string();
                let body = resp.lines().last().unwrap_or("").to_string();
                (i, resp.starts_with("HTTP/1.1 201"), format!("{status} {body}"))
            })
        })
        .collect();
    for _ in 0..20 {
        sent_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    }
    c.signal(old, "-CONT");
    let answers: Vec<(usize, bool, String)> =
        senders.into_iter().map(|t| t.join().unwrap()).collect();
    let results: Vec<(usize, bool)> = answers.iter().map(|(i, ok, _)| (*i, *ok)).collect();
    let statuses: BTreeMap<&str, usize> = answers.iter().fold(BTreeMap::new(), |mut m, a| {
        *m.entry(a.2.as_str()).or_default() += 1;
        m
    });
    wait_for("the old leader to stand by", 30, || {
        (c.metric(old, "zenith_leader") == Some(0.0)).then_some(())
    });
    let losses = c.metric(old, "zenith_leader_losses_total");
    assert_eq!(
        losses,
        Some(1.0),
        "terms {:?}",
        c.metric(old, "zenith_leader_terms_total")
    );
    let names: BTreeSet<String> = c
        .jobs(other)
        .iter()
        .filter_map(|j| j["name"].as_str().map(str::to_string))
        .collect();
    for (i, acked) in &results {
        let exists = names.contains(&format!("after-cont-{i}"));
        assert_eq!(
            *acked, exists,
            "submission {i}: acknowledged={acked} but stored={exists}"
        );
    }
    // The old term's record is what it was when the lease passed on, and the lease moved on.
    let commits_after = c.pg.psql(
        "zenith",
        &format!("SELECT commits FROM zenith_terms WHERE epoch = {epoch}"),
    );
    assert_eq!(commits_before, commits_after);
    let (now_leader, e) = c.leader(other).unwrap();
    assert_eq!(
        (now_leader, e),
        (other, new_epoch),
        "the woken server did not take the lease back"
    );
    eprintln!(
        "paused leader: {} of 20 submissions acknowledged (each stored), {} refused (none stored): {statuses:?}",
        results.iter().filter(|r| r.1).count(),
        results.iter().filter(|r| !r.1).count()
    );
}

#[test]
fn servers_ride_out_a_postgres_restart() {
    let mut c = HaCluster::start(2, "2s");
    let (leader, first_epoch) = wait_for("a leader", 30, || c.leader(0));
    c.add_agent("worker", leader);
    let submit = |c: &HaCluster, name: &str| -> u64 {
        let out = c.cli(0, &["submit", "--name", name, "--", "true"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    let before = submit(&c, "before");
    let out = c.cli(0, &["job", "wait", &before.to_string(), "--timeout", "60s"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    c.pg.stop();
    // Without the database no server can keep the lease: both stand by.
    wait_for("every server to stand by", 30, || {
        (0..2)
            .all(|i| c.metric(i, "zenith_leader") == Some(0.0))
            .then_some(())
    });
    c.pg.start_again();
    let (_, epoch) = wait_for("a leader again", 30, || c.acting_leader(0));
    assert!(
        epoch > first_epoch,
        "the lease lapsed while the database was down"
    );
    let after = submit(&c, "after");
    let out = c.cli(0, &["job", "wait", &after.to_string(), "--timeout", "60s"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<(String, String)> = c
        .jobs(0)
        .iter()
        .map(|j| {
            (
                j["name"].as_str().unwrap().to_string(),
                j["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        names.contains(&("before".into(), "succeeded".into())),
        "{names:?}"
    );
    assert!(
        names.contains(&("after".into(), "succeeded".into())),
        "{names:?}"
    );
    eprintln!("after the database restart: epoch {epoch}, jobs {names:?}");
}

/// A raw GET with an optional bearer token: (status, body).
fn get(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, resp.lines().last().unwrap_or("").to_string())
}

#[test]
fn a_standby_forwards_the_api_and_sends_agents_to_the_leader() {
    let mut c = HaCluster::start(2, "2s");
    let (leader, epoch) = wait_for("a leader", 30, || c.leader(0));
    let standby = 1 - leader;
    let (sp, lp) = (c.servers[standby].port, c.servers[leader].port);

    // Health: both live; only the leader is ready, and the standby says who is.
    assert_eq!(get(sp, "/healthz", None).0, 200);
    assert_eq!(get(lp, "/readyz", None).0, 200);
    // The standby names the leader once its next poll has read the lease.
    let leader_url = c.url(leader);
    wait_for("the standby to name the leader", 10, || {
        let (code, body) = get(sp, "/readyz", None);
        (code == 503 && body.contains(&leader_url)).then_some(())
    });
    // A bad token is refused by the standby itself.
    assert_eq!(get(sp, "/api/v1/jobs", Some("wrong")).0, 401);
    assert_eq!(get(sp, "/api/v1/jobs", None).0, 401);
    assert_eq!(
        c.metric(standby, "zenith_forwarded_requests_total"),
        Some(0.0)
    );

    // An agent and a client that know only the standby's URL.
    let mut cmd = zenith();
    cmd.arg("agent")
        .args(["--server", &c.url(standby), "--token", &c.agent_token])
        .arg("--data-dir")
        .arg(c.dir.path().join("agent"))
        .args(["--name", "only-standby", "--cpus", "1"]);
    let log = c.dir.path().join("agent.log");
    c.agents.push(Proc::spawn(cmd, log));
    let only = |args: &[&str]| {
        let split = args.iter().position(|a| *a == "--").unwrap_or(args.len());
        let out = zenith()
            .args(&args[..split])
            .args(["--server", &c.url(standby), "--token", &c.admin])
            .args(&args[split..])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    wait_for("the agent to reach the leader", 30, || {
        let v: Value = serde_json::from_str(&only(&["nodes", "-o", "json"])).ok()?;
        (v["nodes"][0]["state"] == "ready").then_some(())
    });
    let id = only(&["submit", "--name", "via-standby", "--", "echo", "forwarded"]);
    let id = id.trim();
    only(&["job", "wait", id, "--timeout", "60s"]);
    let shown: Value = serde_json::from_str(&only(&["job", "show", id, "-o", "json"])).unwrap();
    assert_eq!(shown["state"], "succeeded", "{shown}");
    let logs = only(&["job", "logs", id]);
    assert_eq!(
        logs.trim(),
        "forwarded",
        "output streamed back through the standby"
    );
    assert!(
        c.metric(standby, "zenith_forwarded_requests_total")
            .unwrap()
            >= 5.0
    );

    let servers: Value = serde_json::from_str(&only(&["servers", "-o", "json"])).unwrap();
    assert_eq!(servers["store"], "postgres");
    assert_eq!(servers["leader"], c.url(leader));
    assert_eq!(servers["epoch"], epoch);
    assert_eq!(servers["members"].as_array().unwrap().len(), 2);
    assert_eq!(servers["answered_by"], c.url(standby));
    // Both servers accept the tokens the first one wrote; only the first has the files.
    assert!(!c.servers[1].data.join("admin.token").exists());
}

#[test]
fn an_embedded_server_lists_itself_as_the_leader() {
    let c = Cluster::server(&[]);
    let v: Value = serde_json::from_str(&c.ok(&["servers", "-o", "json"])).unwrap();
    assert_eq!(
        (v["store"].as_str(), v["epoch"].as_i64()),
        (Some("embedded"), Some(0))
    );
    assert_eq!(v["members"][0]["leader"], true);
    assert!(c.ok(&["servers"]).contains("store: embedded"));
}

#[test]
fn server_flags_are_checked_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    for (args, says) in [
        (
            vec!["--store", "mysql://db/zenith"],
            "--store: expected a postgres:// URL",
        ),
        (
            vec!["--store", "postgres://db/z", "--store-max-size", "1G"],
            "--store-max-size",
        ),
        (
            vec!["--advertise", "http://a:7700"],
            "only apply with --store",
        ),
        (vec!["--lease-ttl", "5s"], "only apply with --store"),
        (
            vec!["--store", "postgres://db/z", "--listen", "0.0.0.0:0"],
            "--advertise is required",
        ),
        (
            vec!["--store", "postgres://db/z", "--lease-ttl", "100ms"],
            "--lease-ttl: between",
        ),
        (
            vec!["--store", "postgres://db/z", "--advertise", "10.0.0.1:7700"],
            "--advertise: expected an http",
        ),
    ] {
        let mut args = args;
        if !args.contains(&"--listen") {
            args.extend(["--listen", "127.0.0.1:0"]);
        }
        let out = zenith()
            .arg("server")
            .arg("--data-dir")
            .arg(dir.path())
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(says),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn a_leader_stopped_cleanly_hands_over_at_once() {
    // A TTL far longer than the handover may take: only the release at shutdown explains it.
    let mut c = HaCluster::start(2, "60s");
    let (leader, epoch) = wait_for("a leader", 30, || c.leader(0));
    let other = 1 - leader;
    let stopped_at = Instant::now();
    c.signal(leader, "-TERM");
    let (_, e) = wait_for("the standby to lead", 10, || {
        c.acting_leader(other).filter(|(i, _)| *i == other)
    });
    eprintln!(
        "clean handover: {:?} (lease TTL 60 s)",
        stopped_at.elapsed()
    );
    assert_eq!(e, epoch + 1);
    let exited = c.servers[leader]
        .proc
        .as_mut()
        .unwrap()
        .child
        .wait()
        .unwrap();
    assert!(exited.success(), "the old leader exits cleanly: {exited}");
    let v = c.servers_json(other).unwrap();
    assert_eq!(
        v["members"].as_array().unwrap().len(),
        1,
        "it left the member list: {v}"
    );
}

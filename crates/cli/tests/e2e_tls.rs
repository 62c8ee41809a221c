//! TLS between every part: server, local and remote agents, the CLI; certificates made for
//! you or your own, reloaded on SIGHUP; plain HTTP off loopback only when asked for.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Output;

fn https_client(ca: Option<&Path>) -> reqwest::Client {
    // A new connection (and handshake) per request: a reloaded certificate shows at once.
    let mut b = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .pool_max_idle_per_host(0);
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).unwrap();
        b = b
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

fn get(client: &reqwest::Client, url: &str) -> Result<u16, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { client.get(url).send().await.map(|r| r.status().as_u16()) })
        .map_err(|e| format!("{e:?}"))
}

fn cli(url: &str, token: &str, ca: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = zenith();
    cmd.args(args)
        .env("ZENITH_SERVER", url)
        .env("ZENITH_TOKEN", token);
    if let Some(ca) = ca {
        cmd.env("ZENITH_CA_CERT", ca);
    }
    cmd.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn everything_speaks_tls_with_certificates_made_for_you() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let mut up = zenith();
    up.args(["up", "--tls", "--cpus", "2", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(&data);
    let _up = Proc::spawn(up, dir.path().join("up.log"));
    let ca = data.join("tls/ca.pem");
    let token = wait_for("admin.token", 30, || read_token(&data.join("admin.token")));
    let agent_token = wait_for("agent.token", 30, || read_token(&data.join("agent.token")));
    wait_listening("the TLS port", port);
    let url = format!("https://127.0.0.1:{port}");
    // The local agent joined over TLS; the CLI submits, waits and reads logs over TLS.
    wait_for("the local agent over TLS", 30, || {
        let o = cli(&url, &token, Some(&ca), &["nodes", "-o", "json"]);
        text(&o).contains("\"ready\"").then_some(())
    });
    let o = cli(
        &url,
        &token,
        Some(&ca),
        &["submit", "--", "echo", "over tls"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let o = cli(&url, &token, Some(&ca), &["job", "wait", &id]);
    assert!(o.status.success(), "{}", text(&o));
    let o = cli(&url, &token, Some(&ca), &["job", "logs", &id]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "over tls\n");
    // Without the CA the certificate is refused, and plain HTTP gets no answer.
    let o = cli(&url, &token, None, &["jobs"]);
    assert!(!o.status.success());
    assert!(
        text(&o).to_lowercase().contains("certificate"),
        "{}",
        text(&o)
    );
    assert!(get(
        &https_client(None),
        &format!("http://127.0.0.1:{port}/healthz")
    )
    .is_err());
    assert_eq!(
        get(&https_client(Some(&ca)), &format!("{url}/healthz")),
        Ok(200)
    );
    // An agent from elsewhere joins with the CA and the join token (localhost: the made
    // certificate names it).
    let mut agent = zenith();
    agent
        .args(["agent", "--server"])
        .arg(format!("https://localhost:{port}"))
        .arg("--ca-cert")
        .arg(&ca)
        .args(["--token", &agent_token, "--name", "remote", "--data-dir"])
        .arg(dir.path().join("remote"));
    let _agent = Proc::spawn(agent, dir.path().join("remote.log"));
    wait_for("the remote agent over TLS", 30, || {
        let o = cli(&url, &token, Some(&ca), &["nodes", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
        let ready = v["nodes"]
            .as_array()?
            .iter()
            .filter(|n| n["state"] == "ready")
            .count();
        (ready == 2).then_some(())
    });
    // The CLI on this machine finds the server by the URL it wrote, and the key is private.
    assert_eq!(
        std::fs::read_to_string(data.join("server.url")).unwrap(),
        url.as_str()
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(data.join("tls/ca.key")), 0o600);
    assert_eq!(mode(data.join("tls/server.key")), 0o600);
    assert_eq!(mode(data.join("tls")), 0o700);
}

/// A CA and a server certificate for 127.0.0.1 in `dir`.
fn made_cert(dir: &Path) -> (PathBuf, zenith_server::tls::TlsFiles) {
    let ca = zenith_server::tls::ensure_cluster_ca(dir).unwrap();
    let files = zenith_server::tls::issue_server_cert(&ca, &["127.0.0.1".into()], dir).unwrap();
    (ca.cert_path, files)
}

#[test]
fn the_certificate_is_reloaded_on_sighup_and_a_broken_one_is_not_taken() {
    let dir = tempfile::tempdir().unwrap();
    let (ca1, first) = made_cert(&dir.path().join("one"));
    let (ca2, second) = made_cert(&dir.path().join("two"));
    let live = dir.path().join("live");
    std::fs::create_dir_all(&live).unwrap();
    let (cert, key) = (live.join("cert.pem"), live.join("key.pem"));
    std::fs::copy(&first.cert, &cert).unwrap();
    std::fs::copy(&first.key, &key).unwrap();
    let port = free_port();
    let mut server = zenith();
    server
        .args(["server", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key);
    let p = Proc::spawn(server, dir.path().join("server.log"));
    wait_listening("the TLS port", port);
    let url = format!("https://127.0.0.1:{port}/healthz");
    let (trust1, trust2) = (https_client(Some(&ca1)), https_client(Some(&ca2)));
    assert_eq!(get(&trust1, &url), Ok(200));
    assert!(get(&trust2, &url).is_err());
    std::fs::copy(&second.cert, &cert).unwrap();
    std::fs::copy(&second.key, &key).unwrap();
    let hup = || {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p.pid()),
            nix::sys::signal::Signal::SIGHUP,
        )
        .unwrap()
    };
    hup();
    wait_for("the new certificate", 20, || get(&trust2, &url).ok());
    // A new client (the old one may resume its TLS session, which skips the certificate).
    assert!(get(&https_client(Some(&ca1)), &url).is_err());
    // A broken file is refused; the certificate in force stays.
    std::fs::write(&cert, "not a certificate").unwrap();
    hup();
    let metrics = wait_for("a failed reload", 20, || {
        let body = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                trust2
                    .get(format!("https://127.0.0.1:{port}/metrics"))
                    .send()
                    .await
                    .ok()?
                    .text()
                    .await
                    .ok()
            })?;
        body.contains("zenith_tls_reloads_total{result=\"error\"}")
            .then_some(body)
    });
    assert!(
        metrics.contains("zenith_tls_reloads_total{result=\"ok\"}"),
        "{metrics}"
    );
    assert_eq!(get(&trust2, &url), Ok(200));
}

#[test]
fn off_loopback_plain_http_needs_asking_for() {
    let dir = tempfile::tempdir().unwrap();
    // On every address with no TLS flag: HTTPS with certificates made for it.
    let port = free_port();
    let mut s = zenith();
    s.args(["server", "--advertise"])
        .arg(format!("https://127.0.0.1:{port}"))
        .arg("--listen")
        .arg(format!("0.0.0.0:{port}"))
        .arg("--data-dir")
        .arg(dir.path().join("a"));
    // --advertise applies only with --store; without it the server refuses to start.
    let o = s.output().unwrap();
    assert!(!o.status.success());
    let mut s = zenith();
    s.args(["server", "--listen"])
        .arg(format!("0.0.0.0:{port}"))
        .arg("--data-dir")
        .arg(dir.path().join("a"));
    let log = dir.path().join("a.log");
    let _a = Proc::spawn(s, log.clone());
    wait_listening("the TLS port", port);
    let ca = dir.path().join("a/tls/ca.pem");
    assert_eq!(
        get(
            &https_client(Some(&ca)),
            &format!("https://127.0.0.1:{port}/healthz")
        ),
        Ok(200)
    );
    let banner = wait_for("the banner", 10, || {
        let t = std::fs::read_to_string(&log).ok()?;
        t.contains("zenith agent --server https://").then_some(t)
    });
    assert!(banner.contains("--ca-cert ca.pem"), "{banner}");
    // --insecure-http: plain HTTP, with a warning.
    let port = free_port();
    let mut s = zenith();
    s.args(["server", "--insecure-http", "--listen"])
        .arg(format!("0.0.0.0:{port}"))
        .arg("--data-dir")
        .arg(dir.path().join("b"));
    let log = dir.path().join("b.log");
    let _b = Proc::spawn(s, log.clone());
    wait_listening("the HTTP port", port);
    assert_eq!(
        get(
            &https_client(None),
            &format!("http://127.0.0.1:{port}/healthz")
        ),
        Ok(200)
    );
    let t = wait_for("the warning", 10, || {
        let t = std::fs::read_to_string(&log).ok()?;
        t.contains("warning: plain HTTP").then_some(t)
    });
    assert!(t.contains("in clear"), "{t}");
}

/// Copies the cluster CA made in `ca_dir` into a server's data directory (`tls/`), as the
/// README says servers sharing a store do.
fn share_ca(ca_dir: &Path, data: &Path) {
    let tls = data.join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    for f in ["ca.pem", "ca.key"] {
        std::fs::copy(ca_dir.join(f), tls.join(f)).unwrap();
    }
}

#[test]
fn servers_sharing_a_store_speak_tls_to_each_other_and_to_postgres() {
    let pg = zenith_testkit::pg::PgServer::start_tls_only();
    let db = pg.create_db("zenith");
    let store = format!("{db}?sslmode=verify-full&sslrootcert={}", pg.ca().display());
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    let ca = zenith_server::tls::ensure_cluster_ca(&ca_dir)
        .unwrap()
        .cert_path;
    let ports = [free_port(), free_port()];
    let mut servers = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let data = dir.path().join(format!("s{i}"));
        share_ca(&ca_dir, &data);
        let mut s = zenith();
        s.args(["server", "--tls", "--store", &store, "--lease-ttl", "2s"])
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--advertise")
            .arg(format!("https://127.0.0.1:{port}"))
            .arg("--ca-cert")
            .arg(&ca)
            .arg("--data-dir")
            .arg(&data);
        servers.push(Proc::spawn(s, dir.path().join(format!("s{i}.log"))));
        if i == 0 {
            // The first initialises the database (and writes the tokens) and leads.
            wait_for("the first server's tokens", 30, || {
                read_token(&data.join("admin.token"))
            });
        }
        wait_listening("a server", *port);
    }
    let data0 = dir.path().join("s0");
    let admin = read_token(&data0.join("admin.token")).unwrap();
    let join = read_token(&data0.join("agent.token")).unwrap();
    let url = |i: usize| format!("https://127.0.0.1:{}", ports[i]);
    // The leader is the first; the agent is given both servers.
    wait_for("server 0 to lead", 30, || {
        let o = cli(&url(1), &admin, Some(&ca), &["servers", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
        (v["leader"] == url(0).as_str()).then_some(())
    });
    let mut agent = zenith();
    agent
        .args(["agent", "--server", &format!("{},{}", url(1), url(0))])
        .arg("--ca-cert")
        .arg(&ca)
        .args(["--token", &join, "--name", "a", "--data-dir"])
        .arg(dir.path().join("agent"));
    let _agent = Proc::spawn(agent, dir.path().join("agent.log"));
    // Through the standby only: it forwards to the leader over HTTPS.
    let o = cli(
        &url(1),
        &admin,
        Some(&ca),
        &["submit", "--", "echo", "ha over tls"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let o = cli(&url(1), &admin, Some(&ca), &["job", "wait", &id]);
    assert!(o.status.success(), "{}", text(&o));
    let o = cli(&url(1), &admin, Some(&ca), &["job", "logs", &id]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "ha over tls\n");
    // Every connection of the servers to PostgreSQL is encrypted (plaintext is refused).
    let plain = pg.psql(
        "zenith",
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = 'zenith' AND NOT s.ssl",
    );
    assert_eq!(plain, "0");
    drop(servers);
}

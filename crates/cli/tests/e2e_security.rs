//! Security hygiene on the real binary (issue: secure across machines): made-up request
//! methods cannot grow the metrics, a job cannot ask for no CPU, text from jobs cannot drive
//! the reader's terminal, and `zenith up` keeps the admin token out of its logs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;
use common::*;
use std::io::{Read, Write};

/// The value of an unlabelled counter in a metrics scrape (0 when absent).
fn counter(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.split(' ').next() == Some(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Sends one request with `method` on a fresh connection and reads the status line.
fn raw_method(port: u16, method: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        s,
        "{method} /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf); // a reset after the answer is fine
    String::from_utf8_lossy(&buf)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn made_up_methods_share_one_metrics_series() {
    let c = blocking(|| Cluster::up(&[])).await;
    let port = c.port;
    let statuses = blocking(move || {
        (0..2_000)
            .map(|i| raw_method(port, &format!("M{i:08}")))
            .collect::<Vec<_>>()
    })
    .await;
    assert!(
        statuses.iter().all(|s| s.starts_with("HTTP/1.1 ")),
        "{statuses:?}"
    );
    let text = c.api().metrics().await;
    assert!(!text.contains("M0000"), "a made-up method became a label");
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("zenith_api_requests_total{") && l.contains("method=\"other\""))
        .collect();
    assert!(
        !series.is_empty(),
        "the flood is counted under method=other"
    );
    let total: f64 = series
        .iter()
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(total >= 2_000.0, "{series:?}");
}

#[test]
fn a_job_cannot_ask_for_no_cpu() {
    let c = Cluster::up(&[]);
    for cpus in ["0", "0.0000001", "-1"] {
        let out = c.cli(&["submit", &format!("--cpus={cpus}"), "--", "true"]);
        assert_eq!(out.status.code(), Some(2), "--cpus {cpus}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("cpus"), "--cpus {cpus}: {err}");
    }
    let api = c.api();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let r = api
            .post("/api/v1/jobs")
            .json(&serde_json::json!({"command": ["true"], "resources": {"cpus": 0}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["field"], "resources.cpus", "{body}");
        // Resources without `cpus` ask for one core, not none.
        let ok: serde_json::Value = api
            .post_json(
                "/api/v1/jobs",
                &serde_json::json!({"command": ["true"], "resources": {"memory": "1M"}}),
            )
            .await;
        let id = ok["id"].as_u64().unwrap();
        let j = api.get_json(&format!("/api/v1/jobs/{id}")).await;
        assert_eq!(j["spec"]["resources"]["cpus"], 1.0, "{j}");
    });
    let listed = c.ok(&["jobs", "-o", "json"]);
    let jobs: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(1), "{listed}");
}

#[test]
fn text_from_jobs_cannot_drive_the_terminal() {
    let c = Cluster::up(&[]);
    let evil = "\u{1b}]0;pwned\u{7}\u{1b}[2J";
    // Its name comes from argv[0] (the program does not exist: it fails to start, and the
    // reason quotes it too); the command line carries the same bytes.
    let id = c.submit(&["--", &format!("x{evil}"), evil]);
    c.wait_final(id, 30);
    for args in [vec!["jobs"], vec!["job", "show", &id.to_string()]] {
        let out = c.ok(&args);
        assert!(
            !out.contains('\u{1b}'),
            "{args:?} printed a raw escape: {out:?}"
        );
        assert!(
            !out.contains('\u{7}'),
            "{args:?} printed a raw bell: {out:?}"
        );
        assert!(out.contains("\\x1b]0;pwned\\x07"), "{args:?}: {out}");
    }
    // JSON keeps the exact text (its encoder escapes it), and logs are the job's own bytes.
    let json = c.ok(&["job", "show", &id.to_string(), "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["name"].as_str(), Some(format!("x{evil}").as_str()));
}

#[test]
fn zenith_up_keeps_the_admin_token_out_of_its_log() {
    let c = Cluster::up(&[]);
    // The test's output is a file, as a service's would be.
    let log = std::fs::read_to_string(c.dir.path().join("server-0.log")).unwrap();
    assert!(log.contains("zenith is up"), "{log}");
    assert!(
        !log.contains(&c.admin_token),
        "the admin token is in the log:\n{log}"
    );
    assert!(
        log.contains("admin.token"),
        "the log names the token file:\n{log}"
    );
    // `zenith ui` still prints the link that signs in.
    let link = c.ok(&["ui"]);
    assert!(
        link.trim().ends_with(&format!("#token={}", c.admin_token)),
        "{link}"
    );
}

#[test]
fn a_submission_loop_never_locks_anyone_out() {
    // Small bounds stand in for the defaults (100,000 keys, 10,000 per client).
    let c = Cluster::up(&[
        "--max-idempotency-keys",
        "50",
        "--max-idempotency-keys-per-client",
        "20",
    ]);
    // Every `zenith submit` sends a fresh key: a shell loop far past the bounds all succeeds.
    let ids: Vec<u64> = (0..200)
        .map(|_| c.submit(&["--cpus", "0.01", "--", "true"]))
        .collect();
    let distinct: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), 200);
    // A retry with the same key still answers with the same job.
    let first = c.submit(&["--idempotency-key", "retry-me", "--", "true"]);
    let again = c.submit(&["--idempotency-key", "retry-me", "--", "true"]);
    assert_eq!(first, again);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let text = rt.block_on(c.api().metrics());
    let evicted = counter(&text, "zenith_idempotency_keys_evicted_total");
    assert!(
        evicted >= 181.0,
        "keys beyond the client's 20 evicted: {evicted}"
    );
}

/// Every file under `dir` with group or other permission bits, and every directory.
fn modes_under(
    dir: &std::path::Path,
    files: &mut Vec<(String, u32)>,
    dirs: &mut Vec<(String, u32)>,
) {
    use std::os::unix::fs::PermissionsExt;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let meta = e.path().symlink_metadata().unwrap();
        let mode = meta.permissions().mode() & 0o777;
        let name = e.path().display().to_string();
        if meta.is_dir() {
            dirs.push((name, mode));
            modes_under(&e.path(), files, dirs);
        } else if meta.is_file() {
            files.push((name, mode));
        }
    }
}

#[test]
fn data_at_rest_is_private_and_jobs_keep_their_mask() {
    use std::os::unix::fs::PermissionsExt;
    let c = Cluster::up(&[]);
    let elsewhere = tempfile::tempdir().unwrap();
    let cwd = elsewhere.path().display().to_string();
    let id = c.submit(&[
        "--cwd",
        &cwd,
        "--env",
        "SECRET=hunter2",
        "--",
        "sh",
        "-c",
        "echo made > by-the-job; echo $SECRET",
    ]);
    assert_eq!(c.wait_final(id, 30)["state"], "succeeded");
    assert_eq!(c.ok(&["job", "logs", &id.to_string()]), "hunter2\n");
    let data = c.data();
    let top = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(top, 0o700, "the data directory");
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    modes_under(&data, &mut files, &mut dirs);
    assert!(files.iter().any(|(n, _)| n.ends_with(".db")), "{files:?}");
    assert!(files.iter().any(|(n, _)| n.ends_with("-wal")), "{files:?}");
    assert!(
        files.iter().any(|(n, _)| n.ends_with(".stdout")),
        "{files:?}"
    );
    let open: Vec<_> = files.iter().filter(|(_, m)| m & 0o077 != 0).collect();
    assert!(open.is_empty(), "files others can read: {open:?}");
    let agent = dirs.iter().find(|(n, _)| n.ends_with("/agent")).unwrap();
    assert_eq!(agent.1, 0o700, "the agent's data directory");
    // The job's own file follows the job mask (022 by default), not the agent's privacy.
    let made = std::fs::metadata(elsewhere.path().join("by-the-job")).unwrap();
    assert_eq!(made.permissions().mode() & 0o777, 0o644);
}

/// Whether the server has closed `s` (end of stream or reset), without waiting.
fn closed(s: &mut std::net::TcpStream) -> bool {
    let mut buf = [0u8; 64];
    s.set_nonblocking(true).unwrap();
    match s.read(&mut buf) {
        Ok(0) => true, // end of stream
        Ok(_) => true, // an error response before closing
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

#[test]
fn slow_connections_are_capped_per_address_and_timed_out() {
    let c = Cluster::up(&[
        "--max-connections-per-client",
        "200",
        "--header-timeout",
        "4s",
    ]);
    // 400 connections from one address that start a request and never finish its head.
    let mut slow: Vec<std::net::TcpStream> = (0..400)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", c.port)).unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n")
                .unwrap();
            s
        })
        .collect();
    // Another address is still answered while they hang on.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = c.url();
    let answered = rt.block_on(async {
        let http = client_from(std::net::Ipv4Addr::new(127, 0, 3, 1))
            .build()
            .unwrap();
        let mut ok = 0;
        let mut worst = std::time::Duration::ZERO;
        for _ in 0..50 {
            let t = std::time::Instant::now();
            let r = http.get(format!("{url}/healthz")).send().await.unwrap();
            worst = worst.max(t.elapsed());
            ok += usize::from(r.status() == 200);
        }
        println!("healthz from another address during the attack: worst {worst:?} of 50");
        ok
    });
    assert_eq!(answered, 50);
    // The 200 beyond the cap were closed at accept; the rest go at the header timeout.
    wait_for("every slow connection closed", 20, || {
        slow.iter_mut().all(closed).then_some(())
    });
    let text = rt.block_on(c.api().metrics());
    let refused = counter(&text, "zenith_http_connections_refused_total");
    assert!(refused >= 200.0, "connections over the cap: {refused}");
}

#[test]
fn tokens_chosen_up_front_are_used_once_and_then_held_to() {
    let dir = tempfile::tempdir().unwrap();
    let admin = "a".repeat(40);
    let join = "j".repeat(40);
    let (admin_file, join_file) = (dir.path().join("admin"), dir.path().join("join"));
    std::fs::write(&admin_file, format!("{admin}\n")).unwrap();
    std::fs::write(&join_file, &join).unwrap();
    let mut c = Cluster::up(&[
        "--admin-token-file",
        admin_file.to_str().unwrap(),
        "--agent-token-file",
        join_file.to_str().unwrap(),
    ]);
    // The files the server writes hold the chosen tokens, and the local agent joined with one.
    assert_eq!(c.admin_token, admin);
    assert_eq!(c.agent_token, join);
    c.wait_nodes(1);
    let id = c.submit(&["--", "true"]);
    assert_eq!(c.wait_final(id, 30)["state"], "succeeded");

    // A later start with another token is refused, naming why; a short one too.
    c.kill_server();
    std::fs::write(&admin_file, "b".repeat(40)).unwrap();
    let out = zenith()
        .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(c.data())
        .args(["--admin-token-file", admin_file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("admin token given differs"), "{err}");
    std::fs::write(&admin_file, "short").unwrap();
    let out = zenith()
        .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("fresh"))
        .args(["--admin-token-file", admin_file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 32"));
}

#[test]
fn jobs_do_not_inherit_the_agents_join_token() {
    // `zenith up` hands its agent the join token in ZENITH_AGENT_TOKEN.
    let c = Cluster::up(&[]);
    let id = c.submit(&[
        "--",
        "sh",
        "-c",
        "echo ${ZENITH_AGENT_TOKEN:-none} ${ZENITH_TOKEN:-none}",
    ]);
    c.wait_final(id, 30);
    assert_eq!(c.ok(&["job", "logs", &id.to_string()]), "none none\n");
    // A job that sets one itself keeps it.
    let id = c.submit(&[
        "-e",
        "ZENITH_TOKEN=mine",
        "--",
        "sh",
        "-c",
        "echo $ZENITH_TOKEN",
    ]);
    c.wait_final(id, 30);
    assert_eq!(c.ok(&["job", "logs", &id.to_string()]), "mine\n");
}

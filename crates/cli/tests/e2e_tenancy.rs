//! Many teams on one cluster, on the real binary: people's tokens and roles, namespaces that
//! hide each other's work, revocation and expiry, and the audit log that records it all — on
//! the embedded store and across a PostgreSQL HA group (docs/tenancy.md).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;
use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

/// `zenith token create ... -o json` as the admin: the token's text and ID.
fn make_token(c: &Cluster, args: &[&str]) -> (String, String) {
    let mut a = vec!["token", "create"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["-o", "json"]);
    let v: Value = serde_json::from_str(&c.ok(&a)).unwrap();
    (
        v["token"].as_str().unwrap().to_string(),
        v["id"].as_str().unwrap().to_string(),
    )
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

async fn status(rb: reqwest::RequestBuilder) -> u16 {
    rb.send().await.unwrap().status().as_u16()
}

fn audit(c: &Cluster) -> Vec<Value> {
    let v: Value =
        serde_json::from_str(&c.ok(&["audit", "--limit", "1000", "-o", "json"])).unwrap();
    v["records"].as_array().unwrap().clone()
}

/// Waits until the audit log holds a record of `user` with `status` on `method path`.
fn audited(c: &Cluster, user: &str, method: &str, path: &str, status: u16) -> Value {
    wait_for(
        &format!("audit of {user} {method} {path} {status}"),
        10,
        || {
            audit(c).into_iter().find(|r| {
                r["user"] == user
                    && r["method"] == method
                    && r["path"] == path
                    && r["status"] == status
            })
        },
    )
}

#[test]
fn roles_and_namespaces_hold_and_every_refusal_is_audited() {
    let mut c = Cluster::up(&[]);
    let (viewer, _) = make_token(&c, &["--name", "vera", "--role", "viewer", "--ns", "ml"]);
    let (ml, _) = make_token(&c, &["--name", "sam", "--role", "submitter", "-n", "ml"]);
    let (web, web_id) = make_token(&c, &["--name", "wes", "--role", "submitter", "--ns", "web"]);
    // Secrets are shown once: never listed, never stored.
    let list = c.ok(&["token", "list", "-o", "json"]);
    assert!(
        !list.contains(&ml[20..]) && list.contains("\"sam\""),
        "{list}"
    );

    // A submitter's work goes to its namespace and records who submitted it.
    let out = c.cli_as(&ml, &["submit", "--", "echo", "from-ml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ml_job: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let j = c.wait_final(ml_job, 30);
    assert_eq!(j["namespace"], "ml");
    assert_eq!(j["submitter"], "sam");
    let out = c.cli_as(&web, &["submit", "--", "sleep", "30"]);
    let web_job: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();

    // A viewer reads its namespace and changes nothing (403).
    let out = c.cli_as(&viewer, &["submit", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("may only read"), "{}", stderr(&out));
    let out = c.cli_as(&viewer, &["job", "cancel", &ml_job.to_string()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = c.cli_as(&viewer, &["job", "show", &ml_job.to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Another namespace's job does not exist for a submitter (404, not 403).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sam = c.api().with_token(&ml);
    let w = web_job.to_string();
    rt.block_on(async {
        for path in [
            format!("/api/v1/jobs/{w}"),
            format!("/api/v1/jobs/{w}/logs"),
            format!("/api/v1/jobs/{w}/explain"),
            format!("/api/v1/events?job={w}"),
        ] {
            assert_eq!(status(sam.get(&path)).await, 404, "{path}");
        }
        assert_eq!(
            status(sam.post(&format!("/api/v1/jobs/{w}/cancel"))).await,
            404
        );
        // Submitting into, or listing, a namespace it does not hold is refused by name.
        let body = serde_json::json!({"command": ["true"], "namespace": "web"});
        assert_eq!(status(sam.post("/api/v1/jobs").json(&body)).await, 403);
        assert_eq!(status(sam.get("/api/v1/jobs?namespace=web")).await, 403);
        // ...and nobody sets the submitter but the server.
        let forged = serde_json::json!({"command": ["true"], "submitter": "admin"});
        let v = sam.post_json("/api/v1/jobs", &forged).await;
        assert_eq!(v["error"]["field"], "submitter", "{v}");
    });
    let listed =
        String::from_utf8_lossy(&c.cli_as(&ml, &["jobs", "-A", "-o", "json"]).stdout).into_owned();
    let ids: Vec<u64> = serde_json::from_str::<Value>(&listed).unwrap()["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![ml_job], "a submitter lists only its namespaces");
    // The admin sees both.
    let all: Value = serde_json::from_str(&c.ok(&["jobs", "-A", "-o", "json"])).unwrap();
    assert_eq!(all["jobs"].as_array().unwrap().len(), 2);

    // Revoked: refused at once, with its reason.
    c.ok(&["token", "revoke", &web_id]);
    let out = c.cli_as(&web, &["jobs"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("revoked"), "{}", stderr(&out));

    // Expired: refused once its time is up.
    let (brief, _) = make_token(
        &c,
        &[
            "--name",
            "eve",
            "--role",
            "viewer",
            "--ns",
            "ml",
            "--expires",
            "1s",
        ],
    );
    assert!(c.cli_as(&brief, &["jobs"]).status.success());
    wait_for("the token to expire", 10, || {
        let out = c.cli_as(&brief, &["jobs"]);
        stderr(&out).contains("expired").then_some(())
    });

    // Every attempt is in the audit log: who, what, the answer and why.
    let v = audited(&c, "vera", "POST", "/api/v1/jobs", 403);
    assert_eq!(v["role"], "viewer");
    assert!(v["detail"].as_str().unwrap().contains("may only read"));
    audited(
        &c,
        "vera",
        "POST",
        &format!("/api/v1/jobs/{ml_job}/cancel"),
        403,
    );
    audited(&c, "sam", "GET", &format!("/api/v1/jobs/{w}"), 404);
    audited(&c, "sam", "POST", &format!("/api/v1/jobs/{w}/cancel"), 404);
    audited(&c, "sam", "POST", "/api/v1/jobs", 201);
    audited(&c, "wes", "GET", "/api/v1/jobs?limit=50", 401);
    audited(&c, "eve", "GET", "/api/v1/jobs?limit=50", 401);
    audited(
        &c,
        "admin",
        "POST",
        &format!("/api/v1/tokens/{web_id}/revoke"),
        200,
    );
    // Reading is not audited unless refused.
    assert!(!audit(&c)
        .iter()
        .any(|r| r["user"] == "vera" && r["method"] == "GET" && r["status"] == 200));
    // Only admins and operators read the audit log.
    let out = c.cli_as(&ml, &["audit"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // Tokens, revocations and the audit log survive a restart; only hashes were stored.
    c.kill_server();
    let db = std::fs::read(c.data().join("zenith.db")).unwrap_or_default();
    let secret = ml.rsplit(':').next().unwrap();
    assert!(!String::from_utf8_lossy(&db).contains(secret));
    c.start_server();
    c.wait_nodes(1);
    assert!(c.cli_as(&ml, &["jobs"]).status.success());
    assert!(stderr(&c.cli_as(&web, &["jobs"])).contains("revoked"));
    audited(&c, "vera", "POST", "/api/v1/jobs", 403);
}

#[test]
fn an_operator_reads_everywhere_and_manages_nodes_but_submits_nothing() {
    let c = Cluster::up(&[]);
    let (op, _) = make_token(&c, &["--name", "olga", "--role", "operator"]);
    let id = c.submit(&["-n", "team-a", "--", "true"]);
    c.wait_final(id, 30);
    let out = c.cli_as(&op, &["jobs", "-n", "team-a", "-o", "json"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"team-a\""));
    let out = c.cli_as(&op, &["submit", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("operator"), "{}", stderr(&out));
    assert!(c.cli_as(&op, &["audit"]).status.success());
    let out = c.cli_as(&op, &["token", "list"]);
    assert_eq!(out.status.code(), Some(2), "only admins manage tokens");
    let w: Value =
        serde_json::from_slice(&c.cli_as(&op, &["whoami", "-o", "json"]).stdout).unwrap();
    assert_eq!(
        (w["user"].as_str(), w["role"].as_str()),
        (Some("olga"), Some("operator"))
    );
}

#[test]
fn a_revoked_token_is_refused_within_a_second_on_every_server_of_an_ha_group() {
    let pg = zenith_testkit::pg::PgServer::start();
    let db = pg.create_db("zenith");
    let dir = tempfile::tempdir().unwrap();
    let ports = [free_port(), free_port()];
    let url = |p: u16| format!("http://127.0.0.1:{p}");
    let mut procs = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let mut cmd = zenith();
        cmd.arg("server")
            .args(["--store", &db, "--lease-ttl", "3s"])
            .arg("--data-dir")
            .arg(dir.path().join(format!("s{i}")))
            .args([
                "--listen",
                &format!("127.0.0.1:{p}"),
                "--advertise",
                &url(*p),
            ])
            .env("ZENITH_LOG", "info");
        procs.push(Proc::spawn(cmd, dir.path().join(format!("s{i}.log"))));
        if i == 0 {
            wait_for("admin.token", 30, || {
                read_token(&dir.path().join("s0/admin.token"))
            });
        }
    }
    for p in ports {
        wait_listening("server", p);
    }
    let admin = read_token(&dir.path().join("s0/admin.token")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let apis: Vec<Api> = ports
            .iter()
            .map(|p| Api::new(reqwest::Client::new(), url(*p), admin.clone()))
            .collect();
        // Made through one server, usable through both (the standby forwards to the leader).
        let body = serde_json::json!({"name": "sam", "role": "submitter", "namespaces": ["ml"]});
        let made = wait_for_async(|| apis[1].post_json("/api/v1/tokens", &body)).await;
        let token = made["token"].as_str().unwrap().to_string();
        let id = made["id"].as_str().unwrap().to_string();
        for a in &apis {
            let s = wait_for_status(&a.with_token(&token), 200).await;
            assert_eq!(s, 200);
        }
        let v = apis[0]
            .post_json(
                &format!("/api/v1/tokens/{id}/revoke"),
                &serde_json::json!({}),
            )
            .await;
        assert_eq!(v["state"], "revoked", "{v}");
        let revoked_at = Instant::now();
        for a in &apis {
            assert_eq!(status(a.with_token(&token).get("/api/v1/jobs")).await, 401);
        }
        let took = revoked_at.elapsed();
        println!("revoked token refused on both servers {took:?} after the revocation");
        assert!(took < Duration::from_secs(1));
        // The refusals are audited in the shared store, readable from either server.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = apis[1]
                .get_json("/api/v1/audit?user=sam&refused=true")
                .await;
            let records = log["records"].as_array().unwrap();
            if records.len() >= 2 {
                // The one that came through the standby names the client and the standby.
                assert!(
                    records
                        .iter()
                        .any(|r| r["peer"].as_str().unwrap().contains(" via ")),
                    "{log}"
                );
                break;
            }
            assert!(Instant::now() < deadline, "{log}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    drop(procs);
}

/// Retries a POST until a leader answers it (the group elects one at start).
async fn wait_for_async<F, Fut>(mut f: F) -> Value
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Value>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = f().await;
        if v.get("error").is_none() || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for_status(api: &Api, want: u16) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = status(api.get("/api/v1/jobs")).await;
        if s == want || Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Flows, their runs and their jobs live in namespaces: two teams apply a flow of the same
/// name without clashing, each sees only its own, and the other's run does not exist for it.
#[test]
fn flows_and_runs_live_in_their_namespace() {
    let c = Cluster::up(&[]);
    let (sam, _) = make_token(&c, &["--name", "sam", "--role", "submitter", "--ns", "ml"]);
    let (wes, _) = make_token(&c, &["--name", "wes", "--role", "submitter", "--ns", "web"]);
    let file = c.dir.path().join("etl.yaml");
    std::fs::write(
        &file,
        "name: etl\nsteps:\n  - name: a\n    run: [echo, hi]\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    for t in [&sam, &wes] {
        let out = c.cli_as(t, &["flow", "apply", file]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let out = c.cli_as(&sam, &["run", "etl", "--wait", "--timeout", "60s"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // The run's job is sam's, in ml.
    let out = c.cli_as(&sam, &["jobs", "-o", "json"]);
    let jobs: Value = serde_json::from_slice(&out.stdout).unwrap();
    let step = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "etl/a")
        .unwrap_or_else(|| panic!("{jobs}"))
        .clone();
    assert_eq!(
        (&step["namespace"], &step["submitter"]),
        (&serde_json::json!("ml"), &serde_json::json!("sam"))
    );

    // wes sees web's flow only, no ml run; sam's run does not exist for wes.
    let out = c.cli_as(&wes, &["flows", "-o", "json"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = list["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["web/etl"], "{list}");
    assert!(list["runs"].as_array().unwrap().is_empty(), "{list}");
    let out = c.cli_as(&wes, &["flow", "show", &run]);
    assert!(
        !out.status.success() && stderr(&out).contains("not found"),
        "{}",
        stderr(&out)
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let api = c.api().with_token(&wes);
    rt.block_on(async {
        for path in [
            format!("/api/v1/flows/runs/{run}"),
            format!("/api/v1/flows/runs/{run}/graph"),
        ] {
            assert_eq!(status(api.get(&path)).await, 404, "{path}");
        }
        assert_eq!(
            status(api.post(&format!("/api/v1/flows/runs/{run}/cancel"))).await,
            404
        );
        // Applying into a namespace it does not hold is refused by name.
        let body = serde_json::json!({"flow": "name: x\nsteps:\n  - name: a\n    run: [true]\n"});
        assert_eq!(
            status(
                api.request(reqwest::Method::PUT, "/api/v1/flows/x?namespace=ml")
                    .json(&body)
            )
            .await,
            403
        );
    });
    // The admin sees both teams' flows across namespaces.
    let all: Value = serde_json::from_str(&c.ok(&["flows", "-n", "*", "-o", "json"])).unwrap();
    let mut names: Vec<&str> = all["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec!["ml/etl", "web/etl"]);
    assert_eq!(all["runs"].as_array().unwrap().len(), 1);
}

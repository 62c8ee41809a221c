//! The HTTP API directly: authentication on every route, error bodies, batch submission.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn every_api_route_needs_the_admin_token() {
    let c = blocking(|| Cluster::up(&[])).await;
    let api = c.api();
    let routes: &[(&str, &str)] = &[
        ("POST", "/api/v1/jobs"),
        ("GET", "/api/v1/jobs"),
        ("GET", "/api/v1/jobs/1"),
        ("POST", "/api/v1/jobs/1/cancel"),
        ("GET", "/api/v1/jobs/1/logs"),
        ("GET", "/api/v1/jobs/1/explain"),
        ("GET", "/api/v1/nodes"),
        ("GET", "/api/v1/summary"),
        ("GET", "/api/v1/events"),
        ("GET", "/api/v1/flows"),
        ("POST", "/api/v1/flows/validate"),
        ("POST", "/api/v1/flows/runs"),
        ("GET", "/api/v1/flows/runs"),
        ("GET", "/api/v1/flows/runs/1"),
        ("POST", "/api/v1/flows/runs/1/cancel"),
        ("GET", "/api/v1/flows/runs/1/graph"),
        ("GET", "/api/v1/flows/runs/1/attempts"),
        ("POST", "/api/v1/flows/runs/1/steps/a/approve"),
        ("PUT", "/api/v1/flows/x"),
        ("DELETE", "/api/v1/flows/x"),
        ("GET", "/api/v1/whoami"),
        ("POST", "/api/v1/tokens"),
        ("GET", "/api/v1/tokens"),
        ("POST", "/api/v1/tokens/0123456789abcdef/revoke"),
        ("GET", "/api/v1/audit"),
        ("GET", "/api/v1/namespaces"),
        ("GET", "/api/v1/namespaces/ml"),
        ("PUT", "/api/v1/namespaces/ml"),
        ("DELETE", "/api/v1/namespaces/ml"),
        ("GET", "/api/v1/share"),
        ("POST", "/api/v1/nodes/a/cordon"),
        ("POST", "/api/v1/nodes/a/uncordon"),
        ("POST", "/api/v1/nodes/a/drain"),
        ("DELETE", "/api/v1/nodes/a"),
        ("GET", "/api/v1/no/such/route"),
        ("POST", "/agent/v1/enroll"),
        ("POST", "/agent/v1/register"),
        ("GET", "/agent/v1/stream"),
        ("POST", "/agent/v1/report"),
        ("POST", "/agent/v1/logs"),
        ("PUT", "/agent/v1/artifacts/1/0/0/a?attempt=1&node=n"),
        ("GET", "/agent/v1/artifacts/1/0/0/a"),
    ];
    for (method, path) in routes {
        for token in [None, Some("wrong"), Some("Bearer-less")] {
            let mut rb = api
                .unauthenticated(method.parse().unwrap(), path)
                .body(r#"{"command":["true"]}"#);
            if let Some(t) = token {
                rb = rb.bearer_auth(t);
            }
            let resp = rb.send().await.unwrap();
            assert_eq!(resp.status(), 401, "{method} {path} with {token:?}");
            let body: serde_json::Value = resp.json().await.unwrap();
            assert_eq!(body["error"]["code"], "unauthorized");
        }
        if path.starts_with("/api/") {
            let resp = api
                .with_token(&c.agent_token)
                .request(method.parse().unwrap(), path)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 403, "agent token on {path}");
        }
    }
    // Nothing was submitted by any of that.
    let list = api.get_json("/api/v1/jobs").await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 0);
    let flows = api.get_json("/api/v1/flows").await;
    assert!(flows["runs"].as_array().unwrap().is_empty());
    assert!(flows["flows"].as_array().unwrap().is_empty());
    let health = api.get_unauthenticated("/healthz").await;
    assert_eq!(health.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_name_the_field_and_batches_are_atomic() {
    let c = blocking(|| Cluster::up(&[])).await;
    let api = c.api();
    let post = |body: &'static str| {
        api.post("/api/v1/jobs")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let cases: &[(&str, &str)] = &[
        (
            r#"{"command":["x"],"resources":{"cpus":-1}}"#,
            "resources.cpus",
        ),
        (r#"{"command":["x"],"comand":1}"#, ""),
        (r#"{"command":[]}"#, "command"),
        (r#"{"command":["x"],"timeout":"soon"}"#, "timeout"),
        (r#"{"command":["x"],"array":"9-1"}"#, "array"),
        (
            r#"[{"command":["ok"]},{"command":["x"],"cwd":"rel"}]"#,
            "[1].cwd",
        ),
    ];
    for (body, field) in cases {
        let resp = post(body).await.unwrap();
        assert_eq!(resp.status(), 400, "{body}");
        let e: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(e["error"]["code"], "invalid_argument");
        if !field.is_empty() {
            assert_eq!(e["error"]["field"], *field, "{body}: {e}");
        }
    }
    let resp = post("{not json").await.unwrap();
    assert_eq!(resp.status(), 400);
    // The rejected batch left nothing behind.
    let list = api.get_json("/api/v1/jobs").await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 0);
    // A good batch returns IDs in order.
    let ok: serde_json::Value =
        post(r#"[{"command":["true"]},{"command":["true"],"name":"second"}]"#)
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let ids = ok["ids"].as_array().unwrap();
    assert_eq!(ids.len(), 2);
    assert!(ids[0].as_u64().unwrap() < ids[1].as_u64().unwrap());
    // Oversized bodies are refused before parsing.
    let huge = "x".repeat(17 << 20);
    let resp = api.post("/api/v1/jobs").body(huge).send().await.unwrap();
    assert_eq!(resp.status(), 413);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_report_totals_levels_and_latencies() {
    let c = blocking(|| {
        let c = Cluster::up(&[]);
        let ok = c.submit(&["--", "true"]);
        let bad = c.submit(&["--retries", "1", "--retry-delay", "10ms", "--", "false"]);
        c.wait_final(ok, 30);
        c.wait_final(bad, 30);
        c.submit(&[
            "--constraint",
            "never=true",
            "--queue",
            "batch",
            "--",
            "true",
        ]);
        let f = c.dir.path().join("m.yaml");
        std::fs::write(&f, "name: m\nsteps:\n  - {name: a, run: [true]}\n").unwrap();
        let out = c.cli(&["run", f.to_str().unwrap(), "--wait"]);
        assert!(out.status.success());
        c
    })
    .await;
    let resp = c.api().get_unauthenticated("/metrics").await;
    assert_eq!(resp.status(), 200, "scrapes need no token");
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = resp.text().await.unwrap();
    common::promtool_lint(&text);
    let types: std::collections::HashMap<&str, &str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .collect();
    for (name, kind) in [
        ("zenith_jobs_submitted", "counter"),
        ("zenith_jobs_finished", "counter"),
        ("zenith_attempts_started", "counter"),
        ("zenith_attempts_ended", "counter"),
        ("zenith_retries", "counter"),
        ("zenith_node_loss_requeues", "counter"),
        ("zenith_stale_reports", "counter"),
        ("zenith_jobs", "gauge"),
        ("zenith_nodes", "gauge"),
        ("zenith_running_attempts", "gauge"),
        ("zenith_backlogged_attempts", "gauge"),
        ("zenith_backlog_started", "counter"),
        ("zenith_cpus_capacity", "gauge"),
        ("zenith_cpus_free", "gauge"),
        ("zenith_memory_capacity_bytes", "gauge"),
        ("zenith_memory_free_bytes", "gauge"),
        ("zenith_submit_to_dispatch_seconds", "histogram"),
        ("zenith_attempt_run_seconds", "histogram"),
        ("zenith_control_pass_seconds", "histogram"),
        ("zenith_store_commit_seconds", "histogram"),
        ("zenith_store_batch_records", "histogram"),
        ("zenith_api_requests", "counter"),
        ("zenith_api_request_seconds", "histogram"),
        ("zenith_flow_runs_started", "counter"),
        ("zenith_flow_runs_finished", "counter"),
        ("zenith_flow_runs_live", "gauge"),
        ("zenith_flows_applied", "gauge"),
        ("zenith_flow_deadlines_exceeded", "counter"),
        ("zenith_flow_retry_budget_exhausted", "counter"),
        ("zenith_artifact_bytes_stored", "counter"),
        ("zenith_control_batches_unwritten", "counter"),
        ("zenith_leader", "gauge"),
        ("zenith_lease_epoch", "gauge"),
        ("zenith_leader_terms", "counter"),
        ("zenith_leader_losses", "counter"),
        ("zenith_forwarded_requests", "counter"),
    ] {
        assert_eq!(types.get(name), Some(&kind), "{name} in\n{text}");
    }
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .parse()
            .unwrap()
    };
    assert_eq!(
        value("zenith_jobs_submitted_total"),
        4.0,
        "3 jobs and 1 flow step"
    );
    assert_eq!(value("zenith_flow_runs_started_total"), 1.0);
    assert_eq!(
        value("zenith_flow_runs_finished_total{state=\"succeeded\"}"),
        1.0
    );
    assert_eq!(value("zenith_flow_runs_live"), 0.0);
    assert_eq!(
        value(
            "zenith_api_requests_total{route=\"/api/v1/flows/runs\",method=\"POST\",code=\"201\"}"
        ),
        1.0
    );
    assert_eq!(value("zenith_jobs_finished_total{state=\"failed\"}"), 1.0);
    assert_eq!(
        value("zenith_jobs_finished_total{state=\"succeeded\"}"),
        2.0
    );
    assert_eq!(value("zenith_retries_total"), 1.0);
    assert_eq!(
        value("zenith_attempts_ended_total{outcome=\"exited_error\"}"),
        2.0
    );
    assert_eq!(value("zenith_jobs{queue=\"batch\",state=\"queued\"}"), 1.0);
    assert_eq!(value("zenith_nodes{state=\"ready\"}"), 1.0);
    assert_eq!(value("zenith_cpus_capacity"), 2.0);
    assert_eq!(
        value("zenith_leader"),
        1.0,
        "an embedded server always leads"
    );
    assert!(value("zenith_store_commit_seconds_count") >= 3.0);
    assert!(value("zenith_submit_to_dispatch_seconds_count") >= 2.0);
    assert_eq!(
        value("zenith_api_requests_total{route=\"/api/v1/jobs\",method=\"POST\",code=\"201\"}"),
        3.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn idempotency_keys_survive_restarts_and_refuse_other_requests() {
    let mut c = blocking(|| Cluster::up(&[])).await;
    let api = c.api();
    let submit = |body: &'static str, key: &'static str| {
        api.post("/api/v1/jobs")
            .header("Idempotency-Key", key)
            .body(body)
            .send()
    };
    let body = r#"{"command":["echo","once"]}"#;
    let first = submit(body, "abc-123").await.unwrap();
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let id = first.json::<serde_json::Value>().await.unwrap()["id"].clone();
    let again = submit(body, "abc-123").await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<serde_json::Value>().await.unwrap()["id"], id);
    let other = submit(r#"{"command":["echo","twice"]}"#, "abc-123")
        .await
        .unwrap();
    assert_eq!(other.status(), 409);
    let bad = submit(body, "has space").await.unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(
        bad.json::<serde_json::Value>().await.unwrap()["error"]["field"],
        "Idempotency-Key"
    );
    // The key outlives a crash of the server.
    let c2 = blocking(move || {
        c.kill_server();
        c.start_server();
        c
    })
    .await;
    let after = api
        .with_token(&c2.admin_token)
        .post("/api/v1/jobs")
        .header("Idempotency-Key", "abc-123")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(after.json::<serde_json::Value>().await.unwrap()["id"], id);
    // The CLI takes a key too; the same key twice is one job.
    let (a, b) = blocking(move || {
        let a = c2.submit(&["--idempotency-key", "cli-key-1", "--", "true"]);
        let b = c2.submit(&["--idempotency-key", "cli-key-1", "--", "true"]);
        (a, b)
    })
    .await;
    assert_eq!(a, b);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_over_its_rate_gets_429_with_retry_after() {
    let c = blocking(|| Cluster::up(&["--rate-limit", "5"])).await;
    let api = c.api();
    let mut limited = None;
    for _ in 0..50 {
        let resp = api.get("/api/v1/nodes").send().await.unwrap();
        if resp.status() == 429 {
            limited = Some(resp);
            break;
        }
    }
    let resp = limited.expect("a burst of 50 requests at 5/s is limited");
    assert!(resp.headers().contains_key("retry-after"));
    let e: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["code"], "resource_exhausted");
    // Health and metrics have a bucket of their own: the API's limit does not starve them...
    assert_eq!(api.get_unauthenticated("/healthz").await.status(), 200);
    let metrics = api.metrics().await;
    assert!(
        metrics.contains("zenith_api_clients_tracked 1"),
        "{metrics}"
    );
    // ...and a flood of them is limited in turn.
    let mut probes_limited = false;
    for _ in 0..50 {
        if api.get_unauthenticated("/healthz").await.status() == 429 {
            probes_limited = true;
            break;
        }
    }
    assert!(probes_limited, "50 probes at 5/s are limited");
}

#[tokio::test(flavor = "multi_thread")]
async fn idempotency_keys_expire_after_the_configured_ttl() {
    let c = blocking(|| Cluster::up(&["--idempotency-ttl", "1s"])).await;
    let api = c.api();
    let submit = || async {
        api.post("/api/v1/jobs")
            .header("Idempotency-Key", "short-lived")
            .body(r#"{"command":["true"]}"#)
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()["id"]
            .as_u64()
            .unwrap()
    };
    let first = submit().await;
    assert_eq!(submit().await, first, "within the ttl: the same job");
    let started = tokio::time::Instant::now();
    loop {
        let id = submit().await;
        if id != first {
            // Past the ttl the key is forgotten: a new job (and the key is bound to it now).
            assert!(started.elapsed() >= std::time::Duration::from_millis(500));
            assert_eq!(submit().await, id);
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "key never expired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn run_graph_and_attempt_pages_for_the_ui() {
    let c = blocking(|| Cluster::up(&[])).await;
    let api = c.api();
    let mark = c.dir.path().join("mark");
    let flow = format!(
        r#"
name: g
steps:
  - name: a
    script: n=$(cat "$MARK" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$MARK"; [ "$n" -ge 2 ]
    env: {{MARK: "{}"}}
    retry: {{limit: 2, delay: 10ms}}
  - name: fan
    depends: [a]
    forEach: [x, y, z]
    run: [echo, "{{{{ item }}}}"]
  - name: gate
    type: approval
    depends: [fan]
"#,
        mark.display()
    );
    let get = |path: String| {
        let rb = api.get(&format!("/api/v1{path}"));
        async move {
            let r = rb.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let submitted = api
        .post_json("/api/v1/flows/runs", &serde_json::json!({ "flow": flow }))
        .await;
    let id = submitted["id"].as_u64().unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let graph = loop {
        let (_, g) = get(format!("/flows/runs/{id}/graph")).await;
        if g["steps"][2]["state"] == "waiting_approval" {
            break g;
        }
        assert!(tokio::time::Instant::now() < deadline, "{g}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let s = &graph["steps"];
    assert_eq!(graph["run"]["name"], "g");
    assert_eq!(s[0]["name"], "a");
    assert_eq!(s[0]["depends"], serde_json::json!([]));
    assert_eq!(s[0]["attempts"], 2, "{graph}");
    assert_eq!(s[0]["state"], "succeeded");
    assert_eq!(s[1]["depends"], serde_json::json!([0]));
    assert_eq!(s[1]["fan_out"], true);
    assert_eq!(s[1]["instances"], serde_json::json!({"succeeded": 3}));
    assert_eq!(s[2]["approval"], true);
    assert_eq!(s[2]["depends"], serde_json::json!([1]));

    // Five attempts (a twice, three instances), two to a page.
    let mut seen = Vec::new();
    let mut after = String::new();
    for expect_more in [true, true, false] {
        let (status, page) = get(format!("/flows/runs/{id}/attempts?limit=2{after}")).await;
        assert_eq!(status, 200, "{page}");
        for a in page["attempts"].as_array().unwrap() {
            seen.push((a["step"].as_u64().unwrap(), a["instance"].as_u64().unwrap()));
            assert!(a["job"].as_u64().unwrap() > 0);
            assert!(a["started_at"].as_u64().unwrap() > 0);
        }
        assert_eq!(page["next_after"].is_u64(), expect_more, "{page}");
        after = format!("&after={}", page["next_after"]);
    }
    seen.sort();
    assert_eq!(seen, vec![(0, 0), (0, 0), (1, 0), (1, 1), (1, 2)]);

    let (status, e) = get(format!("/flows/runs/{id}/attempts?limit=0")).await;
    assert_eq!((status, e["error"]["field"].as_str()), (400, Some("limit")));
    let (status, _) = get("/flows/runs/999/graph".into()).await;
    assert_eq!(status, 404);
    let (status, _) = get("/flows/runs/999/attempts".into()).await;
    assert_eq!(status, 404);
    let (status, e) = get("/flows/runs/x/graph".into()).await;
    assert_eq!((status, e["error"]["field"].as_str()), (400, Some("id")));
}

//! The HTTP API directly: authentication on every route, error bodies, batch submission.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn every_api_route_needs_the_admin_token() {
    let c = tokio::task::spawn_blocking(|| Cluster::up(&[]))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let routes: &[(&str, &str)] = &[
        ("POST", "/api/v1/jobs"),
        ("GET", "/api/v1/jobs"),
        ("GET", "/api/v1/jobs/1"),
        ("POST", "/api/v1/jobs/1/cancel"),
        ("GET", "/api/v1/jobs/1/logs"),
        ("GET", "/api/v1/jobs/1/explain"),
        ("GET", "/api/v1/nodes"),
        ("GET", "/api/v1/no/such/route"),
        ("POST", "/agent/v1/register"),
        ("GET", "/agent/v1/stream"),
        ("POST", "/agent/v1/report"),
        ("POST", "/agent/v1/logs"),
    ];
    for (method, path) in routes {
        for token in [None, Some("wrong"), Some("Bearer-less")] {
            let mut rb = http
                .request(method.parse().unwrap(), format!("{}{path}", c.url()))
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
            let resp = http
                .request(method.parse().unwrap(), format!("{}{path}", c.url()))
                .bearer_auth(&c.agent_token)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 403, "agent token on {path}");
        }
    }
    // Nothing was submitted by any of that.
    let list: serde_json::Value = http
        .get(format!("{}/api/v1/jobs", c.url()))
        .bearer_auth(&c.admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["jobs"].as_array().unwrap().len(), 0);
    let health = http
        .get(format!("{}/healthz", c.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_name_the_field_and_batches_are_atomic() {
    let c = tokio::task::spawn_blocking(|| Cluster::up(&[]))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let post = |body: &'static str| {
        http.post(format!("{}/api/v1/jobs", c.url()))
            .bearer_auth(&c.admin_token)
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
    let list: serde_json::Value = http
        .get(format!("{}/api/v1/jobs", c.url()))
        .bearer_auth(&c.admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
    let resp = http
        .post(format!("{}/api/v1/jobs", c.url()))
        .bearer_auth(&c.admin_token)
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
}

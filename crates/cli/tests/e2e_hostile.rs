//! Hostile and malformed input: every case gets a clear 4xx naming the problem, quickly, with
//! no state change, and the server stays up.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;
use common::*;
use std::time::{Duration, Instant};

fn deep(n: usize) -> String {
    format!("{}{}", "[".repeat(n), "]".repeat(n))
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_hostile_inputs_are_refused_cleanly() {
    let c = tokio::task::spawn_blocking(|| Cluster::up(&[]))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let big_arg = "a".repeat(1_100_000);
    let many_env: serde_json::Map<String, serde_json::Value> = (0..1100)
        .map(|i| (format!("K{i}"), serde_json::Value::String("v".into())))
        .collect();
    let cases: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        ("truncated json", br#"{"command":["tr"#.to_vec(), None),
        ("not json", b"\x00\x01\x02".to_vec(), None),
        (
            "invalid utf-8",
            b"{\"command\":[\"\xff\xfe\"]}".to_vec(),
            None,
        ),
        ("100k-deep nesting", deep(100_000).into_bytes(), None),
        (
            "deep nesting in a field",
            format!(r#"{{"command":["x"],"labels":{}}}"#, deep(5000)).into_bytes(),
            None,
        ),
        ("empty body", Vec::new(), None),
        (
            "wrong type",
            br#"{"command":"echo hi"}"#.to_vec(),
            Some("command"),
        ),
        (
            "unknown field",
            br#"{"command":["x"],"shell":true}"#.to_vec(),
            None,
        ),
        (
            "negative priority overflow",
            br#"{"command":["x"],"priority":-99999999999}"#.to_vec(),
            Some("priority"),
        ),
        (
            "huge memory",
            br#"{"command":["x"],"resources":{"memory":"9999P"}}"#.to_vec(),
            Some("resources.memory"),
        ),
        (
            "nan cpus",
            br#"{"command":["x"],"resources":{"cpus":"NaN"}}"#.to_vec(),
            Some("resources.cpus"),
        ),
        (
            "negative retries",
            br#"{"command":["x"],"retry":{"limit":-1}}"#.to_vec(),
            Some("retry.limit"),
        ),
        (
            "overflowing array",
            br#"{"command":["x"],"array":"0-99999999999"}"#.to_vec(),
            Some("array"),
        ),
        (
            "huge argv",
            serde_json::json!({"command": ["x", big_arg]})
                .to_string()
                .into_bytes(),
            Some("command"),
        ),
        (
            "too many env vars",
            serde_json::json!({"command": ["x"], "env": many_env})
                .to_string()
                .into_bytes(),
            Some("env"),
        ),
        (
            "NUL in argv",
            br#"{"command":["x","a\u0000b"]}"#.to_vec(),
            Some("command[1]"),
        ),
        (
            "relative cwd",
            br#"{"command":["x"],"cwd":"../../etc"}"#.to_vec(),
            Some("cwd"),
        ),
        (
            "control chars in name",
            br#"{"command":["x"],"name":"a\nb"}"#.to_vec(),
            Some("name"),
        ),
        (
            "bad constraint",
            br#"{"command":["x"],"constraints":["novalue"]}"#.to_vec(),
            Some("constraints[0]"),
        ),
        ("empty batch", b"[]".to_vec(), None),
        ("scalar body", b"42".to_vec(), None),
    ];
    for (what, body, field) in &cases {
        let t = Instant::now();
        let resp = http
            .post(format!("{}/api/v1/jobs", c.url()))
            .bearer_auth(&c.admin_token)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let took = t.elapsed();
        let status = resp.status().as_u16();
        let e: serde_json::Value = resp
            .json()
            .await
            .unwrap_or_else(|_| panic!("{what}: error body is JSON"));
        assert!((400..500).contains(&status), "{what}: status {status}");
        assert!(
            !e["error"]["message"].as_str().unwrap_or("").is_empty(),
            "{what}: {e}"
        );
        if let Some(f) = field {
            assert_eq!(e["error"]["field"], *f, "{what}: {e}");
        }
        assert!(took < Duration::from_millis(500), "{what} took {took:?}");
    }
    // Hostile agent messages.
    let agent_cases: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "/agent/v1/register",
            "bad protocol",
            br#"{"protocol_version":99,"node_id":"n","name":"n","resources":{}}"#.to_vec(),
        ),
        (
            "/agent/v1/register",
            "bad node id",
            br#"{"protocol_version":1,"node_id":"../x","name":"n","resources":{}}"#.to_vec(),
        ),
        (
            "/agent/v1/report",
            "unknown field",
            br#"{"node_id":"n","session":1,"known":[],"evil":1}"#.to_vec(),
        ),
        (
            "/agent/v1/logs",
            "frame without header end",
            b"{\"attempt\":1".to_vec(),
        ),
        (
            "/agent/v1/logs",
            "frame longer than body",
            b"{\"attempt\":1,\"stream\":\"stdout\",\"offset\":0,\"len\":999}\nabc".to_vec(),
        ),
    ];
    for (path, what, body) in agent_cases {
        let resp = http
            .post(format!("{}{path}", c.url()))
            .bearer_auth(&c.agent_token)
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(
            (400..500).contains(&resp.status().as_u16()),
            "{path} {what}: {}",
            resp.status()
        );
    }
    // Shell metacharacters reach the process as one argv element, untouched.
    let tricky = "$(touch /tmp/zenith-pwned); `id` | rm -rf / ; 'quote\" && echo";
    let job: serde_json::Value = http
        .post(format!("{}/api/v1/jobs", c.url()))
        .bearer_auth(&c.admin_token)
        .json(&serde_json::json!({"command": ["printf", "%s", tricky]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = job["id"].as_u64().unwrap();
    let out = tokio::task::spawn_blocking(move || {
        c.wait_final(id, 30);
        let logs = c.ok(&["job", "logs", &id.to_string()]);
        let jobs: serde_json::Value = serde_json::from_str(&c.ok(&["jobs", "-o", "json"])).unwrap();
        (logs, jobs["jobs"].as_array().unwrap().len(), c)
    })
    .await
    .unwrap();
    assert_eq!(out.0, tricky);
    assert_eq!(out.1, 1, "none of the refused requests created a job");
    assert!(!std::path::Path::new("/tmp/zenith-pwned").exists());
}

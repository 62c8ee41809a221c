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
    let c = blocking(|| Cluster::up(&[])).await;
    let api = c.api();
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
    let mut slowest = (Duration::ZERO, "");
    for (what, body, field) in &cases {
        let t = Instant::now();
        let resp = api
            .post("/api/v1/jobs")
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
        slowest = slowest.max((took, what));
    }
    eprintln!(
        "hostile job inputs: {} cases refused, slowest {:?} ({})",
        cases.len(),
        slowest.0,
        slowest.1
    );
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
            br#"{"protocol_version":2,"node_id":"../x","name":"n","resources":{}}"#.to_vec(),
        ),
        (
            "/agent/v1/register",
            "backlog beyond the limit",
            br#"{"protocol_version":2,"node_id":"n","name":"n","resources":{},"prefetch":10001}"#
                .to_vec(),
        ),
        (
            "/agent/v1/report",
            "waiting list of the wrong type",
            br#"{"node_id":"n","session":"1","known":[],"waiting":"all"}"#.to_vec(),
        ),
        (
            "/agent/v1/report",
            "unknown field",
            br#"{"node_id":"n","session":"1","known":[],"evil":1}"#.to_vec(),
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
    // With a real node credential, so that each is refused for its content (400), not for
    // the token.
    let agent = api.with_token(&c.agent_token).enroll("n").await;
    for (path, what, body) in agent_cases {
        let resp = agent.post(path).body(body).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{path} {what}");
    }
    // What axum's extractors refuse (a bad query string, a body over the limit, a wrong
    // method) is answered in the API's JSON error shape too, with its status.
    let bad_query = api.get("/api/v1/jobs?foo=1").send().await.unwrap();
    assert_eq!(bad_query.status().as_u16(), 400);
    let body: serde_json::Value = bad_query.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_argument", "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("foo"),
        "{body}"
    );
    let too_big = api
        .post("/api/v1/tokens")
        .body(vec![b' '; 20 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(too_big.status().as_u16(), 413);
    let body: serde_json::Value = too_big.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    let wrong_method = api
        .request(reqwest::Method::PUT, "/api/v1/summary")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status().as_u16(), 405);
    let body: serde_json::Value = wrong_method.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
    // An admin token limited to some namespaces would promise what it does not hold.
    let resp = api
        .post("/api/v1/tokens")
        .json(&serde_json::json!({"name": "a", "role": "admin", "namespaces": ["ml"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    // An optional body may be JSON null.
    let resp = api
        .post("/api/v1/nodes/none/drain")
        .body("null")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        404,
        "null is no body: the node is what is missing"
    );

    // Shell metacharacters reach the process as one argv element, untouched.
    let tricky = "$(touch /tmp/zenith-pwned); `id` | rm -rf / ; 'quote\" && echo";
    let job = api
        .post_json(
            "/api/v1/jobs",
            &serde_json::json!({"command": ["printf", "%s", tricky]}),
        )
        .await;
    let id = job["id"].as_u64().unwrap();
    let out = blocking(move || {
        c.wait_final(id, 30);
        let logs = c.ok(&["job", "logs", &id.to_string()]);
        let jobs: serde_json::Value = serde_json::from_str(&c.ok(&["jobs", "-o", "json"])).unwrap();
        (logs, jobs["jobs"].as_array().unwrap().len(), c)
    })
    .await;
    assert_eq!(out.0, tricky);
    assert_eq!(out.1, 1, "none of the refused requests created a job");
    assert!(!std::path::Path::new("/tmp/zenith-pwned").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_flow_requests_are_refused_cleanly() {
    let c = blocking(|| Cluster::up(&[])).await;
    let api = c.api();
    let ok = "name: x\nsteps:\n  - {name: a, run: [true]}\n";
    let big = format!(
        "name: x\nsteps:\n  - {{name: a, run: [true]}}\n#{}\n",
        "x".repeat(5 << 20)
    );
    let bomb = "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n";
    // (method, path, what, body, field the error must name)
    type Case<'a> = (&'a str, &'a str, &'a str, Vec<u8>, Option<&'a str>);
    let cases: Vec<Case> = vec![
        ("POST", "/api/v1/flows/runs", "truncated", br#"{"flow":"na"#.to_vec(), None),
        ("POST", "/api/v1/flows/runs", "invalid utf-8", b"{\"flow\":\"\xff\"}".to_vec(), None),
        ("POST", "/api/v1/flows/runs", "wrong type", br#"{"flow":5}"#.to_vec(), Some("flow")),
        ("POST", "/api/v1/flows/runs", "flow and name", serde_json::json!({"flow": ok, "name": "x"}).to_string().into_bytes(), Some("flow")),
        ("POST", "/api/v1/flows/runs", "numeric param", serde_json::json!({"flow": ok, "params": {"p": 1}}).to_string().into_bytes(), Some("params.p")),
        ("POST", "/api/v1/flows/runs", "undeclared param", serde_json::json!({"flow": ok, "params": {"p": "1"}}).to_string().into_bytes(), Some("params.p")),
        ("POST", "/api/v1/flows/runs", "unknown field", serde_json::json!({"flow": ok, "evil": 1}).to_string().into_bytes(), None),
        ("POST", "/api/v1/flows/runs", "5 MB spec", serde_json::json!({"flow": big}).to_string().into_bytes(), Some("flow")),
        ("POST", "/api/v1/flows/runs", "alias bomb", serde_json::json!({"flow": bomb}).to_string().into_bytes(), None),
        ("POST", "/api/v1/flows/runs", "deep yaml", serde_json::json!({"flow": "[".repeat(100_000)}).to_string().into_bytes(), None),
        ("POST", "/api/v1/flows/runs", "traversal", serde_json::json!({"flow": "name: x\nsteps:\n  - {name: a, run: [x], outputs: {artifacts: [{name: o, path: ../../etc/passwd}]}}\n"}).to_string().into_bytes(), Some("flow.steps[0].outputs.artifacts[0].path")),
        ("POST", "/api/v1/flows/runs", "unknown applied flow", serde_json::json!({"name": "nope"}).to_string().into_bytes(), None),
        ("PUT", "/api/v1/flows/other", "name mismatch", serde_json::json!({"flow": ok}).to_string().into_bytes(), Some("flow.name")),
        ("POST", "/api/v1/flows/runs/99/cancel", "unknown run", Vec::new(), None),
        ("POST", "/api/v1/flows/runs/99/steps/a/approve", "unknown run", Vec::new(), None),
        ("GET", "/api/v1/flows/runs/-1", "bad id", Vec::new(), Some("id")),
        ("GET", "/api/v1/flows/runs?limit=x", "bad query", Vec::new(), None),
    ];
    let mut slowest = (Duration::ZERO, "");
    for (method, path, what, body, field) in &cases {
        let t = Instant::now();
        let resp = api
            .request(method.parse().unwrap(), path)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let took = t.elapsed();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert!(
            (400..500).contains(&status),
            "{what}: status {status}: {text}"
        );
        if let Some(f) = field {
            let e: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(e["error"]["field"], *f, "{what}: {e}");
        }
        assert!(took < Duration::from_millis(500), "{what} took {took:?}");
        slowest = slowest.max((took, what));
    }
    eprintln!(
        "hostile flow inputs: {} cases refused, slowest {:?} ({})",
        cases.len(),
        slowest.0,
        slowest.1
    );
    let flows = api.get_json("/api/v1/flows").await;
    assert!(flows["runs"].as_array().unwrap().is_empty(), "{flows}");
    assert!(flows["flows"].as_array().unwrap().is_empty(), "{flows}");
    drop(c);
}

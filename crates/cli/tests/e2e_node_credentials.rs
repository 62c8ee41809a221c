//! A stolen join token, or one compromised node, against real agents: every agent request is
//! held to the node whose credential it carries (docs/security.md, "a stolen agent token").
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;

use common::*;

/// A job that runs until `stop` exists (so it is running while the attack goes on).
fn until_file(c: &Cluster, stop: &std::path::Path) -> u64 {
    let script = format!("while [ ! -f {} ]; do sleep 0.05; done", stop.display());
    c.submit(&["--", "sh", "-c", &script])
}

fn running_attempt(c: &Cluster, id: u64) -> (u64, String) {
    wait_for("the job to run", 30, || {
        let j = c.job(id);
        let a = j["attempts"].as_array()?.last()?.clone();
        (a["state"] == "running").then(|| {
            (
                a["id"].as_u64().unwrap(),
                a["node"].as_str().unwrap().to_string(),
            )
        })
    })
}

async fn status_and_body(rb: reqwest::RequestBuilder) -> (u16, String) {
    let r = rb.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[test]
fn a_stolen_join_token_cannot_act_for_another_node() {
    let mut c = Cluster::server(&[]);
    c.add_agent("real", &[]);
    c.wait_nodes(1);
    let stop = c.dir.path().join("stop");
    let id = until_file(&c, &stop);
    let (attempt, real) = running_attempt(&c, id);
    let credential = std::fs::read_to_string(c.dir.path().join("agent-real/node.credential"))
        .expect("the agent keeps its credential");
    assert!(
        credential.starts_with(&format!("zn1:{real}:")),
        "{credential}"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let join = c.api().with_token(&c.agent_token);
    let logs_dir = c.data().join("logs");
    let stored = move |a: u64| {
        logs_dir
            .join((a / 10_000).to_string())
            .join(format!("{a}.stdout"))
    };
    let (evil_session, refusals) = rt.block_on(async {
        let mut refused = Vec::new();
        // Take over the real node's ID: enrolling it again is refused, and the join token is
        // no node credential.
        let enroll = serde_json::json!({"protocol_version": 2, "node_id": real, "name": "x"});
        refused.push(status_and_body(join.post("/agent/v1/enroll").json(&enroll)).await);
        let reg = |node: &str| {
            serde_json::json!({"protocol_version": 2, "node_id": node, "name": "x",
                "resources": {"cpus": 64, "memory": 1u64 << 40}})
        };
        refused.push(status_and_body(join.post("/agent/v1/register").json(&reg(&real))).await);
        // A node of the attacker's own, enrolled with the join token.
        let evil = join.enroll("evil").await;
        refused.push(status_and_body(evil.post("/agent/v1/register").json(&reg(&real))).await);
        let r: serde_json::Value = evil
            .post("/agent/v1/register")
            .json(&reg("evil"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = r["session"].as_str().unwrap().to_string();
        // A forged exit 0 for the real node's attempt: in the real node's name (refused) and
        // in its own (acknowledged as stale: the attempt is not its own).
        let result = serde_json::json!([{"attempt": attempt, "outcome": {"kind": "exited", "code": 0}}]);
        let report = |node: &str| {
            serde_json::json!({"node_id": node, "session": session, "known": [], "results": result})
        };
        refused.push(status_and_body(evil.post("/agent/v1/report").json(&report(&real))).await);
        let (s, _) = status_and_body(evil.post("/agent/v1/report").json(&report("evil"))).await;
        assert_eq!(s, 200);
        // Writing the real attempt's log.
        let frame = |a: u64, text: &str| {
            let mut b = serde_json::to_vec(
                &serde_json::json!({"attempt": a, "stream": "stdout", "offset": 0, "len": text.len()}),
            )
            .unwrap();
            b.push(b'\n');
            b.extend_from_slice(text.as_bytes());
            b
        };
        refused.push(status_and_body(evil.post("/agent/v1/logs").body(frame(attempt, "forged\n"))).await);
        // Pre-seeding a future attempt's log, or one that never exists: acknowledged, never
        // stored.
        for a in [attempt + 1, 987_654_321] {
            let (s, _) = status_and_body(evil.post("/agent/v1/logs").body(frame(a, "seed\n"))).await;
            assert_eq!(s, 200);
        }
        // Reading an artifact of the real node's attempt.
        let path = format!("/agent/v1/artifacts/1/0/0/x?attempt={attempt}");
        refused.push(status_and_body(evil.get(&path)).await);
        (session, refused)
    });
    let codes: Vec<u16> = refusals.iter().map(|(s, _)| *s).collect();
    assert_eq!(codes, vec![409, 401, 403, 403, 403, 403], "{refusals:#?}");
    assert!(
        refusals[0].1.contains("already enrolled"),
        "{}",
        refusals[0].1
    );
    assert!(
        refusals[2].1.contains("not_your_attempt"),
        "{}",
        refusals[2].1
    );
    // Sessions are 128 random bits.
    assert_eq!(evil_session.len(), 32);
    assert!(evil_session.bytes().all(|b| b.is_ascii_hexdigit()));
    // Nothing changed: the job still runs on the real node, its log holds no forgery, and no
    // log of the seeded attempts was stored.
    let j = c.job(id);
    assert_eq!(j["state"], "running", "{j}");
    assert_eq!(j["attempts"].as_array().unwrap().len(), 1, "{j}");
    assert!(!c.ok(&["job", "logs", &id.to_string()]).contains("forged"));
    assert!(!stored(attempt + 1).exists());
    assert!(!stored(987_654_321).exists());
    let metrics = rt.block_on(c.api().metrics());
    assert!(metrics.contains("zenith_agent_requests_refused_total{reason=\"not_own_attempt\"}"));

    // The operator revokes the intruder (it ran nothing), then the real node: its job is
    // requeued at once, its agent stops, and it cannot come back under its ID.
    let out = c.ok(&["node", "revoke", "evil"]);
    assert!(
        out.contains("node evil (x) revoked: 0 running attempts requeued"),
        "{out}"
    );
    let out = c.ok(&["node", "revoke", "real", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["node"], real.as_str());
    assert_eq!(v["requeued"], 1);
    let j = c.job(id);
    assert_eq!(j["state"], "queued", "requeued at once: {j}");
    let status = wait_for("the revoked agent to stop", 30, || {
        c.agents[0].child.try_wait().unwrap()
    });
    assert!(!status.success());
    let node = c
        .nodes()
        .into_iter()
        .find(|n| n["id"] == real.as_str())
        .unwrap();
    assert_eq!(node["revoked"], true);
    assert!(c.ok(&["nodes"]).contains("revoked"));
    let again = rt.block_on(status_and_body(
        c.api()
            .with_token(credential.trim())
            .post("/agent/v1/register")
            .json(&serde_json::json!({"protocol_version": 2, "node_id": real, "name": "x", "resources": {}})),
    ));
    assert_eq!(again.0, 403, "{again:?}");
    assert!(again.1.contains("node_revoked"));
    // The job runs to the end on a node that joins now.
    c.add_agent("spare", &[]);
    let (_, node) = running_attempt(&c, id);
    assert_ne!(node, real);
    std::fs::write(&stop, "").unwrap();
    assert_eq!(c.wait_final(id, 30)["state"], "succeeded");
}

#[test]
fn zenith_up_does_not_restart_its_revoked_local_agent() {
    let c = Cluster::up(&[]);
    c.wait_nodes(1);
    let name = c.nodes()[0]["name"].as_str().unwrap().to_string();
    c.ok(&["node", "revoke", &name]);
    let log = c.server.as_ref().unwrap().log.clone();
    wait_for("the supervisor to give up on the revoked agent", 30, || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("the local node was revoked").then_some(())
    });
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("restarting it"), "{text}");
    // The server goes on answering.
    c.ok(&["jobs"]);
}

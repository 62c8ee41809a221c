//! A store that cannot write (here: its size cap, as a full disk would): new work is refused
//! with 503, reads keep working, and the server recovers once space returns.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_full_store_refuses_new_work_keeps_reads_and_recovers() {
    let c = tokio::task::spawn_blocking(|| {
        Cluster::up(&["--store-max-size", "1M", "--retention", "1s"])
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let pad = "x".repeat(60_000);
    let body = serde_json::json!({"command": ["true"], "env": {"PAD": pad}}).to_string();
    let mut accepted = 0;
    let mut refusal = None;
    for _ in 0..400 {
        let resp = http
            .post(format!("{}/api/v1/jobs", c.url()))
            .bearer_auth(&c.admin_token)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        match resp.status().as_u16() {
            201 => accepted += 1,
            503 => {
                assert!(resp.headers().contains_key("retry-after"));
                refusal = Some(resp.json::<serde_json::Value>().await.unwrap());
                break;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    let refusal = refusal.expect("the capped store fills up");
    assert!(accepted > 3, "accepted {accepted} before the store filled");
    assert_eq!(refusal["error"]["code"], "unavailable");
    assert!(
        refusal["error"]["message"]
            .as_str()
            .unwrap()
            .contains("store"),
        "{refusal}"
    );
    // Reads keep working; readiness and the metric say why the server refuses work.
    let list = http
        .get(format!("{}/api/v1/jobs?limit=5", c.url()))
        .bearer_auth(&c.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
    // Retention sweeps the finished jobs, the store has room again, and the server takes work.
    let url = c.url();
    let token = c.admin_token.clone();
    tokio::task::spawn_blocking(move || {
        wait_for("the server to accept work again", 60, || {
            let out = zenith()
                .args([
                    "submit", "--server", &url, "--token", &token, "--", "echo", "back",
                ])
                .output()
                .unwrap();
            out.status.success().then_some(())
        })
    })
    .await
    .unwrap();
    let ready = http
        .get(format!("{}/readyz", c.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let metrics = http
        .get(format!("{}/metrics", c.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("zenith_store_degraded 0"), "{metrics}");
    let log = std::fs::read_to_string(&c.server.as_ref().unwrap().log).unwrap();
    assert!(log.contains("engine rebuilt from the store"), "{log}");
    assert!(log.contains("the store accepts writes again"), "{log}");
}

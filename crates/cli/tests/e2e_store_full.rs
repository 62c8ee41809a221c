//! A store that cannot write (here: its size cap, as a full disk would): new work is refused
//! with 503, reads keep working, and the server recovers once space returns.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_full_store_refuses_new_work_keeps_reads_and_recovers() {
    let c = blocking(|| Cluster::up(&["--store-max-size", "1M", "--retention", "1s"])).await;
    let api = c.api();
    let pad = "x".repeat(60_000);
    let body = serde_json::json!({"command": ["true"], "env": {"PAD": pad}}).to_string();
    let mut accepted = 0;
    let mut refusal = None;
    for _ in 0..400 {
        let resp = api
            .post("/api/v1/jobs")
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
    let list = api.get("/api/v1/jobs?limit=5").send().await.unwrap();
    assert_eq!(list.status(), 200);
    // Retention sweeps the finished jobs, the store has room again, and the server takes work.
    let url = c.url();
    let token = c.admin_token.clone();
    blocking(move || {
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
    .await;
    let ready = api.get_unauthenticated("/readyz").await;
    assert_eq!(ready.status(), 200);
    let metrics = api.metrics().await;
    assert!(metrics.contains("zenith_store_degraded 0"), "{metrics}");
    let log = std::fs::read_to_string(&c.server.as_ref().unwrap().log).unwrap();
    assert!(log.contains("engine rebuilt from the store"), "{log}");
    assert!(log.contains("the store accepts writes again"), "{log}");
}

#[test]
fn a_corrupt_record_or_torn_wal_tail_does_not_stop_the_server() {
    let mut c = Cluster::server(&[]);
    let keep = c.submit(&["--constraint", "nowhere=1", "--", "true"]);
    let broken = c.submit(&["--constraint", "nowhere=1", "--", "true"]);
    c.kill_server();
    let db = c.data().join("zenith.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute(
            "UPDATE jobs SET spec = '{not json' WHERE id = ?1",
            [broken as i64],
        )
        .unwrap();
    }
    // A torn write at the end of the write-ahead log: garbage after the last frame.
    use std::io::Write;
    let mut wal = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(c.data().join("zenith.db-wal"))
        .unwrap();
    wal.write_all(&[0xA5; 4096]).unwrap();
    drop(wal);
    c.start_server();
    // The server is up, the healthy job is intact and still queued, listings skip the bad row.
    let j = c.job(keep);
    assert_eq!(j["state"], "queued");
    let listed = c.ok(&["jobs", "-o", "json"]);
    assert!(listed.contains(&format!("\"id\": {keep}")));
    assert!(!listed.contains(&format!("\"id\": {broken}")));
    // Asking for the corrupt job directly says what is wrong.
    let out = c.cli(&["job", "show", &broken.to_string()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("corrupt"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // New work is accepted.
    let fresh = c.submit(&["--constraint", "nowhere=1", "--", "true"]);
    assert!(fresh > broken);
}

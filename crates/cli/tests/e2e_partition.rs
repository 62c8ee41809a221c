//! Network partitions between an agent and the server, through a cutting proxy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::proxy::Proxy;
use common::*;

#[test]
fn long_cut_requeues_once_and_fences_the_stale_attempt() {
    let mut c = Cluster::server(&["--heartbeat-timeout", "2s", "--heartbeat-interval", "200ms"]);
    let proxy = Proxy::start(c.port);
    c.add_agent_via("cut-off", &proxy.url(), &["--cpus", "1"]);
    c.wait_nodes(1);
    // The first attempt hangs; the second finishes.
    let id = c.submit(&[
        "--env",
        "E2E_MARK=partition",
        "--",
        "sh",
        "-c",
        "if [ \"$ZENITH_ATTEMPT\" = 1 ]; then sleep 1000999; fi; echo attempt $ZENITH_ATTEMPT",
    ]);
    wait_for("the first attempt", 30, || {
        (processes_matching("sleep 1000999") >= 1).then_some(())
    });
    let first = c.job(id)["attempts"][0]["id"].as_u64().unwrap();
    proxy.cut();
    wait_for("the node to be lost and the job requeued", 30, || {
        let j = c.job(id);
        (j["attempts"][0]["state"] == "lost" && j["state"] == "queued").then_some(())
    });
    assert!(
        processes_matching("sleep 1000999") >= 1,
        "the cut-off agent still runs its stale attempt"
    );
    proxy.heal();
    let j = c.wait_final(id, 60);
    assert_eq!(j["state"], "succeeded", "{j}");
    assert_eq!(j["attempts_total"], 2, "requeued exactly once: {j}");
    let attempt = format!("ZENITH_ATTEMPT_ID={first}");
    wait_for("the stale attempt killed after the heal", 30, || {
        (processes_with_env(&[attempt.as_str(), "E2E_MARK=partition"]) == 0).then_some(())
    });
    assert_eq!(c.ok(&["job", "logs", &id.to_string()]), "attempt 2\n");
}

#[test]
fn short_cut_causes_no_requeue() {
    let mut c = Cluster::server(&["--heartbeat-timeout", "5s", "--heartbeat-interval", "200ms"]);
    let proxy = Proxy::start(c.port);
    c.add_agent_via("flaky", &proxy.url(), &["--cpus", "1"]);
    c.wait_nodes(1);
    let id = c.submit(&["--", "sh", "-c", "sleep 2; echo survived"]);
    wait_for("the job to run", 30, || {
        (c.job(id)["state"] == "running").then_some(())
    });
    proxy.cut();
    std::thread::sleep(std::time::Duration::from_millis(800)); // the length of the cut
    proxy.heal();
    let j = c.wait_final(id, 60);
    assert_eq!(j["state"], "succeeded", "{j}");
    assert_eq!(
        j["attempts_total"], 1,
        "no requeue for a cut shorter than the timeout: {j}"
    );
    let nodes = c.nodes();
    assert_eq!(nodes[0]["state"], "ready");
}

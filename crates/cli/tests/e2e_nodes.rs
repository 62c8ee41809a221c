//! Node maintenance on the real binary: drain lets running work finish and takes no new
//! work, a busy node cannot be removed, a drain deadline requeues what still runs
//! (outcome `evicted`), uncordon opens the node again; an agent stopped with SIGTERM lets
//! what runs finish within its shutdown grace, and what it then stops is requeued at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;
use common::*;
use serde_json::Value;

fn node(c: &Cluster, name: &str) -> Value {
    c.nodes()
        .into_iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("no node {name}"))
}

fn state(c: &Cluster, id: u64) -> String {
    c.job(id)["state"].as_str().unwrap().to_string()
}

#[test]
fn drain_cordon_uncordon_and_remove() {
    let mut c = Cluster::with_agents(
        &[],
        &[
            ("a", &["--cpus", "1", "--label", "role=a"]),
            ("b", &["--cpus", "1", "--label", "role=b"]),
        ],
    );
    let on_a = c.submit(&["-c", "role=a", "--", "sleep", "3"]);
    wait_for("the job on a running", 20, || {
        (state(&c, on_a) == "running").then_some(())
    });

    // Drain a: what runs there finishes; nothing new lands there.
    let v: Value = serde_json::from_str(&c.ok(&["node", "drain", "a", "-o", "json"])).unwrap();
    assert_eq!(v["schedule"], "draining");
    let waiting = c.submit(&["-c", "role=a", "--", "true"]);
    // Busy: a cannot be removed yet (409, naming the way out).
    let out = c.cli(&["node", "remove", "a"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("drain it first"));
    assert_eq!(c.wait_final(on_a, 30)["state"], "succeeded");
    assert_eq!(state(&c, waiting), "queued");
    wait_for("a drained", 10, || {
        (node(&c, "a")["schedule"] == "drained").then_some(())
    });
    let table = c.ok(&["nodes"]);
    assert!(table.contains("drained"), "{table}");

    // Uncordon: the waiting job runs there.
    c.ok(&["node", "uncordon", "a"]);
    assert_eq!(c.wait_final(waiting, 30)["state"], "succeeded");

    // A drain deadline requeues what still runs: outcome evicted, attempt 2 after uncordon.
    let long = c.submit(&["-c", "role=b", "--", "sleep", "60"]);
    wait_for("the long job running", 20, || {
        (state(&c, long) == "running").then_some(())
    });
    c.ok(&["node", "drain", "b", "--deadline", "1s"]);
    wait_for("the long job requeued", 20, || {
        let j = c.job(long);
        (j["state"] == "queued" && j["attempts"][0]["state"] == "evicted").then_some(())
    });
    c.ok(&["node", "uncordon", "b"]);
    wait_for("the long job running again", 20, || {
        let j = c.job(long);
        (j["state"] == "running" && j["attempts"].as_array().unwrap().len() == 2).then_some(())
    });
    c.ok(&["job", "cancel", &long.to_string()]);

    // Stop a's agent and remove its node: it is gone from the list.
    c.agents[0].kill9();
    c.ok(&["node", "cordon", "a"]);
    let out = c.ok(&["node", "remove", "a"]);
    assert!(out.contains("removed"), "{out}");
    assert!(c.nodes().iter().all(|n| n["name"] != "a"));
    // Only operators and admins manage nodes.
    let v: Value = serde_json::from_str(&c.ok(&[
        "token",
        "create",
        "--name",
        "sam",
        "--role",
        "submitter",
        "--ns",
        "default",
        "-o",
        "json",
    ]))
    .unwrap();
    let out = c.cli_as(v["token"].as_str().unwrap(), &["node", "cordon", "b"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("operator"));
}

#[test]
fn sigterm_of_an_agent_lets_short_work_finish_and_requeues_the_rest_at_once() {
    // A heartbeat timeout far beyond the test's waits: only the agent's leave can requeue.
    let mut c = Cluster::with_agents(
        &["--heartbeat-timeout", "120s"],
        &[("a", &["--cpus", "2", "--shutdown-grace", "2s"])],
    );
    let short = c.submit(&["--", "sleep", "0.5"]);
    let long = c.submit(&["--", "sleep", "60"]);
    wait_for("both jobs running on a", 20, || {
        (state(&c, short) == "running" && state(&c, long) == "running").then_some(())
    });
    c.add_agent("b", &["--cpus", "1"]);
    c.wait_nodes(2);

    let pid = nix::unistd::Pid::from_raw(c.agents[0].pid());
    let sent = std::time::Instant::now();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    wait_for("a leaving", 10, || {
        (node(&c, "a")["schedule"] == "leaving").then_some(())
    });
    // The short job finishes within the grace; the long one is stopped at its end and
    // requeued onto b, long before any heartbeat timeout.
    assert_eq!(c.wait_final(short, 10)["state"], "succeeded");
    let j = wait_for("the long job running on b", 15, || {
        let j = c.job(long);
        let attempts = j["attempts"].as_array()?;
        (attempts.len() == 2 && j["state"] == "running").then_some(j)
    });
    let took = sent.elapsed();
    assert_eq!(j["attempts"][0]["state"], "evicted", "{j}");
    assert_eq!(j["attempts"][1]["node"], node(&c, "b")["id"], "{j}");
    eprintln!("SIGTERM to the job running again elsewhere: {took:?} (grace 2s)");
    // The agent exits on its own, and its node is shown as left.
    let status = wait_for("agent a to exit", 15, || {
        c.agents[0].child.try_wait().unwrap()
    });
    assert!(status.success(), "{status:?}");
    assert_eq!(node(&c, "a")["state"], "left");
    let table = c.ok(&["nodes"]);
    assert!(table.contains("left"), "{table}");
    c.ok(&["job", "cancel", &long.to_string()]);
}

//! Node backlogs (`zenith agent --prefetch N`) with real processes: short jobs queue on the
//! agent and start as slots free, each task runs once, a crashed agent's backlog is
//! requeued, a cancel reaches work waiting in a backlog.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{processes_matching, raw_get, wait_for, Cluster};
use std::collections::HashMap;

/// A server with one 1-core agent that holds up to 4 jobs beyond what fits, after one short
/// job (a node takes backlog once its jobs are known to run short).
fn cluster() -> Cluster {
    let c = Cluster::with_agents(
        &["--heartbeat-timeout", "3s"],
        &[("a", &["--cpus", "1", "--prefetch", "4"])],
    );
    let warm = c.submit(&["--", "true"]);
    assert_eq!(c.wait_final(warm, 30)["state"], "succeeded");
    c
}

/// An array of `n` tasks that append their index to `file`, then sleep `secs`.
fn array(c: &Cluster, n: u32, file: &std::path::Path, secs: &str) -> u64 {
    let script = format!(
        "echo $ZENITH_TASK_INDEX >> {}; sleep {secs}",
        file.display()
    );
    c.submit(&[
        "--array",
        &format!("0-{}", n - 1),
        "--cpus",
        "1",
        "--",
        "sh",
        "-c",
        &script,
    ])
}

/// The server's `/metrics` text (a plain HTTP/1.1 request).
fn get_metrics(c: &Cluster) -> String {
    raw_get(c.port, "/metrics", Some(&c.admin_token), None).unwrap()
}

fn runs_per_index(file: &std::path::Path) -> HashMap<u32, usize> {
    let mut m = HashMap::new();
    for l in std::fs::read_to_string(file).unwrap_or_default().lines() {
        *m.entry(l.trim().parse::<u32>().unwrap()).or_insert(0) += 1;
    }
    m
}

/// Waits until the node reports work in its backlog; returns the most seen at once.
fn wait_queued(c: &Cluster) -> u64 {
    wait_for("work in the node's backlog", 30, || {
        let n = c.nodes()[0]["queued"].as_u64().unwrap();
        (n > 0).then_some(n)
    })
}

#[test]
fn a_backlog_runs_each_task_once_within_its_bound() {
    let c = cluster();
    let file = c.dir.path().join("runs");
    let id = array(&c, 60, &file, "0.05");
    let mut most = wait_queued(&c);
    assert_eq!(c.nodes()[0]["prefetch"], 4);
    // `zenith nodes` shows it as "<running> +<n> queued", and the server's gauge counts it.
    wait_for("the backlog in `zenith nodes`", 30, || {
        c.ok(&["nodes"]).contains(" queued").then_some(())
    });
    wait_for("the backlog gauge", 30, || {
        let m = get_metrics(&c);
        let v: f64 = m
            .lines()
            .find_map(|l| l.strip_prefix("zenith_backlogged_attempts "))?
            .trim()
            .parse()
            .ok()?;
        (v > 0.0).then_some(())
    });
    while c.job(id)["state"] == "running" {
        most = most.max(c.nodes()[0]["queued"].as_u64().unwrap());
    }
    assert!(most <= 4, "backlog of {most} beyond --prefetch 4");
    let j = c.wait_final(id, 60);
    assert_eq!(j["state"], "succeeded", "{j}");
    let runs = runs_per_index(&file);
    assert_eq!(runs.len(), 60);
    assert!(
        runs.values().all(|n| *n == 1),
        "each task ran once: {runs:?}"
    );
    let metrics = get_metrics(&c);
    let started: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("zenith_backlog_started_total "))
        .expect("backlog counter exported")
        .parse()
        .unwrap();
    assert!(started > 0.0, "the agent started work from its backlog");
}

#[test]
fn zenith_up_gives_its_agent_a_backlog_of_32_per_core_or_as_told() {
    let c = Cluster::up(&[]);
    assert_eq!(c.nodes()[0]["prefetch"], 64, "2 cores: 64");
    drop(c);
    let c = Cluster::up(&["--prefetch", "3"]);
    assert_eq!(c.nodes()[0]["prefetch"], 3);
    let bad = c.cli(&[
        "agent",
        "--server",
        &c.url(),
        "--token",
        "x",
        "--prefetch",
        "10001",
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("prefetch"));
}

#[test]
fn a_crashed_agents_backlog_is_requeued_and_runs() {
    let mut c = cluster();
    let file = c.dir.path().join("runs");
    let id = array(&c, 16, &file, "0.1");
    wait_queued(&c);
    // The agent dies with a job running and others waiting; it comes back with nothing.
    c.restart_agent(0, "a", &["--cpus", "1", "--prefetch", "4"]);
    let j = c.wait_final(id, 90);
    assert_eq!(j["state"], "succeeded", "{j}");
    assert_eq!(j["tasks"]["succeeded"], 16);
    let runs = runs_per_index(&file);
    assert_eq!(runs.len(), 16, "every task ran: {runs:?}");
    // Only the task running at the crash may have run twice; waiting ones never started.
    assert!(
        runs.values().filter(|n| **n > 1).count() <= 1,
        "at most the running task ran again: {runs:?}"
    );
}

#[test]
fn cancel_reaches_jobs_waiting_in_a_backlog() {
    let c = cluster();
    let marker = format!("backlog-cancel-{}", std::process::id());
    let script = format!("sleep 0.1; : {marker}");
    let id = c.submit(&["--array", "0-19", "--cpus", "1", "--", "sh", "-c", &script]);
    wait_queued(&c);
    c.ok(&["job", "cancel", &id.to_string()]);
    let j = c.wait_final(id, 30);
    assert_eq!(j["state"], "cancelled", "{j}");
    wait_for("the backlog to empty", 30, || {
        let n = &c.nodes()[0];
        (n["queued"] == 0 && n["running"] == 0).then_some(())
    });
    wait_for("no task process left", 30, || {
        (processes_matching(&marker) == 0).then_some(())
    });
    // The node takes new work at once.
    let after = c.submit(&["--", "true"]);
    assert_eq!(c.wait_final(after, 30)["state"], "succeeded");
}

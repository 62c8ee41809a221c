//! Gang jobs on the real binary: three agents on this machine, one gang across all three,
//! started together with ranks, hosts and a rendezvous; `kill -9` of one member's agent stops
//! the others and, once the node is back, restarts the whole gang exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use serde_json::Value;

fn attempts(j: &Value) -> Vec<Value> {
    j["attempts"].as_array().cloned().unwrap_or_default()
}

#[test]
fn a_three_node_gang_starts_together_and_restarts_once_when_a_node_dies() {
    let mut c = Cluster::server(&["--heartbeat-timeout", "2s"]);
    for name in ["a", "b", "c"] {
        c.add_agent(name, &["--cpus", "1"]);
    }
    c.wait_nodes(3);
    // The first try waits (so one agent can die under it); the second prints and ends.
    let script = "echo \"$ZENITH_RANK $ZENITH_NODE_RANK $ZENITH_LOCAL_RANK $ZENITH_NUM_NODES \
                  $ZENITH_WORLD_SIZE $MASTER_ADDR:$MASTER_PORT $ZENITH_RENDEZVOUS\"; \
                  cat \"$ZENITH_HOSTFILE\"; \
                  if [ \"$ZENITH_ATTEMPT\" = 1 ]; then sleep 60; fi";
    let id = c.submit(&["--nodes", "3", "--", "sh", "-c", script]);
    let j = wait_for("the gang running", 30, || {
        let j = c.job(id);
        (j["tasks"]["running"] == 3).then_some(j)
    });
    let first = attempts(&j);
    assert_eq!(first.len(), 3, "{j}");
    let starts: Vec<u64> = first
        .iter()
        .map(|a| a["started_at_ms"].as_u64().unwrap())
        .collect();
    assert!(
        starts.iter().all(|s| *s == starts[0]),
        "started together: {starts:?}"
    );
    let mut nodes: Vec<&str> = first.iter().map(|a| a["node"].as_str().unwrap()).collect();
    nodes.sort();
    nodes.dedup();
    assert_eq!(nodes.len(), 3, "one member per node");
    // The member on agent b loses its node: the others are stopped, nothing runs again
    // until three nodes are there.
    let b_node = c
        .nodes()
        .into_iter()
        .find(|n| n["name"] == "b")
        .map(|n| n["id"].as_str().unwrap().to_string())
        .unwrap();
    c.agents[1].kill9();
    let j = wait_for("the first try over", 30, || {
        let j = c.job(id);
        let a = attempts(&j);
        (a.len() == 3 && a.iter().all(|a| !a["finished_at"].is_null())).then_some(j)
    });
    let mut states: Vec<String> = attempts(&j)
        .iter()
        .map(|a| a["state"].as_str().unwrap().to_string())
        .collect();
    states.sort();
    assert_eq!(states, vec!["lost", "stopped", "stopped"], "{j}");
    assert_eq!(j["state"], "queued");
    let why = c.ok(&["job", "explain", &id.to_string()]);
    assert!(why.contains("node lost"), "{why}");
    c.restart_agent(1, "b", &["--cpus", "1"]);
    let j = c.wait_final(id, 60);
    assert_eq!(j["state"], "succeeded", "{j}");
    let all = attempts(&j);
    assert_eq!(all.len(), 6, "the gang ran exactly twice: {j}");
    let second: Vec<&Value> = all.iter().filter(|a| a["state"] == "succeeded").collect();
    assert_eq!(second.len(), 3);
    let s0 = second[0]["started_at_ms"].as_u64();
    assert!(second.iter().all(|a| a["started_at_ms"].as_u64() == s0));
    assert!(second.iter().any(|a| a["node"] == b_node.as_str()));
    // What each member was told.
    let mut rendezvous = Vec::new();
    for rank in 0..3 {
        let out = c.ok(&["job", "logs", &id.to_string(), "--task", &rank.to_string()]);
        let mut lines = out.lines();
        let head: Vec<&str> = lines.next().unwrap().split(' ').collect();
        assert_eq!(head[0], rank.to_string(), "{out}");
        assert_eq!(
            head[1],
            rank.to_string(),
            "one task per node: node rank = rank"
        );
        assert_eq!(&head[2..5], &["0", "3", "3"], "{out}");
        assert_eq!(
            head[5], head[6],
            "MASTER_ADDR:MASTER_PORT is the rendezvous"
        );
        rendezvous.push(head[6].to_string());
        let hosts: Vec<&str> = lines.collect();
        assert_eq!(hosts, vec!["127.0.0.1 slots=1"; 3], "{out}");
    }
    rendezvous.dedup();
    assert_eq!(rendezvous.len(), 1, "one rendezvous for the gang");
    assert!(rendezvous[0].starts_with("127.0.0.1:"));
}

#[test]
fn a_gang_larger_than_the_cluster_waits_and_says_why() {
    let c = Cluster::up(&[]);
    let id = c.submit(&["--nodes", "2", "--tasks-per-node", "2", "--", "true"]);
    let v: Value =
        serde_json::from_str(&c.ok(&["job", "explain", &id.to_string(), "-o", "json"])).unwrap();
    assert_eq!(v["state"], "queued", "{v}");
    assert_eq!(
        v["gang"], "gang of 2 nodes × 2 tasks: room for 2 tasks now on 1 of 1 node",
        "{v}"
    );
    let shown: Value =
        serde_json::from_str(&c.ok(&["job", "show", &id.to_string(), "-o", "json"])).unwrap();
    assert_eq!(shown["spec"]["gang"]["tasksPerNode"], 2, "{shown}");
    assert_eq!(shown["task_count"], 4, "{shown}");
    // A gang and an array together are refused, naming the field.
    let out = c.cli(&["submit", "--nodes", "2", "--array", "1-3", "--", "true"]);
    assert!(!out.status.success());
    c.ok(&["job", "cancel", &id.to_string()]);
    // A flow step runs as a gang too.
    let f = c.dir.path().join("gang.yaml");
    std::fs::write(
        &f,
        "name: gangflow\nsteps:\n  - name: train\n    gang: {nodes: 1, tasksPerNode: 2}\n    \
         script: echo $ZENITH_RANK/$ZENITH_WORLD_SIZE\n",
    )
    .unwrap();
    let run = c.ok(&["run", f.to_str().unwrap()]).trim().to_string();
    wait_for("the gang step's run to succeed", 30, || {
        let v: Value = serde_json::from_str(&c.ok(&["flow", "show", &run, "-o", "json"])).unwrap();
        (v["state"] == "succeeded").then_some(())
    });
    assert_eq!(c.ok(&["flow", "logs", &run, "train"]), "0/2\n");
}

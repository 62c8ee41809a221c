//! Fair share and quotas on the real binary: namespace settings through the CLI, a quota
//! that queues work with its reason and frees at once, hard limits refused by name, weights
//! that split a full cluster (measured from attempt records), settings kept over a restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;
use common::*;
use serde_json::Value;

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap()
}

fn state(c: &Cluster, id: u64) -> String {
    c.job(id)["state"].as_str().unwrap().to_string()
}

#[test]
fn quota_queues_with_its_reason_refuses_hard_limits_and_frees_on_cancel() {
    let mut c = Cluster::with_agents(&[], &[("n1", &["--cpus", "4"])]);
    let set = json(&c.ok(&[
        "namespace",
        "set",
        "ml",
        "--cpus",
        "2",
        "--max-jobs",
        "3",
        "--weight",
        "2",
        "-o",
        "json",
    ]));
    assert_eq!(set["quota"]["cpus"], 2.0);
    assert_eq!(set["weight"], 2);

    let holder = c.submit(&["-n", "ml", "--cpus", "2", "--", "sleep", "60"]);
    wait_for("holder running", 20, || {
        (state(&c, holder) == "running").then_some(())
    });
    let waiting = c.submit(&["-n", "ml", "--cpus", "1", "--", "true"]);
    // Another namespace is not held back by ml's quota.
    let other = c.submit(&["--cpus", "1", "--", "true"]);
    assert_eq!(c.wait_final(other, 20)["state"], "succeeded");
    assert_eq!(state(&c, waiting), "queued");
    let explain = c.ok(&["job", "explain", &waiting.to_string()]);
    assert!(
        explain.contains("quota cpus 2/2 in namespace ml"),
        "{explain}"
    );
    let share = json(&c.ok(&["share", "-o", "json"]));
    let ml = share["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "ml")
        .unwrap()
        .clone();
    assert_eq!(
        (ml["running"].as_u64(), ml["cpu_millis"].as_u64()),
        (Some(1), Some(2000))
    );
    assert_eq!(ml["weight"], 2);

    // A task that could never fit the CPU quota is refused, naming it.
    let out = c.cli(&["submit", "-n", "ml", "--cpus", "3", "--", "true"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("quota.cpus") && err.contains("quota cpus"),
        "{err}"
    );
    // A third live job is the limit; a fourth is refused, naming it.
    c.submit(&["-n", "ml", "--", "true"]);
    let out = c.cli(&["submit", "-n", "ml", "--", "true"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("quota.jobs") && err.contains("quota jobs 3/3 in namespace ml"),
        "{err}"
    );

    // Cancelling the holder frees its quota: the waiting job runs.
    c.ok(&["job", "cancel", &holder.to_string()]);
    assert_eq!(c.wait_final(waiting, 20)["state"], "succeeded");

    // Settings survive a restart of the server.
    c.kill_server();
    c.start_server();
    let shown = json(&c.ok(&["namespace", "show", "ml", "-o", "json"]));
    assert_eq!(shown["quota"]["jobs"], 3);
    c.ok(&["namespace", "reset", "ml"]);
    let listed = json(&c.ok(&["namespace", "list", "-o", "json"]));
    assert_eq!(listed["namespaces"].as_array().unwrap().len(), 0);
}

#[test]
fn weights_split_a_full_cluster_measured_from_attempt_records() {
    let c = Cluster::with_agents(&[], &[("n1", &["--cpus", "4"])]);
    c.ok(&["namespace", "set", "lab", "--weight", "1"]);
    c.ok(&["namespace", "set", "prod", "--weight", "3"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Both arrays in one request: they queue together on an idle cluster.
    let job = |ns: &str| {
        serde_json::json!({"command": ["sleep", "0.4"], "namespace": ns,
        "array": "1-40"})
    };
    let made = rt.block_on(
        c.api()
            .post_json("/api/v1/jobs", &vec![job("lab"), job("prod")]),
    );
    let ids: Vec<u64> = made["ids"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_u64().unwrap()).collect())
        .unwrap_or_else(|| panic!("{made}"));
    let (lab, prod) = (c.wait_final(ids[0], 60), c.wait_final(ids[1], 60));
    let spans = |j: &Value| -> Vec<(u64, u64)> {
        j["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["started_at_ms"].as_u64().unwrap(),
                    a["finished_at_ms"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let (lab, prod) = (spans(&lab), spans(&prod));
    assert_eq!((lab.len(), prod.len()), (40, 40));
    // The busy period: until prod (the heavier) has started its last task.
    let start = lab.iter().chain(&prod).map(|s| s.0).min().unwrap();
    let end = prod.iter().map(|s| s.0).max().unwrap();
    let held = |spans: &[(u64, u64)]| -> u64 {
        spans
            .iter()
            .map(|(a, b)| (*b).min(end).saturating_sub((*a).max(start)))
            .sum()
    };
    let (l, p) = (held(&lab) as f64, held(&prod) as f64);
    let lab_share = l / (l + p);
    println!(
        "weights 1:3 on 4 slots over {} ms: lab {:.1}%, prod {:.1}%",
        end - start,
        lab_share * 100.0,
        (1.0 - lab_share) * 100.0
    );
    assert!((lab_share - 0.25).abs() <= 0.05, "lab held {lab_share}");
}

#[test]
fn a_late_users_jobs_start_ahead_of_a_million_task_array() {
    // 40 cores; the array's tasks take 2 each (20 at a time), the late user's 10 jobs 1 each:
    // a quarter of the cluster, within the half its equal weight gives it, so each takes the
    // next capacity that frees.
    let c = Cluster::with_agents(&[], &[("n1", &["--cpus", "40"])]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let token = |name: &str| -> String {
        let v = json(&c.ok(&[
            "token",
            "create",
            "--name",
            name,
            "--role",
            "submitter",
            "--ns",
            "default",
            "-o",
            "json",
        ]));
        v["token"].as_str().unwrap().to_string()
    };
    let (bulk, late) = (token("bulk"), token("late"));
    // One user queues a million one-second tasks: the cluster stays full.
    let array = serde_json::json!({"command": ["sleep", "1"], "array": "1-1000000",
        "resources": {"cpus": 2}});
    let made = rt.block_on(c.api().with_token(&bulk).post_json("/api/v1/jobs", &array));
    let big = made["id"].as_u64().unwrap_or_else(|| panic!("{made}"));
    wait_for("the array running", 20, || {
        (c.job(big)["tasks"]["running"].as_u64() == Some(20)).then_some(())
    });
    // Another user arrives with 10 jobs: they take the next free slots.
    let start = std::time::Instant::now();
    let ids: Vec<u64> = (0..10)
        .map(|_| {
            let out = c.cli_as(&late, &["submit", "--", "true"]);
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        })
        .collect();
    // Each late job, once queued, started before any task of the array started: the array
    // took no slot while a late job waited (from the attempt records).
    let mut late_starts = Vec::new();
    for id in &ids {
        let j = c.wait_final(*id, 60);
        assert_eq!(j["state"], "succeeded");
        let queued_at = j["created_at_ms"].as_u64().unwrap();
        let started = j["attempts"][0]["started_at_ms"].as_u64().unwrap();
        late_starts.push((queued_at, started));
    }
    let array_starts: Vec<u64> = c.job(big)["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["started_at_ms"].as_u64().unwrap())
        .collect();
    for (queued_at, started) in &late_starts {
        let overtaken = array_starts
            .iter()
            .filter(|s| **s > *queued_at && **s < *started)
            .count();
        assert_eq!(
            overtaken, 0,
            "array tasks started while a late job waited: late {late_starts:?}, array {array_starts:?}"
        );
    }
    let waited = start.elapsed();
    println!(
        "late user's 10 jobs done {} ms after arriving (waits {:?} ms), ahead of 1,000,000 queued tasks",
        waited.as_millis(),
        late_starts.iter().map(|(q, s)| s - q).collect::<Vec<_>>()
    );
    c.ok(&["job", "cancel", &big.to_string()]);
}

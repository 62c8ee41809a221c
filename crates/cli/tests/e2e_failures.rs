//! Machines dying: kill -9 of the server and of agents, with separate processes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use std::collections::HashMap;

fn successes_per_task(j: &serde_json::Value) -> HashMap<u64, usize> {
    let mut m = HashMap::new();
    for a in j["attempts"].as_array().unwrap() {
        if a["state"] == "succeeded" {
            *m.entry(a["task"].as_u64().unwrap()).or_insert(0) += 1;
        }
    }
    m
}

#[test]
fn server_kill9_loses_no_acknowledged_job() {
    let mut c = Cluster::with_agents(&["--heartbeat-timeout", "5s"], &[("a", &["--cpus", "2"])]);
    let running = c.submit(&[
        "--array",
        "1-6",
        "--",
        "sh",
        "-c",
        "sleep 1; echo ran $ZENITH_TASK_INDEX",
    ]);
    let queued: Vec<u64> = (0..20)
        .map(|_| c.submit(&["--cpus", "0.5", "--", "true"]))
        .collect();
    wait_for("tasks running", 30, || {
        (c.job(running)["tasks"]["running"].as_u64()? > 0).then_some(())
    });
    c.kill_server();
    c.start_server();
    let j = c.wait_final(running, 60);
    assert_eq!(j["state"], "succeeded", "{j}");
    let per_task = successes_per_task(&j);
    assert_eq!(per_task.len(), 6);
    assert!(
        per_task.values().all(|n| *n == 1),
        "each task succeeded exactly once: {per_task:?}"
    );
    for id in queued {
        assert_eq!(c.wait_final(id, 60)["state"], "succeeded");
    }
    assert_eq!(
        c.ok(&["job", "logs", &running.to_string(), "--task", "6"]),
        "ran 6\n"
    );
}

#[test]
fn agent_kill9_requeues_on_another_node_once() {
    let mut c = Cluster::server(&["--heartbeat-timeout", "2s"]);
    let doomed = c.add_agent("doomed", &["--cpus", "2", "--label", "pool=x"]);
    c.wait_nodes(1);
    let id = c.submit(&[
        "--array",
        "1-2",
        "--constraint",
        "pool=x",
        "--",
        "sh",
        "-c",
        "sleep 2; echo ok",
    ]);
    wait_for("both tasks running on the doomed node", 30, || {
        (c.job(id)["tasks"]["running"] == 2).then_some(())
    });
    c.agents[doomed].kill9();
    c.add_agent("rescue", &["--cpus", "2", "--label", "pool=x"]);
    let j = c.wait_final(id, 60);
    assert_eq!(j["state"], "succeeded", "{j}");
    let attempts = j["attempts"].as_array().unwrap();
    let lost: Vec<_> = attempts.iter().filter(|a| a["state"] == "lost").collect();
    assert_eq!(lost.len(), 2, "{j}");
    assert!(lost.iter().all(|a| a["outcome"]["kind"] == "node_lost"));
    assert_eq!(attempts.len(), 4, "exactly one requeue per task");
    let per_task = successes_per_task(&j);
    assert!(per_task.values().all(|n| *n == 1));
    let nodes = c.nodes();
    let doomed_node = nodes.iter().find(|n| n["name"] == "doomed").unwrap();
    assert_eq!(doomed_node["state"], "lost");
}

#[test]
fn second_agent_shares_the_work() {
    let c = Cluster::with_agents(&[], &[("one", &["--cpus", "1"]), ("two", &["--cpus", "1"])]);
    let id = c.submit(&["--array", "1-8", "--", "sleep", "0.2"]);
    let j = c.wait_final(id, 60);
    assert_eq!(j["state"], "succeeded");
    let mut nodes: Vec<String> = j["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["node"].as_str().unwrap().to_string())
        .collect();
    nodes.sort();
    nodes.dedup();
    assert_eq!(nodes.len(), 2, "both agents ran tasks");
}

#[test]
fn results_survive_a_server_outage() {
    let mut c = Cluster::with_agents(&["--heartbeat-timeout", "30s"], &[("a", &["--cpus", "1"])]);
    let id = c.submit(&[
        "--",
        "sh",
        "-c",
        "sleep 2; echo finished while the server was down",
    ]);
    wait_for("job running", 30, || {
        (c.job(id)["state"] == "running").then_some(())
    });
    c.kill_server();
    // The job finishes while the server is away; the agent keeps its result in the outbox.
    let outbox = c.dir.path().join("agent-a").join("outbox.jsonl");
    wait_for("the result in the agent's outbox", 30, || {
        (std::fs::metadata(&outbox).map(|m| m.len()).unwrap_or(0) > 0).then_some(())
    });
    // The result carries the run time by the agent's clock (it sizes node backlogs).
    let line: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&outbox).unwrap().trim()).unwrap();
    let ran = line["ran_ms"].as_u64().expect("ran_ms in the result");
    assert!((2_000..60_000).contains(&ran), "ran {ran} ms: {line}");
    c.start_server();
    let j = c.wait_final(id, 60);
    assert_eq!(j["state"], "succeeded", "{j}");
    assert_eq!(
        j["attempts_total"], 1,
        "not rerun: the result came from the outbox"
    );
    assert_eq!(
        c.ok(&["job", "logs", &id.to_string()]),
        "finished while the server was down\n"
    );
}

#[test]
fn restarted_agent_kills_what_its_crashed_predecessor_left() {
    let (mut c, a, id, attempt) = sleeper_on_one_agent("1000777", "restarted-agent");
    let env = [attempt.as_str(), "E2E_MARK=restarted-agent"];
    // The agent and its guardian die at once (kill -9 of both, as a machine-wide kill
    // would): the job's processes are left running.
    let agent_pid = c.agents[a].pid();
    let guardian = guardian_of(agent_pid);
    assert!(nix_kill9(guardian));
    c.agents[a].kill9();
    assert_eq!(processes_with_env(&env), 3, "nothing was left to kill them");
    c.restart_agent(a, "a", &["--cpus", "1"]);
    wait_for("leftovers killed", 30, || {
        (processes_with_env(&env) == 0).then_some(())
    });
    // The restarted agent no longer knows the attempt: the server requeues it.
    wait_for("a second attempt", 30, || {
        (c.job(id)["attempts_total"].as_u64()? >= 2).then_some(())
    });
    c.ok(&["job", "cancel", &id.to_string()]);
    assert_eq!(c.wait_final(id, 30)["state"], "cancelled");
    let j = c.job(id);
    assert_eq!(j["attempts"][0]["state"], "lost", "{j}");
}

/// A server, one agent, and a job `sh -c "sleep M & sleep M"` (marked `E2E_MARK=mark`)
/// running its three processes; returns the agent's index, the job and the attempt's
/// `ZENITH_ATTEMPT_ID=…` marker.
fn sleeper_on_one_agent(marker: &str, mark: &str) -> (Cluster, usize, u64, String) {
    let mut c = Cluster::server(&["--heartbeat-timeout", "30s"]);
    let a = c.add_agent("a", &["--cpus", "1"]);
    c.wait_nodes(1);
    let id = c.submit(&[
        "--env",
        &format!("E2E_MARK={mark}"),
        "--",
        "sh",
        "-c",
        &format!("sleep {marker} & sleep {marker}"),
    ]);
    wait_for("the job's processes", 30, || {
        (processes_matching(&format!("sleep {marker}")) >= 2).then_some(())
    });
    let first = c.job(id)["attempts"][0]["id"].as_u64().unwrap();
    let attempt = format!("ZENITH_ATTEMPT_ID={first}");
    let m = format!("E2E_MARK={mark}");
    assert_eq!(
        processes_with_env(&[attempt.as_str(), m.as_str()]),
        3,
        "sh and two sleeps"
    );
    (c, a, id, attempt)
}

/// The `zenith __guardian` child of the agent process `agent`.
fn guardian_of(agent: i32) -> i32 {
    wait_for("the agent's guardian", 10, || {
        std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let ppid: i32 = stat
                .rsplit(')')
                .next()?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            (ppid == agent && cmd.windows(10).any(|w| w == b"__guardian")).then_some(pid)
        })
    })
}

fn nix_kill9(pid: i32) -> bool {
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_killed_agent_takes_its_jobs_with_it() {
    let (mut c, a, _, attempt) = sleeper_on_one_agent("1000778", "killed-agent");
    let env = [attempt.as_str(), "E2E_MARK=killed-agent"];
    // kill -9 of the agent: its guardian sees the pipe close and kills the whole group —
    // the shell and the background sleep too.
    c.agents[a].kill9();
    wait_for("the job's group to die with the agent", 10, || {
        (processes_with_env(&env) == 0).then_some(())
    });
}

#[test]
fn agents_expose_their_own_metrics() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let c = Cluster::with_agents(
        &[],
        &[("measured", &["--cpus", "2", "--metrics-listen", &listen])],
    );
    let ok = c.submit(&["--", "echo", "hello"]);
    let bad = c.submit(&["--", "false"]);
    c.wait_final(ok, 30);
    c.wait_final(bad, 30);
    let scrape = || raw_get(port, "/metrics", None, None).unwrap();
    let text = wait_for("the agent to count both attempts", 30, || {
        let t = scrape();
        t.contains("zenith_agent_attempts_ended_total{outcome=\"exited_error\"} 1")
            .then_some(t)
    });
    let body = text
        .split_once("\r\n\r\n")
        .map_or(text.as_str(), |(_, b)| b);
    common::promtool_lint(body);
    assert!(
        text.contains("zenith_agent_attempts_started_total 2"),
        "{text}"
    );
    assert!(
        text.contains("zenith_agent_attempts_ended_total{outcome=\"exited_ok\"} 1"),
        "{text}"
    );
    assert!(text.contains("zenith_agent_running_attempts 0"), "{text}");
    assert!(text.contains("zenith_agent_waiting_attempts 0"), "{text}");
    assert!(
        text.contains("zenith_agent_registrations_total 1"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE zenith_agent_outbox_results gauge"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE zenith_agent_report_seconds histogram"),
        "{text}"
    );
    assert!(
        text.contains("zenith_agent_log_bytes_shipped_total 6"),
        "{text}"
    );
}

#[test]
fn gpus_are_bound_through_cuda_visible_devices() {
    let c = Cluster::with_agents(&[], &[("gpu-node", &["--cpus", "4", "--gpus", "2"])]);
    // Two one-GPU tasks at once get different devices; a job without GPUs sees none.
    let pair = c.submit(&[
        "--gpus",
        "1",
        "--array",
        "1-2",
        "--",
        "sh",
        "-c",
        "echo $CUDA_VISIBLE_DEVICES; sleep 1",
    ]);
    let none = c.submit(&["--", "sh", "-c", "echo \"[$CUDA_VISIBLE_DEVICES]\""]);
    let too_many = c.submit(&["--gpus", "3", "--", "true"]);
    // `zenith nodes` gets a GPU column: both taken while the pair runs.
    wait_for("both GPUs taken", 30, || {
        let out = c.ok(&["nodes"]);
        (out.contains("GPUS FREE") && out.contains(" 0/2 ")).then_some(())
    });
    assert_eq!(c.wait_final(pair, 30)["state"], "succeeded");
    let mut seen: Vec<String> = (1..=2)
        .map(|t| c.ok(&["job", "logs", &pair.to_string(), "--task", &t.to_string()]))
        .collect();
    seen.sort();
    assert_eq!(seen, ["0\n", "1\n"]);
    c.wait_final(none, 30);
    assert_eq!(c.ok(&["job", "logs", &none.to_string()]), "[]\n");
    let explain = c.ok(&["job", "explain", &too_many.to_string()]);
    assert!(
        explain.contains("insufficient gpus (exceeds node capacity)"),
        "{explain}"
    );
}

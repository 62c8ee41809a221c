//! End to end on `zenith up`: the job lifecycle as a user drives it through the CLI.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

#[test]
fn array_tasks_echo_their_index_with_logs() {
    let c = Cluster::up(&[]);
    let id = c.submit(&[
        "--cpus",
        "0.25",
        "--array",
        "1-100",
        "--",
        "sh",
        "-c",
        "echo task $ZENITH_TASK_INDEX of job $ZENITH_JOB_ID attempt $ZENITH_ATTEMPT",
    ]);
    let out = c.cli(&["job", "wait", &id.to_string(), "--timeout", "60s"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j = c.job(id);
    assert_eq!(j["state"], "succeeded");
    assert_eq!(j["tasks"]["succeeded"], 100);
    assert_eq!(j["attempts_total"], 100);
    for task in [1, 42, 100] {
        let logs = c.ok(&["job", "logs", &id.to_string(), "--task", &task.to_string()]);
        assert_eq!(logs, format!("task {task} of job {id} attempt 1\n"));
    }
    // A task outside the array is a usage error.
    let bad = c.cli(&["job", "logs", &id.to_string(), "--task", "101"]);
    assert_eq!(bad.status.code(), Some(2));
    let listed = c.ok(&["jobs", "-o", "json"]);
    assert!(listed.contains(&format!("\"id\": {id}")));
}

#[test]
fn retries_timeout_stderr_and_start_failure() {
    let c = Cluster::up(&[]);
    let r = c.submit(&[
        "--retries",
        "2",
        "--retry-delay",
        "100ms",
        "--",
        "sh",
        "-c",
        "echo oops >&2; exit 3",
    ]);
    let t = c.submit(&["--timeout", "1s", "--", "sleep", "60"]);
    let missing = c.submit(&["--", "/nonexistent/program"]);
    let out = c.cli(&[
        "job",
        "wait",
        &r.to_string(),
        &t.to_string(),
        "--timeout",
        "60s",
    ]);
    assert_eq!(out.status.code(), Some(1), "a failed job makes wait exit 1");

    let j = c.job(r);
    assert_eq!(j["state"], "failed");
    let attempts = j["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3, "--retries 2 gives 3 attempts");
    assert!(attempts.iter().all(|a| a["exit_code"] == 3));
    assert_eq!(c.ok(&["job", "logs", &r.to_string(), "--stderr"]), "oops\n");

    let j = c.job(t);
    assert_eq!(j["state"], "failed");
    assert_eq!(j["reason"], "task 0: timed_out");
    assert_eq!(j["attempts"][0]["outcome"]["kind"], "timed_out");

    let j = c.wait_final(missing, 30);
    assert_eq!(j["state"], "failed");
    assert!(
        j["reason"].as_str().unwrap().contains("start failed"),
        "{j}"
    );
}

#[test]
fn cancel_kills_the_whole_process_tree() {
    let c = Cluster::up(&[]);
    let marker = "1000123";
    let id = c.submit(&[
        "--",
        "sh",
        "-c",
        &format!("sleep {marker} & sleep {marker}"),
    ]);
    wait_for("both sleeps to run", 30, || {
        (processes_matching(&format!("sleep {marker}")) >= 2).then_some(())
    });
    c.ok(&["job", "cancel", &id.to_string()]);
    let j = c.wait_final(id, 30);
    assert_eq!(j["state"], "cancelled");
    wait_for("no process left", 10, || {
        (processes_matching(&format!("sleep {marker}")) == 0).then_some(())
    });
    // Cancelling again is a conflict (usage error), a queued job cancels at once.
    assert_eq!(
        c.cli(&["job", "cancel", &id.to_string()]).status.code(),
        Some(2)
    );
    let q = c.submit(&["--constraint", "gpu=a100", "--", "true"]);
    let explain = c.ok(&["job", "explain", &q.to_string()]);
    assert!(
        explain.contains("1 node: constraint gpu=a100 not met"),
        "{explain}"
    );
    c.ok(&["job", "cancel", &q.to_string()]);
    assert_eq!(c.wait_final(q, 10)["state"], "cancelled");
}

#[test]
fn cli_exit_codes_and_validation() {
    let c = Cluster::up(&[]);
    let bad = c.cli(&["submit", "--cpus", "abc", "--", "true"]);
    assert_eq!(bad.status.code(), Some(2));
    let bad = c.cli(&["submit", "--env", "1X=y", "--", "true"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("env.1X"));
    let missing = c.cli(&["job", "show", "999999"]);
    assert_eq!(missing.status.code(), Some(2));
    let unreachable = zenith()
        .args([
            "jobs",
            "--server",
            &format!("http://127.0.0.1:{}", free_port()),
            "--token",
            "x",
        ])
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("hint: is a server running"));
    let wrong_token = zenith()
        .args(["jobs", "--server", &c.url(), "--token", "nope"])
        .output()
        .unwrap();
    assert_eq!(wrong_token.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&wrong_token.stderr).contains("token"));
    assert!(String::from_utf8_lossy(&wrong_token.stderr).contains("hint: pass the admin token"));
}

#[test]
fn token_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let c = Cluster::up(&[]);
    for f in ["admin.token", "agent.token"] {
        let mode = std::fs::metadata(c.data().join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
}

#[test]
fn logs_follow_streams_until_the_task_ends() {
    let c = Cluster::up(&[]);
    // Queued behind a blocker, so --follow must also wait for the start.
    let blocker = c.submit(&["--cpus", "2", "--", "sleep", "1"]);
    let id = c.submit(&["--", "sh", "-c", "echo first; sleep 1; echo second"]);
    let out = c.ok(&["job", "logs", &id.to_string(), "--follow"]);
    assert_eq!(out, "first\nsecond\n");
    assert_eq!(c.job(id)["state"], "succeeded");
    assert_eq!(c.job(blocker)["state"], "succeeded");
}

#[test]
fn finished_jobs_are_swept_after_retention() {
    let c = Cluster::up(&["--retention", "2s"]);
    let id = c.submit(&["--", "echo", "short-lived"]);
    c.wait_final(id, 30);
    wait_for("the job to be swept", 30, || {
        (c.cli(&["job", "show", &id.to_string()]).status.code() == Some(2)).then_some(())
    });
    assert!(c.ok(&["jobs", "-o", "json"]).contains("\"jobs\": []"));
}

#[test]
fn events_stream_committed_transitions() {
    let c = Cluster::up(&[]);
    let mut cmd = zenith();
    cmd.args(["events", "-o", "json", "--kind", "job", "--kind", "attempt"])
        .env("ZENITH_SERVER", c.url())
        .env("ZENITH_TOKEN", &c.admin_token);
    let log = c.dir.path().join("events.log");
    let _events = Proc::spawn(cmd, log.clone());
    let events = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    // Until the subscription is live, events of earlier jobs may be missed: probe until one shows.
    wait_for("the event stream to be live", 30, || {
        let probe = c.submit(&["--", "true"]);
        c.wait_final(probe, 30);
        events()
            .iter()
            .any(|e| e["kind"] == "job" && e["job"] == probe && e["state"] == "succeeded")
            .then_some(())
    });
    let id = c.submit(&["--", "sh", "-c", "exit 4"]);
    c.wait_final(id, 30);
    let mine = wait_for("the job's final event", 30, || {
        let mine: Vec<_> = events().into_iter().filter(|e| e["job"] == id).collect();
        mine.iter()
            .any(|e| e["kind"] == "job" && e["state"] == "failed")
            .then_some(mine)
    });
    let seq: Vec<String> = mine
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["kind"].as_str().unwrap(),
                e["state"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        seq,
        [
            "attempt running",
            "job running",
            "attempt failed",
            "job failed"
        ],
        "{mine:?}"
    );
    assert_eq!(mine[2]["exit_code"], 4);
    // Each says when (RFC 3339, with the epoch beside), which attempt of the task and on
    // which node by name; the job's first event says it was submitted.
    assert!(mine[1]["submitted"] == true, "{mine:?}");
    assert!(mine[3].get("submitted").is_none(), "{mine:?}");
    for e in &mine {
        assert!(e["time"].as_str().unwrap().ends_with('Z'), "{e}");
        assert!(e["time_ms"].as_u64().unwrap() > 1_600_000_000_000, "{e}");
    }
    assert_eq!(mine[0]["number"], 1);
    assert_eq!(mine[2]["number"], 1);
    assert_eq!(mine[0]["node_name"], c.nodes()[0]["name"]);
    assert!(
        events().iter().all(|e| e["kind"] != "node"),
        "kind filter applies"
    );
    // A bad filter is a usage error.
    assert_eq!(c.cli(&["events", "--job", "x"]).status.code(), Some(2));
}

#[test]
fn cancel_and_timeout_leave_no_escaped_process() {
    let c = Cluster::up(&[]);
    // One sleep in a new session, one double-forked (orphaned to init), one in the group.
    let script = |m: &str| format!("setsid sleep {m} & (sleep {m} &); sleep {m}");
    let cancelled = c.submit(&["--", "sh", "-c", &script("1000444")]);
    let timed = c.submit(&["--timeout", "2s", "--", "sh", "-c", &script("1000555")]);
    wait_for("all six sleeps", 30, || {
        (processes_matching("sleep 1000444") >= 3 && processes_matching("sleep 1000555") >= 3)
            .then_some(())
    });
    c.ok(&["job", "cancel", &cancelled.to_string()]);
    assert_eq!(c.wait_final(cancelled, 30)["state"], "cancelled");
    let j = c.wait_final(timed, 30);
    assert_eq!(j["reason"], "task 0: timed_out");
    wait_for("no process left", 15, || {
        (processes_matching("sleep 1000444") + processes_matching("sleep 1000555") == 0)
            .then_some(())
    });
}

#[test]
fn structured_json_logs() {
    let c = Cluster::up(&["--log-format", "json"]);
    let id = c.submit(&["--", "true"]);
    c.wait_final(id, 30);
    let log = std::fs::read_to_string(&c.server.as_ref().unwrap().log).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "store loaded"),
        "{log}"
    );
    assert!(lines
        .iter()
        .all(|l| l["level"].is_string() && l["timestamp"].is_string()));
}

#[test]
fn wait_reports_progress_as_lines_or_bars() {
    let c = Cluster::up(&[]);
    let ok = c.submit(&["--cpus", "0.5", "--array", "1-6", "--", "true"]);
    let bad = c.submit(&["--", "sh", "-c", "exit 3"]);
    let out = c.cli(&["job", "wait", &ok.to_string(), &bad.to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("job {ok} succeeded (6/6 tasks done)")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "job {bad} failed (1/1 tasks done): task 0: exit code 3"
        )),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "progress goes to stderr");
    // On a terminal, bars instead of lines (`script` provides the terminal).
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_ok()
    {
        let again = c.submit(&["--array", "1-3", "--", "true"]);
        let cmd = format!(
            "{} job wait {again} --server {} --token {}",
            bin(),
            c.url(),
            c.admin_token
        );
        let tty = std::process::Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .output()
            .unwrap();
        let screen = String::from_utf8_lossy(&tty.stdout);
        assert!(tty.status.success(), "{screen}");
        assert!(
            screen.contains(&format!("job {again}"))
                && screen.contains("3/3")
                && screen.contains("succeeded"),
            "{screen}"
        );
    }
}

#[test]
fn a_data_directory_serves_one_process_at_a_time() {
    let c = Cluster::up(&[]);
    let second = zenith()
        .args([
            "server",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--data-dir",
        ])
        .arg(c.data())
        .output()
        .unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("is in use by another zenith server"), "{err}");
    let agent = zenith()
        .args([
            "agent",
            "--server",
            &c.url(),
            "--token",
            &c.agent_token,
            "--data-dir",
        ])
        .arg(c.data().join("agent"))
        .output()
        .unwrap();
    assert!(!agent.status.success());
    assert!(String::from_utf8_lossy(&agent.stderr).contains("in use by another zenith agent"));
    // The running cluster is unharmed.
    let id = c.submit(&["--", "true"]);
    assert_eq!(c.wait_final(id, 30)["state"], "succeeded");
}

#[test]
fn top_prints_a_snapshot_without_a_terminal() {
    let c = Cluster::up(&[]);
    let id = c.submit(&["--queue", "batch", "--cpus", "0.5", "--", "sleep", "1000.7"]);
    wait_for("the job to run", 30, || {
        (c.job(id)["state"] == "running").then_some(())
    });
    let out = c.ok(&["top"]);
    assert!(out.contains("1 node ready, 0 lost"), "{out}");
    assert!(out.contains("cpus 0.5 used of 2.0"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("batch") && l.split_whitespace().nth(2) == Some("1")),
        "{out}"
    );
    assert!(out.contains("sleep"), "{out}");
    c.ok(&["job", "cancel", &id.to_string()]);
}

/// `job wait` subscribes to events, then reads state: a job that ends in between must be seen
/// in one or the other. Its end used to be flushed without events (nobody listened yet) and
/// committed after the read, and the wait hung (about 1 in 300 here before the fix).
#[test]
fn wait_never_misses_a_job_that_ends_while_it_subscribes() {
    let c = Cluster::up(&[]);
    let rounds = env_num("ZENITH_WAIT_RACE_ROUNDS", 500);
    for i in 0..rounds {
        let id = c.submit(&["--cpus", "0.1", "--", "true"]);
        let out = c.cli(&["job", "wait", &id.to_string(), "--timeout", "10s"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "round {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn wait_exits_with_the_jobs_own_code() {
    let c = Cluster::up(&[]);
    let code = |id: u64, extra: &[&str]| {
        let id = id.to_string();
        let mut args = vec!["job", "wait", id.as_str()];
        args.extend_from_slice(extra);
        c.cli(&args).status.code()
    };
    let seven = c.submit(&["--", "sh", "-c", "exit 7"]);
    assert_eq!(code(seven, &[]), Some(7), "a one-task job's own exit code");
    let signalled = c.submit(&["--", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(code(signalled, &[]), Some(128 + 15), "128 + the signal");
    let array = c.submit(&["--array", "0-1", "--", "sh", "-c", "exit 7"]);
    assert_eq!(code(array, &[]), Some(1), "a failed array");
    let long = c.submit(&["--", "sleep", "60"]);
    assert_eq!(
        code(long, &["--timeout", "300ms"]),
        Some(124),
        "wait's own timeout"
    );
    c.ok(&["job", "cancel", &long.to_string()]);
    assert_eq!(code(long, &[]), Some(1), "cancelled");
}

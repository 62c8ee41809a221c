//! The agent's executor through the public API, on an in-process cluster (test tier c): a
//! real server and a real agent in this process running real processes
//! (`zenith_testkit::cluster`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;
use zenith_model::{AttemptOutcome, DurationMs, JobSpec, JobState};
use zenith_testkit::cluster::{wait_until, AgentOpts, Cluster, ClusterOpts, Output};

const FINISH: Duration = Duration::from_secs(10);

fn sh(script: &str) -> JobSpec {
    JobSpec::new(vec!["sh".into(), "-c".into(), script.into()])
}

/// PIDs of the live processes in process group `pgid` (from `/proc`; zombies count as gone).
fn group_members(pgid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // After the command name in parentheses: state, ppid, pgrp, ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() > 2 && f[0] != "Z" && f[2].parse() == Ok(pgid) {
            out.push(pid);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn env_and_cwd_reach_the_process() {
    let c = Cluster::start(ClusterOpts::default()).await;
    let work = c.dir().join("work here");
    std::fs::create_dir(&work).unwrap();
    let mut spec = sh(r#"printf '%s|%s|%s' "$GREETING" "$ZENITH_JOB_ID" "$(pwd)" > marker"#);
    spec.env.insert("GREETING".into(), "hello there".into());
    spec.cwd = Some(work.display().to_string());
    let id = c.client.submit(&spec).await.unwrap();
    let job = c.wait_job(id, FINISH).await;
    assert_eq!(job.summary.state, JobState::Succeeded, "{job:?}");
    // Written relative to the cwd, so its presence there proves the cwd too.
    let marker = std::fs::read_to_string(work.join("marker")).unwrap();
    assert_eq!(
        marker,
        format!("hello there|{id}|{}", work.display()),
        "env from the spec, the job's own variables, and the cwd"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn non_zero_exit_code_is_reported() {
    let c = Cluster::start(ClusterOpts::default()).await;
    let id = c.client.submit(&sh("exit 7")).await.unwrap();
    let job = c.wait_job(id, FINISH).await;
    assert_eq!(job.summary.state, JobState::Failed);
    assert_eq!(job.summary.tasks.failed, 1);
    assert_eq!(job.attempts.len(), 1, "no retries by default");
    let a = &job.attempts[0];
    assert_eq!(a.exit_code, Some(7));
    assert_eq!(a.outcome, Some(AttemptOutcome::Exited { code: 7 }));
    assert_eq!(a.state, "failed");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn timeout_kills_the_whole_process_tree() {
    let c = Cluster::start(ClusterOpts::default()).await;
    let pg_file = c.dir().join("pgid");
    let mut spec = sh(&format!(
        "echo $$ > '{}'; sleep 100 & sleep 100",
        pg_file.display()
    ));
    spec.timeout = Some(DurationMs(1000));
    let id = c.client.submit(&spec).await.unwrap();
    // The shell leads the job's process group: its PID is the group's ID.
    let pg_file = &pg_file;
    let pgid: u32 = wait_until(
        FINISH,
        "the job's shell and both sleeps",
        move || async move {
            let pgid = std::fs::read_to_string(pg_file).ok()?.trim().parse().ok()?;
            (group_members(pgid).len() >= 2).then_some(pgid)
        },
    )
    .await;
    let job = c.wait_job(id, FINISH).await;
    assert_eq!(job.summary.state, JobState::Failed);
    let a = &job.attempts[0];
    assert_eq!(a.outcome, Some(AttemptOutcome::TimedOut), "{a:?}");
    let ran = a.finished_at.unwrap().saturating_sub(a.started_at);
    assert!(
        ran < 5_000,
        "killed at its 1 s timeout, not later: {ran} ms"
    );
    // The background sleep as well as the foreground one.
    wait_until(
        FINISH,
        "every process of the timed-out job to be gone",
        || async move { group_members(pgid).is_empty().then_some(()) },
    )
    .await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stdout_and_stderr_are_captured_and_served() {
    let c = Cluster::start(ClusterOpts::default()).await;
    let id = c
        .client
        .submit(&sh("echo to-out; echo to-err >&2; seq 1 20000"))
        .await
        .unwrap();
    let job = c.wait_job(id, FINISH).await;
    assert_eq!(job.summary.state, JobState::Succeeded);
    // A result is reported only after its output is uploaded, so it is complete now.
    let out = c.logs(id, 0, Output::Stdout).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 20_001, "every line of stdout");
    assert_eq!(lines[0], "to-out");
    assert_eq!(lines[1], "1");
    assert_eq!(lines[20_000], "20000");
    assert!(!out.contains("to-err"), "stderr kept apart");
    assert_eq!(c.logs(id, 0, Output::Stderr).await, "to-err\n");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn task_array_of_200_all_succeed() {
    let c = Cluster::start(ClusterOpts::with_agents(vec![
        AgentOpts::new("wide").cpus(4)
    ]))
    .await;
    let mut spec = JobSpec::new(vec!["true".into()]);
    spec.array = Some("0-199".parse().unwrap());
    let id = c.client.submit(&spec).await.unwrap();
    let job = c.wait_job(id, Duration::from_secs(20)).await;
    assert_eq!(job.summary.state, JobState::Succeeded, "{:?}", job.summary);
    assert_eq!(job.summary.task_count, 200);
    assert_eq!(job.summary.tasks.succeeded, 200);
    assert_eq!(
        job.attempts_total, 200,
        "one attempt per task, none retried"
    );
    c.shutdown().await;
}

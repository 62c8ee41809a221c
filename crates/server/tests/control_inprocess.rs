//! The control loop through the public API, on an in-process cluster (test tier c): a real
//! server and a real agent in this process, on loopback ports (`zenith_testkit::cluster`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;
use zenith_model::{AttemptOutcome, Constraint, JobSpec, JobState, NodeState};
use zenith_testkit::cluster::{wait_until, AgentOpts, Cluster, ClusterOpts};

const FINISH: Duration = Duration::from_secs(10);

fn sh(script: &str) -> JobSpec {
    JobSpec::new(vec!["sh".into(), "-c".into(), script.into()])
}

/// Whether a process with this PID exists (reaped processes leave no `/proc` entry).
fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn submitted_job_runs_on_the_agent_and_succeeds() {
    let c = Cluster::start(ClusterOpts::default()).await;
    let id = c
        .client
        .submit(&JobSpec::new(vec!["true".into()]))
        .await
        .unwrap();
    let job = c.wait_job(id, FINISH).await;
    assert_eq!(job.summary.state, JobState::Succeeded);
    assert_eq!(job.summary.tasks.succeeded, 1);
    assert_eq!(job.attempts.len(), 1, "one attempt: {:?}", job.attempts);
    let a = &job.attempts[0];
    assert_eq!(a.node, c.node_id(0), "ran on the cluster's agent");
    assert_eq!(a.exit_code, Some(0));
    assert_eq!(a.outcome, Some(AttemptOutcome::Exited { code: 0 }));
    assert!(a.finished_at.is_some());
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_of_a_running_job_kills_its_process() {
    let c = Cluster::start(ClusterOpts::default()).await;
    let pid_file = c.dir().join("pid");
    let id = c
        .client
        .submit(&sh(&format!(
            "echo $$ > {}; exec sleep 30",
            pid_file.display()
        )))
        .await
        .unwrap();
    let pid_file = &pid_file;
    let client = &c.client;
    let pid: u32 = wait_until(
        FINISH,
        "the job to run and write its PID",
        move || async move {
            let j = client.get(id).await.ok()?;
            let pid = std::fs::read_to_string(pid_file)
                .ok()?
                .trim()
                .parse()
                .ok()?;
            (j.summary.state == JobState::Running && alive(pid)).then_some(pid)
        },
    )
    .await;
    c.client.cancel(id).await.unwrap();
    let job = c.wait_job(id, FINISH).await;
    assert_eq!(job.summary.state, JobState::Cancelled);
    assert_eq!(job.summary.tasks.cancelled, 1);
    wait_until(
        FINISH,
        "the cancelled job's process to be gone",
        || async move { (!alive(pid)).then_some(()) },
    )
    .await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resubmission_with_the_same_idempotency_key_returns_the_same_job() {
    let c = Cluster::start(ClusterOpts::default()).await;
    let spec = JobSpec::new(vec!["true".into()]);
    let first = c.client.submit_idempotent(&spec, "key-1").await.unwrap();
    let again = c.client.submit_idempotent(&spec, "key-1").await.unwrap();
    assert_eq!(first, again, "a replayed key returns the job it created");
    let other = c.client.submit_idempotent(&spec, "key-2").await.unwrap();
    assert_ne!(first, other, "a new key makes a new job");
    let mut changed = spec.clone();
    changed.command = vec!["false".into()];
    let err = c
        .client
        .submit_idempotent(&changed, "key-1")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(409), "same key, other body: {err}");
    // Only the two jobs exist: the replay did not submit a third.
    let list = c.client.list(None, None, None, 100).await.unwrap();
    let mut ids: Vec<_> = list.jobs.iter().map(|j| j.id).collect();
    ids.sort();
    assert_eq!(ids, vec![first, other]);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn explain_names_why_a_job_cannot_be_placed() {
    let c = Cluster::start(ClusterOpts::with_agents(vec![AgentOpts::new("small")
        .cpus(2)
        .label("zone", "a")]))
    .await;
    let mut wrong_label = JobSpec::new(vec!["true".into()]);
    wrong_label.constraints = vec!["gpu=a100".parse::<Constraint>().unwrap()];
    let mut too_big = JobSpec::new(vec!["true".into()]);
    too_big.resources.cpu_millis = 64_000;
    let (a, b) = (
        c.client.submit(&wrong_label).await.unwrap(),
        c.client.submit(&too_big).await.unwrap(),
    );

    let e = c.client.explain(a).await.unwrap();
    assert_eq!(e.state, JobState::Queued);
    assert_eq!((e.nodes, e.feasible), (1, 0));
    assert!(
        e.message.contains("constraint gpu=a100 not met"),
        "message: {}",
        e.message
    );
    assert_eq!(e.rejections.get("constraint gpu=a100 not met"), Some(&1));

    let e = c.client.explain(b).await.unwrap();
    assert_eq!((e.nodes, e.feasible), (1, 0));
    assert!(
        e.rejections.keys().any(|r| r.contains("cpus")),
        "the reason names the resource: {:?}",
        e.rejections
    );
    // Neither was started meanwhile.
    for id in [a, b] {
        let j = c.client.get(id).await.unwrap();
        assert_eq!(j.summary.state, JobState::Queued);
        assert!(j.attempts.is_empty());
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_list_shows_the_agent_and_follows_its_restart() {
    let mut opts =
        ClusterOpts::with_agents(vec![AgentOpts::new("worker-1").cpus(3).label("zone", "b")]);
    // Long enough that a loaded machine never declares the node lost before it leaves (a
    // lost node does not become `left`).
    opts.heartbeat_timeout = Duration::from_secs(30);
    let mut c = Cluster::start(opts).await;
    let nodes = c.client.nodes().await.unwrap().nodes;
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    let n = &nodes[0];
    assert_eq!(n.id, c.node_id(0));
    assert_eq!(n.name, "worker-1");
    assert_eq!(n.state, NodeState::Ready);
    assert_eq!(n.resources.cpu_millis, 3000);
    assert_eq!(n.free.cpu_millis, 3000, "nothing runs");
    assert_eq!(
        n.labels,
        BTreeMap::from([("zone".to_string(), "b".to_string())])
    );

    // Stopped (as on SIGTERM), it says so: left at once. Back on the same data directory:
    // the same node, ready again.
    // (Its last report may be answered after the agent gave up waiting, on a loaded machine.)
    c.stop_agent(0).await;
    let client = &c.client;
    wait_until(Duration::from_secs(10), "the node left", || async move {
        let nodes = client.nodes().await.ok()?.nodes;
        (nodes[0].state == NodeState::Left).then_some(())
    })
    .await;
    c.restart_agent(0).await;
    let nodes = c.client.nodes().await.unwrap().nodes;
    assert_eq!(nodes.len(), 1, "the same node, not a new one: {nodes:?}");
    assert_eq!(nodes[0].id, c.node_id(0));
    assert_eq!(nodes[0].state, NodeState::Ready);
    c.shutdown().await;
}

/// Each step reads the output of the one before it, so a step started before its
/// dependency ended fails the run.
const CHAIN: &str = r#"
name: chain
steps:
  - name: first
    script: echo 21 > "$ZENITH_OUTPUTS/n"
    outputs: {params: [n]}
  - name: second
    depends: [first]
    script: echo $(( {{ steps.first.outputs.n }} * 2 )) > "$ZENITH_OUTPUTS/n"
    outputs: {params: [n]}
  - name: third
    depends: [first, second]
    script: test "{{ steps.second.outputs.n }}" = 42
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flow_run_with_dependencies_succeeds_in_order() {
    let c = Cluster::start(ClusterOpts::default()).await;
    let id = c.client.run_flow(CHAIN, &BTreeMap::new()).await.unwrap();
    let run = c.wait_run(id, FINISH).await;
    assert_eq!(api_name(&run.state), "succeeded", "{run:?}");
    let names: Vec<&str> = run.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["first", "second", "third"]);
    for s in &run.steps {
        assert_eq!(api_name(&s.state), "succeeded", "step {}: {s:?}", s.name);
    }
    assert_eq!(
        run.steps[0].outputs.get("n").map(String::as_str),
        Some("21")
    );
    assert_eq!(
        run.steps[1].outputs.get("n").map(String::as_str),
        Some("42")
    );
    // Each step's job started after the jobs of its dependencies had finished.
    let mut spans = Vec::new();
    for s in &run.steps {
        let j = c.client.get(s.job.expect("step job")).await.unwrap();
        let a = &j.attempts[0];
        spans.push((a.started_at, a.finished_at.expect("finished")));
    }
    assert!(spans[0].1 <= spans[1].0, "second after first: {spans:?}");
    assert!(spans[1].1 <= spans[2].0, "third after second: {spans:?}");
    c.shutdown().await;
}

/// A state's API name (`succeeded`), whichever crate defines its type.
fn api_name<T: serde::Serialize>(state: &T) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

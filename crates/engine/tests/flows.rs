//! Flow scenarios on a fake clock: DAG progress, conditions, outputs, fan-out, failure
//! handling, retry budget, deadlines, concurrency, approval and cron.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use zenith_engine::EngineConfig;
use zenith_model::flow::{RunState, StepState};
use zenith_model::AttemptOutcome;
use zenith_testkit::TestEnv;

const OK: AttemptOutcome = AttemptOutcome::Exited { code: 0 };

fn env(cpus: u64) -> TestEnv {
    let mut env = TestEnv::new(EngineConfig::default());
    env.add_node("n1", cpus, 1 << 30, &[]);
    env
}

fn one(env: &TestEnv, name: &str) -> zenith_model::AttemptId {
    let r = env.running_named(name);
    assert_eq!(r.len(), 1, "expected one running {name}: {:?}", env.running);
    r[0]
}

const DIAMOND: &str = r#"
name: diamond
params: {who: world}
steps:
  - name: a
    run: [echo, "hello {{ params.who }}"]
    outputs: {params: [x, list]}
  - name: b
    depends: [a]
    when: "steps.a.outputs.x == 'go'"
    script: echo {{ steps.a.outputs.x }}
  - name: skipme
    depends: [a]
    when: "steps.a.outputs.x == 'stop'"
    run: [never]
  - name: c
    depends: [a]
    forEach: "steps.a.outputs.list"
    run: [echo, "{{ item }}", "{{ run.name }}"]
    outputs: {params: [sq]}
  - name: d
    depends: [b, c, skipme]
    run: ["{{ steps.c.outputs.sq | join(',') }}"]
"#;

#[test]
fn diamond_passes_outputs_fans_out_and_skips() {
    let mut env = env(8);
    let run = env.run_flow(DIAMOND, &[("who", "x y; rm -rf /")]);
    let a = one(&env, "diamond/a");
    assert_eq!(
        env.running[&a].1.spec.command,
        vec!["echo", "hello x y; rm -rf /"],
        "a parameter reaches the process as one argv element"
    );
    env.finish_with(a, OK, &[("x", "go"), ("list", "[1, 2, 3]")]);
    let b = one(&env, "diamond/b");
    let b_spec = &env.running[&b].1.spec;
    assert_eq!(
        b_spec.command,
        vec!["sh", "-eu", "-c", "echo ${ZENITH_VALUE_0}"]
    );
    assert_eq!(b_spec.env["ZENITH_VALUE_0"], "go");
    assert_eq!(env.step_state(run, 2), Some(StepState::Skipped));
    let mut items: Vec<_> = env
        .running
        .values()
        .filter(|(_, a)| a.spec.name.starts_with("diamond/c["))
        .map(|(_, a)| a.spec.command.clone())
        .collect();
    items.sort();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0], vec!["echo", "1", "diamond"]);
    for (i, aid) in env.running_named("diamond/b").into_iter().enumerate() {
        assert_eq!(i, 0);
        env.finish(aid, OK);
    }
    for i in 0..3 {
        let aid = one(&env, &format!("diamond/c[{i}]"));
        let sq = format!("{}", (i + 1) * (i + 1));
        env.finish_with(aid, OK, &[("sq", &sq)]);
    }
    let d = one(&env, "diamond/d");
    assert_eq!(env.running[&d].1.spec.command, vec!["1,4,9"]);
    env.finish(d, OK);
    assert_eq!(env.runs[&run].state, RunState::Succeeded);
    assert_eq!(env.engine.live_runs(), 0);
    assert_eq!(env.instances[&(run, 3, 2)].outputs["sq"], "9");
}

#[test]
fn a_failure_skips_dependents_unless_continue_on_failure() {
    let yaml = r#"
name: fail
steps:
  - {name: a, run: [x]}
  - {name: b, depends: [a], run: [x]}
  - {name: c, depends: [b], run: [x]}
  - {name: side, run: [x]}
"#;
    let mut env = env(8);
    let run = env.run_flow(yaml, &[]);
    env.finish(one(&env, "fail/a"), AttemptOutcome::Exited { code: 2 });
    assert_eq!(env.step_state(run, 1), Some(StepState::Skipped));
    assert_eq!(env.step_state(run, 2), Some(StepState::Skipped));
    assert_eq!(
        env.runs[&run].state,
        RunState::Running,
        "the side branch still runs"
    );
    env.finish(one(&env, "fail/side"), OK);
    let r = &env.runs[&run];
    assert_eq!(r.state, RunState::Failed);
    assert_eq!(
        r.reason.as_ref().map(ToString::to_string).as_deref(),
        Some("step a failed: exit code 2")
    );

    let yaml = r#"
name: cof
steps:
  - {name: a, run: [x], continueOnFailure: true}
  - {name: b, depends: [a], when: "steps.a.state == 'failed'", run: [x]}
"#;
    let run = env.run_flow(yaml, &[]);
    env.finish(one(&env, "cof/a"), AttemptOutcome::Exited { code: 1 });
    env.finish(one(&env, "cof/b"), OK);
    assert_eq!(env.runs[&run].state, RunState::Succeeded);
}

#[test]
fn retries_back_off_within_the_run_budget_and_exit_policies_apply() {
    let yaml = r#"
name: budget
retryBudget: 2
steps:
  - name: a
    run: [x]
    retry: {limit: 5, backoff: linear, delay: 1s}
  - name: b
    run: [x]
    retry: {limit: 5, backoff: fixed, delay: 1s}
"#;
    let mut env = env(8);
    let run = env.run_flow(yaml, &[]);
    let bad = AttemptOutcome::Exited { code: 1 };
    env.finish(one(&env, "budget/a"), bad.clone());
    env.advance(999);
    assert!(env.running_named("budget/a").is_empty(), "backoff not over");
    env.advance(1);
    env.finish(one(&env, "budget/a"), bad.clone());
    env.advance(1999);
    assert!(env.running_named("budget/a").is_empty(), "linear: 2s");
    env.advance(1);
    // Two retries spent: the next failure anywhere is final.
    env.finish(one(&env, "budget/b"), bad.clone());
    assert_eq!(env.step_state(run, 1), Some(StepState::Failed));
    env.finish(one(&env, "budget/a"), bad);
    let r = &env.runs[&run];
    assert_eq!((r.state, r.retries_used), (RunState::Failed, 2));
    assert_eq!(env.instances[&(run, 0, 0)].attempts, 3);
    assert!(env.steps[&(run, 1)]
        .reason
        .as_ref()
        .map(ToString::to_string)
        .as_deref()
        .unwrap()
        .contains("retry budget of 2 spent"));

    let yaml = r#"
name: policy
steps:
  - name: ign
    run: [x]
    failurePolicy: [{exitCodes: [3], action: ignore}]
  - name: hard
    run: [x]
    retry: {limit: 3}
    failurePolicy: [{exitCodes: [4, 5], action: fail}]
"#;
    let run = env.run_flow(yaml, &[]);
    env.finish(one(&env, "policy/ign"), AttemptOutcome::Exited { code: 3 });
    assert_eq!(env.step_state(run, 0), Some(StepState::Succeeded));
    env.finish(one(&env, "policy/hard"), AttemptOutcome::Exited { code: 5 });
    assert_eq!(env.step_state(run, 1), Some(StepState::Failed));
    assert_eq!(
        env.instances[&(run, 1, 0)].attempts,
        1,
        "fail means no retry"
    );
}

#[test]
fn deadline_kills_running_steps_and_fails_the_run() {
    let yaml = "name: dl\ndeadline: 10s\nsteps:\n  - {name: a, run: [sleep]}\n  - {name: b, depends: [a], run: [x]}\n";
    let mut env = env(2);
    let run = env.run_flow(yaml, &[]);
    let a = one(&env, "dl/a");
    env.advance(9_999);
    assert!(env.kills.is_empty());
    env.advance(1);
    assert_eq!(env.kills.len(), 1);
    assert_eq!(env.step_state(run, 1), Some(StepState::Cancelled));
    env.finish(a, AttemptOutcome::Signaled { signal: 15 });
    let r = &env.runs[&run];
    assert_eq!(
        (
            r.state,
            r.reason.as_ref().map(ToString::to_string).as_deref()
        ),
        (RunState::Failed, Some("deadline_exceeded"))
    );
    assert_eq!(env.engine.live_runs(), 0);
    assert_eq!(env.engine.live_jobs(), 0);
}

#[test]
fn concurrency_forbid_refuses_and_replace_cancels() {
    let mut env = env(8);
    let forbid = "name: one\nconcurrency: forbid\nsteps: [{name: a, run: [x]}]\n";
    let first = env.run_flow(forbid, &[]);
    let spec = std::sync::Arc::new(zenith_flowspec::parse_yaml(forbid).unwrap());
    let plan = std::sync::Arc::new(
        zenith_flowspec::check(&spec, &zenith_flowspec::Templates::new()).unwrap(),
    );
    let e = env
        .engine
        .submit_run(
            spec,
            plan,
            Default::default(),
            zenith_model::flow::Trigger::Manual,
            env.now,
        )
        .unwrap_err();
    assert!(e.to_string().contains("forbids concurrent runs"), "{e}");
    env.finish(one(&env, "one/a"), OK);
    assert_eq!(env.runs[&first].state, RunState::Succeeded);

    let replace = "name: two\nconcurrency: replace\nsteps: [{name: a, run: [x]}]\n";
    let old = env.run_flow(replace, &[]);
    let old_attempt = one(&env, "two/a");
    let new = env.run_flow(replace, &[]);
    assert!(env.kills.iter().any(|(_, a)| *a == old_attempt));
    env.finish(old_attempt, AttemptOutcome::Signaled { signal: 15 });
    assert_eq!(env.runs[&old].state, RunState::Cancelled);
    assert_eq!(env.runs[&new].state, RunState::Running);
}

#[test]
fn approval_waits_and_cancel_ends_everything() {
    let yaml = "name: gate\nsteps:\n  - {name: ok, type: approval}\n  - {name: go, depends: [ok], run: [x]}\n";
    let mut env = env(2);
    let run = env.run_flow(yaml, &[]);
    assert_eq!(env.step_state(run, 0), Some(StepState::WaitingApproval));
    assert!(env.running.is_empty());
    assert!(env.engine.approve(run, "go", env.now).is_err());
    env.engine.approve(run, "ok", env.now).unwrap();
    env.settle();
    let go = one(&env, "gate/go");
    env.engine.cancel_run(run, env.now).unwrap();
    env.settle();
    env.finish(go, AttemptOutcome::Signaled { signal: 15 });
    assert_eq!(env.runs[&run].state, RunState::Cancelled);
    assert!(env.engine.cancel_run(run, env.now).is_err());
}

#[test]
fn cron_fires_on_time_and_once_after_a_clock_jump() {
    let yaml = "name: tick\nschedule: '*/10 * * * * *'\nsteps: [{name: a, run: [x]}]\n";
    let mut env = env(64);
    env.now = 1_767_225_600_000; // on a 10 s boundary
    let spec = std::sync::Arc::new(zenith_flowspec::parse_yaml(yaml).unwrap());
    let plan = std::sync::Arc::new(
        zenith_flowspec::check(&spec, &zenith_flowspec::Templates::new()).unwrap(),
    );
    env.engine.apply_flow(spec, plan, env.now).unwrap();
    env.settle();
    env.advance(9_999);
    assert_eq!(env.engine.counters().schedules_fired, 0);
    env.advance(1);
    assert_eq!(env.engine.counters().schedules_fired, 1);
    env.advance(3_600_000);
    assert_eq!(
        env.engine.counters().schedules_fired,
        2,
        "a jump fires once"
    );
    env.advance(10_000);
    assert_eq!(env.engine.counters().schedules_fired, 3);
    env.engine.delete_flow("tick").unwrap();
    env.advance(60_000);
    assert_eq!(env.engine.counters().schedules_fired, 3);

    // forbid: a fire while the previous run is active is skipped, not queued. (n1 went
    // silent during the clock jump and is lost: a fresh node runs it.)
    env.add_node("n2", 64, 1 << 30, &[]);
    let yaml = "name: busy\nconcurrency: forbid\nschedule: '*/10 * * * * *'\nsteps: [{name: a, run: [x]}]\n";
    let spec = std::sync::Arc::new(zenith_flowspec::parse_yaml(yaml).unwrap());
    let plan = std::sync::Arc::new(
        zenith_flowspec::check(&spec, &zenith_flowspec::Templates::new()).unwrap(),
    );
    env.engine.apply_flow(spec, plan, env.now).unwrap();
    env.advance(10_000);
    assert_eq!(env.engine.counters().schedules_fired, 4);
    let names: Vec<_> = env
        .running
        .values()
        .map(|(_, a)| a.spec.name.clone())
        .collect();
    assert_eq!(env.running_named("busy/a").len(), 1, "{names:?}");
    env.advance(10_000);
    assert_eq!(env.engine.counters().schedules_skipped, 1);
    assert_eq!(env.running_named("busy/a").len(), 1);
}

#[test]
fn a_wide_fan_out_runs_in_linear_time() {
    let yaml = "name: wide\nsteps:\n  - name: w\n    forEach: \"range(10000)\"\n    run: [echo, \"{{ item }}\"]\n  - {name: z, depends: [w], run: [x]}\n";
    let mut env = env(10_000);
    let run = env.run_flow(yaml, &[]);
    assert_eq!(env.running.len(), 10_000);
    // Drive the engine directly: TestEnv's per-step sanity check is O(jobs) itself.
    #[allow(clippy::disallowed_methods)] // a measurement for the log, not engine time
    let t = std::time::Instant::now();
    let running = std::mem::take(&mut env.running);
    for (aid, (node, _)) in running {
        env.engine
            .attempt_finished(&node, aid, OK, env.now)
            .unwrap();
        env.engine.schedule(env.now);
    }
    let elapsed = t.elapsed();
    env.settle();
    env.finish(one(&env, "wide/z"), OK);
    assert_eq!(env.runs[&run].state, RunState::Succeeded);
    // The figure goes to the bench report; here only that it completes.
    eprintln!("10,000 fan-out completions: {elapsed:?}");
}

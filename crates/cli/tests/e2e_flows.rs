//! End to end on `zenith up`: flows as a user writes and runs them through the CLI.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use serde_json::Value;

fn write(c: &Cluster, name: &str, text: &str) -> String {
    let p = c.dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

fn run_view(c: &Cluster, id: &str) -> Value {
    serde_json::from_str(&c.ok(&["flow", "show", id, "-o", "json"])).unwrap()
}

fn step<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {v}"))
}

fn run_wait(c: &Cluster, args: &[&str]) -> (String, Option<i32>, String) {
    let mut a = vec!["run"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["--wait", "--timeout", "60s"]);
    let out = c.cli(&a);
    (
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

const PIPELINE: &str = r#"
name: pipeline
params:
  greeting: hello
  target: world
steps:
  - name: prepare
    run: [sh, -c, 'printf "%s|" "$@" > $ZENITH_OUTPUTS/args; echo "[1, 2, 3, 4, 5]" > $ZENITH_OUTPUTS/shards', sh, "{{ params.greeting }}", "{{ params.target }}"]
    outputs: {params: [args, shards]}
  - name: shard
    depends: [prepare]
    forEach: "steps.prepare.outputs.shards"
    script: |
      echo "shard {{ item }} of {{ run.name }}"
      expr {{ item }} \* {{ item }} > "$ZENITH_OUTPUTS/square"
    outputs: {params: [square]}
  - name: check
    depends: [prepare]
    when: "steps.prepare.outputs.args is startingwith('hello')"
    run: [echo, "checked {{ steps.prepare.outputs.args }}"]
    outputs: {params: []}
  - name: never
    depends: [prepare]
    when: "steps.prepare.outputs.args == 'nope'"
    run: [false]
  - name: sum
    depends: [shard, check, never]
    script: |
      total=0
      for n in {{ steps.shard.outputs.square | join(' ') }}; do total=$((total + n)); done
      echo "$total" > "$ZENITH_OUTPUTS/total"
      echo "never was {{ steps.never.state }}"
      echo 'target (in single quotes): {{ params.target }}' 
    outputs: {params: [total]}
"#;

#[test]
fn params_flow_through_steps_with_fan_out_conditions_and_outputs() {
    let c = Cluster::up(&[]);
    let f = write(&c, "pipeline.yaml", PIPELINE);
    assert!(c
        .ok(&["flow", "validate", &f])
        .contains("is valid (5 steps)"));
    let hostile = "a b; echo pwned $(id) `id` *";
    let (id, code, err) = run_wait(&c, &[&f, "-p", &format!("target={hostile}")]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("run ") && err.contains("succeeded"), "{err}");
    let v = run_view(&c, &id);
    assert_eq!(v["state"], "succeeded");
    assert_eq!(v["params"]["target"], hostile);
    // The hostile parameter reached the process as one argv element, unexpanded.
    assert_eq!(
        step(&v, "prepare")["outputs"]["args"],
        format!("hello|{hostile}|")
    );
    let shards: Vec<&Value> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"] == "shard")
        .collect();
    assert_eq!(shards.len(), 5, "one entry per fan-out instance");
    assert!(shards
        .iter()
        .all(|s| s["state"] == "succeeded" && s["step_state"] == "succeeded"));
    assert_eq!(
        (&shards[4]["item"], &shards[4]["index"]),
        (&Value::from(5), &Value::from(4))
    );
    assert_eq!(shards[4]["outputs"]["square"], "25");
    let table = c.ok(&["flow", "show", &id]);
    assert!(table.contains("5 items, 5 succeeded"), "{table}");
    assert_eq!(step(&v, "never")["state"], "skipped");
    assert_eq!(step(&v, "check")["state"], "succeeded");
    assert_eq!(step(&v, "sum")["outputs"]["total"], "55");
    assert_eq!(
        c.ok(&["flow", "logs", &id, "shard", "--instance", "2"]),
        "shard 3 of pipeline\n"
    );
    assert_eq!(
        c.ok(&["flow", "logs", &id, "sum"]),
        format!("never was skipped\ntarget (in single quotes): {hostile}\n")
    );
    // A fan-out step of several: which instance must be said, not guessed.
    let out = c.cli(&["flow", "logs", &id, "shard"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--instance 0..4"),
        "{out:?}"
    );
    let listed = c.ok(&["flows", "-o", "json"]);
    assert!(listed.contains("\"pipeline\""), "{listed}");
}

#[test]
fn retries_exit_policies_and_continue_on_failure() {
    let c = Cluster::up(&[]);
    let f = write(
        &c,
        "fail.yaml",
        r#"
name: flaky
retryBudget: 5
steps:
  - name: flaky
    # Fails twice, then succeeds: a marker file counts the attempts.
    script: |
      n=$(cat "$MARK" 2>/dev/null || echo 0); n=$((n + 1)); echo $n > "$MARK"
      [ "$n" -ge 3 ]
    env: {MARK: "{{ params.mark }}"}
    retry: {limit: 3, backoff: exponential, delay: 100ms, maxDelay: 1s}
  - name: tolerated
    run: [sh, -c, "exit 3"]
    failurePolicy: [{exitCodes: [3], action: ignore}]
  - name: broken
    run: [sh, -c, "echo about to fail; echo bad input >&2; exit 4"]
    retry: {limit: 5, delay: 100ms}
    failurePolicy: [{exitCodes: [4], action: fail}]
    continueOnFailure: true
  - name: after
    depends: [flaky, tolerated, broken]
    run: [echo, "broken was {{ steps.broken.state }}"]
params: {mark: ""}
"#,
    );
    let mark = c.dir.path().join("mark");
    let (id, code, err) = run_wait(&c, &[&f, "-p", &format!("mark={}", mark.display())]);
    assert_eq!(code, Some(0), "{err}");
    let v = run_view(&c, &id);
    assert_eq!(step(&v, "flaky")["attempts"], 3);
    assert_eq!(step(&v, "tolerated")["state"], "succeeded");
    assert_eq!(step(&v, "broken")["state"], "failed");
    assert_eq!(step(&v, "broken")["attempts"], 1, "action fail: no retry");
    assert_eq!(v["retries_used"], 2);
    assert_eq!(c.ok(&["flow", "logs", &id, "after"]), "broken was failed\n");
    // The failing step's error is in its logs by default (stderr on stderr), or alone. (Its
    // output reaches the server shortly after its end: wait for it.)
    let out = wait_for("the failed step's stderr", 15, || {
        let out = c.cli(&["flow", "logs", &id, "broken"]);
        (String::from_utf8_lossy(&out.stderr) == "bad input\n").then_some(out)
    });
    assert_eq!(String::from_utf8_lossy(&out.stdout), "about to fail\n");
    assert_eq!(
        c.ok(&["flow", "logs", &id, "broken", "--stderr"]),
        "bad input\n"
    );

    // A real failure fails the run: exit 1, the reason names the step; dependents skipped.
    let f = write(
        &c,
        "bad.yaml",
        "name: bad\nsteps:\n  - {name: a, run: [sh, -c, 'exit 7']}\n  - {name: b, depends: [a], run: [true]}\n",
    );
    let (id, code, err) = run_wait(&c, &[&f]);
    assert_eq!(code, Some(1), "{err}");
    let v = run_view(&c, &id);
    assert_eq!(v["state"], "failed");
    assert_eq!(v["reason"], "step a failed: exit code 7");
    assert_eq!(step(&v, "b")["state"], "skipped");
}

#[test]
fn deadline_approval_cancel_and_concurrency() {
    let c = Cluster::up(&[]);
    let f = write(
        &c,
        "slow.yaml",
        "name: slow\ndeadline: 1s\nsteps:\n  - {name: nap, run: [sleep, '1000.5']}\n  - {name: next, depends: [nap], run: [true]}\n",
    );
    let (id, code, _) = run_wait(&c, &[&f]);
    assert_eq!(code, Some(1));
    let v = run_view(&c, &id);
    assert_eq!(
        (&v["state"], &v["reason"]),
        (&Value::from("failed"), &Value::from("deadline_exceeded"))
    );
    assert_eq!(step(&v, "next")["state"], "cancelled");
    wait_for("the killed step's process to go", 10, || {
        (processes_matching("1000.5") == 0).then_some(())
    });

    let f = write(
        &c,
        "gate.yaml",
        "name: gate\nconcurrency: forbid\nsteps:\n  - {name: ok, type: approval}\n  - {name: ship, depends: [ok], run: [echo, shipped]}\n",
    );
    let id = c.ok(&["run", &f]).trim().to_string();
    wait_for("waiting_approval", 10, || {
        (step(&run_view(&c, &id), "ok")["state"] == "waiting_approval").then_some(())
    });
    // forbid: a second run while one is active is refused.
    let second = c.cli(&["run", &f]);
    assert_eq!(second.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&second.stderr).contains("forbids concurrent runs"));
    // `flow logs -f` of a step that has not started waits for it and follows it to its end.
    let follower = zenith()
        .env("ZENITH_SERVER", c.url())
        .env("ZENITH_TOKEN", &c.admin_token)
        .args(["flow", "logs", &id, "ship", "-f"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.ok(&["flow", "approve", &id, "ok"]);
    let followed = follower.wait_with_output().unwrap();
    assert!(followed.status.success(), "{followed:?}");
    assert_eq!(String::from_utf8_lossy(&followed.stdout), "shipped\n");
    wait_for("gate run to succeed", 20, || {
        (run_view(&c, &id)["state"] == "succeeded").then_some(())
    });
    assert_eq!(c.ok(&["flow", "logs", &id, "ship"]), "shipped\n");

    let f = write(
        &c,
        "replace.yaml",
        "name: repl\nconcurrency: replace\nsteps:\n  - {name: nap, run: [sleep, '1000.6']}\n",
    );
    let old = c.ok(&["run", &f]).trim().to_string();
    wait_for("old run to start", 10, || {
        (step(&run_view(&c, &old), "nap")["state"] == "running").then_some(())
    });
    let new = c.ok(&["run", &f]).trim().to_string();
    wait_for("old run cancelled", 20, || {
        (run_view(&c, &old)["state"] == "cancelled").then_some(())
    });
    assert_eq!(run_view(&c, &old)["reason"], "replaced by a newer run");
    c.ok(&["flow", "cancel", &new]);
    wait_for("new run cancelled", 20, || {
        (run_view(&c, &new)["state"] == "cancelled").then_some(())
    });
    wait_for("no sleeper left", 10, || {
        (processes_matching("1000.6") == 0).then_some(())
    });
}

#[test]
fn schedules_fire_across_a_server_restart_and_ttl_deletes_runs() {
    let mut c = Cluster::up(&["--sweep-interval", "200ms"]);
    let f = write(
        &c,
        "cron.yaml",
        "name: tick\nschedule: '*/2 * * * * *'\ntimezone: Europe/Berlin\nttl: 3s\nsteps:\n  - {name: a, run: [echo, tock]}\n",
    );
    c.ok(&["flow", "apply", &f]);
    let runs = |c: &Cluster| -> Vec<Value> {
        let v: Value = serde_json::from_str(&c.ok(&["flows", "-o", "json"])).unwrap();
        v["runs"].as_array().unwrap().clone()
    };
    let first = wait_for("a scheduled run to succeed", 20, || {
        runs(&c)
            .into_iter()
            .find(|r| r["trigger"] == "schedule" && r["state"] == "succeeded")
    });
    let first_id = first["id"].as_u64().unwrap();
    // A run in flight when the server dies is finished after the restart.
    let g = write(
        &c,
        "long.yaml",
        "name: long\nsteps:\n  - {name: a, run: [sleep, '2']}\n  - {name: b, depends: [a], run: [echo, done]}\n",
    );
    let long = c.ok(&["run", &g]).trim().to_string();
    wait_for("long run started", 10, || {
        (step(&run_view(&c, &long), "a")["state"] == "running").then_some(())
    });
    c.kill_server();
    c.start_server();
    let later = wait_for("a scheduled run after the restart", 20, || {
        runs(&c).into_iter().find(|r| {
            r["trigger"] == "schedule"
                && r["state"] == "succeeded"
                && r["id"].as_u64().unwrap() > long.parse::<u64>().unwrap()
        })
    });
    assert!(later["id"].as_u64().unwrap() > first_id);
    // An applied flow runs by name too.
    let (by_name, code, err) = run_wait(&c, &["tick"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(run_view(&c, &by_name)["trigger"], "manual");
    wait_for("the interrupted run to finish", 30, || {
        (run_view(&c, &long)["state"] == "succeeded").then_some(())
    });
    assert_eq!(c.ok(&["flow", "logs", &long, "b"]), "done\n");
    // ttl: 3s: the first scheduled run is deleted with its jobs.
    wait_for("the expired run to be deleted", 20, || {
        let out = c.cli(&["flow", "show", &first_id.to_string()]);
        (out.status.code() == Some(2)).then_some(())
    });
    c.ok(&["flow", "delete", "tick"]);
    let v: Value = serde_json::from_str(&c.ok(&["flows", "-o", "json"])).unwrap();
    assert!(v["flows"].as_array().unwrap().is_empty());
}

#[test]
fn malformed_specs_are_refused_with_the_field_and_nothing_runs() {
    let c = Cluster::up(&[]);
    let cases: &[(&str, &str)] = &[
        ("name: x\nsteps:\n  - name: a\n    run: echo\n", "steps[0].run"),
        ("name: x\nsteps:\n  - name: a\n    run: [x]\n  - name: b\n    depends: [zz]\n    run: [x]\n", "steps[1].depends[0]"),
        ("name: x\nsteps:\n  - {name: a, run: [x], depends: [b]}\n  - {name: b, run: [x], depends: [a]}\n", "cycle"),
        ("name: x\nsteps:\n  - {name: a, run: ['{{ params.nope }}']}\n", "steps[0].run[0]"),
        ("name: x\nschedule: '99 * * * *'\nsteps:\n  - {name: a, run: [x]}\n", "schedule"),
        ("name: x\nsteps:\n  - {name: a, run: [x], timeout: forever}\n", "steps[0].timeout"),
        ("name: x\nsteps:\n  - {name: a, run: [x], bogus: 1}\n", "bogus"),
        ("name: x\nsteps: [\n", "line 2"),
    ];
    for (i, (yaml, needle)) in cases.iter().enumerate() {
        let f = write(&c, &format!("bad{i}.yaml"), yaml);
        let local = c.cli(&["flow", "validate", &f]);
        assert_eq!(local.status.code(), Some(2), "{yaml}");
        let msg = String::from_utf8_lossy(&local.stderr).to_string();
        assert!(msg.contains(needle), "{yaml}: {msg}");
        let remote = c.cli(&["run", &f]);
        assert_eq!(remote.status.code(), Some(2), "{yaml}");
        let msg = String::from_utf8_lossy(&remote.stderr).to_string();
        assert!(msg.contains(needle), "server said for {yaml}: {msg}");
    }
    // Parameters must be declared.
    let ok = write(
        &c,
        "ok.yaml",
        "name: ok\nparams: {a: '1'}\nsteps: [{name: s, run: [true]}]\n",
    );
    let out = c.cli(&["run", &ok, "-p", "nope=1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("params.nope"));
    // 1 MB of malformed YAML and an alias bomb: refused, the server stays up.
    let junk = write(&c, "junk.yaml", &"- [a: {b\n".repeat(110_000));
    assert_eq!(c.cli(&["run", &junk]).status.code(), Some(2));
    let bomb = write(
        &c,
        "bomb.yaml",
        "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nname: x\nsteps: []\n",
    );
    assert_eq!(c.cli(&["run", &bomb]).status.code(), Some(2));
    let v: Value = serde_json::from_str(&c.ok(&["flows", "-o", "json"])).unwrap();
    assert!(v["runs"].as_array().unwrap().is_empty(), "nothing ran: {v}");
    let jobs: Value = serde_json::from_str(&c.ok(&["jobs", "-o", "json"])).unwrap();
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 0);
}

#[test]
fn artifacts_move_between_steps_on_different_nodes_and_go_with_the_run() {
    let c = Cluster::with_agents(
        &["--sweep-interval", "200ms"],
        &[
            ("left", &["--cpus", "1", "--resource", "left=1"]),
            ("right", &["--cpus", "1", "--resource", "right=1"]),
        ],
    );
    let f = write(
        &c,
        "art.yaml",
        r#"
name: art
ttl: 2s
steps:
  - name: build
    resources: {cpus: 1, custom: {left: 1}}
    script: |
      mkdir -p out/sub
      echo payload > out/sub/data.txt
      echo "$ZENITH_NODE_ID" > report.txt
    outputs:
      artifacts:
        - {name: tree, path: out}
        - {name: report, path: report.txt}
  - name: use
    depends: [build]
    resources: {cpus: 1, custom: {right: 1}}
    inputs:
      artifacts:
        - {from: build.tree, path: in/tree}
        - {from: build.report, path: built-on}
    script: |
      cat in/tree/sub/data.txt
      [ "$(cat built-on)" != "$ZENITH_NODE_ID" ] && echo "built elsewhere"
  - name: missing
    resources: {cpus: 1, custom: {left: 1}}
    run: [true]
    outputs:
      artifacts: [{name: nothing, path: not-there}]
"#,
    );
    let (id, code, err) = run_wait(&c, &[&f]);
    assert_eq!(code, Some(1), "{err}");
    let v = run_view(&c, &id);
    assert_eq!(step(&v, "use")["state"], "succeeded", "{v}");
    assert_eq!(
        c.ok(&["flow", "logs", &id, "use"]),
        "payload\nbuilt elsewhere\n"
    );
    let missing = step(&v, "missing");
    assert_eq!(missing["state"], "failed");
    assert!(
        missing["reason"]
            .as_str()
            .unwrap()
            .contains("artifact nothing (not-there): not found"),
        "{missing}"
    );
    // Only the node running that very attempt may upload: another enrolled node cannot, in
    // its own name (409: not its attempt) or in the real node's (403: not its credential).
    let api = c.api().with_token(&c.agent_token);
    let run = id.clone();
    let (own, other) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            let intruder = api.enroll("intruder").await;
            let put = |node: &str| {
                let path = format!("/agent/v1/artifacts/{run}/0/0/tree?attempt=1&node={node}");
                intruder
                    .request(reqwest::Method::PUT, &path)
                    .body("junk")
                    .send()
            };
            let own = put("intruder").await.unwrap().status().as_u16();
            let other = put("left").await.unwrap().status().as_u16();
            (own, other)
        });
    assert_eq!((own, other), (409, 403));
    let dir = c.data().join("artifacts").join(&id);
    assert!(dir.join("0/0/tree.tar").exists());
    // ttl: 2s: the run's artifacts go with it.
    wait_for("the run's artifacts to be deleted", 20, || {
        (!dir.exists()).then_some(())
    });
}

#[test]
fn run_and_step_transitions_are_streamed_as_events() {
    let c = Cluster::up(&[]);
    let out = c.dir.path().join("events.jsonl");
    let mut cmd = zenith();
    cmd.args(["events", "--kind", "run", "--kind", "step", "-o", "json"])
        .env("ZENITH_SERVER", c.url())
        .env("ZENITH_TOKEN", &c.admin_token);
    let _watcher = Proc::spawn(cmd, out.clone());
    let f = write(
        &c,
        "ev.yaml",
        "name: ev\nsteps:\n  - {name: a, run: [true]}\n  - {name: b, depends: [a], when: 'false', run: [true]}\n",
    );
    // The watcher subscribes asynchronously: run flows until its stream shows one.
    let lines = wait_for("run and step events", 30, || {
        let (id, code, _) = run_wait(&c, &[&f]);
        assert_eq!(code, Some(0));
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let mine: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["run"].as_u64().map(|r| r.to_string()).as_deref() == Some(id.as_str()))
            .collect();
        // A run whose first event (run running) arrived was watched from its start.
        let whole = mine
            .iter()
            .any(|e| e["kind"] == "run" && e["state"] == "running")
            && mine
                .iter()
                .any(|e| e["kind"] == "run" && e["state"] == "succeeded");
        whole.then_some(mine)
    });
    let kinds: Vec<(String, String, String)> = lines
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["step"].as_str().unwrap_or("").to_string(),
                e["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for want in [
        ("step", "a", "running"),
        ("step", "a", "succeeded"),
        ("step", "b", "skipped"),
        ("run", "", "running"),
        ("run", "", "succeeded"),
    ] {
        assert!(
            kinds
                .iter()
                .any(|k| (k.0.as_str(), k.1.as_str(), k.2.as_str()) == want),
            "{want:?} not in {kinds:?}"
        );
    }
}

#[test]
fn a_gpu_step_lands_only_on_the_node_labelled_for_it() {
    let c = Cluster::with_agents(
        &[],
        &[
            ("plain", &["--cpus", "2"]),
            ("gpu", &["--cpus", "2", "--label", "gpu=a100"]),
        ],
    );
    let f = write(
        &c,
        "place.yaml",
        r#"
name: place
steps:
  - name: prep
    run: [sh, -c, 'echo "$ZENITH_NODE_ID"']
    constraints: ["gpu!=a100"]
  - name: train
    depends: [prep]
    forEach: [1, 2, 3, 4]
    run: [sh, -c, 'echo "$ZENITH_NODE_ID"']
    constraints: [gpu=a100]
    prefer: ["zone=b"]
    queue: gpu
    priority: 7
"#,
    );
    let (id, code, err) = run_wait(&c, &[&f]);
    assert_eq!(code, Some(0), "{err}");
    let v = run_view(&c, &id);
    let node_of = |job: &Value| {
        let j = c.job(job.as_u64().unwrap());
        let attempt = j["attempts"][0]["node"].as_str().unwrap().to_string();
        (j, attempt)
    };
    let names: std::collections::HashMap<String, String> = c
        .nodes()
        .iter()
        .map(|n| {
            (
                n["id"].as_str().unwrap().to_string(),
                n["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let steps = v["steps"].as_array().unwrap();
    let mut trained = 0;
    for s in steps {
        let (j, node) = node_of(&s["job"]);
        match s["name"].as_str().unwrap() {
            "prep" => assert_eq!(names[&node], "plain", "{j}"),
            "train" => {
                assert_eq!(names[&node], "gpu", "{j}");
                assert_eq!(j["spec"]["queue"], "gpu");
                assert_eq!(j["spec"]["priority"], 7);
                assert_eq!(j["spec"]["constraints"][0], "gpu=a100");
                trained += 1;
            }
            other => panic!("unexpected step {other}"),
        }
    }
    assert_eq!(trained, 4, "{v}");
    // A bad constraint is refused at validation, naming the field.
    let bad = write(
        &c,
        "bad.yaml",
        "name: bad\nsteps:\n  - name: a\n    run: [true]\n    constraints: ['=x']\n",
    );
    let out = c.cli(&["flow", "validate", &bad]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("constraints"),
        "{out:?}"
    );
}

//! End to end on `zenith up`: job control as a user drives it through the CLI — hold,
//! release, update, dependencies, throttles, requeue, delete and reservations.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

#[test]
fn job_control_hold_release_update_after_and_array_throttle() {
    let c = Cluster::up(&[]);
    // --after: b runs once a succeeded; one after b:fail can never run and says why.
    let a = c.submit(&["--", "sleep", "1"]);
    let b = c.submit(&["--after", &a.to_string(), "--", "true"]);
    let never = c.submit(&["--after", &format!("{b}:fail"), "--", "true"]);
    let why = c.ok(&["job", "explain", &b.to_string()]);
    assert!(why.contains(&format!("after job {a} (needs ok)")), "{why}");
    let jb = c.wait_final(b, 30);
    assert_eq!(jb["state"], "succeeded");
    let ja = c.job(a);
    assert!(
        jb["attempts"][0]["started_at_ms"].as_u64() >= ja["attempts"][0]["finished_at_ms"].as_u64()
    );
    let jn = c.wait_final(never, 30);
    assert_eq!(jn["state"], "cancelled");
    assert_eq!(
        jn["reason"],
        format!("after job {b} succeeded (needed fail)"),
        "{jn}"
    );
    let out = c.cli(&["submit", "--after", "99999", "--", "true"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("after") && err.contains("99999"), "{err}");

    // Hold, change its priority, release.
    let h = c.submit(&["--hold", "--", "true"]);
    let id = h.to_string();
    assert!(c.ok(&["job", "explain", &id]).contains("held"));
    let v: serde_json::Value =
        serde_json::from_str(&c.ok(&["job", "update", &id, "--priority", "7", "-o", "json"]))
            .unwrap();
    assert_eq!(
        (v["priority"].as_i64(), v["hold"].as_bool()),
        (Some(7), Some(true))
    );
    assert_eq!(c.job(h)["state"], "queued");
    c.ok(&["job", "release", &id]);
    assert_eq!(c.wait_final(h, 30)["state"], "succeeded");
    let out = c.cli(&["job", "hold", &a.to_string()]);
    assert!(!out.status.success(), "a finished job cannot be held");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already succeeded"), "{err}");

    // %1: the array's tasks run one at a time although two fit.
    let t = c.submit(&["--array", "1-4%1", "--", "sleep", "0.2"]);
    let jt = c.wait_final(t, 30);
    assert_eq!(jt["state"], "succeeded");
    let mut spans: Vec<(u64, u64)> = jt["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["started_at_ms"].as_u64().unwrap(),
                a["finished_at_ms"].as_u64().unwrap(),
            )
        })
        .collect();
    spans.sort();
    assert_eq!(spans.len(), 4);
    assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0), "{spans:?}");
}

#[test]
fn a_big_job_is_not_overtaken_by_later_small_ones() {
    // Two cores: small one-core jobs keep them busy; a two-core job of priority 10 must start
    // at the first moment both are free, with no small job started while it waited.
    let c = Cluster::up(&[]);
    let first: Vec<u64> = (0..2).map(|_| c.submit(&["--", "sleep", "1"])).collect();
    wait_for("the first two running", 20, || {
        first
            .iter()
            .all(|id| c.job(*id)["state"] == "running")
            .then_some(())
    });
    let big = c.submit(&["--cpus", "2", "--priority", "10", "--", "true"]);
    let small: Vec<u64> = (0..6).map(|_| c.submit(&["--", "sleep", "0.3"])).collect();
    let jb = c.wait_final(big, 30);
    assert_eq!(jb["state"], "succeeded");
    let queued_at = jb["created_at_ms"].as_u64().unwrap();
    let started = jb["attempts"][0]["started_at_ms"].as_u64().unwrap();
    let last_free = first
        .iter()
        .map(|id| {
            c.wait_final(*id, 30)["attempts"][0]["finished_at_ms"]
                .as_u64()
                .unwrap()
        })
        .max()
        .unwrap();
    for id in &small {
        let j = c.wait_final(*id, 30);
        let s = j["attempts"][0]["started_at_ms"].as_u64().unwrap();
        assert!(
            s < queued_at || s >= started,
            "small job {id} started at {s} while the big one waited ({queued_at}..{started})"
        );
    }
    assert!(started >= last_free, "it needed both cores");
    eprintln!(
        "big job started {} ms after both cores freed",
        started - last_free
    );
}

#[test]
fn requeue_runs_failed_tasks_again_and_delete_forgets_the_job() {
    let c = Cluster::up(&[]);
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ready");
    // Task 2 fails until the marker exists; the others succeed.
    let script = format!(
        "echo task $ZENITH_TASK_INDEX; test $ZENITH_TASK_INDEX != 2 || test -e {}",
        marker.display()
    );
    let job = c.submit(&["--array", "0-3", "--", "sh", "-c", &script]);
    let id = job.to_string();
    let j = c.wait_final(job, 30);
    assert_eq!(j["state"], "failed");
    std::fs::write(&marker, b"").unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&c.ok(&["job", "requeue", &id, "-o", "json"])).unwrap();
    assert_eq!(v["requeued"], 1, "{v}");
    let j = c.wait_final(job, 30);
    assert_eq!(j["state"], "succeeded", "{j}");
    let attempts = j["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 5, "the first four and task 2 again: {j}");
    let task2 = attempts.iter().filter(|a| a["task"] == 2).count();
    assert_eq!(task2, 2, "task 2 ran twice: {j}");
    // Nothing left to requeue without --all; a running job cannot be deleted.
    let out = c.cli(&["job", "requeue", &id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--all"));
    let long = c.submit(&["--", "sleep", "60"]);
    wait_for("the long job running", 20, || {
        (c.job(long)["state"] == "running").then_some(())
    });
    let out = c.cli(&["job", "delete", &long.to_string()]);
    assert!(!out.status.success(), "a running job is not deleted");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cancel it first"));
    c.ok(&["job", "cancel", &long.to_string()]);

    // Delete: the job, its attempts and their logs go.
    let logs = c.data().join("logs");
    let held = |dir: &std::path::Path| {
        walk(dir)
            .iter()
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                attempts
                    .iter()
                    .any(|a| name.starts_with(&format!("{}.", a["id"])))
            })
            .count()
    };
    assert!(held(&logs) > 0, "logs are kept before the delete");
    c.ok(&["job", "delete", &id]);
    let out = c.cli(&["job", "show", &id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    assert_eq!(held(&logs), 0, "its logs are gone");
    let out = c.cli(&["job", "requeue", &id]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_higher_priority_job_preempts_a_preemptible_queue() {
    let c = Cluster::up(&["--preemptible-queue", "spot"]);
    let low: Vec<u64> = (0..2)
        .map(|_| c.submit(&["--queue", "spot", "--", "sleep", "60"]))
        .collect();
    wait_for("the spot jobs running", 20, || {
        low.iter()
            .all(|id| c.job(*id)["state"] == "running")
            .then_some(())
    });
    // The urgent job (default queue, priority 10) fits nowhere: it stops both.
    let urgent = c.submit(&["--cpus", "2", "--priority", "10", "--", "true"]);
    let j = c.wait_final(urgent, 30);
    assert_eq!(j["state"], "succeeded", "{j}");
    // Both spot attempts were stopped for it, ended `preempted`, and queued again (not failed).
    for id in &low {
        let j = wait_for("the preempted job running again", 30, || {
            let j = c.job(*id);
            (j["attempts"].as_array().map(Vec::len) == Some(2)).then_some(j)
        });
        assert_eq!(j["attempts"][0]["state"], "preempted", "{j}");
        assert_eq!(j["state"], "running", "{j}");
        assert!(
            j["attempts"][0]["finished_at_ms"].as_u64()
                <= j["attempts"][1]["started_at_ms"].as_u64()
        );
    }
    let metrics = raw_get(c.port, "/metrics", Some(&c.admin_token), None).unwrap();
    assert!(
        metrics.lines().any(|l| l == "zenith_preemptions_total 2"),
        "{metrics}"
    );
    for id in &low {
        c.ok(&["job", "cancel", &id.to_string()]);
    }
}

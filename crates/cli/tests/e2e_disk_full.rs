//! A job that fills its agent's disk fails alone, with reason `disk_full`; the agent and its
//! other jobs go on, and new work runs once space returns. The agent's data directory is a
//! small tmpfs (needs root to mount; skipped, saying so, where mounting is not allowed).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;

use common::*;
use std::path::PathBuf;
use std::process::Command;

struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn small_disk(dir: &std::path::Path) -> Option<Mounted> {
    std::fs::create_dir_all(dir).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
        .arg(dir)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    ok.then(|| Mounted(dir.to_path_buf()))
}

#[test]
fn a_job_filling_the_agents_disk_fails_alone() {
    let mut c = Cluster::server(&[]);
    let Some(_disk) = small_disk(&c.dir.path().join("agent-small")) else {
        eprintln!("SKIP: cannot mount a tmpfs here (needs root)");
        return;
    };
    c.add_agent("small", &[]);
    c.wait_nodes(1);
    let stop = c.dir.path().join("stop");
    let script = format!(
        "while [ ! -f {} ]; do sleep 0.05; done; echo calm",
        stop.display()
    );
    let calm = c.submit(&["--", "sh", "-c", &script]);
    wait_for("the calm job to run", 30, || {
        (c.job(calm)["state"] == "running").then_some(())
    });
    let chatty = c.submit(&["--", "yes", "zenith fills the disk"]);
    let j = c.wait_final(chatty, 60);
    assert_eq!(j["state"], "failed", "{j}");
    assert_eq!(j["attempts"][0]["reason"], "disk_full", "{j}");
    // The agent is alive and its other job still runs; it ends well once space returns.
    assert!(
        c.agents[0].child.try_wait().unwrap().is_none(),
        "the agent exited"
    );
    assert_eq!(c.job(calm)["state"], "running");
    std::fs::write(&stop, "").unwrap();
    assert_eq!(c.wait_final(calm, 30)["state"], "succeeded");
    assert_eq!(c.ok(&["job", "logs", &calm.to_string()]), "calm\n");
    let after = c.submit(&["--", "echo", "after"]);
    assert_eq!(c.wait_final(after, 30)["state"], "succeeded");
    // The node shows a full disk while it is full.
    let node_full = |c: &Cluster| c.nodes()[0]["disk_full"].as_bool();
    assert_eq!(node_full(&c), Some(false));
    let fill = c.dir.path().join("agent-small/fill");
    let _ = std::fs::write(&fill, vec![0u8; 8 << 20]); // stops at ENOSPC
    wait_for("the node to report its disk full", 30, || {
        (node_full(&c) == Some(true)).then_some(())
    });
    assert!(c.ok(&["nodes"]).contains("ready (disk full)"));
    std::fs::remove_file(&fill).unwrap();
    wait_for("the node to report space again", 30, || {
        (node_full(&c) == Some(false)).then_some(())
    });
}

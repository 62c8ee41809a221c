//! Stopping jobs: kill (SIGTERM, grace, SIGKILL) of an attempt's group and of processes that
//! left it, found by the marks every job carries in its environment; the sweep after a crashed
//! agent run.

use super::Executor;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use zenith_model::{AttemptId, AttemptOutcome};

impl Executor {
    /// Kills an attempt: SIGTERM to its process group and to processes that left the group,
    /// SIGKILL to all of them after the grace period (or as soon as the leader exits).
    pub fn kill(&self, attempt: AttemptId) {
        let pgid = {
            let mut t = self.inner.table.lock();
            if let Some(i) = t.waiting.iter().position(|a| a.attempt == attempt) {
                // Not started: it leaves the backlog and ends as killed.
                t.waiting.remove(i);
                self.inner.metrics.waiting.set(t.waiting.len() as i64);
                drop(t);
                self.end_unstarted(attempt, AttemptOutcome::Signaled { signal: 9 });
                return;
            }
            let Some(p) = t.running.get_mut(&attempt) else {
                return;
            };
            p.killing = true;
            p.pgid
        };
        let Some(pg) = pgid else { return };
        tracing::debug!(%attempt, pgid = pg, "killing attempt");
        signal_group(pg, Signal::SIGTERM);
        self.signal_escapees(attempt, Signal::SIGTERM);
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(this.inner.grace).await;
            let still = this.inner.table.lock().running.contains_key(&attempt);
            if still {
                signal_group(pg, Signal::SIGKILL);
                this.signal_escapees(attempt, Signal::SIGKILL);
            }
        });
    }

    /// Signals every process carrying this node's ID and this attempt's ID in its environment
    /// (what a job starts inherits them, whatever group or session it moves to).
    pub(super) fn signal_escapees(&self, attempt: AttemptId, sig: Signal) {
        let marks = [
            format!("ZENITH_NODE_ID={}", self.inner.node),
            format!("ZENITH_ATTEMPT_ID={attempt}"),
        ];
        let hit = processes_with_env(&marks)
            .into_iter()
            .filter(|p| nix::sys::signal::kill(Pid::from_raw(*p), sig).is_ok())
            .count();
        tracing::debug!(%attempt, signal = %sig, processes = hit, "signalled the attempt's processes");
    }

    /// After a crash of a previous agent run on this node: kills the process groups of jobs it
    /// left behind. They are found by the `ZENITH_NODE_ID` every job carries in its environment,
    /// so nothing is written to disk per job and no unrelated process is ever hit.
    pub fn reap_leftovers(&self) -> usize {
        let my_group = nix::unistd::getpgrp().as_raw();
        let groups: std::collections::BTreeSet<i32> =
            processes_with_env(&[format!("ZENITH_NODE_ID={}", self.inner.node)])
                .into_iter()
                .filter_map(|p| nix::unistd::getpgid(Some(Pid::from_raw(p))).ok())
                .map(|pg| pg.as_raw())
                .filter(|pg| *pg != my_group && *pg > 1)
                .collect();
        groups
            .into_iter()
            .filter(|pg| killpg(Pid::from_raw(*pg), Signal::SIGKILL).is_ok())
            .count()
    }
}

/// Signals a job's process group. A group already gone (the leader exited and nothing else
/// was left in it) is the usual case for a sweep and not worth a word; any other failure
/// may leave processes running, so it is logged.
pub(super) fn signal_group(pg: i32, sig: Signal) {
    match killpg(Pid::from_raw(pg), sig) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => {
            tracing::warn!(pgid = pg, signal = %sig, error = %e, "cannot signal a job's process group")
        }
    }
}

/// Processes (other than this one) whose environment holds every `KEY=VALUE` of `marks`.
fn processes_with_env(marks: &[String]) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<i32>().ok()?, e.path())))
        .filter(|(pid, _)| *pid != me)
        .filter(|(_, path)| {
            std::fs::read(path.join("environ")).is_ok_and(|env| {
                let vars: Vec<&[u8]> = env.split(|b| *b == 0).collect();
                marks.iter().all(|m| vars.contains(&m.as_bytes()))
            })
        })
        .map(|(pid, _)| pid)
        .collect()
}

//! The guardian: a tiny process started with the agent (`zenith __guardian`) that kills the
//! agent's jobs if the agent dies.
//!
//! The agent tells it each job's process group as the job starts (`+PGID`) and ends
//! (`-PGID`), one line each on the guardian's stdin. When that pipe reaches end-of-file — the
//! agent exited or was killed, even with SIGKILL, since the kernel closes its descriptors —
//! the guardian SIGKILLs every group still listed and exits. This replaces a
//! `PR_SET_PDEATHSIG` hook run between fork and exec: without a hook, jobs start through
//! `posix_spawn`, which spares the agent fork's page-table copy and TLB shootdowns (a 10,000
//! task array of `true` went from 676 to about 795 tasks/s), and the whole group dies rather
//! than its leader alone. A job that starts and is not yet listed when the agent dies is left
//! to the next agent start (`Executor::reap_leftovers`).

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use parking_lot::Mutex;
use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

/// The hidden subcommand of the `zenith` binary that runs [`run`].
pub const SUBCOMMAND: &str = "__guardian";
/// Most groups tracked (running attempts of one node); beyond, the oldest are not tracked.
const MAX_GROUPS: usize = 1_000_000;

/// The guardian's side: reads the agent's lines until end-of-file, then kills what is left.
/// Returns the process exit code.
pub fn run() -> i32 {
    let mut groups: HashSet<i32> = HashSet::new();
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let (op, pg) = line.split_at(line.len().min(1));
        let Ok(pg) = pg.trim().parse::<i32>() else {
            continue;
        };
        if pg <= 1 {
            continue;
        }
        match op {
            "+" if groups.len() < MAX_GROUPS => {
                groups.insert(pg);
            }
            "-" => {
                groups.remove(&pg);
            }
            _ => {}
        }
    }
    let killed = groups
        .iter()
        .filter(|pg| killpg(Pid::from_raw(**pg), Signal::SIGKILL).is_ok())
        .count();
    if killed > 0 {
        // Best effort: stderr is the guardian's only channel, and if it is closed there is
        // nowhere left to say so (the groups are killed either way).
        let _ = writeln!(
            std::io::stderr(),
            "zenith guardian: the agent is gone; killed {killed} job process groups"
        );
    }
    0
}

/// The agent's side: the guardian process and the pipe to it.
pub struct Guardian {
    child: Mutex<Option<Pipe>>,
}

struct Pipe {
    child: Child,
    stdin: ChildStdin,
    /// Lines of ends not yet written ([`Guardian::ended`]).
    pending: Vec<u8>,
}

impl Guardian {
    /// Starts `exe __guardian` in a process group of its own (a Ctrl-C to the agent's group
    /// must not kill it before it can act).
    pub fn start(exe: &Path) -> std::io::Result<Guardian> {
        let mut child = Command::new(exe)
            .arg(SUBCOMMAND)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| std::io::Error::other("guardian stdin missing"))?;
        Ok(Guardian {
            child: Mutex::new(Some(Pipe {
                child,
                stdin,
                pending: Vec::new(),
            })),
        })
    }

    /// Writes the held-back lines and `line` (if any) in one system call.
    fn send(&self, line: Option<(char, i32)>) {
        let mut g = self.child.lock();
        let failed = match g.as_mut() {
            Some(p) => {
                if let Some((op, pgid)) = line {
                    p.pending
                        .extend_from_slice(format!("{op}{pgid}\n").as_bytes());
                }
                let failed = !p.pending.is_empty() && p.stdin.write_all(&p.pending).is_err();
                p.pending.clear();
                failed
            }
            None => false,
        };
        if failed {
            tracing::error!(
                "the guardian process is gone: jobs of this agent are no longer killed if it dies"
            );
            *g = None;
        }
    }

    /// A job's process group started: told at once (with the ends held back).
    pub fn started(&self, pgid: i32) {
        self.send(Some(('+', pgid)));
    }

    /// A job's process group ended (its leader was reaped and the group swept). Held back
    /// until the next start or [`Guardian::flush`], which the agent calls before the step
    /// that ended it returns: the end and the start it made room for then go in one write,
    /// one wakeup of the guardian (a write per line was 9% of the agent's CPU in an array
    /// of `true`). Until then the guardian would kill a group that just ended: microseconds,
    /// and only if the agent died in them.
    pub fn ended(&self, pgid: i32) {
        if let Some(p) = self.child.lock().as_mut() {
            p.pending.extend_from_slice(format!("-{pgid}\n").as_bytes());
        }
    }

    /// Writes the ends held back.
    pub fn flush(&self) {
        self.send(None);
    }
}

impl Drop for Guardian {
    fn drop(&mut self) {
        // Closing the pipe ends the guardian (the agent killed its jobs itself by now).
        if let Some(mut p) = self.child.get_mut().take() {
            drop(p.stdin);
            if let Err(e) = p.child.wait() {
                tracing::warn!(error = %e, "cannot wait for the guardian process to exit");
            }
        }
    }
}

//! The life of one started attempt: prepare (scratch directory, input artifacts), spawn,
//! watch (one waiter task), upload its artifacts, finish (sweep its group, give back what it
//! held, read its output parameters) and send its result.

use super::{kill::signal_group, log_path, truncate, Executor};
use crate::artifacts::ArtifactError;
use nix::sys::signal::Signal;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use zenith_model::flow::ArtifactOut;
use zenith_model::{AttemptId, AttemptOutcome};
use zenith_protocol::agent::{Assignment, AttemptResult};

/// Variables of the agent's environment that jobs never inherit.
pub const AGENT_SECRETS: [&str; 4] = [
    "ZENITH_AGENT_TOKEN",
    "ZENITH_TOKEN",
    "ZENITH_STORE",
    "ZENITH_ADMIN_TOKEN_FILE",
];

/// Why a succeeded step's artifacts did not all reach the server (the text becomes its
/// `OutputsFailed` message).
#[derive(Debug, thiserror::Error)]
enum UploadError {
    #[error("this agent cannot move artifacts")]
    NoTransfer,
    #[error("artifact {name} ({path}): {source}")]
    Artifact {
        name: String,
        path: String,
        source: ArtifactError,
    },
}

/// Why a declared output parameter could not be read (the text, after the parameter's name,
/// becomes the `OutputsFailed` message).
#[derive(Debug, thiserror::Error)]
enum OutputError {
    #[error("not written")]
    Missing,
    #[error("larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error(transparent)]
    Read(#[from] std::io::Error),
    #[error("not UTF-8")]
    NotUtf8,
}

impl Executor {
    /// Runs an attempt whose resources are taken: flow steps that move files are prepared
    /// in a task of their own, then each is spawned and watched.
    pub(super) fn begin(&self, a: Assignment, gpus: Vec<u32>) {
        let _span =
            tracing::debug_span!("attempt", job = %a.job, task = a.task, attempt = %a.attempt)
                .entered();
        tracing::debug!("starting");
        if a.io.moves_files() {
            let this = self.clone();
            tokio::spawn(async move { this.prepare_and_spawn(a, gpus).await });
            return;
        }
        self.spawn_and_watch(a, &gpus);
    }

    /// Flow steps that move artifacts: a scratch working directory (unless the step names a
    /// `cwd`) and the input artifacts placed in it, then the process.
    async fn prepare_and_spawn(self, mut a: Assignment, gpus: Vec<u32>) {
        let attempt = a.attempt;
        let Some(transfer) = self.inner.transfer.clone() else {
            let message = "this agent cannot move artifacts".to_string();
            return self.finish(attempt, None, AttemptOutcome::StartFailed { message });
        };
        let dir = match &a.cwd {
            Some(c) => PathBuf::from(c),
            None => {
                let d = self
                    .inner
                    .work_dir
                    .join("attempts")
                    .join(attempt.to_string());
                if let Err(e) = std::fs::create_dir_all(&d) {
                    let message = format!("scratch directory {}: {e}", d.display());
                    return self.finish(attempt, None, AttemptOutcome::StartFailed { message });
                }
                if let Some(p) = self.inner.table.lock().running.get_mut(&attempt) {
                    p.scratch = Some(d.clone());
                }
                a.cwd = Some(d.to_string_lossy().into_owned());
                d
            }
        };
        for input in &a.io.inputs {
            if let Err(e) = transfer
                .fetch(attempt, &input.key, &dir.join(&input.path))
                .await
            {
                let message = truncate(format!("input artifact {}: {e}", input.key));
                return self.finish(attempt, None, AttemptOutcome::StartFailed { message });
            }
        }
        // Gone from the table counts as killed.
        if self.kill_requested(attempt).unwrap_or(true) {
            return self.finish(attempt, None, AttemptOutcome::Signaled { signal: 9 });
        }
        self.spawn_and_watch(a, &gpus);
    }

    fn spawn_and_watch(&self, a: Assignment, gpus: &[u32]) {
        let attempt = a.attempt;
        // Stamped before the spawn: the process may run (and a short one finish) before the
        // spawn call returns, so a stamp taken after it counted less than the job ran.
        let spawning = tokio::time::Instant::now();
        match self.spawn(&a, gpus) {
            Ok(child) => {
                // The job leads its own process group (`process_group(0)`): its PID is the
                // group's ID.
                let pgid = child.id().map(|p| p as i32);
                if let Some(pg) = pgid {
                    self.inner.guardian.started(pg);
                }
                if let Some(p) = self.inner.table.lock().running.get_mut(&attempt) {
                    p.pgid = pgid;
                    p.spawned = Some(spawning);
                }
                self.inner.metrics.attempts_started.inc();
                let this = self.clone();
                let uploads = match a.io.artifacts.is_empty() {
                    true => None,
                    false => Some((a.io.artifacts.clone(), a.cwd.clone().map(PathBuf::from))),
                };
                // The attempt's span covers the process's whole life on this node.
                let span =
                    tracing::debug_span!("run", job = a.job.0, task = a.task, attempt = attempt.0);
                tokio::spawn(tracing::Instrument::instrument(
                    async move { this.watch(attempt, child, pgid, uploads).await },
                    span,
                ));
            }
            Err(e) => {
                let outcome = AttemptOutcome::StartFailed {
                    // An empty command never spawns; the server refuses one at submit.
                    message: truncate(format!(
                        "{}: {e}",
                        a.command.first().map_or("", String::as_str)
                    )),
                };
                self.finish(attempt, None, outcome);
            }
        }
    }

    fn spawn(&self, a: &Assignment, gpus: &[u32]) -> std::io::Result<tokio::process::Child> {
        let program = a
            .command
            .first()
            .ok_or_else(|| std::io::Error::other("empty command"))?;
        let log = |stream| {
            crate::private_file()
                .write(true)
                .create(true)
                .truncate(true)
                .open(log_path(&self.inner.log_dir, a.attempt, stream))
        };
        let (out, err) = (log("stdout")?, log("stderr")?);
        let cwd = a
            .cwd
            .as_ref()
            .map(PathBuf::from)
            .unwrap_or_else(|| self.inner.work_dir.clone());
        let mut cmd = tokio::process::Command::new(program);
        // The agent's own secrets (its join token, a client token, a store URL with a
        // password) are not the job's: removed unless the job's spec sets them itself.
        for var in AGENT_SECRETS {
            cmd.env_remove(var);
        }
        cmd.args(&a.command[1..])
            .envs(&a.env)
            .env("ZENITH_JOB_ID", a.job.to_string())
            .env("ZENITH_TASK_INDEX", a.task.to_string())
            .env("ZENITH_ATTEMPT", a.attempt_number.to_string())
            .env("ZENITH_ATTEMPT_ID", a.attempt.to_string())
            .env("ZENITH_NODE_ID", self.inner.node.as_str())
            .current_dir(cwd)
            .stdin(Stdio::from(self.inner.dev_null.try_clone()?))
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0);
        if self.inner.has_gpus {
            let list: Vec<String> = gpus.iter().map(u32::to_string).collect();
            // Numbered as NVML numbers them (PCI bus order), not CUDA's fastest-first.
            cmd.env("CUDA_VISIBLE_DEVICES", list.join(","))
                .env("CUDA_DEVICE_ORDER", "PCI_BUS_ID");
        }
        if !a.io.outputs.is_empty() {
            let dir = self.inner.outputs_dir.join(a.attempt.to_string());
            std::fs::create_dir_all(&dir)?;
            cmd.env("ZENITH_OUTPUTS", dir);
        }
        if let Some(g) = &a.gang {
            // Its place in the gang, and an MPI hostfile (removed when it ends).
            let file = self
                .inner
                .outputs_dir
                .join(format!("{}.hostfile", a.attempt));
            std::fs::write(&file, g.hostfile())?;
            if let Some(p) = self.inner.table.lock().running.get_mut(&a.attempt) {
                p.hostfile = Some(file.clone());
            }
            cmd.envs(g.env()).env("ZENITH_HOSTFILE", file);
        }
        // No pre-exec hook: the job starts through posix_spawn; the guardian kills it if the
        // agent dies.
        cmd.spawn()
    }

    async fn watch(
        self,
        attempt: AttemptId,
        mut child: tokio::process::Child,
        pgid: Option<i32>,
        uploads: Option<(Vec<ArtifactOut>, Option<PathBuf>)>,
    ) {
        let outcome = match child.wait().await {
            Ok(status) => {
                use std::os::unix::process::ExitStatusExt;
                match (status.code(), status.signal()) {
                    (Some(code), _) => AttemptOutcome::Exited { code },
                    (None, Some(signal)) => AttemptOutcome::Signaled { signal },
                    (None, None) => AttemptOutcome::Exited { code: -1 },
                }
            }
            Err(e) => AttemptOutcome::StartFailed {
                message: truncate(format!("wait failed: {e}")),
            },
        };
        // A failure while the disk holding its output is full: most likely it failed writing
        // (ENOSPC), and says so rather than a bare exit code.
        let outcome = if !outcome.succeeded()
            && matches!(
                outcome,
                AttemptOutcome::Exited { .. } | AttemptOutcome::Signaled { .. }
            )
            && disk_full(&self.inner.log_dir)
        {
            self.inner.metrics.disk_full.inc();
            tracing::warn!(attempt = %attempt, "attempt failed with the disk full");
            AttemptOutcome::DiskFull
        } else {
            outcome
        };
        let outcome = match uploads {
            Some((artifacts, dir)) if outcome.succeeded() => self
                .upload(
                    attempt,
                    &artifacts,
                    dir.as_deref().unwrap_or(&self.inner.work_dir),
                )
                .await
                .map(|()| outcome)
                .unwrap_or_else(|e| AttemptOutcome::OutputsFailed {
                    message: truncate(e.to_string()),
                }),
            _ => outcome,
        };
        self.finish(attempt, pgid, outcome);
    }

    /// Whether a kill of this running attempt was requested; `None` when it is not in the
    /// table (ended, or never started here).
    fn kill_requested(&self, attempt: AttemptId) -> Option<bool> {
        let t = self.inner.table.lock();
        t.running.get(&attempt).map(|p| p.killing)
    }

    /// Uploads a succeeded step's artifacts (not when it is being killed).
    async fn upload(
        &self,
        attempt: AttemptId,
        artifacts: &[ArtifactOut],
        dir: &Path,
    ) -> Result<(), UploadError> {
        let Some(t) = self.inner.transfer.clone() else {
            return Err(UploadError::NoTransfer);
        };
        for a in artifacts {
            if self.kill_requested(attempt).unwrap_or(false) {
                return Ok(());
            }
            let bytes = t
                .put(attempt, &a.key, &dir.join(&a.path))
                .await
                .map_err(|source| UploadError::Artifact {
                    name: a.name.clone(),
                    path: a.path.clone(),
                    source,
                })?;
            self.inner.metrics.artifact_bytes.inc_by(bytes);
        }
        Ok(())
    }

    /// Ends an attempt (started or not): sweeps its group, gives back what it held, reads
    /// its outputs, sends its result and starts what the backlog can now fit.
    pub(super) fn finish(&self, attempt: AttemptId, pgid: Option<i32>, outcome: AttemptOutcome) {
        // Sweep whatever the job left behind in its process group.
        if let Some(pg) = pgid {
            signal_group(pg, Signal::SIGKILL);
            self.inner.guardian.ended(pg);
        }
        let (killed, evicted, wanted, scratch, spawned, hostfile) = {
            let mut t = self.inner.table.lock();
            match t.running.remove(&attempt) {
                Some(p) => {
                    t.free_gpus.extend(p.gpus);
                    t.free.give(&p.resources);
                    t.ended.insert(attempt);
                    (
                        p.killing, p.evicted, p.outputs, p.scratch, p.spawned, p.hostfile,
                    )
                }
                None => (false, false, Vec::new(), None, None, None),
            }
        };
        let outcome = match outcome {
            o if evicted && !o.succeeded() => AttemptOutcome::Evicted,
            o => o,
        };
        let ran_ms = spawned.map(|s| u64::try_from(s.elapsed().as_millis()).unwrap_or(u64::MAX));
        if let Some(d) = scratch {
            crate::warn_unless_gone(std::fs::remove_dir_all(&d), &d, "scratch directory");
        }
        if let Some(f) = hostfile {
            crate::warn_unless_gone(std::fs::remove_file(&f), &f, "hostfile");
        }
        let (outcome, outputs) = self.collect_outputs(attempt, &wanted, outcome);
        if killed {
            // A killed job leaves nothing: also processes that left its group (setsid,
            // double fork), found by the attempt ID in their environment.
            self.signal_escapees(attempt, Signal::SIGKILL);
        }
        tracing::debug!(%attempt, ?outcome, "attempt ended");
        self.inner.metrics.ended(&outcome);
        let running = self.inner.table.lock().running.len();
        self.inner.metrics.running.set(running as i64);
        let results = self.inner.results.clone();
        let r = AttemptResult {
            attempt,
            outcome,
            outputs,
            ran_ms,
        };
        if results.try_send(r.clone()).is_err() {
            tokio::spawn(async move {
                if results.send(r).await.is_err() {
                    // The receiver is gone only once the agent's loop has stopped: the
                    // agent is exiting and killed this attempt itself, and no one is left
                    // to take the result.
                    tracing::debug!(%attempt, "result dropped: the agent is stopping");
                }
            });
        }
        // Its resources are free: the next in the backlog starts now, not after a round
        // trip to the server.
        self.promote();
        self.inner.guardian.flush();
    }

    /// Reads the declared output parameters of an attempt that exited (one trailing newline
    /// trimmed) and removes its outputs directory. A missing or oversized output turns an exit
    /// code of 0 into `OutputsFailed`.
    fn collect_outputs(
        &self,
        attempt: AttemptId,
        wanted: &[String],
        outcome: AttemptOutcome,
    ) -> (AttemptOutcome, BTreeMap<String, String>) {
        let mut out = BTreeMap::new();
        if wanted.is_empty() {
            return (outcome, out);
        }
        let dir = self.inner.outputs_dir.join(attempt.to_string());
        let mut problem = None;
        if outcome.exit_code().is_some() {
            for name in wanted {
                match read_output(&dir.join(name)) {
                    Ok(v) => {
                        out.insert(name.clone(), v);
                    }
                    Err(e) => {
                        problem.get_or_insert(format!("{name}: {e}"));
                    }
                }
            }
        }
        // Not there when the process never spawned.
        crate::warn_unless_gone(std::fs::remove_dir_all(&dir), &dir, "outputs directory");
        match (outcome, problem) {
            (AttemptOutcome::Exited { code: 0 }, Some(message)) => {
                (AttemptOutcome::OutputsFailed { message }, BTreeMap::new())
            }
            (o, _) => (o, out),
        }
    }
}

/// One output value: at most 64 KiB of UTF-8, one trailing newline trimmed.
/// Free space below which the disk counts as full (a write of a log line can fail).
const DISK_FULL_BELOW: u64 = 64 << 10;

/// Whether the file system holding `dir` has (next to) no space left for this user.
pub(crate) fn disk_full(dir: &Path) -> bool {
    match nix::sys::statvfs::statvfs(dir) {
        Ok(s) => s.blocks_available().saturating_mul(s.fragment_size()) < DISK_FULL_BELOW,
        Err(_) => false,
    }
}

fn read_output(path: &Path) -> Result<String, OutputError> {
    let limit = zenith_model::flow::limits::MAX_OUTPUT_BYTES as u64;
    let meta = std::fs::metadata(path).map_err(|_| OutputError::Missing)?;
    if meta.len() > limit {
        return Err(OutputError::TooLarge { limit });
    }
    let bytes = std::fs::read(path)?;
    let mut s = String::from_utf8(bytes).map_err(|_| OutputError::NotUtf8)?;
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_values_and_why_they_fail() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("answer");
        assert_eq!(read_output(&p).unwrap_err().to_string(), "not written");
        std::fs::write(&p, "42\r\n").unwrap();
        assert_eq!(read_output(&p).unwrap(), "42");
        std::fs::write(&p, [0xff, b'\n']).unwrap();
        assert_eq!(read_output(&p).unwrap_err().to_string(), "not UTF-8");
        let limit = zenith_model::flow::limits::MAX_OUTPUT_BYTES;
        std::fs::write(&p, vec![b'a'; limit + 1]).unwrap();
        assert_eq!(
            read_output(&p).unwrap_err().to_string(),
            format!("larger than {limit} bytes")
        );
    }
}

//! The result outbox: finished attempts' results kept on disk until the server acknowledges
//! them, so neither an agent restart nor a server outage loses one.
//!
//! Appends are group-committed (one fsync per batch of results, never per result). The file
//! is emptied when everything is acknowledged and compacted when it grows past
//! [`COMPACT_BYTES`]. Bound: entries are results of attempts this node ran, and the server
//! assigns no new work while it cannot be reached, so the outbox holds at most the attempts
//! that were running when the server went away (plus what finished since).
//!
//! Disk full: the outbox keeps a reserve file ([`RESERVE_BYTES`], allocated at open); a write
//! that meets a full disk is cut back to the last whole line, the reserve is given up and the
//! write tried again. Should that fail too, the results stay in memory (reported all the
//! same, not durable across an agent restart) and the agent goes on; the reserve comes back
//! once space does.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use zenith_model::AttemptId;
use zenith_protocol::agent::AttemptResult;

const COMPACT_BYTES: u64 = 4 << 20;
/// Space held back for results when the disk fills (about 8,000 results).
pub const RESERVE_BYTES: i64 = 1 << 20;
/// An outbox whose entries are all acknowledged is emptied once it holds this much; below
/// that, stale lines are harmless (the server refuses them as duplicates) and truncating on
/// every acknowledgement would cost a metadata write per report.
const EMPTY_AT_BYTES: u64 = 256 << 10;

pub struct Outbox {
    path: PathBuf,
    reserve: PathBuf,
    /// Shared with the blocking thread that writes and syncs a batch.
    file: Arc<File>,
    written: u64,
    pending: BTreeMap<AttemptId, AttemptResult>,
}

impl Outbox {
    /// Opens the outbox in `dir`, loading unacknowledged results (a torn last line is ignored).
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        let path = dir.join("outbox.jsonl");
        let mut pending = BTreeMap::new();
        if let Ok(f) = File::open(&path) {
            for line in BufReader::new(f).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<AttemptResult>(&line) {
                    Ok(r) => {
                        pending.insert(r.attempt, r);
                    }
                    Err(_) => break,
                }
            }
        }
        let mut ob = Outbox {
            file: Arc::new(
                crate::private_file()
                    .create(true)
                    .append(true)
                    .open(&path)?,
            ),
            reserve: dir.join("outbox.reserve"),
            path,
            written: 0,
            pending,
        };
        ob.rewrite()?;
        ob.keep_reserve();
        Ok(ob)
    }

    /// Durably records results: one write and one fsync for the whole batch, on a blocking
    /// thread, so that the agent's one runtime thread goes on reaping and starting jobs
    /// while the disk syncs.
    pub async fn add(&mut self, results: Vec<AttemptResult>) -> std::io::Result<()> {
        if results.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(results.len() * 64);
        for r in &results {
            serde_json::to_writer(&mut buf, r).map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        let len = buf.len() as u64;
        let buf = Arc::new(buf);
        let mut r = self.write(buf.clone()).await;
        if r.as_ref().is_err_and(is_disk_full) && std::fs::remove_file(&self.reserve).is_ok() {
            tracing::warn!("disk full: the outbox spends its reserve");
            r = self.write(buf).await;
        }
        for res in results {
            self.pending.insert(res.attempt, res);
        }
        r?;
        self.written += len;
        Ok(())
    }

    /// Appends `buf` and syncs; a failed write is cut back to the last whole line.
    async fn write(&self, buf: Arc<Vec<u8>>) -> std::io::Result<()> {
        let file = self.file.clone();
        let written = self.written;
        tokio::task::spawn_blocking(move || {
            let r = (&*file).write_all(&buf).and_then(|()| file.sync_data());
            if r.is_err() {
                // Best effort: a torn line left at the end is ignored when the outbox is read.
                let _ = file.set_len(written);
            }
            r
        })
        .await
        .map_err(std::io::Error::other)?
    }

    /// Allocates the reserve file when it is missing (at open, and once space returns).
    fn keep_reserve(&self) {
        if self.reserve.exists() {
            return;
        }
        let made = crate::private_file()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.reserve)
            .and_then(|f| {
                nix::fcntl::posix_fallocate(&f, 0, RESERVE_BYTES).map_err(std::io::Error::from)
            });
        if let Err(e) = made {
            let _ = std::fs::remove_file(&self.reserve);
            tracing::debug!(error = %e, "no outbox reserve for now");
        }
    }

    /// Drops acknowledged results; empties or compacts the file when worthwhile.
    pub fn ack(&mut self, ids: &[AttemptId]) -> std::io::Result<()> {
        for id in ids {
            self.pending.remove(id);
        }
        if !ids.is_empty() {
            self.keep_reserve();
        }
        if self.pending.is_empty() && self.written > EMPTY_AT_BYTES {
            self.file.set_len(0)?;
            self.written = 0;
        } else if self.written > COMPACT_BYTES {
            self.rewrite()?;
        }
        Ok(())
    }

    fn rewrite(&mut self) -> std::io::Result<()> {
        let tmp = self.path.with_extension("jsonl.tmp");
        let mut f = crate::private_file()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        let mut n = 0u64;
        for r in self.pending.values() {
            let mut line = serde_json::to_vec(r).map_err(std::io::Error::other)?;
            line.push(b'\n');
            f.write_all(&line)?;
            n += line.len() as u64;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        self.file = Arc::new(OpenOptions::new().append(true).open(&self.path)?);
        self.written = n;
        Ok(())
    }

    pub fn pending(&self) -> impl Iterator<Item = &AttemptResult> {
        self.pending.values()
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// Whether an I/O error means the disk (or the user's quota) is full.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(c) if c == nix::libc::ENOSPC || c == nix::libc::EDQUOT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zenith_model::AttemptOutcome;

    fn r(id: u64) -> AttemptResult {
        AttemptResult {
            outputs: Default::default(),
            attempt: AttemptId(id),
            outcome: AttemptOutcome::Exited { code: 0 },
            ran_ms: Some(id),
        }
    }

    #[tokio::test]
    async fn survives_reopen_and_acks_empty_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut ob = Outbox::open(dir.path()).unwrap();
        ob.add(vec![r(1), r(2), r(3)]).await.unwrap();
        ob.ack(&[AttemptId(2)]).unwrap();
        drop(ob);
        // A torn line at the end (crash mid-write) is ignored.
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("outbox.jsonl"))
            .unwrap()
            .write_all(b"{\"attem")
            .unwrap();
        let mut ob = Outbox::open(dir.path()).unwrap();
        let ids: Vec<_> = ob.pending().map(|x| x.attempt.0).collect();
        // An acknowledged entry may come back after a restart (acks are not fsynced); the
        // server refuses the duplicate as stale and acknowledges it again.
        assert_eq!(ids, vec![1, 2, 3]);
        ob.ack(&[AttemptId(1), AttemptId(2), AttemptId(3)]).unwrap();
        assert!(ob.is_empty());
        // A large, fully acknowledged outbox is emptied.
        let many: Vec<_> = (10..5000).map(r).collect();
        ob.add(many).await.unwrap();
        let ids: Vec<_> = ob.pending().map(|x| x.attempt).collect();
        ob.ack(&ids).unwrap();
        let len = std::fs::metadata(dir.path().join("outbox.jsonl"))
            .unwrap()
            .len();
        assert_eq!(len, 0);
    }
}

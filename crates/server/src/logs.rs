//! Job output kept on the server: agents upload stdout/stderr in offset-addressed frames
//! (idempotent, resumable), readers stream it back. One file per attempt and stream under
//! `<data>/logs/<attempt / 10000>/`; each file is capped at `max_bytes` (the rest is dropped and
//! a note appended); files go with their job at the retention sweep.

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use zenith_model::AttemptId;
use zenith_protocol::agent::{LogAck, LogFrame, LogStream};

const TRUNCATION_NOTE: &[u8] = b"\n[zenith: output truncated at the server's per-stream limit]\n";

#[derive(Clone, Debug)]
pub struct LogStore {
    root: PathBuf,
    max_bytes: u64,
}

impl LogStore {
    pub fn new(root: PathBuf, max_bytes: u64) -> Self {
        LogStore { root, max_bytes }
    }

    pub fn path(&self, attempt: AttemptId, stream: LogStream) -> PathBuf {
        self.root
            .join((attempt.0 / 10_000).to_string())
            .join(format!("{}.{}", attempt.0, stream.as_str()))
    }

    /// Applies uploaded frames: bytes already held are skipped, a gap is refused; answers
    /// with the length now held for each (attempt, stream) so the agent can resume there.
    pub fn append(&self, frames: &[(LogFrame, &[u8])]) -> std::io::Result<LogAck> {
        let mut ack = LogAck::default();
        for (h, data) in frames {
            let path = self.path(h.attempt, h.stream);
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir)?;
            }
            let mut f = OpenOptions::new().create(true).append(true).open(&path)?;
            let len = f.metadata()?.len();
            let end = h.offset + data.len() as u64;
            let mut held = len;
            if h.offset <= len && end > len {
                let fresh = &data[(len - h.offset) as usize..];
                let room = self.max_bytes.saturating_sub(len);
                if room == 0 {
                    // Already capped: pretend to take it so the agent moves on.
                    held = end;
                } else if (fresh.len() as u64) <= room {
                    f.write_all(fresh)?;
                    held = end;
                } else {
                    f.write_all(&fresh[..room as usize])?;
                    f.write_all(TRUNCATION_NOTE)?;
                    held = end.max(len + room + TRUNCATION_NOTE.len() as u64);
                }
            }
            ack.lengths.push((h.attempt, h.stream, held));
        }
        Ok(ack)
    }

    /// Up to `max` bytes from `offset`; empty at the end (or when nothing was uploaded).
    pub fn read(
        &self,
        attempt: AttemptId,
        stream: LogStream,
        offset: u64,
        max: usize,
    ) -> std::io::Result<Vec<u8>> {
        let mut f = match fs::File::open(self.path(attempt, stream)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        f.seek(SeekFrom::Start(offset))?;
        let mut buf = Vec::with_capacity(max.min(64 * 1024));
        f.take(max as u64).read_to_end(&mut buf)?;
        Ok(buf)
    }

    /// Deletes the logs of swept attempts (missing files are fine).
    pub fn remove(&self, attempts: &[AttemptId]) {
        for a in attempts {
            for s in [LogStream::Stdout, LogStream::Stderr] {
                let path = self.path(*a, s);
                if let Err(e) = fs::remove_file(&path) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!(path = %path.display(), error = %e, "cannot delete a swept log");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_is_idempotent_and_capped() {
        let dir = tempfile::tempdir().unwrap();
        let logs = LogStore::new(dir.path().to_path_buf(), 10);
        let f = |offset, len| LogFrame {
            attempt: AttemptId(7),
            stream: LogStream::Stdout,
            offset,
            len,
        };
        assert_eq!(logs.append(&[(f(0, 4), b"abcd")]).unwrap().lengths[0].2, 4);
        // A resend overlapping what is held adds only the new part.
        assert_eq!(logs.append(&[(f(2, 4), b"cdef")]).unwrap().lengths[0].2, 6);
        // A gap is refused: the answer says where to resume.
        assert_eq!(logs.append(&[(f(9, 1), b"x")]).unwrap().lengths[0].2, 6);
        assert_eq!(
            logs.read(AttemptId(7), LogStream::Stdout, 0, 100).unwrap(),
            b"abcdef"
        );
        logs.append(&[(f(6, 8), b"ghijklmn")]).unwrap();
        let all = logs.read(AttemptId(7), LogStream::Stdout, 0, 1000).unwrap();
        assert!(all.starts_with(b"abcdefghij\n[zenith: output truncated"));
        logs.remove(&[AttemptId(7)]);
        assert!(logs
            .read(AttemptId(7), LogStream::Stdout, 0, 10)
            .unwrap()
            .is_empty());
    }
}

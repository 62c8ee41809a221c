//! Ships attempts' output to the server in offset-addressed frames: new bytes of running
//! attempts on every report (so `logs --follow` is live) and everything of a finished attempt
//! before its result is reported (so `logs` after `wait` is complete).

use crate::executor::log_path;
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use zenith_model::AttemptId;
use zenith_protocol::agent::{LogAck, LogFrame, LogStream};

/// Bytes read per file per report, and per report in all.
const PER_FILE: u64 = 1 << 20;
const PER_REPORT: u64 = 8 << 20;

#[derive(Default)]
pub struct LogShipper {
    /// Bytes the server holds, per (attempt, stream). Entries go when the attempt's result
    /// is acknowledged (bounded by running attempts plus the outbox).
    shipped: HashMap<(AttemptId, LogStream), u64>,
}

/// Frames read for one upload.
pub struct Batch {
    pub frames: Vec<(LogFrame, Vec<u8>)>,
    /// Attempts whose output was read to the end in this batch.
    pub drained: Vec<AttemptId>,
}

impl LogShipper {
    /// Reads new output of `attempts`. An attempt counts as drained when every stream was
    /// read to its end.
    pub fn collect(&self, log_dir: &Path, attempts: &[AttemptId]) -> Batch {
        let mut frames = Vec::new();
        let mut drained = Vec::new();
        let mut budget = PER_REPORT;
        for &a in attempts {
            let mut complete = true;
            for s in [LogStream::Stdout, LogStream::Stderr] {
                let offset = self.shipped.get(&(a, s)).copied().unwrap_or(0);
                let path = log_path(log_dir, a, s.as_str());
                let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                if len <= offset {
                    continue;
                }
                let want = (len - offset).min(PER_FILE).min(budget);
                if want == 0 {
                    complete = false;
                    continue;
                }
                let mut buf = Vec::with_capacity(want as usize);
                let read = std::fs::File::open(&path).and_then(|mut f| {
                    f.seek(SeekFrom::Start(offset))?;
                    f.take(want).read_to_end(&mut buf)
                });
                match read {
                    Ok(n) if n > 0 => {
                        budget -= n as u64;
                        if offset + (n as u64) < len {
                            complete = false;
                        }
                        frames.push((
                            LogFrame {
                                attempt: a,
                                stream: s,
                                offset,
                                len: n as u32,
                            },
                            buf,
                        ));
                    }
                    _ => {}
                }
            }
            if complete {
                drained.push(a);
            }
        }
        Batch { frames, drained }
    }

    /// Records what the server now holds.
    pub fn acknowledge(&mut self, ack: &LogAck) {
        for (a, s, len) in &ack.lengths {
            self.shipped.insert((*a, *s), *len);
        }
    }

    /// Forgets an attempt and deletes its local files (the server has everything).
    pub fn forget(&mut self, log_dir: &Path, a: AttemptId) {
        for s in [LogStream::Stdout, LogStream::Stderr] {
            self.shipped.remove(&(a, s));
            // An attempt that never spawned has no files.
            let path = log_path(log_dir, a, s.as_str());
            crate::warn_unless_gone(std::fs::remove_file(&path), &path, "output file");
        }
    }
}

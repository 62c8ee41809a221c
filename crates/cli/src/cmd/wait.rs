//! `zenith job wait`: follows jobs to their end through the event stream (polling when it is
//! unavailable), with progress bars on a terminal and plain lines otherwise.
//!
//! Exit status: 0 when every job succeeded; for one single-task job that failed, its own exit
//! code (128 + N when signal N killed it); 1 for any other failure; 124 when `--timeout`
//! ran out first.

use crate::exit;
use futures_util::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::time::Duration;
use zenith_client::Client;
use zenith_model::{AttemptOutcome, DurationMs, JobId, JobState, TaskCounts};
use zenith_protocol::api::Event;

/// Most jobs drawn with a bar each; beyond, one bar counts finished jobs.
const MAX_BARS: usize = 20;
/// Plain progress lines for one job at most this often (state changes always print).
const LINE_EVERY: Duration = Duration::from_secs(2);

pub async fn run(
    client: Client,
    ids: Vec<JobId>,
    timeout: Option<DurationMs>,
) -> anyhow::Result<u8> {
    let deadline =
        timeout.map(|t| tokio::time::Instant::now() + Duration::from_millis(t.as_millis()));
    // Subscribe before reading state, so that no transition falls between the two.
    let mut events = client.events(None, &["job"]).await.ok().map(Box::pin);
    let mut pending: BTreeSet<JobId> = ids.iter().copied().collect();
    let mut progress = Progress::new(&ids, std::io::stderr().is_terminal());
    check(&client, &mut pending, &mut progress).await?;
    let mut delay = Duration::from_millis(50);
    while !pending.is_empty() {
        let left = deadline.map(|d| d.saturating_duration_since(tokio::time::Instant::now()));
        if left.is_some_and(|l| l.is_zero()) {
            progress.abandon();
            eprintln!("timed out waiting for {} job(s)", pending.len());
            return Ok(exit::WAIT_TIMED_OUT);
        }
        let Some(stream) = events.as_mut() else {
            tokio::time::sleep(left.map_or(delay, |l| l.min(delay))).await;
            delay = (delay * 2).min(Duration::from_millis(500));
            check(&client, &mut pending, &mut progress).await?;
            continue;
        };
        let next = match left {
            Some(l) => match tokio::time::timeout(l, stream.next()).await {
                Ok(n) => n,
                Err(_) => continue,
            },
            None => stream.next().await,
        };
        match next {
            Some(Ok(Event::Job {
                job,
                state,
                tasks,
                reason,
                ..
            })) if pending.contains(&job) => {
                if state.is_final() {
                    pending.remove(&job);
                }
                progress.update(job, state, tasks, tasks.total(), reason);
            }
            Some(Ok(Event::Lagged { .. })) => check(&client, &mut pending, &mut progress).await?,
            Some(Ok(_)) => {}
            Some(Err(_)) | None => {
                events = None;
                check(&client, &mut pending, &mut progress).await?;
            }
        }
    }
    if progress.all_ok {
        return Ok(0);
    }
    match ids.as_slice() {
        [one] => job_exit_code(&client, *one).await,
        _ => Ok(exit::FAILED),
    }
}

/// The exit status for a single job that did not succeed: a one-task job's own exit code, or
/// 128 + the signal that killed it (as a shell reports it); 1 for anything else (an array,
/// a timeout, a cancel, a start failure).
async fn job_exit_code(client: &Client, id: JobId) -> anyhow::Result<u8> {
    let j = client.get(id).await?;
    if j.summary.task_count != 1 || j.summary.state != JobState::Failed {
        return Ok(exit::FAILED);
    }
    let last = j.attempts.iter().max_by_key(|a| a.id);
    Ok(match last.and_then(|a| a.outcome.as_ref()) {
        Some(AttemptOutcome::Exited { code }) => u8::try_from(*code)
            .ok()
            .filter(|c| *c != 0)
            .unwrap_or(exit::FAILED),
        Some(AttemptOutcome::Signaled { signal }) => {
            u8::try_from(128 + *signal).ok().unwrap_or(exit::FAILED)
        }
        _ => exit::FAILED,
    })
}

/// Reads every pending job's state; finished ones leave the list.
async fn check(
    client: &Client,
    pending: &mut BTreeSet<JobId>,
    progress: &mut Progress,
) -> anyhow::Result<()> {
    for id in pending.clone() {
        let j = client.get_brief(id, 0).await?;
        let s = j.summary;
        if s.state.is_final() {
            pending.remove(&id);
        }
        progress.update(id, s.state, s.tasks, s.task_count, s.reason);
    }
    Ok(())
}

struct Progress {
    bars: Option<(MultiProgress, BTreeMap<JobId, ProgressBar>)>,
    /// One bar for many jobs: finished jobs out of all.
    overall: Option<ProgressBar>,
    /// Last plain line per job: (state, done tasks, when).
    printed: BTreeMap<JobId, (JobState, u32, tokio::time::Instant)>,
    all_ok: bool,
}

impl Progress {
    fn new(ids: &[JobId], tty: bool) -> Self {
        let mut p = Progress {
            bars: None,
            overall: None,
            printed: BTreeMap::new(),
            all_ok: true,
        };
        if !tty {
            return p;
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {msg}")
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        if ids.len() > MAX_BARS {
            let bar = multi.add(ProgressBar::new(ids.len() as u64));
            bar.set_style(style);
            bar.set_prefix("jobs");
            p.overall = Some(bar);
        } else {
            let mut map = BTreeMap::new();
            for id in ids {
                let bar = multi.add(ProgressBar::new(0));
                bar.set_style(style.clone());
                bar.set_prefix(format!("job {id}"));
                map.insert(*id, bar);
            }
            p.bars = Some((multi, map));
        }
        p
    }

    fn update(
        &mut self,
        id: JobId,
        state: JobState,
        tasks: TaskCounts,
        total: u32,
        reason: Option<String>,
    ) {
        let done = tasks.succeeded + tasks.failed + tasks.cancelled;
        let why = reason.map(|r| format!(": {r}")).unwrap_or_default();
        if state.is_final() && state != JobState::Succeeded {
            self.all_ok = false;
        }
        if let Some(bar) = &self.overall {
            if state.is_final() {
                bar.inc(1);
                if state != JobState::Succeeded {
                    bar.println(format!("job {id} {state}{why}"));
                }
            }
            return;
        }
        if let Some((_, bars)) = &self.bars {
            if let Some(bar) = bars.get(&id) {
                bar.set_length(u64::from(total));
                bar.set_position(u64::from(done));
                bar.set_message(format!("{state}{why}"));
                if state.is_final() {
                    bar.finish();
                }
            }
            return;
        }
        let now = tokio::time::Instant::now();
        let show = match self.printed.get(&id) {
            None => true,
            Some((s, d, at)) => {
                *s != state || (*d != done && now.duration_since(*at) >= LINE_EVERY)
            }
        };
        if show {
            self.printed.insert(id, (state, done, now));
            eprintln!("job {id} {state} ({done}/{total} tasks done){why}");
        }
    }

    fn abandon(&self) {
        if let Some(bar) = &self.overall {
            bar.abandon();
        }
        if let Some((_, bars)) = &self.bars {
            for b in bars.values() {
                b.abandon();
            }
        }
    }
}

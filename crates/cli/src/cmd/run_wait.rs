//! `zenith run --wait`: follows a run through the event stream (re-reading the run when the
//! stream lags or is unavailable, then polling), with a progress bar of finished steps on a
//! terminal and one line per step transition otherwise. Exit 0 when the run succeeded.

use crate::exit;
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;
use zenith_client::Client;
use zenith_model::flow::{RunId, RunState, StepState};
use zenith_model::DurationMs;
use zenith_protocol::api::Event;
use zenith_protocol::flows::RunView;

struct Follow {
    id: RunId,
    tty: bool,
    steps: BTreeMap<String, StepState>,
    bar: Option<ProgressBar>,
}

impl Follow {
    fn new(id: RunId, tty: bool) -> Self {
        Follow {
            id,
            tty,
            steps: BTreeMap::new(),
            bar: None,
        }
    }

    /// On a terminal, the bar appears with the first read of the run (which gives its length).
    fn show_bar(&mut self, steps: usize) {
        if !self.tty || self.bar.is_some() {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(steps as u64), ProgressDrawTarget::hidden());
        if let Ok(style) =
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} steps {msg}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(format!("run {}", self.id));
        bar.set_draw_target(ProgressDrawTarget::stderr());
        self.bar = Some(bar);
    }

    fn line(&self, text: String) {
        match &self.bar {
            Some(b) => b.println(text),
            None => {
                let _ = writeln!(std::io::stderr().lock(), "{text}");
            }
        }
    }

    fn step(&mut self, name: &str, state: StepState, reason: Option<&str>) {
        if state == StepState::Pending || self.steps.get(name) == Some(&state) {
            return;
        }
        self.steps.insert(name.to_string(), state);
        let why = reason.map(|r| format!(" ({r})")).unwrap_or_default();
        match &self.bar {
            Some(b) => {
                b.set_position(self.steps.values().filter(|s| s.is_final()).count() as u64);
                b.set_message(format!("{name} {state}"));
                if matches!(state, StepState::Failed | StepState::Cancelled) {
                    b.println(format!("  {name:<24} {state}{why}"));
                }
            }
            None => self.line(format!("  {name:<24} {state}{why}")),
        }
    }

    /// Takes a full read of the run; returns the exit code once it is final.
    fn absorb(&mut self, v: &RunView) -> Option<u8> {
        let mut names: Vec<&str> = v.steps.iter().map(|s| s.name.as_str()).collect();
        names.dedup();
        self.show_bar(names.len());
        for s in &v.steps {
            let reason = if s.index.is_some() {
                None
            } else {
                s.reason.as_deref()
            };
            self.step(&s.name, s.step_state, reason);
        }
        self.end(v.state, v.reason.as_deref())
    }

    fn end(&mut self, state: RunState, reason: Option<&str>) -> Option<u8> {
        if !state.is_final() {
            return None;
        }
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        let why = reason.map(|r| format!(": {r}")).unwrap_or_default();
        self.line(format!("run {} {state}{why}", self.id));
        Some(if state == RunState::Succeeded {
            0
        } else {
            exit::FAILED
        })
    }
}

pub async fn wait(client: &Client, id: RunId, timeout: Option<DurationMs>) -> anyhow::Result<u8> {
    let deadline =
        timeout.map(|t| tokio::time::Instant::now() + Duration::from_millis(t.as_millis()));
    let mut follow = Follow::new(id, std::io::stderr().is_terminal());
    // Subscribe first, then read: no transition falls between the two.
    let mut events = client
        .events_filtered(None, Some(id.0), &["run", "step"])
        .await
        .ok()
        .map(Box::pin);
    let mut reread = true;
    let mut delay = Duration::from_millis(20);
    loop {
        if reread {
            if let Some(code) = follow.absorb(&client.run(id).await?) {
                return Ok(code);
            }
            reread = false;
        }
        let left = deadline
            .map(|d| d.saturating_duration_since(tokio::time::Instant::now()))
            .unwrap_or(Duration::from_secs(3600));
        if left.is_zero() {
            if let Some(b) = &follow.bar {
                b.abandon();
            }
            follow.line(format!("run {id} still running after the timeout"));
            return Ok(exit::FAILED);
        }
        match &mut events {
            Some(stream) => match tokio::time::timeout(left, stream.next()).await {
                Ok(Some(Ok(Event::Step {
                    step,
                    state,
                    reason,
                    ..
                }))) => follow.step(&step, state, reason.as_deref()),
                Ok(Some(Ok(Event::Run { state, reason, .. }))) => {
                    if state.is_final() {
                        // Read once more so that the last steps are shown too.
                        reread = true;
                        let _ = reason;
                    }
                }
                Ok(Some(Ok(_))) => reread = true, // lagged: resync
                Ok(Some(Err(_)) | None) => {
                    events = None;
                    reread = true;
                }
                Err(_) => {}
            },
            None => {
                tokio::time::sleep(delay.min(left)).await;
                delay = (delay * 2).min(Duration::from_millis(500));
                reread = true;
            }
        }
    }
}

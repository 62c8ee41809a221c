//! `zenith top`: the cluster live on a terminal (ratatui): utilisation, queues, nodes, running
//! jobs and recent flow runs, refreshed every `--interval`; `q` or Esc quits. Without a
//! terminal, or with `--once`, one snapshot is printed as text.

use super::Conn;
use crate::output;
use clap::Args;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::widgets::{Block, Paragraph, Row, Table};
use ratatui::Frame;
use std::io::IsTerminal;
use std::time::Duration;
use zenith_client::Client;
use zenith_model::{DurationMs, JobState};
use zenith_protocol::api::{ClusterSummary, JobSummary, NodeView};
use zenith_protocol::flows::RunSummary;

#[derive(Args, Debug)]
pub struct TopArgs {
    #[command(flatten)]
    conn: Conn,
    /// Print one snapshot as text and exit (also what happens without a terminal).
    #[arg(long)]
    once: bool,
    /// How often to refresh.
    #[arg(long, default_value = "1s", value_parser = DurationMs::parse)]
    interval: DurationMs,
}

/// What one refresh shows.
pub struct Snapshot {
    pub summary: ClusterSummary,
    pub nodes: Vec<NodeView>,
    pub running: Vec<JobSummary>,
    pub runs: Vec<RunSummary>,
}

async fn snapshot(client: &Client) -> anyhow::Result<Snapshot> {
    let summary = client.summary().await?;
    let nodes = client.nodes().await?.nodes;
    let running = client
        .list(Some(JobState::Running), None, None, 20)
        .await?
        .jobs;
    let runs = client.runs(None, 10).await?;
    Ok(Snapshot {
        summary,
        nodes,
        running,
        runs,
    })
}

fn headline(s: &ClusterSummary) -> String {
    format!(
        "{} ready, {} lost | cpus {:.1} used of {:.1} | memory {} used of {} | {} running, {} in node backlogs | {} live, {} applied",
        output::count(s.nodes_ready, "node", "nodes"),
        s.nodes_lost,
        s.cpus_total - s.cpus_free,
        s.cpus_total,
        output::bytes(s.memory_total.saturating_sub(s.memory_free)),
        output::bytes(s.memory_total),
        output::count(s.running_attempts, "attempt", "attempts"),
        s.backlogged_attempts,
        output::count(s.runs_live, "flow run", "flow runs"),
        output::count(s.flows_applied, "flow", "flows")
    )
}

fn queue_rows(s: &Snapshot) -> Vec<Vec<String>> {
    s.summary
        .queues
        .iter()
        .map(|q| vec![q.queue.clone(), q.queued.to_string(), q.running.to_string()])
        .collect()
}

fn node_rows(s: &Snapshot) -> Vec<Vec<String>> {
    s.nodes
        .iter()
        .map(|n| {
            let total = n.resources.cpu_millis as f64 / 1000.0;
            let used = total - n.free.cpu_millis as f64 / 1000.0;
            vec![
                n.name.clone(),
                n.state.as_str().to_string(),
                format!("{used:.1}/{total:.1}"),
                n.running.to_string(),
            ]
        })
        .collect()
}

fn job_rows(s: &Snapshot) -> Vec<Vec<String>> {
    let now = output::now_ms();
    s.running
        .iter()
        .map(|j| {
            let done = j.tasks.succeeded + j.tasks.failed + j.tasks.cancelled;
            vec![
                j.id.to_string(),
                j.name.clone(),
                j.queue.clone(),
                format!("{done}/{}", j.task_count),
                output::ago(now, j.created_at),
            ]
        })
        .collect()
}

fn run_rows(s: &Snapshot) -> Vec<Vec<String>> {
    let now = output::now_ms();
    s.runs
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.name.clone(),
                r.state.to_string(),
                output::ago(now, r.created_at),
            ]
        })
        .collect()
}

/// The snapshot as plain text.
pub fn print(s: &Snapshot) {
    out!("{}", headline(&s.summary));
    out!();
    output::table(&["QUEUE", "QUEUED", "RUNNING"], &queue_rows(s));
    out!();
    output::table(&["NODE", "STATE", "CPUS USED", "RUNNING"], &node_rows(s));
    out!();
    output::table(
        &["JOB", "NAME", "QUEUE", "TASKS DONE", "SUBMITTED"],
        &job_rows(s),
    );
    out!();
    output::table(&["RUN", "FLOW", "STATE", "STARTED"], &run_rows(s));
}

fn table<'a>(title: &'a str, header: &'a [&'a str], rows: Vec<Vec<String>>) -> Table<'a> {
    let widths: Vec<Constraint> = header
        .iter()
        .map(|_| Constraint::Ratio(1, header.len() as u32))
        .collect();
    let rows = rows
        .into_iter()
        .map(|r| Row::new(r.into_iter().map(|c| crate::output::safe(&c).into_owned())));
    Table::new(rows, widths)
        .header(Row::new(header.iter().copied()))
        .block(Block::bordered().title(title))
}

/// Draws a snapshot (or the last error) into a frame.
pub fn draw(f: &mut Frame, s: &Snapshot, error: Option<&str>) {
    let [head, top, bottom, foot] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Percentage(45),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(f.area());
    f.render_widget(
        Paragraph::new(headline(&s.summary)).block(Block::bordered().title("zenith")),
        head,
    );
    let [queues, nodes] =
        Layout::horizontal([Constraint::Percentage(40), Constraint::Fill(1)]).areas(top);
    f.render_widget(
        table("queues", &["QUEUE", "QUEUED", "RUNNING"], queue_rows(s)),
        queues,
    );
    f.render_widget(
        table(
            "nodes",
            &["NODE", "STATE", "CPUS USED", "RUNNING"],
            node_rows(s),
        ),
        nodes,
    );
    let [jobs, runs] =
        Layout::horizontal([Constraint::Percentage(60), Constraint::Fill(1)]).areas(bottom);
    f.render_widget(
        table(
            "running jobs",
            &["JOB", "NAME", "QUEUE", "DONE", "SUBMITTED"],
            job_rows(s),
        ),
        jobs,
    );
    f.render_widget(
        table(
            "flow runs",
            &["RUN", "FLOW", "STATE", "STARTED"],
            run_rows(s),
        ),
        runs,
    );
    let status = match error {
        Some(e) => format!("q: quit | last refresh failed: {e}"),
        None => "q: quit".to_string(),
    };
    f.render_widget(Paragraph::new(status), foot);
}

pub async fn run(a: TopArgs) -> anyhow::Result<u8> {
    let client = a.conn.client()?;
    let mut snap = snapshot(&client).await?;
    if a.once || !std::io::stdout().is_terminal() {
        print(&snap);
        return Ok(0);
    }
    let interval = Duration::from_millis(a.interval.as_millis().clamp(100, 60_000));
    let mut terminal = ratatui::try_init()?;
    let result = async {
        let mut error: Option<String> = None;
        loop {
            terminal.draw(|f| draw(f, &snap, error.as_deref()))?;
            // Wait for a key or the next refresh, off the async threads.
            let key = tokio::task::spawn_blocking(move || -> std::io::Result<Option<Event>> {
                if event::poll(interval)? {
                    event::read().map(Some)
                } else {
                    Ok(None)
                }
            })
            .await??;
            if let Some(Event::Key(k)) = key {
                let ctrl_c =
                    k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                if matches!(k.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c {
                    return Ok::<u8, anyhow::Error>(0);
                }
            }
            match snapshot(&client).await {
                Ok(s) => {
                    snap = s;
                    error = None;
                }
                Err(e) => error = Some(e.to_string()),
            }
        }
    }
    .await;
    ratatui::restore();
    result
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    #[test]
    fn draws_every_panel() {
        let s = Snapshot {
            summary: ClusterSummary {
                nodes_ready: 2,
                nodes_lost: 1,
                cpus_total: 4.0,
                cpus_free: 1.5,
                memory_total: 8 << 30,
                memory_free: 4 << 30,
                running_attempts: 3,
                backlogged_attempts: 4,
                queues: vec![zenith_protocol::api::QueueLevel {
                    queue: "batch".into(),
                    queued: 7,
                    running: 3,
                }],
                runs_live: 1,
                flows_applied: 2,
            },
            nodes: Vec::new(),
            running: Vec::new(),
            runs: Vec::new(),
        };
        let mut t = Terminal::new(TestBackend::new(160, 30)).unwrap();
        t.draw(|f| draw(f, &s, Some("boom"))).unwrap();
        let text: String = t
            .backend()
            .buffer()
            .content()
            .iter()
            .map(|c| c.symbol())
            .collect();
        for want in [
            "2 nodes ready, 1 lost",
            "cpus 2.5 used of 4.0",
            "3 attempts running, 4 in node backlogs",
            "batch",
            "running jobs",
            "flow runs",
            "last refresh failed: boom",
        ] {
            assert!(text.contains(want), "{want} not drawn");
        }
    }
}

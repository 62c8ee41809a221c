//! `zenith servers`.

use super::Conn;
use crate::output::{self, Format};
use clap::Args;

#[derive(Args, Debug)]
pub struct ServersArgs {
    #[command(flatten)]
    conn: Conn,
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    format: Format,
}

/// "1.5s", "3m 2s" for a span of milliseconds.
fn span(ms: u64) -> String {
    match ms {
        0..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{}m {}s", ms / 60_000, ms % 60_000 / 1000),
        _ => format!("{}h {}m", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

pub async fn run(a: ServersArgs) -> anyhow::Result<u8> {
    let client = a.conn.client()?;
    let list = client.servers().await?;
    if a.format.is_data() {
        output::data(a.format, &list)?;
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = list
        .members
        .iter()
        .map(|m| {
            vec![
                m.url.clone(),
                if m.leader { "leader" } else { "standby" }.to_string(),
                format!("{} ago", span(m.last_seen_ms_ago)),
                m.version.clone(),
                m.id.clone(),
            ]
        })
        .collect();
    output::table(&["URL", "ROLE", "SEEN", "VERSION", "ID"], &rows);
    match &list.leader {
        _ if list.store == "embedded" => {
            out!("store: embedded (one server, no lease)");
        }
        Some(l) => out!(
            "store: postgres · leader {l} · epoch {} · lease held {} · expires in {} unless renewed · {} commits this epoch",
            list.epoch,
            span(list.lease_age_ms),
            span(list.lease_expires_in_ms.max(0) as u64),
            list.commits_this_epoch
        ),
        None => out!(
            "store: postgres · no leader (lease epoch {} lapsed {} ago): a standby takes over within a poll",
            list.epoch,
            span(list.lease_expires_in_ms.unsigned_abs())
        ),
    }
    if let Some(t) = list.terms.first() {
        out!(
            "previous leader: {} (epoch {}, held {}, {} commits)",
            t.url,
            t.epoch,
            span(t.held_ms),
            t.commits
        );
    }
    Ok(0)
}

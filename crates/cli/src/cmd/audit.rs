//! `zenith audit`: who changed what, and who was refused (admin, operator).

use super::Conn;
use crate::output::{self, Format};
use clap::Args;
use zenith_client::AuditQuery;
use zenith_model::DurationMs;

#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(flatten)]
    conn: Conn,
    /// Only requests of this user.
    #[arg(long)]
    user: Option<String>,
    /// Only requests within this long, e.g. 1h, 7d.
    #[arg(long, value_parser = DurationMs::parse)]
    since: Option<DurationMs>,
    /// Only refused or failed requests.
    #[arg(long)]
    refused: bool,
    /// Most records to show, newest first.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(1..=10000))]
    limit: u16,
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    format: Format,
}

pub async fn run(a: AuditArgs) -> anyhow::Result<u8> {
    let now = output::now_ms();
    let q = AuditQuery {
        user: a.user.clone(),
        since: a.since.map(|d| now.saturating_sub(d.0)),
        refused_only: a.refused,
        before: None,
        limit: a.limit as usize,
    };
    let list = a.conn.client()?.audit(&q).await?;
    if a.format.is_data() {
        output::data(a.format, &list)?;
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = list
        .records
        .iter()
        .map(|r| {
            vec![
                output::when(r.at),
                r.user.clone(),
                r.role.clone(),
                format!("{} {}", r.method, r.path),
                r.status.to_string(),
                r.peer.clone(),
                r.detail.clone(),
            ]
        })
        .collect();
    output::table(
        &[
            "TIME", "USER", "ROLE", "REQUEST", "STATUS", "FROM", "DETAIL",
        ],
        &rows,
    );
    Ok(0)
}

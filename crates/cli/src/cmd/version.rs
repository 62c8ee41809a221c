//! `zenith version`: this binary's build and, when it answers, the server's.

use super::Conn;
use crate::output::{self, Format};
use clap::Args;
use std::time::Duration;
use zenith_protocol::api::VersionView;

#[derive(Args, Debug)]
pub struct VersionArgs {
    #[command(flatten)]
    conn: Conn,
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    format: Format,
}

#[derive(serde::Serialize)]
struct Versions {
    client: VersionView,
    /// `None` when the server did not answer (see `server_error`).
    server: Option<VersionView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_error: Option<String>,
}

/// How long `zenith version` waits for the server before printing its own build alone.
const SERVER_WAIT: Duration = Duration::from_secs(3);

/// Prints both builds; a server that does not answer is said, not an error (exit 0).
pub async fn run(a: VersionArgs) -> anyhow::Result<u8> {
    let asked = async {
        let client = a.conn.client()?;
        anyhow::Ok(client.version().await?)
    };
    let (server, server_error) = match tokio::time::timeout(SERVER_WAIT, asked).await {
        Ok(Ok(v)) => (Some(v), None),
        Ok(Err(e)) => (None, Some(format!("{e:#}"))),
        Err(_) => (None, Some(format!("no answer within {SERVER_WAIT:?}"))),
    };
    let v = Versions {
        client: VersionView::this_build(),
        server,
        server_error,
    };
    if a.format.is_data() {
        output::data(a.format, &v)?;
        return Ok(0);
    }
    let server = a
        .conn
        .target()
        .map(|t| t.server)
        .unwrap_or_else(|e| format!("(config: {e})"));
    out!(
        "zenith {} (agent protocol {})",
        v.client.version,
        v.client.protocol
    );
    match (&v.server, &v.server_error) {
        (Some(s), _) => out!(
            "server {} (agent protocol {}) at {}",
            s.version,
            s.protocol,
            output::safe(&server)
        ),
        (None, e) => out!(
            "server at {}: {}",
            output::safe(&server),
            output::safe(e.as_deref().unwrap_or("not reachable"))
        ),
    }
    Ok(0)
}

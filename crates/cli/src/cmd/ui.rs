//! `zenith ui`: the web UI's address with a sign-in link.

use super::Conn;
use clap::Args;

#[derive(Args, Debug)]
pub struct UiArgs {
    #[command(flatten)]
    conn: Conn,
}

/// Checks that the server takes the token, then prints a link that signs the browser in: the
/// token rides after `#`, which browsers never send to the server, and the page drops it from
/// the address bar.
pub async fn run(a: UiArgs) -> anyhow::Result<u8> {
    let client = a.conn.client()?;
    client.summary().await?;
    let target = a.conn.target()?;
    let base = target.server.trim_end_matches('/');
    match target.token {
        Some(t) => println!("{base}/#token={t}"),
        None => println!("{base}/"),
    }
    Ok(0)
}

//! One module per verb; shared client setup and exit-code mapping here.

pub mod daemon;
pub mod events;
pub mod flow;
pub mod job;
pub mod jobs;
pub mod nodes;
pub mod run_wait;
pub mod servers;
pub mod submit;
pub mod top;
pub mod ui;
pub mod wait;

use crate::exit;
use clap::Args;
use std::path::PathBuf;
use zenith_client::{Client, ClientError};

/// Where to find the server, for every client verb.
#[derive(Args, Clone, Debug)]
pub struct Conn {
    /// Server URL, or several comma-separated (servers sharing a PostgreSQL store): the
    /// next is tried when one refuses the connection.
    #[arg(
        long,
        env = "ZENITH_SERVER",
        default_value = "http://127.0.0.1:7700",
        global = true
    )]
    pub server: String,
    /// API token (default: admin.token in the default data directory).
    #[arg(long, env = "ZENITH_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
}

/// `~/.local/share/zenith` (or the platform's equivalent).
pub fn default_data_dir() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("zenith")
}

impl Conn {
    pub fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::new(&self.server, self.token())?)
    }

    /// `--token`, else admin.token in the default data directory.
    pub fn token(&self) -> Option<String> {
        match &self.token {
            Some(t) => Some(t.clone()),
            None => {
                zenith_server::auth::read_token_file(&default_data_dir().join("admin.token")).ok()
            }
        }
    }
}

/// Maps an error to the CLI's exit code.
pub fn exit_code_for(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<ClientError>() {
        Some(ClientError::Unreachable { .. }) => exit::UNREACHABLE,
        Some(ClientError::Api { status, .. }) if (400..500).contains(status) && *status != 429 => {
            exit::USAGE
        }
        Some(_) => exit::FAILED,
        None if e.downcast_ref::<UsageError>().is_some() => exit::USAGE,
        None => exit::FAILED,
    }
}

/// A next step for errors that new users meet first.
pub fn hint_for(e: &anyhow::Error) -> Option<String> {
    match e.downcast_ref::<ClientError>()? {
        ClientError::Api { status: 401, .. } => Some(format!(
            "pass the admin token with --token or ZENITH_TOKEN (the server writes it to admin.token in its data directory, {} by default)",
            default_data_dir().display()
        )),
        ClientError::Unreachable { url, .. } => {
            Some(format!("is a server running at {url}? start one with `zenith up`, or point --server/ZENITH_SERVER at yours"))
        }
        _ => None,
    }
}

/// A usage or validation error found by the CLI itself.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Parses a job ID argument.
/// A clap `value_parser`: clap prints a String error as given, after the argument's name.
pub fn parse_job_id(s: &str) -> Result<zenith_model::JobId, String> {
    s.parse::<u64>()
        .map(zenith_model::JobId)
        .map_err(|_| format!("job IDs are positive integers, not {s:?}"))
}

/// Parses `K=V` arguments.
/// A clap `value_parser`: clap prints a String error as given, after the argument's name.
pub fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or(format!("expected K=V, not {s:?}"))
}

/// Parses `NAME=COUNT` arguments.
/// A clap `value_parser`: clap prints a String error as given, after the argument's name.
pub fn parse_kv_count(s: &str) -> Result<(String, u64), String> {
    let (k, v) = parse_kv(s)?;
    Ok((
        k,
        v.parse()
            .map_err(|_| format!("count in {s:?} must be a non-negative integer"))?,
    ))
}

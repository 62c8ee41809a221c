//! One module per verb; shared client setup and exit-code mapping here.

pub mod audit;
pub mod daemon;
mod daemon_agent;
pub mod events;
pub mod flow;
pub mod job;
pub mod job_control;
pub mod jobs;
pub mod namespaces;
pub mod nodes;
pub mod run_wait;
pub mod servers;
pub mod submit;
mod tls_setup;
pub mod tokens;
pub mod top;
pub mod ui;
pub mod version;
pub mod wait;

use crate::exit;
use clap::Args;
use std::path::PathBuf;
use zenith_client::{Client, ClientError};

/// Where to find the server, for every client verb.
#[derive(Args, Clone, Debug)]
pub struct Conn {
    /// Server URL, or several comma-separated (servers sharing a PostgreSQL store): the
    /// next is tried when one refuses the connection [default: the URL `zenith up`/`server`
    /// wrote to server.url in the default data directory, else http://127.0.0.1:7700].
    #[arg(long, env = "ZENITH_SERVER", global = true)]
    pub server: Option<String>,
    /// API token (default: admin.token in the default data directory).
    #[arg(long, env = "ZENITH_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) to trust for https:// servers, besides the system's roots
    /// [default: tls/ca.pem in the default data directory, when there].
    #[arg(long, env = "ZENITH_CA_CERT", global = true)]
    pub ca_cert: Option<PathBuf>,
    /// Namespace to submit to and list (default: `default`, or the token's only namespace).
    #[arg(long, short = 'n', env = "ZENITH_NAMESPACE", global = true)]
    pub namespace: Option<String>,
}

/// `~/.local/share/zenith` (or the platform's equivalent).
pub fn default_data_dir() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("zenith")
}

/// Where a server started with the default data directory says it listens.
pub const SERVER_URL_FILE: &str = "server.url";

impl Conn {
    pub fn client(&self) -> anyhow::Result<Client> {
        let ca = self.ca_cert.clone().or_else(|| {
            let p = default_data_dir().join("tls").join("ca.pem");
            p.exists().then_some(p)
        });
        Ok(
            Client::with_ca(&self.server(), self.token(), ca.as_deref())?
                .in_namespace(self.namespace.clone()),
        )
    }

    /// `--server`, else the URL the local server wrote, else `http://127.0.0.1:7700`.
    pub fn server(&self) -> String {
        self.server.clone().unwrap_or_else(|| {
            std::fs::read_to_string(default_data_dir().join(SERVER_URL_FILE))
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| s.starts_with("http://") || s.starts_with("https://"))
                .unwrap_or_else(|| "http://127.0.0.1:7700".into())
        })
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
        ClientError::Api { status: 401, message, .. }
            if message.contains("revoked") || message.contains("expired") =>
        {
            Some("ask an admin for a new token (zenith token create)".into())
        }
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

//! One module per verb; shared client setup and exit-code mapping here.

pub mod audit;
pub mod context;
pub mod daemon;
mod daemon_agent;
pub mod events;
pub mod flow;
pub mod job;
pub mod job_control;
pub mod jobs;
pub mod man;
pub mod namespaces;
pub mod nodes;
pub mod run_wait;
pub mod servers;
pub mod submit;
mod submit_script;
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
    /// next is tried when one refuses the connection [default: the context's server, else
    /// the URL the server in the data directory wrote, else http://127.0.0.1:7700].
    #[arg(long, env = "ZENITH_SERVER", global = true)]
    pub server: Option<String>,
    /// API token [default: the context's, else admin.token in the data directory].
    #[arg(long, env = "ZENITH_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) to trust for https:// servers, besides the system's roots
    /// [default: the context's, else tls/ca.pem in the data directory, when there].
    #[arg(long, env = "ZENITH_CA_CERT", global = true)]
    pub ca_cert: Option<PathBuf>,
    /// Namespace to submit to and list [default: the context's, else `default` or the
    /// token's only namespace].
    #[arg(long, short = 'n', env = "ZENITH_NAMESPACE", global = true)]
    pub namespace: Option<String>,
    /// A context of the config file to use instead of its current one (`zenith context`).
    #[arg(long, env = "ZENITH_CONTEXT", global = true)]
    pub context: Option<String>,
}

/// `$ZENITH_DATA_DIR`, else `~/.local/share/zenith` (or the platform's equivalent): where a
/// server keeps its data, and where client verbs look for its URL, token and CA.
pub fn default_data_dir() -> PathBuf {
    match std::env::var_os("ZENITH_DATA_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => dirs::data_dir()
            .unwrap_or_else(|| PathBuf::from("."))
            .join("zenith"),
    }
}

/// Where a server started with the default data directory says it listens.
pub const SERVER_URL_FILE: &str = "server.url";

/// Where a command's server, token, CA and namespace came from, resolved once.
#[derive(Clone, Debug)]
pub struct Target {
    pub server: String,
    pub token: Option<String>,
    pub ca_cert: Option<PathBuf>,
    pub namespace: Option<String>,
}

impl Conn {
    pub fn client(&self) -> anyhow::Result<Client> {
        let t = self.target()?;
        Ok(Client::with_ca(&t.server, t.token, t.ca_cert.as_deref())?.in_namespace(t.namespace))
    }

    /// Flags and environment first; then the context (`--context`, else the config's
    /// current one, unless `--server` points elsewhere: a context's token is never sent to
    /// another server); then what the server in the data directory wrote there.
    pub fn target(&self) -> anyhow::Result<Target> {
        let cfg = crate::config::Config::load()?;
        let ctx = match (&self.context, &self.server) {
            (Some(name), _) => cfg.context(Some(name))?.map(|(_, c)| c.clone()),
            (None, Some(_)) => None,
            (None, None) => cfg.context(None)?.map(|(_, c)| c.clone()),
        };
        let data = default_data_dir();
        let server = self
            .server
            .clone()
            .or_else(|| ctx.as_ref().map(|c| c.server.clone()))
            .unwrap_or_else(|| {
                std::fs::read_to_string(data.join(SERVER_URL_FILE))
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| s.starts_with("http://") || s.starts_with("https://"))
                    .unwrap_or_else(|| "http://127.0.0.1:7700".into())
            });
        let token = match (&self.token, &ctx) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(c)) => c.token(),
            (None, None) => zenith_server::auth::read_token_file(&data.join("admin.token")).ok(),
        };
        let ca_cert = match (&self.ca_cert, &ctx) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(c)) => c.ca_cert.clone(),
            (None, None) => Some(data.join("tls").join("ca.pem")).filter(|p| p.exists()),
        };
        let namespace = self
            .namespace
            .clone()
            .or_else(|| ctx.as_ref().and_then(|c| c.namespace.clone()));
        Ok(Target {
            server,
            token,
            ca_cert,
            namespace,
        })
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
            "pass the admin token with --token or ZENITH_TOKEN (the server writes it to admin.token in its data directory, {} by default), or use a context (zenith context list)",
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

//! `zenith context`: the config file's named clusters (`crate::config`), as kubectl's.

use crate::config::{self, Config, Context};
use crate::output::{self, Format};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum ContextVerb {
    /// List the contexts; the current one is marked `*`.
    List {
        #[arg(short = 'o', long = "output", value_enum, default_value_t)]
        format: Format,
    },
    /// Make NAME the current context.
    Use { name: String },
    /// Create or update a context.
    Set(SetArgs),
    /// Delete a context.
    Delete { name: String },
    /// Print the current context's name.
    Current,
}

#[derive(Args, Debug)]
pub struct SetArgs {
    name: String,
    /// Server URL, or several comma-separated.
    #[arg(long)]
    server: Option<String>,
    /// A file holding the token (kept there; read at each command).
    #[arg(long, conflicts_with = "token")]
    token_file: Option<PathBuf>,
    /// The token itself (stored in the config file, mode 0600).
    #[arg(long)]
    token: Option<String>,
    /// CA certificate (PEM) to trust for https:// servers.
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// Namespace for commands in this context.
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// Also make it the current context.
    #[arg(long)]
    current: bool,
}

#[derive(serde::Serialize)]
struct Listed<'a> {
    name: &'a str,
    current: bool,
    #[serde(flatten)]
    context: Context,
}

pub fn run(verb: ContextVerb) -> anyhow::Result<u8> {
    let mut cfg = Config::load()?;
    match verb {
        ContextVerb::List { format } => {
            let current = cfg.current_context.as_deref();
            let listed: Vec<Listed> = cfg
                .contexts
                .iter()
                .map(|(name, c)| Listed {
                    name,
                    current: Some(name.as_str()) == current,
                    // Never print a stored token.
                    context: Context {
                        token: c.token.as_ref().map(|_| "(set)".into()),
                        ..c.clone()
                    },
                })
                .collect();
            if format.is_data() {
                output::data(format, &listed)?;
                return Ok(0);
            }
            if listed.is_empty() {
                eprintln!(
                    "no contexts in {} (`zenith up` writes `local`; `zenith context set NAME --server URL` adds one)",
                    config::path().display()
                );
                return Ok(0);
            }
            let rows: Vec<Vec<String>> = listed
                .iter()
                .map(|l| {
                    let c = &l.context;
                    let token = match (&c.token, &c.token_file) {
                        (Some(_), _) => "(in config)".to_string(),
                        (None, Some(f)) => f.display().to_string(),
                        (None, None) => "-".into(),
                    };
                    vec![
                        if l.current { "*" } else { "" }.to_string(),
                        l.name.to_string(),
                        c.server.clone(),
                        c.namespace.clone().unwrap_or_else(|| "-".into()),
                        token,
                    ]
                })
                .collect();
            output::table(&["", "NAME", "SERVER", "NAMESPACE", "TOKEN"], &rows);
        }
        ContextVerb::Use { name } => {
            if !cfg.contexts.contains_key(&name) {
                return Err(cfg.unknown(&name).into());
            }
            cfg.current_context = Some(name.clone());
            cfg.save()?;
            out!("context {name} is current");
        }
        ContextVerb::Set(a) => {
            config::check_name(&a.name).map_err(super::UsageError)?;
            let existing = cfg.contexts.get(&a.name).cloned();
            let mut c = match (existing, &a.server) {
                (Some(c), _) => c,
                (None, Some(s)) => Context {
                    server: s.clone(),
                    ..Default::default()
                },
                (None, None) => {
                    return Err(super::UsageError(format!(
                        "context {} is new: give --server URL",
                        a.name
                    ))
                    .into())
                }
            };
            if let Some(s) = a.server {
                c.server = s;
            }
            if let Some(f) = a.token_file {
                c.token_file = Some(std::path::absolute(&f).unwrap_or(f));
                c.token = None;
            }
            if let Some(t) = a.token {
                c.token = Some(t);
                c.token_file = None;
            }
            if let Some(ca) = a.ca_cert {
                c.ca_cert = Some(std::path::absolute(&ca).unwrap_or(ca));
            }
            if let Some(n) = a.namespace {
                c.namespace = Some(n);
            }
            cfg.contexts.insert(a.name.clone(), c);
            if a.current || cfg.current_context.is_none() {
                cfg.current_context = Some(a.name.clone());
            }
            if cfg.contexts.len() > config::MAX_CONTEXTS {
                return Err(super::UsageError(format!(
                    "at most {} contexts",
                    config::MAX_CONTEXTS
                ))
                .into());
            }
            // Validated as a load would, so a bad URL is refused now, not at the next command.
            let path = config::path();
            cfg.save_to(&path)?;
            if let Err(e) = Config::load_from(&path) {
                cfg.contexts.remove(&a.name);
                cfg.save_to(&path)?;
                return Err(super::UsageError(e.to_string()).into());
            }
            let current = cfg.current_context.as_deref() == Some(a.name.as_str());
            out!(
                "context {} saved{}",
                a.name,
                if current { " (current)" } else { "" }
            );
        }
        ContextVerb::Delete { name } => {
            if cfg.contexts.remove(&name).is_none() {
                return Err(cfg.unknown(&name).into());
            }
            if cfg.current_context.as_deref() == Some(name.as_str()) {
                cfg.current_context = None;
            }
            cfg.save()?;
            out!("context {name} deleted");
        }
        ContextVerb::Current => match &cfg.current_context {
            Some(name) => out!("{name}"),
            None => {
                eprintln!("no current context");
                return Ok(crate::exit::FAILED);
            }
        },
    }
    Ok(0)
}

/// Records the server `zenith up` just started as the context `local` and makes it current,
/// so client verbs find it (another port, another data directory, HTTPS) with no flags.
/// Returns what to tell the user; a config that cannot be read or written is reported and
/// left alone.
pub fn write_local(
    server: &str,
    data_dir: &std::path::Path,
    ca: Option<&std::path::Path>,
) -> String {
    let path = config::path();
    let mut cfg = match Config::load_from(&path) {
        Ok(c) => c,
        Err(e) => return format!("CLI context not written: {e}"),
    };
    let previous = cfg.current_context.clone();
    cfg.contexts.insert(
        config::LOCAL.to_string(),
        Context {
            server: server.to_string(),
            token: None,
            token_file: Some(data_dir.join("admin.token")),
            ca_cert: ca.map(std::path::Path::to_path_buf),
            namespace: None,
        },
    );
    cfg.current_context = Some(config::LOCAL.to_string());
    if let Err(e) = cfg.save_to(&path) {
        return format!("CLI context not written: {e}");
    }
    match previous.filter(|p| p != config::LOCAL) {
        Some(p) => format!("CLI context: local (was {p}; `zenith context use {p}` switches back)"),
        None => format!("CLI context: local (in {})", path.display()),
    }
}

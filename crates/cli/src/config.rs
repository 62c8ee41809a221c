//! The CLI's config file: named contexts (a server, its token and CA, a namespace), one of
//! them current, as kubectl's. `$ZENITH_CONFIG`, else `$XDG_CONFIG_HOME/zenith/config.toml`
//! (`~/.config/zenith/config.toml`). `zenith up` writes the context `local`.
//!
//! ```toml
//! current-context = "prod"
//!
//! [contexts.prod]
//! server = "https://zenith.example.com:7700"
//! token-file = "/home/ada/.zenith-prod.token"
//! ca-cert = "/etc/zenith/ca.pem"
//! namespace = "ml"
//! ```

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Most contexts in one file.
pub const MAX_CONTEXTS: usize = 256;
/// Largest config file read.
const MAX_FILE_BYTES: u64 = 1 << 20;
/// The context `zenith up` writes.
pub const LOCAL: &str = "local";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_context: Option<String>,
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

/// Where one cluster is and how to speak to it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Context {
    /// One URL, or several comma-separated (servers sharing a PostgreSQL store).
    pub server: String,
    /// The token itself (prefer `token-file`: the file stays the one place it is kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// A file holding the token (read at each command, so a rotated token is picked up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// A CA certificate (PEM) to trust for https:// servers, besides the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
    /// The namespace commands act in unless `-n` says otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {cause}")]
    Read { path: String, cause: std::io::Error },
    #[error("{path} is larger than 1 MiB")]
    TooLarge { path: String },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("cannot write {path}: {message}")]
    Write { path: String, message: String },
    #[error("no context named {name:?} in {path}{known}")]
    UnknownContext {
        name: String,
        path: String,
        known: String,
    },
}

/// The config file's path.
pub fn path() -> PathBuf {
    match std::env::var_os("ZENITH_CONFIG").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => dirs::config_dir()
            .unwrap_or_else(|| PathBuf::from("."))
            .join("zenith")
            .join("config.toml"),
    }
}

/// Validates a context name: 1-63 of `A-Za-z0-9._-`.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    match ok {
        true => Ok(()),
        false => Err(format!(
            "context names are 1-63 letters, digits, '.', '_' or '-', not {name:?}"
        )),
    }
}

impl Config {
    /// The file at `path`; none there is an empty config.
    pub fn load_from(path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(cause) => return Err(ConfigError::Read { path: shown, cause }),
        };
        if meta.len() > MAX_FILE_BYTES {
            return Err(ConfigError::TooLarge { path: shown });
        }
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
            path: shown.clone(),
            cause,
        })?;
        let cfg: Config = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: shown.clone(),
            message: e.to_string().trim_end().to_string(),
        })?;
        cfg.validate().map_err(|message| ConfigError::Invalid {
            path: shown,
            message,
        })?;
        Ok(cfg)
    }

    pub fn load() -> Result<Config, ConfigError> {
        Config::load_from(&path())
    }

    fn validate(&self) -> Result<(), String> {
        if self.contexts.len() > MAX_CONTEXTS {
            return Err(format!("contexts: at most {MAX_CONTEXTS}"));
        }
        for (name, c) in &self.contexts {
            check_name(name).map_err(|m| format!("contexts.{name}: {m}"))?;
            if !(c.server.starts_with("http://") || c.server.starts_with("https://")) {
                return Err(format!(
                    "contexts.{name}.server: must be an http:// or https:// URL, not {:?}",
                    c.server
                ));
            }
            if c.token.is_some() && c.token_file.is_some() {
                return Err(format!(
                    "contexts.{name}: give token or token-file, not both"
                ));
            }
        }
        Ok(())
    }

    /// The context `name`, else the current one, if any.
    pub fn context(&self, name: Option<&str>) -> Result<Option<(&str, &Context)>, ConfigError> {
        let Some(name) = name.or(self.current_context.as_deref()) else {
            return Ok(None);
        };
        match self.contexts.get_key_value(name) {
            Some((k, c)) => Ok(Some((k.as_str(), c))),
            None => Err(self.unknown(name)),
        }
    }

    pub fn unknown(&self, name: &str) -> ConfigError {
        let known = match self.contexts.is_empty() {
            true => " (it has none; `zenith context set NAME --server URL` makes one)".into(),
            false => format!(
                " (it has {})",
                self.contexts.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        };
        ConfigError::UnknownContext {
            name: name.to_string(),
            path: path().display().to_string(),
            known,
        }
    }

    /// Writes the file atomically (a temporary file renamed over it), readable by this user
    /// only: it may hold tokens.
    pub fn save_to(&self, path: &Path) -> Result<(), ConfigError> {
        let shown = path.display().to_string();
        let text = toml::to_string_pretty(self).map_err(|e| ConfigError::Invalid {
            path: shown.clone(),
            message: e.to_string(),
        })?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| ConfigError::Write {
                path: shown.clone(),
                message: e.to_string(),
            })?;
        }
        zenith_server::tls::write_private(path, &text).map_err(|e| ConfigError::Write {
            path: shown,
            message: e.to_string(),
        })
    }

    pub fn save(&self) -> Result<(), ConfigError> {
        self.save_to(&path())
    }
}

impl Context {
    /// The token: given, or read from `token-file`.
    pub fn token(&self) -> Option<String> {
        match (&self.token, &self.token_file) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(f)) => zenith_server::auth::read_token_file(f).ok(),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_what_it_cannot_use() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("zenith/config.toml");
        assert_eq!(Config::load_from(&p).unwrap(), Config::default());
        let mut c = Config::default();
        c.contexts.insert(
            "prod".into(),
            Context {
                server: "https://a:7700".into(),
                token_file: Some("/t".into()),
                namespace: Some("ml".into()),
                ..Default::default()
            },
        );
        c.current_context = Some("prod".into());
        c.save_to(&p).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("current-context = \"prod\""), "{text}");
        assert!(text.contains("token-file"), "{text}");
        assert_eq!(Config::load_from(&p).unwrap(), c);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        std::fs::write(&p, "[contexts.x]\nserver = \"ftp://a\"\n").unwrap();
        let e = Config::load_from(&p).unwrap_err().to_string();
        assert!(e.contains("contexts.x.server"), "{e}");
        std::fs::write(&p, "[contexts.x]\nserver = \"http://a\"\nsevrer = 1\n").unwrap();
        let e = Config::load_from(&p).unwrap_err().to_string();
        assert!(e.contains("sevrer"), "{e}");
        assert!(check_name("a b").is_err());
        assert!(c
            .context(Some("nope"))
            .unwrap_err()
            .to_string()
            .contains("prod"));
    }
}

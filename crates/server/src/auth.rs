//! API tokens: 256-bit random, written once to files in the data directory for the operator,
//! kept in the store only as SHA-256 hashes, compared in constant time.

use sha2::{Digest, Sha256};
use std::path::Path;
use subtle::ConstantTimeEq;
use zenith_store::Store;

use crate::ServerError;

/// The two roles: admin (the whole API) and agent (the agent protocol only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Admin,
    Agent,
}

const ADMIN_KEY: &str = "admin_token_sha256";
const AGENT_KEY: &str = "agent_token_sha256";

/// Tokens an operator chose for a new store (`--admin-token-file`, `--agent-token-file`).
#[derive(Clone, Debug, Default)]
pub struct PresetTokens {
    pub admin: Option<String>,
    pub join: Option<String>,
}

/// Shortest token an operator may choose (a random one is 64 hex characters).
pub const MIN_PRESET_TOKEN: usize = 32;

impl PresetTokens {
    /// Reads the files given; each must hold one token of at least [`MIN_PRESET_TOKEN`]
    /// visible characters.
    pub fn read(admin: Option<&Path>, join: Option<&Path>) -> Result<PresetTokens, ServerError> {
        let one = |p: Option<&Path>| -> Result<Option<String>, ServerError> {
            let Some(p) = p else { return Ok(None) };
            let t = read_token_file(p)
                .map_err(|e| ServerError::Io(format!("cannot read {}: {e}", p.display())))?;
            let visible = t.bytes().all(|b| b.is_ascii_graphic());
            if t.len() < MIN_PRESET_TOKEN || !visible {
                return Err(ServerError::Io(format!(
                    "{}: a token is at least {MIN_PRESET_TOKEN} visible ASCII characters on one line (e.g. openssl rand -hex 32)",
                    p.display()
                )));
            }
            Ok(Some(t))
        };
        Ok(PresetTokens {
            admin: one(admin)?,
            join: one(join)?,
        })
    }
}

/// Hashes of the valid tokens.
#[derive(Clone)]
pub struct Tokens {
    admin: [u8; 32],
    agent: [u8; 32],
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn random_token() -> Result<String, ServerError> {
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf).map_err(|e| ServerError::Io(format!("random token: {e}")))?;
    Ok(hex::encode(buf))
}

fn write_secret(path: &Path, token: &str) -> Result<(), ServerError> {
    crate::tls::write_private(path, &format!("{token}\n")).map_err(ServerError::from)
}

impl Tokens {
    /// Loads token hashes from the store, creating both tokens (and their files) on first
    /// start. Servers sharing one database race safely: the files are written first, then the
    /// hashes only where none exist; a server that lost the race removes its files and uses
    /// the tokens of the one that won (whose data directory holds them).
    /// The store's token hashes; on first start, made from `preset` where given (an
    /// operator's own secrets, e.g. a Kubernetes Secret) and random otherwise, and written to
    /// `admin.token`/`agent.token` in the data directory. A preset that differs from the
    /// tokens a store already holds is refused: tokens are rotated, not replaced by a restart.
    pub fn init(
        store: &mut dyn Store,
        data_dir: &Path,
        preset: &PresetTokens,
    ) -> Result<Tokens, ServerError> {
        if let Some(t) = Self::stored(store)? {
            t.check_preset(preset)?;
            return Ok(t);
        }
        let admin = preset.admin.clone().map_or_else(random_token, Ok)?;
        let agent = preset.join.clone().map_or_else(random_token, Ok)?;
        let (admin_file, agent_file) = (data_dir.join("admin.token"), data_dir.join("agent.token"));
        write_secret(&admin_file, &admin)?;
        write_secret(&agent_file, &agent)?;
        let t = Tokens {
            admin: hash(&admin),
            agent: hash(&agent),
        };
        let (a, g) = (hex::encode(t.admin), hex::encode(t.agent));
        if store.init_meta(&[(ADMIN_KEY, &a), (AGENT_KEY, &g)])? {
            return Ok(t);
        }
        for file in [&admin_file, &agent_file] {
            // What is left holds a token that was never valid: confusing, not dangerous.
            if let Err(e) = std::fs::remove_file(file) {
                tracing::warn!(path = %file.display(), error = %e, "cannot remove an unused token file");
            }
        }
        Self::stored(store)?.ok_or(ServerError::Io(
            "token hashes are missing from the store after another server created them".into(),
        ))
    }

    fn check_preset(&self, preset: &PresetTokens) -> Result<(), ServerError> {
        let differs = |given: &Option<String>, held: &[u8; 32], what: &str| {
            match given {
            Some(t) if !bool::from(hash(t).ct_eq(held)) => Err(ServerError::Io(format!(
                "the {what} token given differs from the one this store was created with (tokens are set once, at the first start)"
            ))),
            _ => Ok(()),
        }
        };
        differs(&preset.admin, &self.admin, "admin")?;
        differs(&preset.join, &self.agent, "agent join")
    }

    fn stored(store: &mut dyn Store) -> Result<Option<Tokens>, ServerError> {
        let (Some(a), Some(g)) = (store.get_meta(ADMIN_KEY)?, store.get_meta(AGENT_KEY)?) else {
            return Ok(None);
        };
        let dec = |s: &str| -> Result<[u8; 32], ServerError> {
            hex::decode(s)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or(ServerError::Io("stored token hash is corrupt".into()))
        };
        Ok(Some(Tokens {
            admin: dec(&a)?,
            agent: dec(&g)?,
        }))
    }

    /// The role a presented token grants, if any.
    pub fn role_of(&self, token: &str) -> Option<Role> {
        let h = hash(token);
        let is_admin: bool = h.ct_eq(&self.admin).into();
        let is_agent: bool = h.ct_eq(&self.agent).into();
        if is_admin {
            Some(Role::Admin)
        } else if is_agent {
            Some(Role::Agent)
        } else {
            None
        }
    }
}

/// Reads a token file written by [`Tokens::init`].
pub fn read_token_file(path: &Path) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(path)?.trim().to_string())
}

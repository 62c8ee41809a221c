//! The node's own credential. The join token (`--token`) is used once, to enroll: the server
//! answers with a credential for this node ID only (`zn1:<node>:<secret>`), kept 0600 in the
//! data directory (`node.credential`) and sent with every later request. A server that does
//! not know it (a new cluster) makes the agent enroll again; a revoked node stops.

use crate::AgentError;
use std::path::PathBuf;
use zenith_model::NodeId;
use zenith_protocol::agent::parse_credential;

pub struct Credential {
    path: PathBuf,
    join_token: String,
    value: parking_lot::RwLock<Option<String>>,
}

impl Credential {
    /// The credential kept in `dir`, if it is one for `node`.
    pub fn open(dir: &std::path::Path, node: &NodeId, join_token: String) -> Credential {
        let path = dir.join("node.credential");
        let value = std::fs::read_to_string(&path)
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|c| parse_credential(c).is_some_and(|(n, _)| n == node.as_str()));
        Credential {
            path,
            join_token,
            value: parking_lot::RwLock::new(value),
        }
    }

    /// The bearer token of agent requests (empty before enrolment: refused, then enrolled).
    pub fn bearer(&self) -> String {
        self.value.read().clone().unwrap_or_default()
    }

    pub fn is_set(&self) -> bool {
        self.value.read().is_some()
    }

    pub fn join_token(&self) -> &str {
        &self.join_token
    }

    /// Keeps a credential the server gave: written (0600, synced) before it is used.
    pub fn store(&self, credential: String) -> Result<(), AgentError> {
        use std::io::Write;
        let tmp = self.path.with_extension("tmp");
        let mut f = crate::private_file()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(credential.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        *self.value.write() = Some(credential);
        Ok(())
    }

    /// The server does not know this credential: enroll again at the next registration.
    pub fn forget(&self) {
        *self.value.write() = None;
        crate::warn_unless_gone(
            std::fs::remove_file(&self.path),
            &self.path,
            "an unknown node credential",
        );
    }
}

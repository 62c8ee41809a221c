//! Node credentials: the join token (`agent.token`) buys a node, once, a credential of its
//! own (`zn1:<node id>:<256-bit secret>`); every later agent request carries it and is held to
//! that node. Only SHA-256 hashes are kept (`NodeKeyRecord`, in the store), compared in
//! constant time.
//!
//! The control loop is the only writer (enrolment and revocation are check-then-insert, so
//! they run where nothing interleaves); request handlers read through the lock. Bounded:
//! at most [`MAX_NODE_KEYS`] nodes enrolled, revoked ones included.

use crate::error::ApiError;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use subtle::ConstantTimeEq;
use zenith_model::records::NodeKeyRecord;
use zenith_model::{Millis, NodeId};
use zenith_protocol::agent::{parse_credential, CREDENTIAL_PREFIX};

/// Most node credentials kept (a fleet larger than this enrolls with a second cluster).
pub const MAX_NODE_KEYS: usize = 100_000;

struct Key {
    hash: [u8; 32],
    revoked: bool,
}

#[derive(Default)]
pub struct NodeKeys {
    map: parking_lot::RwLock<HashMap<NodeId, Key>>,
}

/// Why a credential was refused (the metric's `reason` label; a fixed set).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Malformed,
    Unknown,
    Revoked,
    WrongSecret,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::Unknown => "unknown_node",
            Refusal::Revoked => "revoked",
            Refusal::WrongSecret => "wrong_secret",
        }
    }

    pub fn into_error(self, node: Option<&str>) -> ApiError {
        let node = node.unwrap_or("?");
        match self {
            Refusal::Malformed => ApiError::Unauthorized,
            Refusal::Unknown => ApiError::NodeUnknown(format!(
                "node {node} is not enrolled here; the agent enrolls again with the join token"
            )),
            Refusal::WrongSecret => {
                ApiError::NodeUnknown(format!("wrong credential for node {node}"))
            }
            Refusal::Revoked => ApiError::NodeRevoked(format!(
                "node {node} was revoked (zenith node revoke); it may not join again under this ID"
            )),
        }
    }
}

fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn decode_hash(hex_hash: &str) -> Option<[u8; 32]> {
    hex::decode(hex_hash).ok()?.try_into().ok()
}

impl NodeKeys {
    pub fn load(records: &[NodeKeyRecord]) -> NodeKeys {
        let keys = NodeKeys::default();
        keys.replace(records);
        keys
    }

    /// Replaces every key with `records` (after the engine is rebuilt from the store).
    pub fn replace(&self, records: &[NodeKeyRecord]) {
        let mut map = HashMap::with_capacity(records.len());
        for r in records {
            match decode_hash(&r.hash) {
                Some(hash) => {
                    map.insert(
                        r.node.clone(),
                        Key {
                            hash,
                            revoked: r.revoked,
                        },
                    );
                }
                None => tracing::warn!(node = %r.node, "corrupt node credential hash skipped"),
            }
        }
        *self.map.write() = map;
    }

    /// The node a bearer credential belongs to.
    pub fn check(&self, bearer: &str) -> Result<NodeId, (Refusal, Option<String>)> {
        let (node, secret) = parse_credential(bearer).ok_or((Refusal::Malformed, None))?;
        let name = Some(node.to_string());
        let node = NodeId::parse(node).map_err(|_| (Refusal::Malformed, None))?;
        let map = self.map.read();
        let key = map.get(&node).ok_or((Refusal::Unknown, name.clone()))?;
        let same: bool = hash(secret).ct_eq(&key.hash).into();
        if !same {
            return Err((Refusal::WrongSecret, name));
        }
        if key.revoked {
            return Err((Refusal::Revoked, name));
        }
        Ok(node)
    }

    /// Enrolls `node`: its credential (shown once) and the record to store. An enrolled ID
    /// cannot enroll again; a revoked one never again.
    pub fn enroll(
        &self,
        node: &NodeId,
        name: &str,
        now: Millis,
    ) -> Result<(String, NodeKeyRecord), ApiError> {
        let mut map = self.map.write();
        match map.get(node) {
            Some(k) if k.revoked => return Err(Refusal::Revoked.into_error(Some(node.as_str()))),
            Some(_) => {
                return Err(ApiError::Conflict(format!(
                    "node {node} is already enrolled; it registers with the credential in its data directory (node.credential). A new machine enrolls under a new node ID; to retire this one: zenith node revoke {node}"
                )))
            }
            None => {}
        }
        if map.len() >= MAX_NODE_KEYS {
            return Err(ApiError::Overloaded(format!(
                "{MAX_NODE_KEYS} nodes are enrolled already; no more can join this cluster"
            )));
        }
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw)
            .map_err(|e| ApiError::Unavailable(format!("no randomness for a credential: {e}")))?;
        let secret = hex::encode(raw);
        let h = hash(&secret);
        map.insert(
            node.clone(),
            Key {
                hash: h,
                revoked: false,
            },
        );
        let record = NodeKeyRecord {
            node: node.clone(),
            name: name.to_string(),
            hash: hex::encode(h),
            revoked: false,
            enrolled_at: now,
        };
        Ok((format!("{CREDENTIAL_PREFIX}{node}:{secret}"), record))
    }

    /// Revokes `node`'s credential at once; the record to store, or `None` when the node
    /// never enrolled.
    pub fn revoke(&self, node: &NodeId, name: &str, now: Millis) -> Option<NodeKeyRecord> {
        let mut map = self.map.write();
        let key = map.get_mut(node)?;
        key.revoked = true;
        Some(NodeKeyRecord {
            node: node.clone(),
            name: name.to_string(),
            hash: hex::encode(key.hash),
            revoked: true,
            enrolled_at: now,
        })
    }

    /// Whether `node` was revoked.
    pub fn is_revoked(&self, node: &NodeId) -> bool {
        self.map.read().get(node).is_some_and(|k| k.revoked)
    }
}

/// Random 128 bits in hex: a registration's session ID.
pub fn new_session() -> Result<zenith_protocol::agent::SessionId, ApiError> {
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw)
        .map_err(|e| ApiError::Unavailable(format!("no randomness for a session: {e}")))?;
    Ok(zenith_protocol::agent::SessionId(hex::encode(raw)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_opens_only_its_own_node_until_revoked() {
        let keys = NodeKeys::default();
        let a = NodeId::parse("a").unwrap();
        let (cred, rec) = keys.enroll(&a, "alpha", 1).unwrap();
        assert_eq!(keys.check(&cred).unwrap(), a);
        // Same secret under another node ID: unknown there.
        let forged = cred.replacen("zn1:a:", "zn1:b:", 1);
        assert_eq!(keys.check(&forged).unwrap_err().0, Refusal::Unknown);
        // Another secret for this node: refused.
        let wrong = format!("zn1:a:{}", "0".repeat(64));
        assert_eq!(keys.check(&wrong).unwrap_err().0, Refusal::WrongSecret);
        assert_eq!(keys.check("agent-token").unwrap_err().0, Refusal::Malformed);
        // Enrolled once only.
        assert!(matches!(
            keys.enroll(&a, "x", 2),
            Err(ApiError::Conflict(_))
        ));
        // Survives a reload from its record; revocation is final.
        let reloaded = NodeKeys::load(&[rec]);
        assert_eq!(reloaded.check(&cred).unwrap(), a);
        let r = reloaded.revoke(&a, "alpha", 3).unwrap();
        assert!(r.revoked);
        assert_eq!(reloaded.check(&cred).unwrap_err().0, Refusal::Revoked);
        assert!(matches!(
            reloaded.enroll(&a, "alpha", 4),
            Err(ApiError::NodeRevoked(_))
        ));
    }
}

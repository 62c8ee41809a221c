//! People's API tokens (`zenith token create`): `zt1:<id>:<256-bit secret>`, shown once; only
//! the secret's SHA-256 is kept (`UserTokenRecord`, in the store), compared in constant time.
//!
//! The control loop is the only writer (creation and revocation ride in its next commit);
//! request handlers read through the lock. On PostgreSQL, standbys forward every API request
//! to the leader, which alone answers whether a token is good: a revocation holds on every
//! server the moment the leader commits it. Bounded: at most [`MAX_USER_TOKENS`] tokens,
//! revoked and expired ones included; the oldest of those make room for new ones.

use crate::error::ApiError;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use subtle::ConstantTimeEq;
use zenith_model::tenancy::{Role, UserTokenRecord};
use zenith_model::Millis;

/// Most tokens kept (live, revoked and expired together).
pub const MAX_USER_TOKENS: usize = 10_000;
/// What every token starts with.
pub const TOKEN_PREFIX: &str = "zt1:";

#[derive(Default)]
pub struct UserTokens {
    map: parking_lot::RwLock<HashMap<String, Entry>>,
}

struct Entry {
    hash: [u8; 32],
    record: UserTokenRecord,
}

/// Who a request acts as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    pub role: Role,
    /// Namespaces it acts in (`*`: all); ignored for admins.
    pub namespaces: Vec<String>,
    /// The token's ID (`None`: the bootstrap admin token).
    pub token: Option<String>,
}

/// Why a token was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not a token of this cluster.
    Unknown,
    Revoked {
        user: String,
    },
    Expired {
        user: String,
    },
}

impl Refusal {
    /// The user the token named, when it named one.
    pub fn user(&self) -> Option<&str> {
        match self {
            Refusal::Unknown => None,
            Refusal::Revoked { user } | Refusal::Expired { user } => Some(user),
        }
    }

    pub fn into_error(self) -> ApiError {
        match self {
            Refusal::Unknown => ApiError::Unauthorized,
            Refusal::Revoked { user } => {
                ApiError::BadToken(format!("this token of {user} was revoked"))
            }
            Refusal::Expired { user } => {
                ApiError::BadToken(format!("this token of {user} has expired"))
            }
        }
    }
}

fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn parse(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once(':')?;
    (id.len() == 16 && secret.len() == 64).then_some((id, secret))
}

/// What a new token is to be.
#[derive(Clone, Debug)]
pub struct NewToken {
    pub user: String,
    pub role: Role,
    pub namespaces: Vec<String>,
    pub expires_at: Option<Millis>,
    pub created_by: String,
}

impl UserTokens {
    pub fn load(records: &[UserTokenRecord]) -> UserTokens {
        let t = UserTokens::default();
        t.replace(records);
        t
    }

    /// Replaces every token with `records` (at a term's start, after a rebuild).
    pub fn replace(&self, records: &[UserTokenRecord]) {
        let mut map = HashMap::with_capacity(records.len());
        for r in records {
            let hash = hex::decode(&r.hash).ok().and_then(|v| v.try_into().ok());
            match hash {
                Some(hash) => {
                    map.insert(
                        r.id.clone(),
                        Entry {
                            hash,
                            record: r.clone(),
                        },
                    );
                }
                None => tracing::warn!(token = %r.id, "corrupt token hash skipped"),
            }
        }
        *self.map.write() = map;
    }

    /// Whether `bearer` looks like one of these tokens (so no other check applies).
    pub fn is_user_token(bearer: &str) -> bool {
        bearer.starts_with(TOKEN_PREFIX)
    }

    /// Who `bearer` is, at `now`.
    pub fn check(&self, bearer: &str, now: Millis) -> Result<Principal, Refusal> {
        let (id, secret) = parse(bearer).ok_or(Refusal::Unknown)?;
        let map = self.map.read();
        let e = map.get(id).ok_or(Refusal::Unknown)?;
        let same: bool = hash(secret).ct_eq(&e.hash).into();
        if !same {
            return Err(Refusal::Unknown);
        }
        let user = e.record.user.clone();
        if e.record.revoked_at.is_some() {
            return Err(Refusal::Revoked { user });
        }
        if e.record.expires_at.is_some_and(|t| t <= now) {
            return Err(Refusal::Expired { user });
        }
        Ok(Principal {
            user,
            role: e.record.role,
            namespaces: e.record.namespaces.clone(),
            token: Some(e.record.id.clone()),
        })
    }

    /// Makes a token: its text (shown once) and the record to store. At the limit, the
    /// oldest revoked or expired token is forgotten to make room.
    pub fn create(
        &self,
        new: NewToken,
        now: Millis,
    ) -> Result<(String, UserTokenRecord, Option<String>), ApiError> {
        let mut raw = [0u8; 40];
        getrandom::fill(&mut raw)
            .map_err(|e| ApiError::Unavailable(format!("no randomness for a token: {e}")))?;
        let id = hex::encode(&raw[..8]);
        let secret = hex::encode(&raw[8..]);
        let mut map = self.map.write();
        let mut forgotten = None;
        if map.len() >= MAX_USER_TOKENS {
            let dead = map
                .values()
                .filter(|e| {
                    e.record.revoked_at.is_some() || e.record.expires_at.is_some_and(|t| t <= now)
                })
                .min_by_key(|e| e.record.created_at)
                .map(|e| e.record.id.clone());
            match dead {
                Some(d) => {
                    map.remove(&d);
                    forgotten = Some(d);
                }
                None => {
                    return Err(ApiError::Overloaded(format!(
                        "{MAX_USER_TOKENS} live tokens exist; revoke some first (zenith token list)"
                    )))
                }
            }
        }
        let h = hash(&secret);
        let record = UserTokenRecord {
            id: id.clone(),
            user: new.user,
            role: new.role,
            namespaces: new.namespaces,
            hash: hex::encode(h),
            created_at: now,
            created_by: new.created_by,
            expires_at: new.expires_at,
            revoked_at: None,
        };
        map.insert(
            id.clone(),
            Entry {
                hash: h,
                record: record.clone(),
            },
        );
        Ok((format!("{TOKEN_PREFIX}{id}:{secret}"), record, forgotten))
    }

    /// Revokes the token `id` at once; its record to store. Revoking twice keeps the first
    /// time.
    pub fn revoke(&self, id: &str, now: Millis) -> Option<UserTokenRecord> {
        let mut map = self.map.write();
        let e = map.get_mut(id)?;
        e.record.revoked_at.get_or_insert(now);
        Some(e.record.clone())
    }

    /// Every token, newest first.
    pub fn list(&self) -> Vec<UserTokenRecord> {
        let mut v: Vec<_> = self.map.read().values().map(|e| e.record.clone()).collect();
        v.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(role: Role, expires_at: Option<Millis>) -> NewToken {
        NewToken {
            user: "alice".into(),
            role,
            namespaces: vec!["ml".into()],
            expires_at,
            created_by: "admin".into(),
        }
    }

    #[test]
    fn a_token_names_its_user_until_revoked_or_expired() {
        let t = UserTokens::default();
        let (text, rec, _) = t.create(new(Role::Submitter, Some(100)), 1).unwrap();
        let p = t.check(&text, 50).unwrap();
        assert_eq!((p.user.as_str(), p.role), ("alice", Role::Submitter));
        assert_eq!(p.token.as_deref(), Some(rec.id.as_str()));
        assert!(matches!(t.check(&text, 100), Err(Refusal::Expired { .. })));
        // Another secret under the same ID is not this token.
        let forged = format!("{TOKEN_PREFIX}{}:{}", rec.id, "0".repeat(64));
        assert_eq!(t.check(&forged, 50), Err(Refusal::Unknown));
        assert_eq!(t.check("admin-token", 50), Err(Refusal::Unknown));
        // Survives a reload from its record; revocation holds.
        let reloaded = UserTokens::load(std::slice::from_ref(&rec));
        assert!(reloaded.check(&text, 50).is_ok());
        let r = reloaded.revoke(&rec.id, 60).unwrap();
        assert_eq!(r.revoked_at, Some(60));
        assert!(matches!(
            reloaded.check(&text, 61),
            Err(Refusal::Revoked { .. })
        ));
        assert!(!r.hash.contains(&text[TOKEN_PREFIX.len() + 17..]));
    }

    #[test]
    fn the_table_is_bounded_and_forgets_dead_tokens_first() {
        let t = UserTokens::default();
        let mut first = None;
        for i in 0..MAX_USER_TOKENS {
            let (_, rec, _) = t.create(new(Role::Viewer, None), i as u64).unwrap();
            first.get_or_insert(rec.id);
        }
        assert!(matches!(
            t.create(new(Role::Viewer, None), 1),
            Err(ApiError::Overloaded(_))
        ));
        let first = first.unwrap();
        t.revoke(&first, 5).unwrap();
        let (_, _, forgotten) = t.create(new(Role::Viewer, None), 6).unwrap();
        assert_eq!(forgotten.as_deref(), Some(first.as_str()));
        assert_eq!(t.list().len(), MAX_USER_TOKENS);
    }
}

//! Idempotent submission: a key sent with a submission maps to the jobs it created, so a
//! client that retries after a timeout gets the same job IDs instead of duplicates.
//!
//! Keys are scoped to the client that sent them (the API passes a hash of its token), so one
//! client's keys never answer another's submission.
//!
//! Bounds: each key is dropped `idempotency_ttl_ms` after its first use (by `tick`); a client
//! holds at most `max_idempotency_keys_per_client` keys and the engine at most
//! `max_idempotency_keys`. A new key beyond either bound evicts the oldest key (of that
//! client, else of all) instead of being refused: a key protects a retry in the seconds after
//! its submission, so the oldest is the one least likely to be used again, and a client that
//! submits in a loop can never lock every client out of submitting (which refusing did).

use crate::state::Engine;
use crate::EngineError;
use std::sync::Arc;
use zenith_model::{IdempotencyRecord, JobId, JobSpec, Millis};

/// A submission's key and a hash of its request, supplied by the API layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// Who sent it: [`SCOPE_LEN`] lowercase hex characters (a hash of the client's token).
    pub scope: String,
    /// The key as the client sent it.
    pub key: String,
    pub fingerprint: u64,
}

/// Length of a key's scope.
pub const SCOPE_LEN: usize = 12;

impl IdempotencyKey {
    /// The key as stored: `scope/key`.
    fn stored(&self) -> String {
        format!("{}/{}", self.scope, self.key)
    }
}

/// The scope of a stored key (empty for keys stored before keys had scopes).
pub(crate) fn scope_of(stored: &str) -> &str {
    match stored.get(..SCOPE_LEN) {
        Some(scope)
            if stored.as_bytes().get(SCOPE_LEN) == Some(&b'/')
                && scope.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            scope
        }
        _ => "",
    }
}

/// The answer to a submission.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submitted {
    pub ids: Vec<JobId>,
    /// True when the key was seen before and these are the jobs it created then.
    pub replayed: bool,
}

impl Engine {
    /// Submits `specs`, or returns the jobs an earlier submission with the same key created.
    pub fn submit_idempotent(
        &mut self,
        key: Option<IdempotencyKey>,
        specs: Vec<Arc<JobSpec>>,
        now: Millis,
    ) -> Result<Submitted, EngineError> {
        let now = self.clamp(now);
        let Some(key) = key else {
            return self.submit(specs, now).map(|ids| Submitted {
                ids,
                replayed: false,
            });
        };
        self.expire_keys(now);
        let stored = key.stored();
        if let Some(rec) = self.idempotency.get(&stored) {
            if rec.fingerprint != key.fingerprint {
                return Err(EngineError::KeyReused(key.key));
            }
            return Ok(Submitted {
                ids: rec.job_ids.clone(),
                replayed: true,
            });
        }
        let ids = self.submit(specs, now)?;
        self.make_room_for_key(&key.scope);
        let rec = IdempotencyRecord {
            key: stored,
            job_ids: ids.clone(),
            fingerprint: key.fingerprint,
            expires_at: now.saturating_add(self.cfg.idempotency_ttl_ms),
        };
        self.index_key(&rec);
        self.changes.idempotency.push(rec.clone());
        self.idempotency.insert(rec.key.clone(), rec);
        Ok(Submitted {
            ids,
            replayed: false,
        })
    }

    /// Drops keys whose time is up.
    pub(crate) fn expire_keys(&mut self, now: Millis) {
        while let Some((at, _)) = self.key_expiry.first() {
            if *at > now {
                break;
            }
            if let Some((_, key)) = self.key_expiry.first().cloned() {
                self.drop_key(&key);
            }
        }
    }

    /// Evicts the oldest key of `scope` when it holds its share, else the oldest of all when
    /// the engine holds its bound.
    fn make_room_for_key(&mut self, scope: &str) {
        let oldest_of_scope = self
            .keys_by_scope
            .get(scope)
            .filter(|s| s.len() >= self.cfg.max_idempotency_keys_per_client)
            .and_then(|s| s.first())
            .map(|(_, k)| k.clone());
        let victim = oldest_of_scope.or_else(|| {
            (self.idempotency.len() >= self.cfg.max_idempotency_keys)
                .then(|| self.key_expiry.first().map(|(_, k)| k.clone()))
                .flatten()
        });
        if let Some(key) = victim {
            self.drop_key(&key);
            self.counters.idempotency_keys_evicted += 1;
        }
    }

    fn index_key(&mut self, rec: &IdempotencyRecord) {
        self.key_expiry.insert((rec.expires_at, rec.key.clone()));
        self.keys_by_scope
            .entry(scope_of(&rec.key).to_string())
            .or_default()
            .insert((rec.expires_at, rec.key.clone()));
    }

    /// Removes a key from every index (and from the store with the next commit).
    fn drop_key(&mut self, key: &str) {
        let Some(rec) = self.idempotency.remove(key) else {
            return;
        };
        let entry = (rec.expires_at, rec.key);
        self.key_expiry.remove(&entry);
        let scope = scope_of(&entry.1);
        if let Some(set) = self.keys_by_scope.get_mut(scope) {
            set.remove(&entry);
            if set.is_empty() {
                self.keys_by_scope.remove(scope);
            }
        }
        self.changes.expired_keys.push(entry.1);
    }

    /// Keys held now.
    pub fn idempotency_keys(&self) -> usize {
        self.idempotency.len()
    }

    pub(crate) fn restore_keys(&mut self, records: Vec<IdempotencyRecord>, now: Millis) {
        for rec in records {
            if rec.expires_at <= now {
                self.changes.expired_keys.push(rec.key);
                continue;
            }
            self.index_key(&rec);
            self.idempotency.insert(rec.key.clone(), rec);
        }
    }
}

//! Idempotent submission: a key sent with a submission maps to the jobs it created, so a
//! client that retries after a timeout gets the same job IDs instead of duplicates.
//!
//! Bound: at most `max_idempotency_keys` keys, each dropped `idempotency_ttl_ms` after its
//! first use (by `tick`); a keyed submission beyond the bound is refused (429), never a key
//! evicted early, since that would reopen the window for duplicates.

use crate::state::Engine;
use crate::EngineError;
use std::sync::Arc;
use zenith_model::{IdempotencyRecord, JobId, JobSpec, Millis};

/// A submission's key and a hash of its request, supplied by the API layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub key: String,
    pub fingerprint: u64,
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
        if let Some(rec) = self.idempotency.get(&key.key) {
            if rec.fingerprint != key.fingerprint {
                return Err(EngineError::KeyReused(key.key));
            }
            return Ok(Submitted {
                ids: rec.job_ids.clone(),
                replayed: true,
            });
        }
        if self.idempotency.len() >= self.cfg.max_idempotency_keys {
            return Err(EngineError::TooManyKeys(self.cfg.max_idempotency_keys));
        }
        let ids = self.submit(specs, now)?;
        let rec = IdempotencyRecord {
            key: key.key.clone(),
            job_ids: ids.clone(),
            fingerprint: key.fingerprint,
            expires_at: now.saturating_add(self.cfg.idempotency_ttl_ms),
        };
        self.key_expiry.insert((rec.expires_at, rec.key.clone()));
        self.changes.idempotency.push(rec.clone());
        self.idempotency.insert(key.key, rec);
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
            if let Some((_, key)) = self.key_expiry.pop_first() {
                self.idempotency.remove(&key);
                self.changes.expired_keys.push(key);
            }
        }
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
            self.key_expiry.insert((rec.expires_at, rec.key.clone()));
            self.idempotency.insert(rec.key.clone(), rec);
        }
    }
}

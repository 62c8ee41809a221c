//! People's tokens and the audit log in the control loop: the loop is the one writer of
//! [`crate::users::UserTokens`]; token records and audit records ride in its next commit.

use super::{reply_after, ControlLoop, Reply};
use crate::error::ApiError;
use crate::users::NewToken;
use crate::writer::AfterCommit;
use zenith_model::tenancy::{AuditRecord, UserTokenRecord};

/// Audit records held while the store refuses writes; beyond, new ones are dropped (counted
/// in `zenith_audit_dropped_total`).
pub(super) const MAX_PENDING_AUDIT: usize = 65_536;

impl ControlLoop {
    /// Makes a token, answered (with its text, shown once) when its record is durable.
    pub(super) fn create_token(
        &mut self,
        new: NewToken,
        reply: Reply<(String, UserTokenRecord)>,
        now: u64,
        after: &mut Vec<AfterCommit>,
    ) {
        if self.degraded.is_some() {
            let _ = reply.send(Err(self.refusal())); // the admin retries
            return;
        }
        match self.shared.users.create(new, now) {
            Ok((text, record, forgotten)) => {
                let _span =
                    tracing::info_span!("token_create", token = %record.id, user = %record.user)
                        .entered();
                tracing::info!(role = %record.role, namespaces = ?record.namespaces, "API token created");
                self.metrics.tokens_created.inc();
                if let Some(f) = forgotten {
                    self.token_changes.push((f, None));
                }
                self.token_changes
                    .push((record.id.clone(), Some(record.clone())));
                after.push(reply_after(reply, (text, record)));
            }
            Err(e) => {
                let _ = reply.send(Err(e)); // as above
            }
        }
    }

    /// Revokes a token: refused from now on, on every server (standbys forward to this one).
    pub(super) fn revoke_token(
        &mut self,
        id: &str,
        reply: Reply<UserTokenRecord>,
        now: u64,
        after: &mut Vec<AfterCommit>,
    ) {
        if self.degraded.is_some() {
            let _ = reply.send(Err(self.refusal())); // as above
            return;
        }
        let Some(record) = self.shared.users.revoke(id, now) else {
            let _ = reply.send(Err(ApiError::NotFound(format!("no token {id}")))); // as above
            return;
        };
        let _span =
            tracing::info_span!("token_revoke", token = %record.id, user = %record.user).entered();
        tracing::warn!("API token revoked");
        self.metrics.tokens_revoked.inc();
        self.token_changes
            .push((record.id.clone(), Some(record.clone())));
        after.push(reply_after(reply, record));
    }

    /// Queues an audit record for the next commit, stamped now.
    pub(super) fn audit(&mut self, mut rec: AuditRecord, now: u64) {
        if self.audit.len() >= MAX_PENDING_AUDIT {
            self.metrics.audit_dropped.inc();
            return;
        }
        rec.at = now;
        self.metrics.audit_records.inc();
        self.audit.push(rec);
    }
}

//! Degraded mode: after a failed commit the engine is rebuilt from the store and new work is
//! refused until a probe write succeeds; a store that cannot even be read stops the server.

use super::ControlLoop;
use crate::error::ApiError;
use crate::writer::{CommitFailed, WriterMsg};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::oneshot;
use zenith_engine::Engine;
use zenith_store::StoreError;

/// Why the loop stopped the server.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Fatal {
    /// After a failed commit the store could not even be read back.
    #[error("cannot reload the store after a failed commit: {0}")]
    Reload(Arc<StoreError>),
}

impl ControlLoop {
    pub(super) fn refusal(&self) -> ApiError {
        let why = self
            .degraded
            .as_ref()
            .map_or_else(|| "unknown error".to_string(), |e| e.to_string());
        ApiError::Unavailable(format!(
            "the store cannot write ({why}); new work is refused until it can, retry later"
        ))
    }

    /// A commit failed: the engine's memory is ahead of the store. Rebuild it from what is
    /// durable and refuse new work until a probe write succeeds.
    pub(super) async fn on_commit_failed(&mut self, f: CommitFailed) -> Result<(), ()> {
        if f.gen < self.gen {
            return Ok(()); // this generation was already rebuilt
        }
        self.gen = f.gen + 1;
        let (tx, rx) = oneshot::channel();
        self.writer
            .send(WriterMsg::Reload { reply: tx })
            .await
            .map_err(|_| ())?;
        let loaded = match rx.await {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => {
                self.stop(Fatal::Reload(Arc::new(e)));
                return Err(());
            }
            Err(_) => return Err(()),
        };
        // Credentials enrolled or revoked in the failed batch are undone with the engine.
        self.key_changes.clear();
        self.token_changes.clear();
        self.shared.keys.replace(&loaded.node_keys);
        self.shared.users.replace(&loaded.user_tokens);
        self.engine = Engine::restore(self.cfg.engine.clone(), loaded, self.clock.now());
        // The restored engine's restored state is already durable: drop its restore-time
        // bookkeeping so that only new changes are written later.
        self.metrics.reset_engine_baseline();
        self.set_degraded(Some(f.error));
        tracing::warn!("engine rebuilt from the store; new work refused until writes succeed");
        Ok(())
    }

    /// While degraded: does the store accept writes again? Then commit what waited.
    pub(super) async fn probe(&mut self) -> Result<(), ()> {
        let (tx, rx) = oneshot::channel();
        self.writer
            .send(WriterMsg::Probe { reply: tx })
            .await
            .map_err(|_| ())?;
        if let Ok(Ok(())) = rx.await {
            tracing::info!("the store accepts writes again; accepting new work");
            self.set_degraded(None);
            self.flush(Vec::new()).await?;
        }
        Ok(())
    }

    pub(super) fn set_degraded(&mut self, why: Option<Arc<StoreError>>) {
        self.shared.degraded.store(why.is_some(), Ordering::Relaxed);
        self.metrics.set_degraded(why.is_some());
        self.degraded = why;
    }

    pub(super) fn stop(&self, why: Fatal) {
        tracing::error!(error = %why, "stopping the server");
        self.shared.fatal.send_replace(Some(why));
    }
}

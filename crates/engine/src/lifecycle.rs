//! Node lifecycle for maintenance: cordon (no new work; what runs goes on), drain (cordon,
//! and at a deadline the attempts still running are stopped and requeued elsewhere, counted
//! as neither failures nor node losses: outcome `evicted`), uncordon, and remove (only a node
//! that runs nothing). Kept on the node record, so it survives restarts and failover.

use crate::state::{Engine, KillReason};
use crate::EngineError;
use zenith_model::{AttemptId, Millis, NodeId};

impl Engine {
    /// Cordons `id`: no new work from now on. With `drain_deadline`, attempts still running
    /// then are stopped and requeued; without, it only cordons (and clears a drain).
    pub fn cordon(
        &mut self,
        id: &NodeId,
        drain_deadline: Option<Millis>,
        now: Millis,
    ) -> Result<(), EngineError> {
        let now = self.clamp(now);
        let n = self
            .nodes
            .get_mut(id)
            .ok_or_else(|| EngineError::UnknownNode(id.clone()))?;
        n.cordoned_at = n.cordoned_at.or(Some(now));
        n.drain_deadline = drain_deadline;
        self.note_node(id);
        // A deadline already past takes effect at once.
        self.enforce_drain(id, now);
        Ok(())
    }

    /// Opens a cordoned or draining node to new work again.
    pub fn uncordon(&mut self, id: &NodeId) -> Result<(), EngineError> {
        let n = self
            .nodes
            .get_mut(id)
            .ok_or_else(|| EngineError::UnknownNode(id.clone()))?;
        n.cordoned_at = None;
        n.drain_deadline = None;
        self.note_node(id);
        self.sched_dirty = true;
        Ok(())
    }

    /// Forgets a node that runs nothing (drain it first); its agent, if it comes back,
    /// registers anew.
    pub fn remove_node(&mut self, id: &NodeId, now: Millis) -> Result<(), EngineError> {
        let _ = self.clamp(now);
        let n = self
            .nodes
            .get(id)
            .ok_or_else(|| EngineError::UnknownNode(id.clone()))?;
        if !n.running.is_empty() {
            return Err(EngineError::NodeBusy(id.clone(), n.running.len()));
        }
        self.nodes.remove(id);
        self.prefetching.remove(id);
        self.changes.nodes.remove(id);
        self.changes.removed_nodes.push(id.clone());
        self.refresh_totals();
        Ok(())
    }

    /// Stops the attempts of a node whose drain deadline has passed (each once: they end,
    /// and requeue, when the agent reports them killed, or when the node is lost).
    pub(crate) fn enforce_drain(&mut self, id: &NodeId, now: Millis) {
        let Some(n) = self.nodes.get(id) else {
            return;
        };
        if n.drain_deadline.is_none_or(|d| d > now) {
            return;
        }
        let running: Vec<AttemptId> = n.running.iter().copied().collect();
        for aid in running {
            if let Some(r) = self.attempts.get_mut(&aid) {
                if r.killing.is_none() {
                    r.killing = Some(KillReason::Evicted);
                    self.effects.push(crate::Effect::Kill {
                        node: id.clone(),
                        attempt: aid,
                    });
                }
            }
        }
    }

    /// Nodes past their drain deadline that still run something.
    pub(crate) fn drains_due(&self, now: Millis) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.drain_deadline.is_some_and(|d| d <= now) && !n.running.is_empty())
            .map(|(id, _)| id.clone())
            .collect()
    }
}

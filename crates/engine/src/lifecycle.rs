//! Node lifecycle for maintenance: cordon (no new work; what runs goes on), drain (cordon,
//! and at a deadline the attempts still running are stopped and requeued elsewhere, counted
//! as neither failures nor node losses: outcome `evicted`), uncordon, and remove (only a node
//! that runs nothing). Kept on the node record, so it survives restarts and failover.
//!
//! An agent stopped with SIGTERM leaves on its own: its reports say it is leaving (no new work
//! from then on; what runs may finish within its `--shutdown-grace`, after which the agent
//! stops it and reports it `evicted`), then that it is done (the node is `left`, anything
//! still assigned there requeued as evicted). Leaving is not kept in the store: the agent
//! says it again with every report, also to a new leader.

use crate::state::{Engine, KillReason};
use crate::EngineError;
use zenith_model::{AttemptId, Millis, NodeId, NodeState};

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
            self.stop_attempt(aid, KillReason::Evicted, false);
        }
    }

    /// The agent of `id` is stopping: no new work from now on; what runs may finish until
    /// `until` (the first notice counts).
    pub fn node_leaving(&mut self, id: &NodeId, until: Millis) {
        let Some(n) = self.nodes.get_mut(id) else {
            return;
        };
        if n.state != NodeState::Ready || n.leaving.is_some() {
            return;
        }
        n.leaving = Some(until);
        tracing::info!(node = %id, until, "node leaving: no new work");
        self.note_node(id);
    }

    /// The agent of `id` stopped after saying it would: the node is `left`; attempts still
    /// assigned to it (the agent gave up waiting for their results to be acknowledged, or
    /// never started them) are requeued as evicted.
    pub fn node_left(&mut self, id: &NodeId, now: Millis) {
        let running: Vec<AttemptId> = match self.nodes.get_mut(id) {
            Some(n) if n.state == NodeState::Ready => {
                n.state = NodeState::Left;
                n.leaving = None;
                n.last_heartbeat = now;
                n.running.iter().copied().collect()
            }
            _ => return,
        };
        for aid in running {
            if let Some(r) = self.attempts.get_mut(&aid) {
                r.killing.get_or_insert(KillReason::Evicted);
            }
            self.lose_attempt(aid, now);
        }
        self.counters.node_leaves += 1;
        self.refresh_totals();
        self.note_node(id);
        tracing::info!(node = %id, "node left");
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

//! Node credentials in the control loop: enrolment, revocation, and whose attempts a log
//! upload names. The loop is the one writer of [`crate::node_keys::NodeKeys`]; the records it
//! makes ride in the next commit with the engine's changes.

use super::msg::{AttemptsOf, NodeAction};
use super::{reply_after, ControlLoop, Reply};
use crate::convert;
use crate::error::ApiError;
use crate::writer::AfterCommit;
use zenith_engine::Command;
use zenith_model::{AttemptId, NodeId};
use zenith_protocol::api::{NodeView, RevokeView};

impl ControlLoop {
    /// Gives `node` its credential, answered once the record is durable.
    pub(super) fn enroll(
        &mut self,
        node: NodeId,
        name: String,
        reply: Reply<String>,
        now: u64,
        after: &mut Vec<AfterCommit>,
    ) {
        if self.degraded.is_some() {
            let _ = reply.send(Err(self.refusal())); // an agent that left enrolls again
            return;
        }
        match self.shared.keys.enroll(&node, &name, now) {
            Ok((credential, record)) => {
                let _span = tracing::info_span!("enroll", node = %node, name = %name).entered();
                tracing::info!("node enrolled");
                self.metrics.nodes_enrolled.inc();
                self.key_changes.push(record);
                after.push(reply_after(reply, credential));
            }
            Err(e) => {
                let _ = reply.send(Err(e)); // as above
            }
        }
    }

    /// Cuts a node off: its credential refused from now on, its session closed, its attempts
    /// requeued elsewhere. `which`: the node's ID, or its name when one node has it.
    pub(super) fn revoke(
        &mut self,
        which: &str,
        reply: Reply<RevokeView>,
        now: u64,
        after: &mut Vec<AfterCommit>,
    ) {
        if self.degraded.is_some() {
            let _ = reply.send(Err(self.refusal())); // the operator retries
            return;
        }
        let (id, name, running) = match self.find_node(which) {
            Ok(found) => found,
            Err(e) => {
                let _ = reply.send(Err(e)); // as above
                return;
            }
        };
        let Some(record) = self.shared.keys.revoke(&id, &name, now) else {
            let _ = reply.send(Err(ApiError::NotFound(format!(
                "node {id} holds no credential (it never enrolled)"
            ))));
            return;
        };
        let _span = tracing::info_span!("revoke", node = %id, name = %name).entered();
        tracing::warn!(requeued = running, "node credential revoked");
        self.metrics.nodes_revoked.inc();
        self.key_changes.push(record);
        // Dropping the session ends its assignment stream.
        self.sessions.remove(&id);
        let _ = self
            .engine
            .apply(Command::LoseNode { node: id.clone() }, now); // never refused
        let view = RevokeView {
            node: id,
            name,
            requeued: running,
        };
        after.push(reply_after(reply, view));
    }

    /// Cordons, drains, opens or removes a node (`which`: its ID or unique name); answers
    /// with the node as it is then, once durable.
    pub(super) fn node_action(
        &mut self,
        which: &str,
        action: NodeAction,
        reply: Reply<NodeView>,
        now: u64,
        after: &mut Vec<AfterCommit>,
    ) {
        let found = self.find_node(which).and_then(|(id, _, _)| {
            self.engine
                .nodes()
                .into_iter()
                .find(|n| n.id == id)
                .ok_or_else(|| ApiError::NotFound(format!("node {which:?} is not registered")))
        });
        let before = match found {
            Ok(n) => n,
            Err(e) => {
                let _ = reply.send(Err(e)); // the operator retries
                return;
            }
        };
        let node = before.id.clone();
        let cmd = match action {
            NodeAction::Cordon => Command::Cordon {
                node: node.clone(),
                drain_deadline: None,
            },
            NodeAction::Drain(ms) => Command::Cordon {
                node: node.clone(),
                // Without a deadline a drain still marks the node draining: far away.
                drain_deadline: Some(ms.map_or(u64::MAX, |ms| now.saturating_add(ms))),
            },
            NodeAction::Uncordon => Command::Uncordon { node: node.clone() },
            NodeAction::Remove => Command::RemoveNode { node: node.clone() },
        };
        let _span = tracing::info_span!("node_action", node = %node, action = ?action).entered();
        match self.command(cmd, now) {
            Ok(_) => {
                tracing::info!("node changed");
                self.metrics.node_actions.inc();
                let after_view = self.engine.nodes().into_iter().find(|n| n.id == node);
                let revoked = self.shared.keys.is_revoked(&node);
                let full = self.sessions.get(&node).is_some_and(|s| s.disk_full);
                let view = convert::node_view(after_view.unwrap_or(before), revoked, full);
                after.push(reply_after(reply, view));
            }
            Err(e) => {
                let _ = reply.send(Err(e)); // as above
            }
        }
    }

    /// The node `which` names (ID first, then a unique name), with its attempts running.
    fn find_node(&self, which: &str) -> Result<(NodeId, String, usize), ApiError> {
        let nodes = self.engine.nodes();
        if let Some(n) = nodes.iter().find(|n| n.id.as_str() == which) {
            return Ok((n.id.clone(), n.name.clone(), n.running));
        }
        let named: Vec<_> = nodes.iter().filter(|n| n.name == which).collect();
        match named.as_slice() {
            [n] => Ok((n.id.clone(), n.name.clone(), n.running)),
            [] => match NodeId::parse(which) {
                // Enrolled but not registered now (or forgotten since): revoke by ID.
                Ok(id) => Ok((id, which.to_string(), 0)),
                Err(_) => Err(ApiError::NotFound(format!("no node {which:?}"))),
            },
            many => Err(ApiError::Conflict(format!(
                "{} nodes are named {which:?}; revoke by node ID ({})",
                many.len(),
                many.iter()
                    .map(|n| n.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// Sorts the attempts of a log upload by owner.
    pub(super) fn attempts_of(&self, node: &NodeId, attempts: Vec<AttemptId>) -> AttemptsOf {
        let mut out = AttemptsOf::default();
        for a in attempts {
            match self.engine.attempt_owner(a) {
                Some((owner, _)) if &owner == node => {}
                Some(_) => out.others.push(a),
                None => out.unknown.push(a),
            }
        }
        out
    }
}

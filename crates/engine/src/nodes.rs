//! Node commands: registration with reconciliation, heartbeats, loss detection, and `tick`.

use crate::state::{Engine, Node};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use zenith_model::{AttemptId, AttemptOutcome, Millis, NodeId, NodeState, Resources};

/// What a node registers with.
#[derive(Clone, Debug)]
pub struct NodeRegistration {
    pub id: NodeId,
    pub name: String,
    pub resources: Resources,
    pub labels: BTreeMap<String, String>,
    /// Attempts the agent is running, holds in its backlog, or holds unacknowledged results
    /// for.
    pub known: Vec<AttemptId>,
    /// Of `known`, the attempts waiting in the agent's backlog (not started).
    pub waiting: Vec<AttemptId>,
    /// How many assignments the agent holds beyond what fits (see `backlog.rs`).
    pub prefetch: u32,
    /// Where gang members reach the node (empty: unknown; its name stands in).
    pub address: String,
}

/// The engine's answer to a registration or heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeReply {
    /// Attempts the agent must kill: not (or no longer) owned by it, timed out or cancelled.
    pub kill: Vec<AttemptId>,
    /// The node is unknown or was declared lost: it must register again.
    pub reregister: bool,
}

impl Engine {
    /// Registers (or re-registers) a node and reconciles its attempts: attempts the engine had
    /// on it that the agent does not know are lost; attempts the agent runs that the engine
    /// does not own must be killed.
    pub fn register_node(&mut self, reg: NodeRegistration, now: Millis) -> NodeReply {
        let now = self.clamp(now);
        let known: HashSet<AttemptId> = reg.known.iter().copied().collect();
        let lost: Vec<AttemptId> = self
            .nodes
            .get(&reg.id)
            .map(|n| {
                n.running
                    .iter()
                    .copied()
                    .filter(|a| !known.contains(a))
                    .collect()
            })
            .unwrap_or_default();
        for aid in lost {
            self.lose_attempt(aid, now);
        }
        let node = self.nodes.entry(reg.id.clone()).or_insert_with(|| Node {
            name: String::new(),
            total: Resources::default(),
            free: Resources::default(),
            labels: BTreeMap::new(),
            state: NodeState::Ready,
            registered_at: now,
            last_heartbeat: now,
            running: BTreeSet::new(),
            backlog: BTreeSet::new(),
            prefetch: 0,
            recent_run_ms: None,
            cordoned_at: None,
            drain_deadline: None,
            leaving: None,
            address: String::new(),
        });
        node.name = reg.name;
        node.address = reg.address;
        node.prefetch = reg.prefetch;
        if reg.prefetch > 0 {
            self.prefetching.insert(reg.id.clone());
        } else {
            self.prefetching.remove(&reg.id);
        }
        node.labels = reg.labels;
        node.state = NodeState::Ready;
        // An agent that said it was leaving is back.
        node.leaving = None;
        node.last_heartbeat = now;
        node.total = reg.resources;
        // The agent says which of its attempts wait in its backlog; the rest have started.
        let waiting: HashSet<AttemptId> = reg.waiting.iter().copied().collect();
        let here: Vec<AttemptId> = node.running.iter().copied().collect();
        for aid in here.into_iter().filter(|a| waiting.contains(a)) {
            self.unstart(aid);
        }
        // Recompute free from what has started here, so a changed capacity is honoured.
        let Some(node) = self.nodes.get_mut(&reg.id) else {
            return NodeReply::default();
        };
        let mut free = node.total.clone();
        for aid in &node.running {
            match self.attempts.get(aid) {
                Some(r) if !r.queued => {
                    if let Some(job) = self.jobs.get(&r.job) {
                        free.take(&job.spec.resources);
                    }
                }
                _ => {}
            }
        }
        node.free = free;
        self.refresh_totals();
        // Backlogged attempts the agent has started, as far as they fit (see
        // `start_reported`).
        self.start_reported(&reg.id, &known, &waiting, now);
        self.sched_dirty = true;
        self.note_node(&reg.id);
        NodeReply {
            kill: self.kills_for(&reg.id, &reg.known),
            reregister: false,
        }
    }

    /// A heartbeat carrying the attempts the agent knows of.
    pub fn heartbeat(&mut self, id: &NodeId, known: &[AttemptId], now: Millis) -> NodeReply {
        let now = self.clamp(now);
        let grace = self.cfg.dispatch_grace_ms;
        let Some(node) = self.nodes.get_mut(id) else {
            return NodeReply {
                kill: known.to_vec(),
                reregister: true,
            };
        };
        if node.state != NodeState::Ready {
            return NodeReply {
                kill: Vec::new(),
                reregister: true,
            };
        }
        node.last_heartbeat = now;
        let known_set: HashSet<AttemptId> = known.iter().copied().collect();
        let missing: Vec<AttemptId> = node
            .running
            .iter()
            .copied()
            .filter(|a| !known_set.contains(a))
            .filter(|a| {
                self.attempts
                    .get(a)
                    .is_some_and(|r| r.started_at.saturating_add(grace) < now)
            })
            .collect();
        for aid in missing {
            self.lose_attempt(aid, now);
        }
        NodeReply {
            kill: self.kills_for(id, known),
            reregister: false,
        }
    }

    /// Kills owed to a node: attempts it reports that it does not own, and owned attempts
    /// being killed (resent on every heartbeat until the node reports them ended).
    fn kills_for(&self, id: &NodeId, known: &[AttemptId]) -> Vec<AttemptId> {
        let mut kill: Vec<AttemptId> = known
            .iter()
            .copied()
            .filter(|a| self.attempts.get(a).is_none_or(|r| &r.node != id))
            .collect();
        if let Some(node) = self.nodes.get(id) {
            kill.extend(
                node.running
                    .iter()
                    .copied()
                    .filter(|a| self.attempts.get(a).is_some_and(|r| r.killing.is_some())),
            );
        }
        kill
    }

    /// An attempt's node is gone or lost track of it: record it lost and requeue its task.
    pub(crate) fn lose_attempt(&mut self, aid: AttemptId, now: Millis) {
        if let Some(r) = self.release_attempt(aid, None) {
            let outcome = match r.killing {
                Some(reason) => reason.outcome(),
                None => AttemptOutcome::NodeLost,
            };
            self.end_attempt(aid, r, outcome, now);
        }
    }

    /// Advances time: lost nodes, retry backoffs, timeouts, then a scheduling pass. Returns
    /// the nodes it forgot (lost longer than the TTL), so callers can drop what they keep per
    /// node.
    pub fn tick(&mut self, now: Millis) -> Vec<NodeId> {
        let now = self.clamp(now);
        let timeout = self.cfg.heartbeat_timeout_ms;
        let ttl = self.cfg.lost_node_ttl_ms;
        let mut newly_lost = Vec::new();
        let mut forget = Vec::new();
        // Silence is checked at a twentieth of the timeout, not every tick: a scan of 10,000
        // nodes every 50 ms was 4% of a core, and a node is declared lost at most 5% late.
        if now >= self.next_node_scan {
            self.next_node_scan = now.saturating_add((timeout / 20).max(1));
            for (id, n) in &self.nodes {
                let silent = now.saturating_sub(n.last_heartbeat);
                match n.state {
                    NodeState::Ready if silent > timeout => newly_lost.push(id.clone()),
                    NodeState::Lost | NodeState::Left if silent > ttl && n.running.is_empty() => {
                        forget.push(id.clone())
                    }
                    _ => {}
                }
            }
        }
        for id in newly_lost {
            self.mark_lost(&id, now);
        }
        if now >= self.next_drain_scan {
            self.next_drain_scan = now.saturating_add((timeout / 20).max(1));
            for id in self.drains_due(now) {
                self.enforce_drain(&id, now);
            }
        }
        for id in &forget {
            self.nodes.remove(id);
            self.prefetching.remove(id);
            self.changes.nodes.remove(id);
            self.changes.removed_nodes.push(id.clone());
        }
        self.parties.fold(now);
        self.fire_retry_timers(now);
        self.fire_deadlines(now);
        self.expire_keys(now);
        self.fire_flow_timers(now);
        self.schedule(now);
        forget
    }

    /// Sums what ready nodes hold: the denominator of fair shares.
    pub(crate) fn refresh_totals(&mut self) {
        let mut t = crate::fairshare::Alloc::default();
        for n in self.nodes.values().filter(|n| n.state == NodeState::Ready) {
            t.cpu_millis += n.total.cpu_millis;
            t.memory += n.total.memory;
            t.gpus += n.total.gpus;
        }
        self.parties.total = t;
    }

    /// Declares a node lost and requeues everything it ran.
    pub fn mark_lost(&mut self, id: &NodeId, now: Millis) {
        let running: Vec<AttemptId> = match self.nodes.get_mut(id) {
            Some(n) => {
                n.state = NodeState::Lost;
                n.running.iter().copied().collect()
            }
            None => return,
        };
        for aid in running {
            self.lose_attempt(aid, now);
        }
        self.refresh_totals();
        self.note_node(id);
    }
}

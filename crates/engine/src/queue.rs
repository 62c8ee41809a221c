//! One queue's jobs with pending tasks, grouped by *shape* (what placement looks at: resources
//! and constraints), each group in priority order. A scheduling pass looks at the head of each
//! shape and drops a shape for the rest of the pass as soon as one of its jobs does not fit, so
//! a pass costs O(shapes · log + placements), not O(queued jobs).

use crate::state::QueueKey;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Default, Debug)]
pub(crate) struct Queue {
    shapes: rustc_hash::FxHashMap<u64, BTreeSet<QueueKey>>,
    len: usize,
}

impl Queue {
    pub fn insert(&mut self, shape: u64, key: QueueKey) {
        if self.shapes.entry(shape).or_default().insert(key) {
            self.len += 1;
        }
    }

    pub fn remove(&mut self, shape: u64, key: QueueKey) {
        if let Some(set) = self.shapes.get_mut(&shape) {
            if set.remove(&key) {
                self.len -= 1;
            }
            if set.is_empty() {
                self.shapes.remove(&shape);
            }
        }
    }

    pub fn contains(&self, shape: u64, key: &QueueKey) -> bool {
        self.shapes.get(&shape).is_some_and(|s| s.contains(key))
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Every queued job, shape by shape.
    pub fn keys(&self) -> impl Iterator<Item = &QueueKey> {
        self.shapes.values().flatten()
    }

    /// The first job of each shape.
    pub fn heads(&self) -> impl Iterator<Item = (QueueKey, u64)> + '_ {
        self.shapes
            .iter()
            .filter_map(|(shape, set)| set.first().map(|k| (*k, *shape)))
    }

    /// The job after `key` among those of `shape`.
    pub fn next_after(&self, shape: u64, key: QueueKey) -> Option<QueueKey> {
        use std::ops::Bound::{Excluded, Unbounded};
        self.shapes
            .get(&shape)?
            .range((Excluded(key), Unbounded))
            .next()
            .copied()
    }
}

/// Every queue with jobs, by namespace, then submitter, then queue name: the parties fair
/// share chooses between (`fairshare.rs`) and, inside one, its queues taking turns. Empty
/// queues, users and namespaces are dropped at once. Looked up by `&str` at every level, so
/// an existing queue costs no allocation.
#[derive(Default, Debug)]
pub(crate) struct Queues {
    by_ns: BTreeMap<String, BTreeMap<String, BTreeMap<String, Queue>>>,
}

/// A queue's place: namespace, submitter, queue name.
pub(crate) type Leaf<'a> = (&'a str, &'a str, &'a str);

/// Where a job of `spec` queues.
pub(crate) fn leaf_of(spec: &zenith_model::JobSpec) -> Leaf<'_> {
    (spec.namespace(), &spec.submitter, &spec.queue)
}

impl Queues {
    pub fn insert(&mut self, (ns, user, queue): Leaf<'_>, shape: u64, key: QueueKey) {
        // Looked up before inserting so that an existing level costs no allocation.
        if !self.by_ns.contains_key(ns) {
            self.by_ns.insert(ns.to_string(), BTreeMap::new());
        }
        let Some(users) = self.by_ns.get_mut(ns) else {
            return;
        };
        if !users.contains_key(user) {
            users.insert(user.to_string(), BTreeMap::new());
        }
        let Some(queues) = users.get_mut(user) else {
            return;
        };
        if !queues.contains_key(queue) {
            queues.insert(queue.to_string(), Queue::default());
        }
        if let Some(q) = queues.get_mut(queue) {
            q.insert(shape, key);
        }
    }

    /// Removes a job, and its queue, user and namespace as they empty.
    pub fn remove(&mut self, (ns, user, queue): Leaf<'_>, shape: u64, key: QueueKey) {
        let Some(users) = self.by_ns.get_mut(ns) else {
            return;
        };
        let Some(queues) = users.get_mut(user) else {
            return;
        };
        let Some(q) = queues.get_mut(queue) else {
            return;
        };
        q.remove(shape, key);
        if q.is_empty() {
            queues.remove(queue);
            if queues.is_empty() {
                users.remove(user);
                if users.is_empty() {
                    self.by_ns.remove(ns);
                }
            }
        }
    }

    pub fn get(&self, (ns, user, queue): Leaf<'_>) -> Option<&Queue> {
        self.by_ns.get(ns)?.get(user)?.get(queue)
    }

    /// Every queue with its place, in order.
    pub fn iter(&self) -> impl Iterator<Item = (Leaf<'_>, &Queue)> {
        self.by_ns.iter().flat_map(|(ns, users)| {
            users.iter().flat_map(move |(user, queues)| {
                queues
                    .iter()
                    .map(move |(name, q)| ((ns.as_str(), user.as_str(), name.as_str()), q))
            })
        })
    }

    /// Whether some namespace, user or queue map is kept empty (a sanity check).
    pub fn has_empty(&self) -> bool {
        self.by_ns
            .values()
            .any(|u| u.is_empty() || u.values().any(|q| q.is_empty()))
    }
}

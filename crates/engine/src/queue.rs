//! One queue's jobs with pending tasks, grouped by *shape* (what placement looks at: resources
//! and constraints), each group in priority order. A scheduling pass looks at the head of each
//! shape and drops a shape for the rest of the pass as soon as one of its jobs does not fit, so
//! a pass costs O(shapes · log + placements), not O(queued jobs).

use crate::state::QueueKey;
use std::collections::{BTreeSet, HashMap};

#[derive(Default, Debug)]
pub(crate) struct Queue {
    shapes: HashMap<u64, BTreeSet<QueueKey>>,
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

//! Fair share and quotas between namespaces, and between the users (submitters) in one.
//!
//! **Usage.** A party's *dominant share* `d` is the largest fraction of the cluster's CPU,
//! memory or GPUs its running attempts hold (dominant-resource fairness, as in Mesos and
//! YARN: a GPU job is measured by GPUs, a memory job by memory). Its *recent usage* `u` is
//! `d` averaged over time with exponential decay: every [`DECAY_EVERY_MS`],
//! `u ← d + (u − d) · 2^(−Δt / half_life)`, so usage an hour old (at the default half-life)
//! counts half. **Order.** While several parties have queued work, each placement goes to
//! the namespace with the lowest `(d + u) / weight`, and within it to the user with the
//! lowest `(d + u) / weight` among its users, one task at a time (a party that alone has work
//! places in bulk). Priority orders the jobs of one party (then age). A party with twice the
//! weight thus holds twice the share while both are busy, and one that used nothing recently
//! goes first: a late user's jobs take the next free slots ahead of a million-task array.
//!
//! **Quotas** (per namespace): cpus, memory, gpus and running attempts are checked at each
//! placement (a job over them stays queued; `explain` names the limit); live jobs and tasks
//! are checked at submit (refused, naming the limit), as is a single task larger than a
//! resource limit (it could never run).
//!
//! Bounds: an entry per namespace and per (namespace, user) with live jobs or running work,
//! kept idle while its usage decays and forgotten when it falls under [`IDLE_USAGE`] or when
//! more than [`MAX_IDLE_PARTIES`] are idle. Settings: at most `max_namespaces` (config).

use std::collections::{BTreeMap, HashMap};
use zenith_model::namespace::{NamespaceSettings, Quota};
use zenith_model::Resources;

/// How often recent usage is folded.
pub const DECAY_EVERY_MS: u64 = 1_000;
/// An idle party whose recent usage fell below this is forgotten.
pub const IDLE_USAGE: f64 = 1e-6;
/// Most idle parties kept; beyond, every idle one is forgotten at the next fold.
pub const MAX_IDLE_PARTIES: usize = 10_000;

/// What a party holds now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Alloc {
    pub cpu_millis: u64,
    pub memory: u64,
    pub gpus: u64,
    pub running: u64,
}

impl Alloc {
    fn add(&mut self, r: &Resources) {
        self.cpu_millis += r.cpu_millis;
        self.memory += r.memory;
        self.gpus += r.gpus;
        self.running += 1;
    }

    fn sub(&mut self, r: &Resources) {
        self.cpu_millis = self.cpu_millis.saturating_sub(r.cpu_millis);
        self.memory = self.memory.saturating_sub(r.memory);
        self.gpus = self.gpus.saturating_sub(r.gpus);
        self.running = self.running.saturating_sub(1);
    }

    /// The largest fraction of `total` held, over CPU, memory and GPUs.
    pub fn dominant(&self, total: &Alloc) -> f64 {
        let f = |a: u64, t: u64| if t == 0 { 0.0 } else { a as f64 / t as f64 };
        f(self.cpu_millis, total.cpu_millis)
            .max(f(self.memory, total.memory))
            .max(f(self.gpus, total.gpus))
    }
}

/// One party's standing.
#[derive(Clone, Debug, Default)]
pub(crate) struct Party {
    pub alloc: Alloc,
    /// Recent usage: the decayed average of the dominant share.
    pub usage: f64,
    pub live_jobs: u64,
    pub live_tasks: u64,
}

impl Party {
    fn idle(&self) -> bool {
        self.live_jobs == 0 && self.alloc.running == 0
    }

    fn fold(&mut self, total: &Alloc, keep: f64) {
        let d = self.alloc.dominant(total);
        self.usage = d + (self.usage - d) * keep;
    }

    /// Lower goes first.
    pub fn score(&self, total: &Alloc, weight: u32) -> f64 {
        (self.alloc.dominant(total) + self.usage) / f64::from(weight.max(1))
    }
}

#[derive(Debug, Default)]
pub(crate) struct NsParty {
    pub party: Party,
    pub users: HashMap<String, Party>,
}

/// Why a job does not start now although nodes may fit it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaHit {
    pub namespace: String,
    /// `cpus`, `memory`, `gpus`, `running`, `jobs` or `tasks`.
    pub limit: &'static str,
    pub used: u64,
    pub max: u64,
}

impl std::fmt::Display for QuotaHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: u64| match self.limit {
            "cpus" => format!("{}", v as f64 / 1000.0),
            "memory" => zenith_model::resources::format_bytes(v),
            _ => v.to_string(),
        };
        write!(
            f,
            "quota {} {}/{} in namespace {}",
            self.limit,
            show(self.used),
            show(self.max),
            self.namespace
        )
    }
}

/// The first of `(limit, max, used, more)` where `used + more` passes a set `max`.
fn first_hit<const N: usize>(
    ns: &str,
    checks: [(&'static str, Option<u64>, u64, u64); N],
) -> Option<QuotaHit> {
    checks.into_iter().find_map(|(limit, max, used, more)| {
        let max = max?;
        (used.saturating_add(more) > max).then(|| QuotaHit {
            namespace: ns.to_string(),
            limit,
            used,
            max,
        })
    })
}

/// Every party's standing and the namespaces' settings.
#[derive(Debug)]
pub(crate) struct Parties {
    pub ns: HashMap<String, NsParty>,
    pub settings: BTreeMap<String, NamespaceSettings>,
    /// What ready nodes hold in all (the denominator of shares).
    pub total: Alloc,
    pub half_life_ms: u64,
    pub last_fold: u64,
}

impl Parties {
    pub fn new(half_life_ms: u64) -> Self {
        Parties {
            ns: HashMap::new(),
            settings: BTreeMap::new(),
            total: Alloc::default(),
            half_life_ms: half_life_ms.max(1),
            last_fold: 0,
        }
    }

    /// Applies `f` to the namespace's and the user's standing, creating them as needed.
    fn both(&mut self, ns: &str, user: &str, f: impl Fn(&mut Party)) {
        if !self.ns.contains_key(ns) {
            self.ns.insert(ns.to_string(), NsParty::default());
        }
        let Some(n) = self.ns.get_mut(ns) else { return };
        if !n.users.contains_key(user) {
            n.users.insert(user.to_string(), Party::default());
        }
        f(&mut n.party);
        if let Some(u) = n.users.get_mut(user) {
            f(u);
        }
    }

    pub fn weight(&self, ns: &str) -> u32 {
        self.settings.get(ns).map_or(1, |s| s.weight)
    }

    pub fn user_weight(&self, ns: &str, user: &str) -> u32 {
        self.settings.get(ns).map_or(1, |s| s.user_weight(user))
    }

    pub fn quota(&self, ns: &str) -> Option<&Quota> {
        self.settings.get(ns).map(|s| &s.quota)
    }

    pub fn job_added(&mut self, ns: &str, user: &str, tasks: u64) {
        self.both(ns, user, |p| {
            p.live_jobs += 1;
            p.live_tasks += tasks;
        });
    }

    pub fn job_removed(&mut self, ns: &str, user: &str, tasks: u64) {
        self.both(ns, user, |p| {
            p.live_jobs = p.live_jobs.saturating_sub(1);
            p.live_tasks = p.live_tasks.saturating_sub(tasks);
        });
    }

    pub fn take(&mut self, ns: &str, user: &str, r: &Resources) {
        self.both(ns, user, |p| p.alloc.add(r));
    }

    pub fn give(&mut self, ns: &str, user: &str, r: &Resources) {
        self.both(ns, user, |p| p.alloc.sub(r));
    }

    /// The first running limit of `ns` one more task asking `r` would pass.
    pub fn running_hit(&self, ns: &str, r: &Resources) -> Option<QuotaHit> {
        let q = self.quota(ns)?;
        let held = self.ns.get(ns).map(|n| n.party.alloc).unwrap_or_default();
        first_hit(
            ns,
            [
                ("cpus", q.cpu_millis(), held.cpu_millis, r.cpu_millis),
                ("memory", q.memory, held.memory, r.memory),
                ("gpus", q.gpus, held.gpus, r.gpus),
                ("running", q.running, held.running, 1),
            ],
        )
    }

    /// The first limit of `ns` that `jobs` more jobs with `tasks` more tasks, the largest
    /// asking `biggest`, would pass for good: live jobs or tasks, or a task larger than a
    /// resource limit.
    pub fn submit_hit(
        &self,
        ns: &str,
        jobs: u64,
        tasks: u64,
        biggest: &Resources,
    ) -> Option<QuotaHit> {
        let q = self.quota(ns)?;
        let held = self.ns.get(ns).map(|n| n.party.clone()).unwrap_or_default();
        first_hit(
            ns,
            [
                ("jobs", q.jobs, held.live_jobs, jobs),
                ("tasks", q.tasks, held.live_tasks, tasks),
                ("cpus", q.cpu_millis(), 0, biggest.cpu_millis),
                ("memory", q.memory, 0, biggest.memory),
                ("gpus", q.gpus, 0, biggest.gpus),
            ],
        )
    }

    /// Folds recent usage up to `now` and forgets idle parties whose usage has decayed.
    pub fn fold(&mut self, now: u64) {
        if self.last_fold == 0 {
            // The first fold of a new engine: usage starts here.
            self.last_fold = now;
            return;
        }
        if now < self.last_fold.saturating_add(DECAY_EVERY_MS) {
            return;
        }
        let dt = now.saturating_sub(self.last_fold) as f64;
        self.last_fold = now;
        let keep = 0.5f64.powf(dt / self.half_life_ms as f64);
        let total = self.total;
        let mut idle = 0;
        for n in self.ns.values_mut() {
            n.party.fold(&total, keep);
            for u in n.users.values_mut() {
                u.fold(&total, keep);
                idle += usize::from(u.idle());
            }
        }
        let crowded = idle > MAX_IDLE_PARTIES;
        let gone = |p: &Party| p.idle() && (crowded || p.usage < IDLE_USAGE);
        for n in self.ns.values_mut() {
            n.users.retain(|_, u| !gone(u));
        }
        self.ns
            .retain(|_, n| !(n.users.is_empty() && gone(&n.party)));
    }
}

//! Placement: filter -> score -> select, as pure functions over a view of the cluster.
//!
//! The engine owns node state; it hands placement borrowed [`Candidate`]s. Filters run what
//! never changes with load first (readiness, constraints, capacity), then what does (free
//! resources), and every rejection is named, so that `zenith job explain` says why a job
//! waits: a node that could never take it is named for that, not for being busy. Scoring bin-packs: the node left fullest wins,
//! which keeps whole nodes free for big jobs. Selection looks at a bounded number of feasible
//! nodes ([`CANDIDATE_LIMIT`]) so one decision stays cheap on large clusters.

use std::collections::{BTreeMap, HashMap};
use zenith_model::{Constraint, Resources};

/// Feasible nodes examined per decision before the best of them is chosen.
pub const CANDIDATE_LIMIT: usize = 32;

/// What placement needs to know of one node.
#[derive(Clone, Copy, Debug)]
pub struct Candidate<'a> {
    pub free: &'a Resources,
    pub total: &'a Resources,
    pub labels: &'a BTreeMap<String, String>,
    /// Why the node takes no work now (`lost`, `cordoned`, `leaving`, ...); `None`: it does.
    pub unavailable: Option<&'static str>,
}

/// Why one node cannot take a request.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rejection {
    /// The node takes no work now, and why.
    NotReady(&'static str),
    /// A resource the node does not have enough of even when idle.
    ExceedsCapacity(String),
    /// A resource the node lacks right now (it is busy).
    Shortfall(String),
    Constraint(String),
}

impl Rejection {
    /// Which reasons an explanation names first: what no wait would change before what
    /// the node's load would.
    fn rank(&self) -> u8 {
        match self {
            Rejection::Constraint(_) => 0,
            Rejection::ExceedsCapacity(_) => 1,
            Rejection::NotReady(_) => 2,
            Rejection::Shortfall(_) => 3,
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::NotReady(why) => write!(f, "node {why}"),
            Rejection::ExceedsCapacity(r) => write!(f, "{r} (exceeds node capacity)"),
            Rejection::Shortfall(r) => f.write_str(r),
            Rejection::Constraint(c) => write!(f, "constraint {c} not met"),
        }
    }
}

/// The filter stage for one node.
pub fn check(
    c: &Candidate<'_>,
    req: &Resources,
    constraints: &[Constraint],
) -> Result<(), Rejection> {
    if let Some(why) = c.unavailable {
        return Err(Rejection::NotReady(why));
    }
    if let Some(bad) = constraints.iter().find(|k| !k.matches(c.labels)) {
        return Err(Rejection::Constraint(bad.to_string()));
    }
    if let Some(s) = req.first_shortfall(c.total) {
        return Err(Rejection::ExceedsCapacity(s));
    }
    if let Some(s) = req.first_shortfall(c.free) {
        return Err(Rejection::Shortfall(s));
    }
    Ok(())
}

/// The bin-packing score: how full the node would be after placing `req`, in parts per million
/// averaged over CPU and memory. Higher is better.
pub fn score(c: &Candidate<'_>, req: &Resources) -> u64 {
    fn used_ppm(total: u64, free: u64, req: u64) -> u64 {
        if total == 0 {
            return 0;
        }
        let used = total.saturating_sub(free).saturating_add(req).min(total);
        (u128::from(used) * 1_000_000 / u128::from(total)) as u64
    }
    let cpu = used_ppm(c.total.cpu_millis, c.free.cpu_millis, req.cpu_millis);
    let mem = used_ppm(c.total.memory, c.free.memory, req.memory);
    (cpu + mem) / 2
}

/// What decides between the nodes that fit, before bin-packing: soft constraints (more met
/// is better), then spreading (fewer of the job's tasks under the node's value of the label
/// is better).
#[derive(Clone, Copy, Debug, Default)]
pub struct Preferences<'a> {
    pub prefer: &'a [Constraint],
    /// The label to spread over, and how many of the job's tasks run per value of it (a
    /// node without the label counts as the value "").
    pub spread: Option<(&'a str, &'a HashMap<String, u32>)>,
}

impl Preferences<'_> {
    /// Higher is better: (soft constraints met, fewest tasks under the node's spread value).
    fn rank(&self, labels: &BTreeMap<String, String>) -> (usize, u32) {
        let met = self.prefer.iter().filter(|c| c.matches(labels)).count();
        let spread = match self.spread {
            Some((key, counts)) => {
                let v = labels.get(key).map_or("", String::as_str);
                u32::MAX - counts.get(v).copied().unwrap_or(0)
            }
            None => 0,
        };
        (met, spread)
    }
}

/// What [`select_scan`] found: the chosen node and the first feasible one it saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection<K> {
    pub chosen: K,
    /// Every candidate before this one was infeasible: a later scan for the same request,
    /// with resources only taken in between, can start here and choose the same.
    pub first_feasible: K,
}

/// Chooses a node for `req` among `candidates`: the best of the first [`CANDIDATE_LIMIT`]
/// feasible ones by `prefs`, then by bin-packing score; ties go to the earlier node. Also
/// reports where the feasible candidates begin.
pub fn select_scan<'a, K, I>(
    candidates: I,
    req: &Resources,
    constraints: &[Constraint],
    prefs: &Preferences<'_>,
) -> Option<Selection<K>>
where
    K: Clone,
    I: IntoIterator<Item = (K, Candidate<'a>)>,
{
    let mut best: Option<((usize, u32, u64), K)> = None;
    let mut first: Option<K> = None;
    let mut seen = 0usize;
    for (key, c) in candidates {
        if check(&c, req, constraints).is_err() {
            continue;
        }
        if first.is_none() {
            first = Some(key.clone());
        }
        let (met, spread) = prefs.rank(c.labels);
        let s = (met, spread, score(&c, req));
        if best.as_ref().is_none_or(|(b, _)| s > *b) {
            best = Some((s, key));
        }
        seen += 1;
        if seen >= CANDIDATE_LIMIT {
            break;
        }
    }
    match (best, first) {
        (Some((_, chosen)), Some(first_feasible)) => Some(Selection {
            chosen,
            first_feasible,
        }),
        _ => None,
    }
}

/// Why a request is or is not placeable right now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Explanation {
    pub nodes: u32,
    pub feasible: u32,
    /// Rejection reason (display form) -> number of nodes rejected for it.
    pub rejections: BTreeMap<String, u32>,
    /// Rejection reason -> its rank (`Rejection::rank`): the order the summary names them.
    ranks: BTreeMap<String, u8>,
}

impl Explanation {
    /// "1 node: constraint gpu=a100 not met; 3 nodes: insufficient memory": what no wait
    /// would change first (constraints, capacity, nodes not taking work), then what load
    /// would; the most nodes first within each.
    pub fn summary(&self) -> String {
        if self.nodes == 0 {
            return "no nodes registered".into();
        }
        let rank = |r: &String| self.ranks.get(r).copied().unwrap_or(u8::MAX);
        let mut parts: Vec<(u32, &String)> = self.rejections.iter().map(|(r, n)| (*n, r)).collect();
        parts.sort_by(|a, b| {
            rank(a.1)
                .cmp(&rank(b.1))
                .then(b.0.cmp(&a.0))
                .then(a.1.cmp(b.1))
        });
        let mut out: Vec<String> = Vec::with_capacity(parts.len() + 1);
        if self.feasible > 0 {
            out.push(format!(
                "{} {} can run it now",
                self.feasible,
                plural(self.feasible)
            ));
        }
        out.extend(
            parts
                .into_iter()
                .map(|(n, r)| format!("{n} {}: {r}", plural(n))),
        );
        out.join("; ")
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 {
        "node"
    } else {
        "nodes"
    }
}

/// Runs the filter over every node and counts the reasons for rejection.
pub fn explain<'a, I>(candidates: I, req: &Resources, constraints: &[Constraint]) -> Explanation
where
    I: IntoIterator<Item = Candidate<'a>>,
{
    let mut e = Explanation::default();
    for c in candidates {
        e.nodes += 1;
        match check(&c, req, constraints) {
            Ok(()) => e.feasible += 1,
            Err(r) => {
                let text = r.to_string();
                e.ranks.entry(text.clone()).or_insert(r.rank());
                *e.rejections.entry(text).or_insert(0) += 1;
            }
        }
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    struct N {
        free: Resources,
        total: Resources,
        labels: BTreeMap<String, String>,
        unavailable: Option<&'static str>,
    }

    fn node(cpus: u64, mem: u64, free_cpus: u64, labels: &[(&str, &str)]) -> N {
        let total = Resources {
            cpu_millis: cpus * 1000,
            memory: mem,
            ..Default::default()
        };
        let free = Resources {
            cpu_millis: free_cpus * 1000,
            memory: mem,
            ..Default::default()
        };
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        N {
            free,
            total,
            labels,
            unavailable: None,
        }
    }

    fn view(ns: &[N]) -> impl Iterator<Item = (usize, Candidate<'_>)> {
        ns.iter().enumerate().map(|(i, n)| {
            (
                i,
                Candidate {
                    free: &n.free,
                    total: &n.total,
                    labels: &n.labels,
                    unavailable: n.unavailable,
                },
            )
        })
    }

    /// The node [`select_scan`] chooses.
    fn chosen<'a>(
        candidates: impl Iterator<Item = (usize, Candidate<'a>)>,
        req: &Resources,
        constraints: &[Constraint],
    ) -> Option<usize> {
        select_scan(candidates, req, constraints, &Preferences::default()).map(|s| s.chosen)
    }

    #[test]
    fn binpacks_onto_fullest_node() {
        let ns = vec![
            node(8, 100, 8, &[]),
            node(8, 100, 2, &[]),
            node(8, 100, 4, &[]),
        ];
        let req = Resources::cpus(1.0);
        assert_eq!(chosen(view(&ns), &req, &[]), Some(1));
        let req3 = Resources::cpus(3.0);
        assert_eq!(chosen(view(&ns), &req3, &[]), Some(2));
    }

    #[test]
    fn preferences_and_spread_come_before_binpacking() {
        let ns = vec![
            node(8, 100, 2, &[("zone", "a")]),
            node(8, 100, 8, &[("zone", "b"), ("disk", "ssd")]),
            node(8, 100, 4, &[("zone", "c")]),
        ];
        let req = Resources::cpus(1.0);
        let ssd: Constraint = "disk=ssd".parse().unwrap();
        let prefer = [ssd];
        let p = Preferences {
            prefer: &prefer,
            spread: None,
        };
        let pick = |p: &Preferences| select_scan(view(&ns), &req, &[], p).map(|s| s.chosen);
        assert_eq!(pick(&p), Some(1), "the preferred node, though emptiest");
        let mut counts = HashMap::new();
        counts.insert("a".to_string(), 3);
        counts.insert("b".to_string(), 1);
        let spread = Preferences {
            prefer: &[],
            spread: Some(("zone", &counts)),
        };
        assert_eq!(
            pick(&spread),
            Some(2),
            "zone c runs none of the job's tasks"
        );
        assert_eq!(pick(&Preferences::default()), Some(0), "bin-packing alone");
    }

    #[test]
    fn explains_rejections() {
        let mut ns = vec![
            node(4, 10, 4, &[("gpu", "t4")]),
            node(4, 10, 0, &[]),
            node(4, 10, 4, &[]),
            node(4, 10, 4, &[]),
        ];
        ns[3].unavailable = Some("lost");
        let req = Resources {
            cpu_millis: 1000,
            memory: 20,
            ..Default::default()
        };
        let gpu: Constraint = "gpu=a100".parse().unwrap();
        assert_eq!(chosen(view(&ns), &req, std::slice::from_ref(&gpu)), None);
        let e = explain(view(&ns).map(|(_, c)| c), &req, std::slice::from_ref(&gpu));
        assert_eq!(e.nodes, 4);
        assert_eq!(e.feasible, 0);
        assert_eq!(
            e.summary(),
            "3 nodes: constraint gpu=a100 not met; 1 node: node lost"
        );
        let e2 = explain(view(&ns).map(|(_, c)| c), &req, &[]);
        assert_eq!(
            e2.summary(),
            "3 nodes: insufficient memory (exceeds node capacity); 1 node: node lost"
        );
    }

    #[test]
    fn on_a_busy_cluster_the_constraint_is_named_before_the_load() {
        let ns = vec![
            node(4, 10, 0, &[("gpu", "h100")]),
            node(4, 10, 0, &[]),
            node(4, 10, 0, &[]),
            node(4, 10, 0, &[("gpu", "t4")]),
        ];
        let gpu: Constraint = "gpu=h100".parse().unwrap();
        let e = explain(view(&ns).map(|(_, c)| c), &Resources::cpus(1.0), &[gpu]);
        assert_eq!(
            e.summary(),
            "3 nodes: constraint gpu=h100 not met; 1 node: insufficient cpus"
        );
        let few = vec![
            node(4, 10, 0, &[]),
            node(4, 10, 0, &[]),
            node(4, 10, 4, &[("gpu", "t4")]),
        ];
        let any: Constraint = "gpu exists".parse().unwrap();
        let e = explain(view(&few).map(|(_, c)| c), &Resources::cpus(1.0), &[any]);
        assert_eq!(
            e.summary(),
            "1 node can run it now; 2 nodes: constraint gpu exists not met"
        );
    }
}

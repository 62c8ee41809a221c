//! Namespace commands and views: settings (weight, user weights, quota), the quota check at
//! submit, why a job waits on its quota, and the fair-share table (`zenith share`).

use crate::fairshare::{Party, QuotaHit};
use crate::state::Engine;
use crate::EngineError;
use std::collections::BTreeSet;
use std::sync::Arc;
use zenith_model::namespace::{NamespaceSettings, PartyShare, ShareView};
use zenith_model::{JobId, JobSpec};

impl Engine {
    /// Sets (`Some`) or clears (`None`) the settings of namespace `name`.
    pub fn set_namespace(
        &mut self,
        name: &str,
        settings: Option<NamespaceSettings>,
    ) -> Result<(), EngineError> {
        match settings {
            Some(s) => {
                if !self.parties.settings.contains_key(name)
                    && self.parties.settings.len() >= self.cfg.max_namespaces
                {
                    return Err(EngineError::TooManyNamespaces(self.cfg.max_namespaces));
                }
                self.parties.settings.insert(name.to_string(), s.clone());
                self.changes.namespaces.insert(name.to_string(), Some(s));
            }
            None => {
                self.parties.settings.remove(name);
                self.changes.namespaces.insert(name.to_string(), None);
            }
        }
        // A raised limit or weight may let queued work start.
        self.sched_dirty = true;
        Ok(())
    }

    pub fn fair_share_half_life_ms(&self) -> u64 {
        self.cfg.fair_share_half_life_ms
    }

    pub fn namespace_settings(&self) -> Vec<NamespaceSettings> {
        self.parties.settings.values().cloned().collect()
    }

    /// Refuses a submission that would pass a namespace's job or task limit, or holds a task
    /// larger than a resource limit of its namespace (it could never start).
    pub(crate) fn check_submit_quotas(&self, specs: &[Arc<JobSpec>]) -> Result<(), EngineError> {
        if self.parties.settings.is_empty() {
            return Ok(());
        }
        let namespaces: BTreeSet<&str> = specs.iter().map(|s| s.namespace()).collect();
        for ns in namespaces {
            if self.parties.quota(ns).is_none() {
                continue;
            }
            let mine = specs.iter().filter(|s| s.namespace() == ns);
            let (mut jobs, mut tasks) = (0u64, 0u64);
            let mut biggest = zenith_model::Resources {
                cpu_millis: 0,
                ..Default::default()
            };
            for s in mine {
                jobs += 1;
                tasks += u64::from(s.task_count());
                let r = &s.resources;
                biggest.cpu_millis = biggest.cpu_millis.max(r.cpu_millis);
                biggest.memory = biggest.memory.max(r.memory);
                biggest.gpus = biggest.gpus.max(r.gpus);
            }
            if let Some(hit) = self.parties.submit_hit(ns, jobs, tasks, &biggest) {
                return Err(EngineError::QuotaExceeded(hit));
            }
        }
        Ok(())
    }

    /// The quota that keeps a queued job from starting now, if any.
    pub fn quota_hit(&self, id: JobId) -> Option<QuotaHit> {
        let job = self.jobs.get(&id)?;
        if job.pending.is_empty() {
            return None;
        }
        self.parties
            .running_hit(job.spec.namespace(), &job.spec.resources)
    }

    /// Every namespace with work, recent usage or settings, with its users: the fair-share
    /// table. `share` is the dominant share of the cluster held now; `target` what its weight
    /// entitles it to among the namespaces with live work.
    pub fn shares(&self) -> Vec<ShareView> {
        let total = self.parties.total;
        let mut names: BTreeSet<&str> = self.parties.ns.keys().map(String::as_str).collect();
        names.extend(self.parties.settings.keys().map(String::as_str));
        let active_weight: u64 = names
            .iter()
            .filter(|n| {
                self.parties
                    .ns
                    .get(**n)
                    .is_some_and(|p| p.party.live_jobs > 0)
            })
            .map(|n| u64::from(self.parties.weight(n)))
            .sum();
        names
            .into_iter()
            .map(|name| {
                let weight = self.parties.weight(name);
                let ns = self.parties.ns.get(name);
                let party = ns.map(|n| n.party.clone()).unwrap_or_default();
                let active = party.live_jobs > 0;
                let mut users: Vec<PartyShare> = ns
                    .map(|n| {
                        n.users
                            .iter()
                            .map(|(u, p)| {
                                view(u, self.parties.user_weight(name, u), p, &total, None)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                users.sort_by(|a, b| a.name.cmp(&b.name));
                let target =
                    (active && active_weight > 0).then(|| f64::from(weight) / active_weight as f64);
                ShareView {
                    party: view(name, weight, &party, &total, target),
                    quota: self.parties.quota(name).cloned().unwrap_or_default(),
                    users,
                }
            })
            .collect()
    }
}

fn view(
    name: &str,
    weight: u32,
    p: &Party,
    total: &crate::fairshare::Alloc,
    target: Option<f64>,
) -> PartyShare {
    PartyShare {
        name: name.to_string(),
        weight,
        cpu_millis: p.alloc.cpu_millis,
        memory: p.alloc.memory,
        gpus: p.alloc.gpus,
        running: p.alloc.running,
        live_jobs: p.live_jobs,
        live_tasks: p.live_tasks,
        share: p.alloc.dominant(total),
        usage: p.usage,
        target,
        score: p.score(total, weight),
    }
}

//! Run deadlines and cron schedules of applied definitions.

use super::Ending;
use crate::{Engine, EngineError};
use zenith_model::flow::Trigger;
use zenith_model::Millis;

impl Engine {
    /// Fails runs whose deadline passed and starts runs whose schedule is due. A clock jump
    /// fires each schedule at most once: the next fire time is computed from `now`.
    pub(crate) fn fire_flow_timers(&mut self, now: Millis) {
        while let Some(&(at, id)) = self.run_deadlines.first() {
            if at > now {
                break;
            }
            self.run_deadlines.pop_first();
            self.counters.run_deadlines_exceeded += 1;
            self.end_run_early(id, Ending::DeadlineExceeded, None, now);
        }
        while let Some((at, name)) = self.cron_timers.first().cloned() {
            if at > now {
                break;
            }
            self.cron_timers.pop_first();
            let Some(def) = self.defs.get_mut(&name) else {
                continue;
            };
            let next = def
                .schedule
                .as_ref()
                .and_then(|s| s.next_after(now.max(at)));
            def.next_fire = next;
            let (spec, plan) = (def.spec.clone(), def.plan.clone());
            if let Some(n) = next {
                self.cron_timers.insert((n, name.clone()));
            }
            self.note_def(&name);
            let params = spec.params.clone();
            match self.submit_run(spec, plan, params, Trigger::Schedule, now) {
                Ok(_) => self.counters.schedules_fired += 1,
                Err(EngineError::FlowBusy(..)) => self.counters.schedules_skipped += 1,
                Err(_) => self.counters.schedules_failed += 1,
            }
        }
    }
}

//! Prometheus metrics of the server at `/metrics` (OpenMetrics text): counters for totals,
//! gauges for levels, histograms for latencies. Label sets are bounded: routes come from the
//! route table (anything else is `other`), states and outcomes from closed enums, queues from
//! live jobs only.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use zenith_engine::{Counters, Levels, Observation};

mod register;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
    pub protocol: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueStateLabels {
    pub queue: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub method: String,
    pub code: String,
}

/// `ok` or `error`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

/// Why an agent request was refused (a fixed set: see `node_auth`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: String,
}

type HistFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 100 µs .. ~3.3 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    jobs_submitted: Counter,
    jobs_finished: Family<StateLabel, Counter>,
    attempts_started: Counter,
    attempts_ended: Family<OutcomeLabel, Counter>,
    retries: Counter,
    requeues: Counter,
    backlog_started: Counter,
    stale_reports: Counter,
    runs_started: Counter,
    runs_finished: Family<StateLabel, Counter>,
    /// Scheduled fires by result: `started`, `skipped` (concurrency forbid), `failed`.
    schedule_fires: Family<StateLabel, Counter>,
    run_deadlines: Counter,
    retry_budget_exhausted: Counter,
    idempotency_keys_evicted: Counter,
    quota_deferrals: Counter,
    share_parties: Gauge,
    nodes_cordoned: Gauge,
    /// OIDC key set fetches by result (`ok`, `failed`).
    oidc_key_fetches: Family<StateLabel, Counter>,
    /// Open HTTP connections, and those closed at accept (over the per-client cap).
    pub(crate) http_connections: Gauge,
    pub(crate) http_connections_refused: Counter,
    /// TLS: certificate reloads by result, handshakes that failed.
    pub(crate) tls_reloads: Family<ResultLabel, Counter>,
    pub(crate) tls_handshake_failures: Counter,
    /// Node credentials: enrolments, revocations, and agent requests refused by reason.
    pub(crate) nodes_enrolled: Counter,
    pub(crate) nodes_revoked: Counter,
    /// Cordons, drains, uncordons and removals of nodes.
    pub(crate) node_actions: Counter,
    evictions: Counter,
    preemptions: Counter,
    gangs_started: Counter,
    node_leaves: Counter,
    reservations: Counter,
    tasks_requeued: Counter,
    jobs_deleted: Counter,
    pub(crate) tokens_created: Counter,
    pub(crate) tokens_revoked: Counter,
    pub(crate) audit_records: Counter,
    pub(crate) audit_dropped: Counter,
    pub(crate) agent_refused: Family<ReasonLabel, Counter>,
    runs_live: Gauge,
    artifact_bytes: Counter,
    flows_applied: Gauge,
    jobs: Family<QueueStateLabels, Gauge>,
    nodes: Family<StateLabel, Gauge>,
    running_attempts: Gauge,
    backlogged_attempts: Gauge,
    cpus_total: Gauge<f64, AtomicU64>,
    cpus_free: Gauge<f64, AtomicU64>,
    memory_total: Gauge,
    memory_free: Gauge,
    queue_wait: Histogram,
    run_time: Histogram,
    pub pass_time: Histogram,
    pub commit_time: Histogram,
    pub batch_size: Histogram,
    store_degraded: Gauge,
    api_clients: Gauge,
    api_requests: Family<RouteLabels, Counter>,
    api_latency: HistFamily<RouteLabel>,
    /// High availability (PostgreSQL store): 1 while this server holds the leader lease.
    pub leader: Gauge,
    /// The lease epoch this server last held or saw.
    pub lease_epoch: Gauge,
    /// Terms this server won (takeovers).
    pub leader_terms: Counter,
    /// Terms that ended by losing the lease (not by shutdown).
    pub leader_losses: Counter,
    /// Requests a standby forwarded to the leader.
    pub forwarded: Counter,
    /// Loop batches with nothing to write whose replies went out without the writer.
    pub batches_unwritten: Counter,
    /// Engine counters already exported, to turn totals into increments.
    exported: Mutex<Counters>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("zenith");
        let m = Metrics {
            jobs_submitted: Counter::default(),
            jobs_finished: Family::default(),
            attempts_started: Counter::default(),
            attempts_ended: Family::default(),
            retries: Counter::default(),
            requeues: Counter::default(),
            backlog_started: Counter::default(),
            stale_reports: Counter::default(),
            runs_started: Counter::default(),
            runs_finished: Family::default(),
            schedule_fires: Family::default(),
            run_deadlines: Counter::default(),
            retry_budget_exhausted: Counter::default(),
            idempotency_keys_evicted: Counter::default(),
            quota_deferrals: Counter::default(),
            oidc_key_fetches: Family::default(),
            share_parties: Gauge::default(),
            nodes_cordoned: Gauge::default(),
            http_connections: Gauge::default(),
            http_connections_refused: Counter::default(),
            tls_reloads: Family::default(),
            tls_handshake_failures: Counter::default(),
            nodes_enrolled: Counter::default(),
            nodes_revoked: Counter::default(),
            node_actions: Counter::default(),
            evictions: Counter::default(),
            preemptions: Counter::default(),
            gangs_started: Counter::default(),
            node_leaves: Counter::default(),
            reservations: Counter::default(),
            tasks_requeued: Counter::default(),
            jobs_deleted: Counter::default(),
            tokens_created: Counter::default(),
            tokens_revoked: Counter::default(),
            audit_records: Counter::default(),
            audit_dropped: Counter::default(),
            agent_refused: Family::default(),
            runs_live: Gauge::default(),
            artifact_bytes: Counter::default(),
            flows_applied: Gauge::default(),
            jobs: Family::default(),
            nodes: Family::default(),
            running_attempts: Gauge::default(),
            backlogged_attempts: Gauge::default(),
            cpus_total: Gauge::default(),
            cpus_free: Gauge::default(),
            memory_total: Gauge::default(),
            memory_free: Gauge::default(),
            queue_wait: Histogram::new(exponential_buckets(0.0005, 2.0, 20)),
            run_time: Histogram::new(exponential_buckets(0.001, 4.0, 14)),
            pass_time: latency_histogram(),
            commit_time: latency_histogram(),
            batch_size: Histogram::new(exponential_buckets(1.0, 4.0, 10)),
            store_degraded: Gauge::default(),
            api_clients: Gauge::default(),
            api_requests: Family::default(),
            api_latency: Family::new_with_constructor(latency_histogram),
            leader: Gauge::default(),
            lease_epoch: Gauge::default(),
            leader_terms: Counter::default(),
            leader_losses: Counter::default(),
            forwarded: Counter::default(),
            batches_unwritten: Counter::default(),
            exported: Mutex::new(Counters::default()),
            registry: Registry::default(),
        };
        // Registration order is the order of the exposition text.
        m.register_work(&mut r);
        m.register_flows(&mut r);
        m.register_levels(&mut r);
        m.register_timings(&mut r);
        m.register_server(&mut r);
        // `zenith_build_info{version="..",protocol=".."} 1`: which build serves. A gauge, as
        // Prometheus' own text format and promtool know it (not OpenMetrics' `info` type).
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
                protocol: zenith_protocol::agent::PROTOCOL_VERSION.to_string(),
            })
            .set(1);
        r.register(
            "build_info",
            "The server's build, as labels: version and agent protocol version (the value is always 1)",
            build,
        );
        Metrics { registry: r, ..m }
    }

    /// Exports the engine's totals (as increments since the last call) and observations.
    pub fn absorb_engine(&self, now: &Counters, observations: Vec<Observation>) {
        for o in observations {
            match o {
                Observation::QueueWait(ms) => self.queue_wait.observe(ms as f64 / 1000.0),
                Observation::RunTime(ms) => self.run_time.observe(ms as f64 / 1000.0),
            }
        }
        let Ok(mut last) = self.exported.lock() else {
            return;
        };
        if *last == *now {
            return;
        }
        self.absorb_work(now, &last);
        self.absorb_flows(now, &last);
        *last = now.clone();
    }

    /// Increments of the job and attempt totals since `last`.
    fn absorb_work(&self, now: &Counters, last: &Counters) {
        let d = |a: u64, b: u64| a.saturating_sub(b);
        self.jobs_submitted
            .inc_by(d(now.jobs_submitted, last.jobs_submitted));
        for (state, a, b) in [
            ("succeeded", now.jobs_succeeded, last.jobs_succeeded),
            ("failed", now.jobs_failed, last.jobs_failed),
            ("cancelled", now.jobs_cancelled, last.jobs_cancelled),
        ] {
            if a > b {
                self.jobs_finished
                    .get_or_create(&StateLabel {
                        state: state.into(),
                    })
                    .inc_by(a - b);
            }
        }
        self.attempts_started
            .inc_by(d(now.attempts_started, last.attempts_started));
        for (kind, n) in &now.attempts_ended {
            let before = last.attempts_ended.get(kind).copied().unwrap_or(0);
            if *n > before {
                self.attempts_ended
                    .get_or_create(&OutcomeLabel {
                        outcome: (*kind).into(),
                    })
                    .inc_by(n - before);
            }
        }
        self.retries
            .inc_by(d(now.retries_scheduled, last.retries_scheduled));
        self.requeues
            .inc_by(d(now.node_loss_requeues, last.node_loss_requeues));
        self.backlog_started
            .inc_by(d(now.backlog_started, last.backlog_started));
        self.stale_reports
            .inc_by(d(now.stale_reports, last.stale_reports));
    }

    /// Increments of the flow totals since `last`.
    fn absorb_flows(&self, now: &Counters, last: &Counters) {
        let d = |a: u64, b: u64| a.saturating_sub(b);
        self.runs_started
            .inc_by(d(now.runs_started, last.runs_started));
        for (family, label, a, b) in [
            (
                &self.runs_finished,
                "succeeded",
                now.runs_succeeded,
                last.runs_succeeded,
            ),
            (
                &self.runs_finished,
                "failed",
                now.runs_failed,
                last.runs_failed,
            ),
            (
                &self.runs_finished,
                "cancelled",
                now.runs_cancelled,
                last.runs_cancelled,
            ),
            (
                &self.schedule_fires,
                "started",
                now.schedules_fired,
                last.schedules_fired,
            ),
            (
                &self.schedule_fires,
                "skipped",
                now.schedules_skipped,
                last.schedules_skipped,
            ),
            (
                &self.schedule_fires,
                "failed",
                now.schedules_failed,
                last.schedules_failed,
            ),
        ] {
            if a > b {
                family
                    .get_or_create(&StateLabel {
                        state: label.into(),
                    })
                    .inc_by(a - b);
            }
        }
        self.run_deadlines
            .inc_by(d(now.run_deadlines_exceeded, last.run_deadlines_exceeded));
        self.retry_budget_exhausted
            .inc_by(d(now.retry_budget_exhausted, last.retry_budget_exhausted));
        self.idempotency_keys_evicted.inc_by(d(
            now.idempotency_keys_evicted,
            last.idempotency_keys_evicted,
        ));
        self.quota_deferrals
            .inc_by(d(now.quota_deferrals, last.quota_deferrals));
        self.evictions.inc_by(d(now.evictions, last.evictions));
        self.preemptions
            .inc_by(d(now.preemptions, last.preemptions));
        self.gangs_started
            .inc_by(d(now.gangs_started, last.gangs_started));
        self.node_leaves
            .inc_by(d(now.node_leaves, last.node_leaves));
        self.reservations
            .inc_by(d(now.reservations, last.reservations));
        self.tasks_requeued
            .inc_by(d(now.tasks_requeued, last.tasks_requeued));
        self.jobs_deleted
            .inc_by(d(now.jobs_deleted, last.jobs_deleted));
    }

    /// After the engine was rebuilt its totals restart from zero: export from there on.
    pub fn reset_engine_baseline(&self) {
        if let Ok(mut last) = self.exported.lock() {
            *last = Counters::default();
        }
    }

    /// The OIDC key fetch counters (`ok`, `failed`), for the OIDC verifier to count with.
    pub fn oidc_counters(&self) -> [Counter; 2] {
        ["ok", "failed"].map(|state| {
            self.oidc_key_fetches
                .get_or_create(&StateLabel {
                    state: state.into(),
                })
                .clone()
        })
    }

    pub fn artifact_bytes(&self, n: u64) {
        self.artifact_bytes.inc_by(n);
    }

    pub fn set_clients(&self, n: usize) {
        self.api_clients.set(n as i64);
    }

    pub fn set_degraded(&self, degraded: bool) {
        self.store_degraded.set(i64::from(degraded));
    }

    /// Sets the level gauges from a snapshot; queues no longer live drop out.
    pub fn set_levels(&self, l: &Levels) {
        self.jobs.clear();
        for ((queue, state), n) in &l.jobs {
            self.jobs
                .get_or_create(&QueueStateLabels {
                    queue: queue.clone(),
                    state: state.as_str().into(),
                })
                .set(*n as i64);
        }
        for s in [
            zenith_model::NodeState::Ready,
            zenith_model::NodeState::Lost,
            zenith_model::NodeState::Left,
        ] {
            let n = l.nodes.get(&s).copied().unwrap_or(0);
            self.nodes
                .get_or_create(&StateLabel {
                    state: s.as_str().into(),
                })
                .set(n as i64);
        }
        self.running_attempts.set(l.running_attempts as i64);
        self.backlogged_attempts.set(l.backlogged_attempts as i64);
        self.share_parties.set(l.share_parties as i64);
        self.nodes_cordoned.set(l.nodes_cordoned as i64);
        self.cpus_total.set(l.cpu_millis_total as f64 / 1000.0);
        self.cpus_free.set(l.cpu_millis_free as f64 / 1000.0);
        self.memory_total.set(l.memory_total as i64);
        self.memory_free.set(l.memory_free as i64);
        self.runs_live.set(l.live_runs as i64);
        self.flows_applied.set(l.flow_defs as i64);
    }

    pub fn observe_request(
        &self,
        route: &'static str,
        method: &'static str,
        code: u16,
        seconds: f64,
    ) {
        self.api_requests
            .get_or_create(&RouteLabels {
                route: route.into(),
                method: method.into(),
                code: code.to_string(),
            })
            .inc();
        self.api_latency
            .get_or_create(&RouteLabel {
                route: route.into(),
            })
            .observe(seconds);
    }

    /// The OpenMetrics text of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// A request method as a metric label: the methods HTTP defines, and `other` for the rest,
/// so that made-up methods (`M00000001`) cannot grow the label set.
pub fn method_of(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// The route template a request path belongs to, from the route table; IDs become `{id}`
/// and anything unknown is `other`, so the label set stays bounded.
pub fn route_of(path: &str) -> &'static str {
    // `{id}` matches a number, `{name}` any one segment.
    const ROUTES: &[&str] = &[
        "/healthz",
        "/readyz",
        "/metrics",
        "/",
        "/ui/{name}",
        "/api/v1/jobs",
        "/api/v1/jobs/{id}",
        "/api/v1/jobs/{id}/cancel",
        "/api/v1/jobs/{id}/hold",
        "/api/v1/jobs/{id}/release",
        "/api/v1/jobs/{id}/requeue",
        "/api/v1/jobs/{id}/logs",
        "/api/v1/jobs/{id}/explain",
        "/api/v1/nodes",
        "/api/v1/nodes/{name}/revoke",
        "/api/v1/nodes/{name}/cordon",
        "/api/v1/nodes/{name}/uncordon",
        "/api/v1/nodes/{name}/drain",
        "/api/v1/nodes/{name}",
        "/api/v1/summary",
        "/api/v1/version",
        "/api/v1/whoami",
        "/api/v1/tokens",
        "/api/v1/tokens/{name}/revoke",
        "/api/v1/audit",
        "/api/v1/namespaces",
        "/api/v1/namespaces/{name}",
        "/api/v1/share",
        "/api/v1/servers",
        "/api/v1/events",
        "/api/v1/flows",
        "/api/v1/flows/validate",
        "/api/v1/flows/runs",
        "/api/v1/flows/runs/{id}",
        "/api/v1/flows/runs/{id}/cancel",
        "/api/v1/flows/runs/{id}/graph",
        "/api/v1/flows/runs/{id}/attempts",
        "/api/v1/flows/runs/{id}/steps/{name}/approve",
        "/api/v1/flows/{name}",
        "/agent/v1/enroll",
        "/agent/v1/register",
        "/agent/v1/stream",
        "/agent/v1/report",
        "/agent/v1/logs",
        "/agent/v1/artifacts/{id}/{id}/{id}/{name}",
    ];
    // Segment by segment without collecting: this runs on every request (10,000 agents
    // heartbeating are 10,000 a second), and a Vec per route showed in the allocator's share.
    let fits = |route: &str| {
        let mut parts = route.split('/').filter(|s| !s.is_empty());
        let mut segs = path.split('/').filter(|s| !s.is_empty());
        loop {
            match (parts.next(), segs.next()) {
                (None, None) => return true,
                (Some(p), Some(s)) => {
                    let ok = match p {
                        "{id}" => s.bytes().all(|b| b.is_ascii_digit()),
                        "{name}" => true,
                        lit => lit == s,
                    };
                    if !ok {
                        return false;
                    }
                }
                _ => return false,
            }
        }
    };
    // Literal routes win over `{name}` ones (`/flows/runs` is not a flow named "runs").
    ROUTES
        .iter()
        .filter(|r| !r.contains("{name}"))
        .chain(ROUTES.iter().filter(|r| r.contains("{name}")))
        .find(|r| fits(r))
        .copied()
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_bounded() {
        assert_eq!(route_of("/api/v1/jobs/123/logs"), "/api/v1/jobs/{id}/logs");
        assert_eq!(route_of("/api/v1/flows/runs"), "/api/v1/flows/runs");
        assert_eq!(route_of("/api/v1/flows/nightly"), "/api/v1/flows/{name}");
        assert_eq!(
            route_of("/api/v1/flows/runs/7/steps/gate/approve"),
            "/api/v1/flows/runs/{id}/steps/{name}/approve"
        );
        assert_eq!(
            route_of("/agent/v1/artifacts/1/2/0/tree"),
            "/agent/v1/artifacts/{id}/{id}/{id}/{name}"
        );
        assert_eq!(route_of("/api/v1/flows/runs/x"), "other");
        assert_eq!(route_of("/api/v1/jobs"), "/api/v1/jobs");
        assert_eq!(route_of("/api/v1/jobs/abc"), "other");
        assert_eq!(route_of("/../../etc/passwd"), "other");
    }

    #[test]
    fn methods_are_bounded() {
        use axum::http::Method;
        assert_eq!(method_of(&Method::GET), "GET");
        assert_eq!(method_of(&Method::DELETE), "DELETE");
        for m in ["M00000001", "get", "BREW", "X"] {
            let m = Method::from_bytes(m.as_bytes()).unwrap();
            assert_eq!(method_of(&m), "other");
        }
        // However many made-up methods arrive, they share one series per route and code.
        let metrics = Metrics::new();
        for i in 0..1000 {
            let m = Method::from_bytes(format!("M{i:08}").as_bytes()).unwrap();
            metrics.observe_request("/healthz", method_of(&m), 405, 0.0);
        }
        let text = metrics.render();
        let series = text
            .lines()
            .filter(|l| l.starts_with("zenith_api_requests_total{"))
            .count();
        assert_eq!(series, 1, "{text}");
    }

    #[test]
    fn engine_totals_become_increments() {
        let m = Metrics::new();
        let mut c = Counters {
            jobs_submitted: 3,
            jobs_failed: 1,
            ..Default::default()
        };
        c.attempts_ended.insert("timed_out", 2);
        m.absorb_engine(&c, vec![Observation::QueueWait(5)]);
        c.jobs_submitted = 5;
        m.absorb_engine(&c, vec![]);
        let text = m.render();
        assert!(text.contains("zenith_jobs_submitted_total 5"), "{text}");
        assert!(
            text.contains("zenith_jobs_finished_total{state=\"failed\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("zenith_attempts_ended_total{outcome=\"timed_out\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("zenith_submit_to_dispatch_seconds_count 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}

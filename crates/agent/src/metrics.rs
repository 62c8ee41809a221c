//! The agent's own Prometheus metrics, served at `/metrics` on `--metrics-listen` when set.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use zenith_model::AttemptOutcome;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GpuLabel {
    pub gpu: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

pub struct AgentMetrics {
    registry: Registry,
    pub attempts_started: Counter,
    /// Bytes of flow artifacts uploaded.
    pub artifact_bytes: Counter,
    attempts_ended: Family<OutcomeLabel, Counter>,
    pub running: Gauge,
    /// Assignments in the backlog, waiting for resources.
    pub waiting: Gauge,
    pub outbox: Gauge,
    reports: Family<ResultLabel, Counter>,
    pub report_seconds: Histogram,
    pub log_bytes_shipped: Counter,
    pub registrations: Counter,
    /// Attempts that failed with the disk full, and outbox writes that hit a full disk.
    pub disk_full: Counter,
    pub outbox_disk_full: Counter,
    /// The node's GPUs, sampled at each scrape into the three families below.
    gpus: Option<Arc<crate::gpus::Inventory>>,
    gpu_utilization: Family<GpuLabel, Gauge>,
    gpu_memory_used: Family<GpuLabel, Gauge>,
    gpu_memory_total: Family<GpuLabel, Gauge>,
}

impl AgentMetrics {
    pub fn new(gpus: Option<Arc<crate::gpus::Inventory>>) -> Arc<Self> {
        let mut r = Registry::with_prefix("zenith_agent");
        let m = AgentMetrics {
            registry: Registry::default(),
            attempts_started: Counter::default(),
            artifact_bytes: Counter::default(),
            attempts_ended: Family::default(),
            running: Gauge::default(),
            waiting: Gauge::default(),
            outbox: Gauge::default(),
            reports: Family::default(),
            report_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            log_bytes_shipped: Counter::default(),
            registrations: Counter::default(),
            disk_full: Counter::default(),
            outbox_disk_full: Counter::default(),
            gpus,
            gpu_utilization: Family::default(),
            gpu_memory_used: Family::default(),
            gpu_memory_total: Family::default(),
        };
        r.register(
            "gpu_utilization_percent",
            "Percent of the last sample period a kernel ran, per GPU (NVML)",
            m.gpu_utilization.clone(),
        );
        r.register(
            "gpu_memory_used_bytes",
            "GPU memory in use, per GPU (NVML)",
            m.gpu_memory_used.clone(),
        );
        r.register(
            "gpu_memory_total_bytes",
            "GPU memory installed, per GPU (NVML)",
            m.gpu_memory_total.clone(),
        );
        r.register(
            "attempts_disk_full",
            "Attempts that failed while the node's disk was full (reason disk_full)",
            m.disk_full.clone(),
        );
        r.register(
            "outbox_disk_full",
            "Result writes that met a full disk (the outbox's reserve was spent, or results were kept in memory)",
            m.outbox_disk_full.clone(),
        );
        r.register(
            "attempts_started",
            "Attempts started on this node",
            m.attempts_started.clone(),
        );
        r.register(
            "artifact_bytes_uploaded",
            "Bytes of flow artifacts uploaded to the server",
            m.artifact_bytes.clone(),
        );
        r.register(
            "attempts_ended",
            "Attempts that ended, by outcome",
            m.attempts_ended.clone(),
        );
        r.register(
            "running_attempts",
            "Attempts running now",
            m.running.clone(),
        );
        r.register(
            "waiting_attempts",
            "Assignments in the backlog, waiting for resources on this node",
            m.waiting.clone(),
        );
        r.register(
            "outbox_results",
            "Results waiting for the server's acknowledgement",
            m.outbox.clone(),
        );
        r.register(
            "reports",
            "Reports (heartbeat + results) by result",
            m.reports.clone(),
        );
        r.register(
            "report_seconds",
            "Round trip of one report",
            m.report_seconds.clone(),
        );
        r.register(
            "log_bytes_shipped",
            "Bytes of job output uploaded",
            m.log_bytes_shipped.clone(),
        );
        r.register(
            "registrations",
            "Registrations with the server",
            m.registrations.clone(),
        );
        Arc::new(AgentMetrics { registry: r, ..m })
    }

    pub fn ended(&self, o: &AttemptOutcome) {
        self.attempts_ended
            .get_or_create(&OutcomeLabel {
                outcome: o.kind().into(),
            })
            .inc();
    }

    pub fn report(&self, ok: bool, seconds: f64) {
        let result = if ok { "ok" } else { "error" };
        self.reports
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
        self.report_seconds.observe(seconds);
    }

    pub fn render(&self) -> String {
        if let Some(inv) = &self.gpus {
            for g in inv.sample() {
                let l = GpuLabel {
                    gpu: g.index.to_string(),
                };
                let set = |f: &Family<GpuLabel, Gauge>, v: u64| {
                    f.get_or_create(&l)
                        .set(i64::try_from(v).unwrap_or(i64::MAX));
                };
                set(&self.gpu_utilization, u64::from(g.utilization));
                set(&self.gpu_memory_used, g.memory_used);
                set(&self.gpu_memory_total, g.memory_total);
            }
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Serves `/metrics` on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<AgentMetrics>) {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let m = metrics.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    m.render(),
                )
            }
        }),
    );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::warn!(error = %e, "agent metrics server stopped");
    }
}

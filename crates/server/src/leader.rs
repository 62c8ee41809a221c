//! One term of leadership: the engine rebuilt from the store, the control loop, the store
//! writer and the API that talks to them. The embedded server runs one term for its whole
//! life; with PostgreSQL a server runs a term each time it wins the lease and ends it when the
//! lease is lost (see `ha/pilot.rs`).

use crate::control::Fatal;
use crate::{
    artifacts, auth, clock::Clock, control, events, limiter, logs, metrics, router, writer,
    AppInner, AppState, ServerConfig, ServerError, CONTROL_INBOX,
};
use axum::Router;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use zenith_engine::{Engine, EngineConfig};
use zenith_store::{Store, StoreReader};

pub(crate) struct Leader {
    /// The API of this term.
    pub router: Router,
    stop_tx: Arc<watch::Sender<bool>>,
    stop_rx: watch::Receiver<bool>,
    fatal_rx: watch::Receiver<Option<Fatal>>,
    control_task: tokio::task::JoinHandle<()>,
    writer: std::thread::JoinHandle<()>,
}

impl Leader {
    /// Loads the store into a new engine and starts the loop and the writer.
    pub fn start(
        cfg: &ServerConfig,
        mut store: Box<dyn Store>,
        reader: Arc<dyn StoreReader>,
        tokens: auth::Tokens,
        metrics: Arc<metrics::Metrics>,
    ) -> Result<Leader, ServerError> {
        let oidc = match &cfg.oidc {
            Some(c) => Some(Arc::new(
                crate::oidc::Oidc::new(c.clone(), metrics.oidc_counters())
                    .map_err(ServerError::Config)?,
            )),
            None => None,
        };
        let clock = Clock::new();
        let mut loaded = store.load()?;
        let keys = Arc::new(crate::node_keys::NodeKeys::load(&std::mem::take(
            &mut loaded.node_keys,
        )));
        let users = Arc::new(crate::users::UserTokens::load(&std::mem::take(
            &mut loaded.user_tokens,
        )));
        tracing::info!(
            live_jobs = loaded.jobs.len(),
            running = loaded.running.len(),
            nodes = loaded.nodes.len(),
            "store loaded"
        );
        let engine_cfg = EngineConfig {
            heartbeat_timeout_ms: cfg.heartbeat_timeout_ms,
            dispatch_grace_ms: (cfg.heartbeat_interval_ms * 10).max(5_000),
            max_live_jobs: cfg.max_live_jobs,
            idempotency_ttl_ms: cfg.idempotency_ttl_ms,
            max_idempotency_keys: cfg.max_idempotency_keys,
            max_idempotency_keys_per_client: cfg.max_idempotency_keys_per_client,
            fair_share_half_life_ms: cfg.fair_share_half_life_ms,
            preemptible_queues: cfg.preemptible_queues.clone(),
            ..EngineConfig::default()
        };
        let engine = Engine::restore(engine_cfg.clone(), loaded, clock.now());
        let logs = logs::LogStore::new(cfg.data_dir.join("logs"), cfg.max_log_bytes);
        let (events_tx, _) = tokio::sync::broadcast::channel(events::EVENT_BUFFER);
        let (writer_tx, writer_rx) = mpsc::channel(64);
        let (fatal_tx, fatal_rx) = watch::channel(None::<Fatal>);
        let (failures_tx, failures_rx) = mpsc::channel(16);
        let artifacts = artifacts::ArtifactStore {
            root: cfg.data_dir.join("artifacts"),
            max_bytes: cfg.max_artifact_bytes,
        };
        let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let writer = writer::spawn(
            store,
            logs.clone(),
            artifacts.clone(),
            writer_rx,
            failures_tx,
            metrics.clone(),
            in_flight.clone(),
        )
        .map_err(|e| ServerError::Io(format!("starting the store writer: {e}")))?;

        let (control_tx, control_rx) = mpsc::channel(CONTROL_INBOX);
        let degraded = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (stop_tx, stop_rx) = watch::channel(false);
        let loop_cfg = control::LoopConfig {
            heartbeat_interval_ms: cfg.heartbeat_interval_ms,
            retention_ms: cfg.retention_ms,
            audit_retention_ms: cfg.audit_retention_ms,
            max_audit_records: cfg.max_audit_records,
            sweep_every: Duration::from_millis(cfg.sweep_every_ms.max(10)),
            engine: engine_cfg,
        };
        let control = control::ControlLoop::new(
            engine,
            clock,
            loop_cfg,
            writer_tx,
            metrics.clone(),
            events_tx.clone(),
            control::Shared {
                failures: failures_rx,
                fatal: Arc::new(fatal_tx),
                degraded: degraded.clone(),
                in_flight,
                keys: keys.clone(),
                users: users.clone(),
            },
        );
        let mut loop_stop = stop_rx.clone();
        let control_task = tokio::spawn(control.run(control_rx, async move {
            let _ = loop_stop.changed().await;
        }));
        let state = AppState(Arc::new(AppInner {
            control: control_tx,
            reader,
            logs,
            tokens,
            shutdown: stop_rx.clone(),
            metrics,
            events: events_tx,
            degraded,
            limiter: Arc::new(limiter::RateLimiter::new(cfg.rate_limit_per_client)),
            agent_limiter: Arc::new(limiter::RateLimiter::new(cfg.agent_rate_limit_per_client)),
            probe_limiter: Arc::new(limiter::RateLimiter::new(cfg.rate_limit_per_client)),
            artifacts,
            keys,
            users,
            oidc,
            clock,
        }));
        Ok(Leader {
            router: router(state, cfg.max_body_bytes),
            stop_tx: Arc::new(stop_tx),
            stop_rx,
            fatal_rx,
            control_task,
            writer,
        })
    }

    /// Changes to true when the term is told to stop.
    pub fn stopped(&self) -> watch::Receiver<bool> {
        self.stop_rx.clone()
    }

    /// Changes when a store failure makes the term unable to go on.
    pub fn fatal(&self) -> watch::Receiver<Option<Fatal>> {
        self.fatal_rx.clone()
    }

    pub fn stop_sender(&self) -> Arc<watch::Sender<bool>> {
        self.stop_tx.clone()
    }

    /// Stops the loop (streams to agents and clients end), lets the writer drain what it has,
    /// and returns the fatal error that ended the term, if one did.
    pub async fn finish(self) -> Option<Fatal> {
        let _ = self.stop_tx.send(true);
        let _ = self.control_task.await;
        // The loop held the writer's only sender: the writer drains what it has and stops.
        let writer = self.writer;
        let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        let fatal = self.fatal_rx.borrow().clone();
        fatal
    }
}

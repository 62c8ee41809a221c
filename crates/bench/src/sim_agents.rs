//! Simulated agents: each enrolls (join token in, its own credential out), registers, holds
//! its assignment stream open and reports every
//! assignment as succeeded at once, batching results with its heartbeat like a real agent.
//! They cost the server what real agents do (stream, reports, heartbeats) without processes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, Notify, Semaphore};
use zenith_model::{AttemptId, AttemptOutcome, NodeId, Resources};
use zenith_protocol::agent::{
    AttemptResult, EnrollRequest, EnrollResponse, RegisterRequest, RegisterResponse, ReportRequest,
    ReportResponse, SessionId, StreamMessage, PROTOCOL_VERSION,
};

#[derive(clap::Args, Clone)]
pub struct AgentArgs {
    #[arg(long, env = "ZENITH_SERVER")]
    pub server: String,
    #[arg(long, env = "ZENITH_AGENT_TOKEN")]
    pub agent_token: String,
    #[arg(long, default_value_t = 8)]
    pub agents: usize,
    /// CPU cores each simulated node offers.
    #[arg(long, default_value_t = 1000.0)]
    pub cpus: f64,
    /// Run this long, then print what the agents did (default: until killed).
    #[arg(long)]
    pub seconds: Option<u64>,
    /// Most report requests in flight across all agents.
    #[arg(long, default_value_t = 256)]
    pub max_reports: usize,
}

/// Totals across the simulated agents.
#[derive(Default)]
pub struct Stats {
    pub assigned: AtomicU64,
    pub acked: AtomicU64,
    pub reports: AtomicU64,
}

pub async fn start(a: &AgentArgs, stats: Arc<Stats>) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(a.max_reports)
        .build()?;
    let gate = Arc::new(Semaphore::new(a.max_reports));
    let mut registered = Vec::new();
    // Node IDs of this run: a second run against the same server enrolls new ones.
    let run = std::process::id();
    for i in 0..a.agents {
        let node = NodeId(format!("sim-{run}-{i:05}"));
        let _permit = gate.acquire().await?;
        let enroll = EnrollRequest {
            protocol_version: PROTOCOL_VERSION,
            node_id: node.clone(),
            name: format!("sim{i}"),
        };
        let r = http
            .post(format!("{}/agent/v1/enroll", a.server))
            .bearer_auth(&a.agent_token)
            .json(&enroll)
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "enroll: {}", r.text().await?);
        let credential = r.json::<EnrollResponse>().await?.credential;
        let req = RegisterRequest {
            protocol_version: PROTOCOL_VERSION,
            node_id: node.clone(),
            name: format!("sim{i}"),
            resources: Resources {
                cpu_millis: (a.cpus * 1000.0) as u64,
                memory: 1 << 40,
                ..Default::default()
            },
            labels: Default::default(),
            known: Vec::new(),
            waiting: Vec::new(),
            prefetch: 0,
            address: None,
        };
        let r = http
            .post(format!("{}/agent/v1/register", a.server))
            .bearer_auth(&credential)
            .json(&req)
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "register: {}", r.text().await?);
        let reg: RegisterResponse = r.json().await?;
        registered.push((node, credential, reg));
    }
    for (node, credential, reg) in registered {
        let agent = Agent {
            http: http.clone(),
            server: a.server.clone(),
            node,
            credential,
            session: reg.session,
            pending: Mutex::new(Vec::new()),
            wake: Notify::new(),
            stats: stats.clone(),
            gate: gate.clone(),
        };
        let agent = Arc::new(agent);
        tokio::spawn(agent.clone().stream());
        tokio::spawn(agent.report_loop(Duration::from_millis(reg.heartbeat_interval_ms.max(50))));
    }
    Ok(())
}

struct Agent {
    http: reqwest::Client,
    server: String,
    node: NodeId,
    credential: String,
    session: SessionId,
    pending: Mutex<Vec<AttemptId>>,
    wake: Notify,
    stats: Arc<Stats>,
    gate: Arc<Semaphore>,
}

impl Agent {
    async fn stream(self: Arc<Self>) {
        let url = format!(
            "{}/agent/v1/stream?node_id={}&session={}",
            self.server, self.node, self.session
        );
        let Ok(resp) = self
            .http
            .get(url)
            .bearer_auth(&self.credential)
            .send()
            .await
        else {
            return;
        };
        let mut body = resp.bytes_stream();
        let mut buf = Vec::new();
        use futures_util::StreamExt;
        while let Some(Ok(chunk)) = body.next().await {
            buf.extend_from_slice(&chunk);
            while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                if let Ok(StreamMessage::Assign { attempts }) = serde_json::from_slice(&line) {
                    self.stats
                        .assigned
                        .fetch_add(attempts.len() as u64, Ordering::Relaxed);
                    self.pending
                        .lock()
                        .await
                        .extend(attempts.iter().map(|a| a.attempt));
                    self.wake.notify_one();
                }
            }
        }
    }

    async fn report_loop(self: Arc<Self>, heartbeat: Duration) {
        loop {
            let _ = tokio::time::timeout(heartbeat, self.wake.notified()).await;
            let done: Vec<AttemptId> = std::mem::take(&mut *self.pending.lock().await);
            let req = ReportRequest {
                node_id: self.node.clone(),
                session: self.session.clone(),
                known: Vec::new(),
                waiting: Vec::new(),
                results: done
                    .iter()
                    .map(|a| AttemptResult {
                        attempt: *a,
                        outcome: AttemptOutcome::Exited { code: 0 },
                        outputs: Default::default(),
                        ran_ms: Some(0),
                    })
                    .collect(),
                disk_full: false,
                leaving: None,
            };
            let Ok(_permit) = self.gate.acquire().await else {
                return;
            };
            let sent = self
                .http
                .post(format!("{}/agent/v1/report", self.server))
                .bearer_auth(&self.credential)
                .json(&req)
                .send()
                .await;
            self.stats.reports.fetch_add(1, Ordering::Relaxed);
            match sent {
                Ok(r) if r.status().is_success() => {
                    if let Ok(resp) = r.json::<ReportResponse>().await {
                        self.stats
                            .acked
                            .fetch_add(resp.acked.len() as u64, Ordering::Relaxed);
                    }
                }
                // Not acknowledged: report them again with the next heartbeat.
                _ => self.pending.lock().await.extend(done),
            }
        }
    }
}

pub async fn run(a: AgentArgs) -> anyhow::Result<serde_json::Value> {
    let stats = Arc::new(Stats::default());
    start(&a, stats.clone()).await?;
    match a.seconds {
        Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
        None => {
            tokio::signal::ctrl_c().await?;
        }
    }
    Ok(serde_json::json!({
        "agents": a.agents,
        "assigned": stats.assigned.load(Ordering::Relaxed),
        "acked": stats.acked.load(Ordering::Relaxed),
        "reports": stats.reports.load(Ordering::Relaxed),
    }))
}

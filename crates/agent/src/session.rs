//! The agent's connection to the server: register, read the assignment stream, report
//! results and heartbeats, re-register whenever the server forgets the session.

use crate::executor::Executor;
use crate::logship::LogShipper;
use crate::outbox::Outbox;
use crate::{AgentConfig, AgentError};
use futures_util::StreamExt;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use zenith_model::{AttemptId, NodeId};
use zenith_protocol::agent::{
    encode_log_frames, EnrollRequest, EnrollResponse, LeaveNotice, LogAck, RegisterRequest,
    RegisterResponse, ReportRequest, ReportResponse, SessionId, StreamMessage, PROTOCOL_VERSION,
};

/// A stream silent for this long (the server pings every 10 s) is considered dead.
const STREAM_IDLE: Duration = Duration::from_secs(35);
/// Longest NDJSON line accepted from the server.
const MAX_LINE: usize = 64 << 20;
/// A request unanswered for this long is abandoned and retried (a partition can swallow
/// packets without closing the connection), until the server says how long it waits for
/// heartbeats; then a quarter of that, within these bounds.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const MIN_REQUEST_TIMEOUT: Duration = Duration::from_millis(500);
const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Most results in one report.
const REPORT_BATCH: usize = 10_000;

pub struct Conn {
    pub http: reqwest::Client,
    pub cfg: AgentConfig,
    pub credential: std::sync::Arc<crate::credential::Credential>,
    pub servers: std::sync::Arc<crate::endpoints::Endpoints>,
    pub node: NodeId,
    /// Per-request timeout in milliseconds (see `DEFAULT_REQUEST_TIMEOUT`).
    pub request_timeout_ms: AtomicU64,
    pub metrics: std::sync::Arc<crate::metrics::AgentMetrics>,
}

impl Conn {
    pub fn new(
        http: reqwest::Client,
        cfg: AgentConfig,
        credential: std::sync::Arc<crate::credential::Credential>,
        servers: std::sync::Arc<crate::endpoints::Endpoints>,
        node: NodeId,
        metrics: std::sync::Arc<crate::metrics::AgentMetrics>,
    ) -> Self {
        let ms = DEFAULT_REQUEST_TIMEOUT.as_millis() as u64;
        Conn {
            http,
            cfg,
            credential,
            servers,
            node,
            request_timeout_ms: AtomicU64::new(ms),
            metrics,
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms.load(Ordering::Relaxed))
    }

    /// Keeps requests well inside the server's heartbeat timeout.
    pub fn adopt_heartbeat_timeout(&self, ms: u64) {
        let t = Duration::from_millis(ms / 4).clamp(MIN_REQUEST_TIMEOUT, MAX_REQUEST_TIMEOUT);
        self.request_timeout_ms
            .store(t.as_millis() as u64, Ordering::Relaxed);
    }
}

impl Conn {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.servers.current())
    }

    /// Registers (enrolling first when the node holds no credential). A credential the server
    /// does not know is dropped (the next registration enrolls again); a revoked node gets
    /// [`AgentError::Revoked`].
    pub async fn register(
        &self,
        known: Vec<AttemptId>,
        waiting: Vec<AttemptId>,
    ) -> Result<RegisterResponse, AgentError> {
        if !self.credential.is_set() {
            self.enroll().await?;
        }
        let r = self.register_once(known, waiting).await;
        match &r {
            Err(AgentError::Server { status: 401, body }) if body.contains("node_unknown") => {
                tracing::warn!("the server does not know this node's credential; enrolling again");
                self.credential.forget();
            }
            Err(AgentError::Server { status: 403, body }) if body.contains("node_revoked") => {
                return Err(AgentError::Revoked(body.clone()));
            }
            _ => {}
        }
        r
    }

    /// Trades the join token for this node's own credential, and keeps it.
    async fn enroll(&self) -> Result<(), AgentError> {
        let req = EnrollRequest {
            protocol_version: PROTOCOL_VERSION,
            node_id: self.node.clone(),
            name: self.cfg.name.clone(),
        };
        let join = self.credential.join_token().to_string();
        let r: Result<EnrollResponse, _> = self.post_as("/agent/v1/enroll", &req, &join).await;
        match r {
            Ok(resp) => {
                self.credential.store(resp.credential)?;
                tracing::info!(node = %self.node, "enrolled: this node's credential is kept in its data directory");
                Ok(())
            }
            Err(AgentError::Server { status: 403, body }) if body.contains("node_revoked") => {
                Err(AgentError::Revoked(body))
            }
            Err(e) => Err(e),
        }
    }

    async fn register_once(
        &self,
        known: Vec<AttemptId>,
        waiting: Vec<AttemptId>,
    ) -> Result<RegisterResponse, AgentError> {
        let req = RegisterRequest {
            protocol_version: PROTOCOL_VERSION,
            node_id: self.node.clone(),
            name: self.cfg.name.clone(),
            resources: self.cfg.resources.clone(),
            labels: self.cfg.labels.clone(),
            known,
            waiting,
            prefetch: self.cfg.prefetch,
            address: self.cfg.address.clone(),
        };
        self.post_json("/agent/v1/register", &req).await
    }

    /// POSTs a JSON body with the node's credential and the request timeout; decodes the
    /// answer.
    async fn post_json<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, AgentError> {
        self.post_as(path, body, &self.credential.bearer()).await
    }

    async fn post_as<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        token: &str,
    ) -> Result<T, AgentError> {
        let server = self.servers.current();
        let sent = self
            .http
            .post(format!("{server}{path}"))
            .bearer_auth(token)
            .timeout(self.timeout())
            .json(body)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                self.servers.failed(&server);
                return Err(e.into());
            }
        };
        // A standby (servers sharing a PostgreSQL store) names the leader.
        if let Some(leader) = resp
            .headers()
            .get(zenith_protocol::agent::LEADER_HEADER)
            .and_then(|v| v.to_str().ok())
        {
            self.servers.redirect(leader);
        }
        decode(resp).await
    }

    /// Reads the assignment stream until it ends, starting and killing attempts as told.
    pub async fn read_stream(&self, session: SessionId, exec: Executor) {
        let url = self.url(&format!(
            "/agent/v1/stream?node_id={}&session={session}",
            self.node
        ));
        // Only the response head is bounded here; the body is a long-lived stream.
        let head = tokio::time::timeout(
            self.timeout(),
            self.http
                .get(url)
                .bearer_auth(self.credential.bearer())
                .send(),
        );
        let resp = match head.await {
            Ok(Ok(r)) if r.status().is_success() => r,
            Ok(Ok(r)) => {
                tracing::warn!(status = %r.status(), "assignment stream refused");
                return;
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "assignment stream failed");
                return;
            }
            Err(_) => {
                tracing::warn!("assignment stream did not answer in time");
                return;
            }
        };
        let mut body = resp.bytes_stream();
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let chunk = match tokio::time::timeout(STREAM_IDLE, body.next()).await {
                Ok(Some(Ok(c))) => c,
                Ok(Some(Err(e))) => {
                    tracing::warn!(error = %e, "assignment stream broke");
                    return;
                }
                Ok(None) => return,
                Err(_) => {
                    tracing::warn!("assignment stream idle too long; reconnecting");
                    return;
                }
            };
            buf.extend_from_slice(&chunk);
            if buf.len() > MAX_LINE {
                tracing::warn!("oversized line on assignment stream; reconnecting");
                return;
            }
            while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                match serde_json::from_slice::<StreamMessage>(&line) {
                    Ok(StreamMessage::Assign { attempts }) => {
                        for a in attempts {
                            exec.start(a);
                        }
                    }
                    Ok(StreamMessage::Kill { attempts }) => {
                        for a in attempts {
                            exec.kill(a);
                        }
                    }
                    Ok(StreamMessage::Ping) => {}
                    Err(e) => tracing::warn!(error = %e, "undecodable stream message ignored"),
                }
            }
        }
    }

    /// Ships new output, then reports drained results with the heartbeat. Returns whether the
    /// server asked for a new registration.
    async fn report_inner(
        &self,
        session: &SessionId,
        exec: &Executor,
        outbox: &mut Outbox,
        logs: &mut LogShipper,
        leaving: Option<LeaveNotice>,
    ) -> Result<bool, AgentError> {
        let (running, waiting) = exec.attempts();
        let mut watch: Vec<AttemptId> = running.clone();
        watch.extend(outbox.pending().map(|r| r.attempt));
        let batch = logs.collect(exec.log_dir(), &watch);
        if !batch.frames.is_empty() {
            let frames: Vec<_> = batch
                .frames
                .iter()
                .map(|(h, d)| (h.clone(), d.as_slice()))
                .collect();
            let body = encode_log_frames(&frames);
            let bytes: u64 = batch.frames.iter().map(|(h, _)| u64::from(h.len)).sum();
            let resp = self
                .http
                .post(self.url("/agent/v1/logs"))
                .bearer_auth(self.credential.bearer())
                .timeout(self.timeout())
                .body(body)
                .send()
                .await?;
            let ack: LogAck = decode(resp).await?;
            logs.acknowledge(&ack);
            self.metrics.log_bytes_shipped.inc_by(bytes);
        }
        let drained: HashSet<AttemptId> = batch.drained.into_iter().collect();
        let results: Vec<_> = outbox
            .pending()
            .filter(|r| drained.contains(&r.attempt))
            .take(REPORT_BATCH)
            .cloned()
            .collect();
        let mut known = running;
        known.extend(waiting.iter().copied());
        known.extend(outbox.pending().map(|r| r.attempt));
        let req = ReportRequest {
            node_id: self.node.clone(),
            session: session.clone(),
            known,
            waiting,
            results,
            disk_full: crate::executor::disk_full(exec.log_dir()),
            leaving,
        };
        let resp: ReportResponse = self.post_json("/agent/v1/report", &req).await?;
        outbox.ack(&resp.acked)?;
        for a in &resp.acked {
            logs.forget(exec.log_dir(), *a);
        }
        for k in resp.kill {
            exec.kill(k);
        }
        Ok(resp.reregister)
    }
}

impl Conn {
    /// Ships new output, then reports drained results with the heartbeat (timed, counted).
    /// Returns whether the server asked for a new registration.
    pub async fn report(
        &self,
        session: &SessionId,
        exec: &Executor,
        outbox: &mut Outbox,
        logs: &mut LogShipper,
        leaving: Option<LeaveNotice>,
    ) -> Result<bool, AgentError> {
        let start = tokio::time::Instant::now();
        let r = self
            .report_inner(session, exec, outbox, logs, leaving)
            .await;
        self.metrics
            .report(r.is_ok(), start.elapsed().as_secs_f64());
        r
    }
}

async fn decode<T: serde::de::DeserializeOwned>(resp: reqwest::Response) -> Result<T, AgentError> {
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        return Err(AgentError::Server {
            status: status.as_u16(),
            body: text.chars().take(500).collect(),
        });
    }
    Ok(resp.json().await?)
}

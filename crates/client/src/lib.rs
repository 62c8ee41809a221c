//! Typed async client of the public API v1, used by the CLI and the tests.

mod flows;
mod tenancy;

pub use tenancy::AuditQuery;

use bytes::Bytes;
use eventsource_stream::Eventsource as _;
use futures_util::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use zenith_model::{JobId, JobSpec, JobState};
use zenith_protocol::api::{
    ErrorBody, Event, ExplainView, JobControlled, JobList, JobUpdateRequest, JobView, NodeList,
    Submitted, SubmittedBatch,
};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the server at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{}{message}", field.as_deref().filter(|f| !f.is_empty()).map(|f| format!("{f}: ")).unwrap_or_default())]
    Api {
        status: u16,
        code: String,
        message: String,
        field: Option<String>,
    },
    #[error("unexpected answer from the server: {0}")]
    Decode(String),
}

impl ClientError {
    /// The HTTP status for API errors.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Which output of a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Stdout,
    Stderr,
}

/// How a failed submission ended: refused for sure (`Known`), or perhaps applied (`Unknown`:
/// a timeout, a broken connection, a 503), which the same idempotency key may retry.
enum Outcome {
    Known(ClientError),
    Unknown(ClientError),
}

impl Outcome {
    fn into_error(self) -> ClientError {
        match self {
            Outcome::Known(e) | Outcome::Unknown(e) => e,
        }
    }
}

/// Longest server-sent event read (the server's are a few hundred bytes).
const MAX_EVENT_BYTES: usize = 1 << 20;

/// How long one idempotent submission keeps retrying: long enough to ride out a failover
/// between servers sharing a store (lease TTL, 10 s by default, plus a poll).
const SUBMIT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// A fresh random idempotency key (128 bits, hex); `None` if the OS has no randomness.
pub fn new_idempotency_key() -> Option<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).ok()?;
    Some(hex::encode(b))
}

/// A client of one server or of several sharing a store (`http://a:7700,http://b:7700`):
/// requests go to the one that answered last; a server that refuses the connection is
/// skipped for the next (any server answers: a standby forwards to the leader).
#[derive(Clone)]
pub struct Client {
    bases: std::sync::Arc<Vec<String>>,
    current: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    token: Option<String>,
    http: reqwest::Client,
    /// The namespace flow calls name (`?namespace=`); `None`: the token's default.
    namespace: Option<String>,
}

/// Splits a comma-separated list of server URLs; each must be http(s).
pub fn parse_servers(list: &str) -> Result<Vec<String>, ClientError> {
    let bases: Vec<String> = list
        .split(',')
        .map(|s| s.trim().trim_end_matches('/').to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let bad = |reason: String| ClientError::Unreachable {
        url: list.to_string(),
        reason,
    };
    if bases.is_empty() {
        return Err(bad("no server URL given".into()));
    }
    if bases.len() > 16 {
        return Err(bad(format!("{} server URLs; at most 16", bases.len())));
    }
    if let Some(b) = bases
        .iter()
        .find(|b| !b.starts_with("http://") && !b.starts_with("https://"))
    {
        return Err(bad(format!("{b:?} is not an http:// or https:// URL")));
    }
    Ok(bases)
}

/// Why an HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("--ca-cert {path}: {message}")]
    CaCert { path: String, message: String },
    #[error("cannot build the HTTP client: {0}")]
    Build(#[from] reqwest::Error),
}

/// The HTTP client every Zenith part uses to reach a server: https:// checked against the
/// system's roots, and `ca_cert` (a PEM file, e.g. the cluster CA `<data>/tls/ca.pem` that
/// `zenith server` creates) when given.
pub fn http_client(
    ca_cert: Option<&std::path::Path>,
    connect_timeout: std::time::Duration,
) -> Result<reqwest::Client, TrustError> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true);
    if let Some(path) = ca_cert {
        let err = |message: String| TrustError::CaCert {
            path: path.display().to_string(),
            message,
        };
        let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| err(e.to_string()))?;
        if certs.is_empty() {
            return Err(err("no CERTIFICATE in the file".into()));
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    Ok(b.build()?)
}

impl Client {
    /// `base`: one server URL or a comma-separated list of them.
    pub fn new(base: &str, token: Option<String>) -> Result<Self, ClientError> {
        Self::with_ca(base, token, None)
    }

    /// Like [`Client::new`], also trusting the CA in `ca_cert` (PEM).
    pub fn with_ca(
        base: &str,
        token: Option<String>,
        ca_cert: Option<&std::path::Path>,
    ) -> Result<Self, ClientError> {
        let http = http_client(ca_cert, std::time::Duration::from_secs(5)).map_err(|e| {
            ClientError::Unreachable {
                url: base.to_string(),
                reason: e.to_string(),
            }
        })?;
        Ok(Client {
            bases: std::sync::Arc::new(parse_servers(base)?),
            current: Default::default(),
            token,
            http,
            namespace: None,
        })
    }

    /// Flow calls act in `namespace` (`*` lists every one the token reads).
    pub fn in_namespace(mut self, namespace: Option<String>) -> Self {
        self.namespace = namespace.filter(|n| !n.is_empty());
        self
    }

    /// `?namespace=` for flow calls, when one is set.
    pub(crate) fn ns_query(&self) -> Vec<(&'static str, String)> {
        self.namespace
            .iter()
            .map(|n| ("namespace", n.clone()))
            .collect()
    }

    /// The server requests go to now.
    pub fn base(&self) -> &str {
        let i = self.current.load(std::sync::atomic::Ordering::Relaxed);
        &self.bases[i % self.bases.len()]
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let rb = self.http.request(method, format!("{}{path}", self.base()));
        match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    /// Sends to the current server; when it refuses the connection (nothing was sent), to
    /// the next, once round the list. The one that answers becomes current.
    async fn execute(
        &self,
        rb: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let req = rb.build()?;
        let n = self.bases.len();
        if n == 1 {
            return self.http.execute(req).await;
        }
        let start = self.current.load(std::sync::atomic::Ordering::Relaxed) % n;
        let from = self.bases[start].clone();
        let mut last = None;
        for k in 0..n {
            let i = (start + k) % n;
            let attempt = if k == 0 {
                req.try_clone()
            } else {
                // Same path and query on the next server.
                req.try_clone().and_then(|mut r| {
                    let rest = r.url().as_str().strip_prefix(from.as_str())?.to_string();
                    *r.url_mut() = format!("{}{rest}", self.bases[i]).parse().ok()?;
                    Some(r)
                })
            };
            let Some(attempt) = attempt else { break };
            match self.http.execute(attempt).await {
                Err(e) if e.is_connect() && k + 1 < n => last = Some(e),
                Err(e) => return Err(e),
                Ok(resp) => {
                    self.current.store(i, std::sync::atomic::Ordering::Relaxed);
                    return Ok(resp);
                }
            }
        }
        match last {
            Some(e) => Err(e),
            // A body that cannot be replayed: one try on the current server.
            None => self.http.execute(req).await,
        }
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let resp = self.execute(rb).await.map_err(|e| self.unreachable(&e))?;
        self.check(resp).await
    }

    fn unreachable(&self, e: &reqwest::Error) -> ClientError {
        ClientError::Unreachable {
            url: self.bases.join(","),
            reason: root_cause(e),
        }
    }

    /// Turns an error status into a [`ClientError::Api`].
    async fn check(&self, resp: reqwest::Response) -> Result<reqwest::Response, ClientError> {
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        Err(match serde_json::from_str::<ErrorBody>(&text) {
            Ok(b) => ClientError::Api {
                status,
                code: b.error.code,
                message: b.error.message,
                field: b.error.field,
            },
            Err(_) => ClientError::Api {
                status,
                code: "http".into(),
                message: format!("HTTP {status}: {}", text.trim()),
                field: None,
            },
        })
    }

    async fn json<T: DeserializeOwned>(
        &self,
        rb: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let resp = self.send(rb).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    pub async fn submit(&self, spec: &JobSpec) -> Result<JobId, ClientError> {
        let s: Submitted = self
            .json(self.req(reqwest::Method::POST, "/api/v1/jobs").json(spec))
            .await?;
        Ok(s.id)
    }

    /// Submits with an idempotency key, retrying (same key, for up to 30 s) when the outcome
    /// is unknown: a timeout or broken connection after the request may have been sent, or a
    /// 503 (a standby with no leader yet, a store refusing writes). A connection refused by
    /// every server fails at once: nothing was sent.
    pub async fn submit_idempotent(&self, spec: &JobSpec, key: &str) -> Result<JobId, ClientError> {
        use backon::Retryable as _;
        // 100 ms doubling to 2 s, jittered so that clients back from one outage do not come
        // back in lockstep, for SUBMIT_PATIENCE in all.
        let policy = backon::ExponentialBuilder::default()
            .with_min_delay(std::time::Duration::from_millis(100))
            .with_max_delay(std::time::Duration::from_secs(2))
            .with_factor(2.0)
            .with_jitter()
            .with_total_delay(Some(SUBMIT_PATIENCE))
            .without_max_times();
        let attempt = || async {
            let rb = self
                .req(reqwest::Method::POST, "/api/v1/jobs")
                .header("idempotency-key", key)
                .timeout(std::time::Duration::from_secs(30))
                .json(spec);
            let resp = match self.execute(rb).await {
                // Refused by every server: nothing was sent.
                Err(e) if e.is_connect() => return Err(Outcome::Known(self.unreachable(&e))),
                Err(e) => return Err(Outcome::Unknown(self.unreachable(&e))),
                Ok(resp) => resp,
            };
            let resp = match self.check(resp).await {
                Err(e @ ClientError::Api { status: 503, .. }) => return Err(Outcome::Unknown(e)),
                Err(e) => return Err(Outcome::Known(e)),
                Ok(resp) => resp,
            };
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| Outcome::Known(ClientError::Decode(e.to_string())))?;
            let s: Submitted = serde_json::from_slice(&bytes)
                .map_err(|e| Outcome::Known(ClientError::Decode(e.to_string())))?;
            Ok(s.id)
        };
        attempt
            .retry(policy)
            .when(|o| matches!(o, Outcome::Unknown(_)))
            .await
            .map_err(Outcome::into_error)
    }

    pub async fn submit_batch(&self, specs: &[JobSpec]) -> Result<Vec<JobId>, ClientError> {
        let s: SubmittedBatch = self
            .json(self.req(reqwest::Method::POST, "/api/v1/jobs").json(specs))
            .await?;
        Ok(s.ids)
    }

    /// Jobs of the token's default namespace, newest first.
    pub async fn list(
        &self,
        state: Option<JobState>,
        queue: Option<&str>,
        before: Option<JobId>,
        limit: usize,
    ) -> Result<JobList, ClientError> {
        self.list_in(None, state, queue, before, limit).await
    }

    /// Jobs of `namespace` (`*`: every one the token reads; `None`: its default).
    pub async fn list_in(
        &self,
        namespace: Option<&str>,
        state: Option<JobState>,
        queue: Option<&str>,
        before: Option<JobId>,
        limit: usize,
    ) -> Result<JobList, ClientError> {
        let mut q: Vec<(&str, String)> = vec![("limit", limit.to_string())];
        if let Some(ns) = namespace {
            q.push(("namespace", ns.to_string()));
        }
        if let Some(s) = state {
            q.push(("state", s.as_str().to_string()));
        }
        if let Some(qn) = queue {
            q.push(("queue", qn.to_string()));
        }
        if let Some(b) = before {
            q.push(("before", b.to_string()));
        }
        self.json(self.req(reqwest::Method::GET, "/api/v1/jobs").query(&q))
            .await
    }

    pub async fn get(&self, id: JobId) -> Result<JobView, ClientError> {
        self.json(self.req(reqwest::Method::GET, &format!("/api/v1/jobs/{id}")))
            .await
    }

    /// Like [`Client::get`] with at most `attempts` attempts listed (cheap polling).
    pub async fn get_brief(&self, id: JobId, attempts: usize) -> Result<JobView, ClientError> {
        let rb = self
            .req(reqwest::Method::GET, &format!("/api/v1/jobs/{id}"))
            .query(&[("attempts_limit", attempts)]);
        self.json(rb).await
    }

    pub async fn cancel(&self, id: JobId) -> Result<(), ClientError> {
        self.send(self.req(reqwest::Method::POST, &format!("/api/v1/jobs/{id}/cancel")))
            .await
            .map(|_| ())
    }

    /// Holds a live job (its pending tasks wait until released).
    pub async fn hold(&self, id: JobId) -> Result<JobControlled, ClientError> {
        self.json(self.req(reqwest::Method::POST, &format!("/api/v1/jobs/{id}/hold")))
            .await
    }

    pub async fn release(&self, id: JobId) -> Result<JobControlled, ClientError> {
        self.json(self.req(reqwest::Method::POST, &format!("/api/v1/jobs/{id}/release")))
            .await
    }

    /// Changes a live job's priority or queue.
    pub async fn update_job(
        &self,
        id: JobId,
        update: &JobUpdateRequest,
    ) -> Result<JobControlled, ClientError> {
        self.json(
            self.req(reqwest::Method::PATCH, &format!("/api/v1/jobs/{id}"))
                .json(update),
        )
        .await
    }

    /// Runs ended tasks of a job again (see [`RequeueRequest`]).
    pub async fn requeue(
        &self,
        id: JobId,
        req: &zenith_protocol::api::RequeueRequest,
    ) -> Result<zenith_protocol::api::JobRequeued, ClientError> {
        self.json(
            self.req(reqwest::Method::POST, &format!("/api/v1/jobs/{id}/requeue"))
                .json(req),
        )
        .await
    }

    /// Deletes an ended job with its attempts and logs.
    pub async fn delete_job(
        &self,
        id: JobId,
    ) -> Result<zenith_protocol::api::JobDeleted, ClientError> {
        self.json(self.req(reqwest::Method::DELETE, &format!("/api/v1/jobs/{id}")))
            .await
    }

    pub async fn explain(&self, id: JobId) -> Result<ExplainView, ClientError> {
        self.json(self.req(reqwest::Method::GET, &format!("/api/v1/jobs/{id}/explain")))
            .await
    }

    pub async fn summary(&self) -> Result<zenith_protocol::api::ClusterSummary, ClientError> {
        self.json(self.req(reqwest::Method::GET, "/api/v1/summary"))
            .await
    }

    /// The servers sharing the store, the leader and its lease.
    pub async fn servers(&self) -> Result<zenith_protocol::api::ServerList, ClientError> {
        self.json(self.req(reqwest::Method::GET, "/api/v1/servers"))
            .await
    }

    pub async fn nodes(&self) -> Result<NodeList, ClientError> {
        self.json(self.req(reqwest::Method::GET, "/api/v1/nodes"))
            .await
    }

    /// Revokes a node's credential (by ID, or a name one node has): it is cut off at once
    /// and its attempts are requeued.
    pub async fn revoke_node(
        &self,
        node: &str,
    ) -> Result<zenith_protocol::api::RevokeView, ClientError> {
        let path = format!("/api/v1/nodes/{}/revoke", path_segment(node));
        self.json(self.req(reqwest::Method::POST, &path)).await
    }

    /// `action`: `cordon`, `uncordon` or `drain` (with an optional deadline); `remove`
    /// forgets a node that runs nothing.
    pub async fn node_action(
        &self,
        node: &str,
        action: &str,
        deadline: Option<zenith_model::DurationMs>,
    ) -> Result<zenith_protocol::api::NodeView, ClientError> {
        let seg = path_segment(node);
        let rb = match action {
            "remove" => self.req(reqwest::Method::DELETE, &format!("/api/v1/nodes/{seg}")),
            "drain" => self
                .req(reqwest::Method::POST, &format!("/api/v1/nodes/{seg}/drain"))
                .json(&zenith_protocol::api::DrainRequest { deadline }),
            other => self.req(
                reqwest::Method::POST,
                &format!("/api/v1/nodes/{seg}/{other}"),
            ),
        };
        self.json(rb).await
    }

    /// Committed transitions as they happen (optionally of one job, of some kinds). The stream
    /// ends when the server closes it.
    pub async fn events(
        &self,
        job: Option<JobId>,
        kinds: &[&str],
    ) -> Result<impl Stream<Item = Result<Event, ClientError>>, ClientError> {
        self.events_filtered(job, None, kinds).await
    }

    /// [`Client::events`], also filtered to one flow run.
    pub async fn events_filtered(
        &self,
        job: Option<JobId>,
        run: Option<u64>,
        kinds: &[&str],
    ) -> Result<impl Stream<Item = Result<Event, ClientError>>, ClientError> {
        let mut q: Vec<(&str, String)> = Vec::new();
        if let Some(j) = job {
            q.push(("job", j.to_string()));
        }
        if let Some(r) = run {
            q.push(("run", r.to_string()));
        }
        if !kinds.is_empty() {
            q.push(("kind", kinds.join(",")));
        }
        let resp = self
            .send(self.req(reqwest::Method::GET, "/api/v1/events").query(&q))
            .await?;
        // The parser (eventsource-stream) buffers until an event ends: bytes since the last
        // event are counted, and a server that sends more than MAX_EVENT_BYTES without ending
        // one ends the stream with an error instead of growing the buffer.
        let since_event = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = since_event.clone();
        let bytes = resp.bytes_stream().map(move |chunk| {
            let chunk = chunk.map_err(|e| e.to_string())?;
            let seen = counter.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed);
            if seen + chunk.len() > MAX_EVENT_BYTES {
                return Err(format!("an event longer than {MAX_EVENT_BYTES} bytes"));
            }
            Ok(chunk)
        });
        Ok(bytes.eventsource().map(move |item| {
            since_event.store(0, std::sync::atomic::Ordering::Relaxed);
            let ev = item.map_err(|e| ClientError::Decode(e.to_string()))?;
            serde_json::from_str::<Event>(&ev.data).map_err(|e| ClientError::Decode(e.to_string()))
        }))
    }

    /// A task's output as a byte stream (with `follow`, until its attempt ends).
    pub async fn logs(
        &self,
        id: JobId,
        task: Option<u32>,
        output: Output,
        follow: bool,
    ) -> Result<impl Stream<Item = Result<Bytes, ClientError>>, ClientError> {
        let mut q: Vec<(&str, String)> = vec![("follow", follow.to_string())];
        if let Some(t) = task {
            q.push(("task", t.to_string()));
        }
        if output == Output::Stderr {
            q.push(("stream", "stderr".into()));
        }
        let resp = self
            .send(
                self.req(reqwest::Method::GET, &format!("/api/v1/jobs/{id}/logs"))
                    .query(&q),
            )
            .await?;
        Ok(resp
            .bytes_stream()
            .map(|r| r.map_err(|e| ClientError::Decode(e.to_string()))))
    }
}

/// `s` as one URL path segment (percent-encoded by the URL parser).
fn path_segment(s: &str) -> String {
    let Ok(mut u) = reqwest::Url::parse("http://h/") else {
        return s.to_string(); // a fixed, valid URL: never taken
    };
    if let Ok(mut segs) = u.path_segments_mut() {
        segs.clear().push(s);
    }
    u.path().trim_start_matches('/').to_string()
}

fn root_cause(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg = s.to_string();
        src = s.source();
    }
    msg
}

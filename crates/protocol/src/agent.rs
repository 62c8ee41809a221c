//! Agent protocol (`/agent/v1/...`): enrolment (the join token buys the node a credential of
//! its own), register, a long-lived NDJSON stream of assignments and kills from the server,
//! batched reports (results + heartbeat) and batched log uploads. Every request but enrolment
//! carries the node's credential, and the server holds the node to its own attempts.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use zenith_model::{AttemptId, AttemptOutcome, JobId, NodeId, Resources};

/// Bumped on any incompatible change; the server refuses other versions at registration.
/// 2: node credentials (enrolment), random session IDs.
pub const PROTOCOL_VERSION: u32 = 2;

/// Prefix of a node credential: `zn1:<node id>:<64 hex digits>`.
pub const CREDENTIAL_PREFIX: &str = "zn1:";

/// Splits a node credential into its node ID and secret (not checked against anything).
pub fn parse_credential(c: &str) -> Option<(&str, &str)> {
    let (node, secret) = c.strip_prefix(CREDENTIAL_PREFIX)?.rsplit_once(':')?;
    let ok = secret.len() == 64 && secret.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then_some((node, secret))
}

/// `POST /agent/v1/enroll`, with the join token: the node's own credential in return. A node
/// enrolls once; its ID cannot be enrolled again (re-registering needs its credential).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    pub protocol_version: u32,
    pub node_id: NodeId,
    pub name: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EnrollResponse {
    /// `zn1:<node id>:<secret>`: the bearer token of every later request of this node.
    pub credential: String,
}

/// One registration of a node: 128 random bits in hex, unguessable.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(pub String);

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Header of a standby's 503 to an agent: the leader's URL (servers sharing a PostgreSQL
/// store).
pub const LEADER_HEADER: &str = "x-zenith-leader";

/// Most attempt IDs in one `known` list or result batch.
pub const MAX_BATCH: usize = 100_000;

/// Largest backlog an agent may ask for (`prefetch`).
pub const MAX_PREFETCH: u32 = 10_000;

/// `POST /agent/v1/register`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    pub protocol_version: u32,
    pub node_id: NodeId,
    pub name: String,
    pub resources: Resources,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Attempts the agent runs, holds in its backlog, or holds unacknowledged results for.
    #[serde(default)]
    pub known: Vec<AttemptId>,
    /// Of `known`, attempts waiting in the agent's backlog for resources (not started).
    #[serde(default)]
    pub waiting: Vec<AttemptId>,
    /// How many assignments the agent will hold beyond what fits, starting each the moment
    /// resources free (0: only what fits).
    #[serde(default)]
    pub prefetch: u32,
    /// Where the members of a gang job reach this node (`--advertise-address`); absent: the
    /// address the server sees the agent connect from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RegisterResponse {
    /// Identifies this registration; the stream and reports carry it.
    pub session: SessionId,
    pub heartbeat_interval_ms: u64,
    /// Silence after which the server declares the node lost; the agent keeps its requests
    /// well inside it.
    pub heartbeat_timeout_ms: u64,
    /// Attempts to kill at once: the server does not own them (any more).
    pub kill: Vec<AttemptId>,
}

/// One line of the `GET /agent/v1/stream` NDJSON response.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamMessage {
    Assign {
        attempts: Vec<Assignment>,
    },
    Kill {
        attempts: Vec<AttemptId>,
    },
    /// Keeps idle connections open through proxies.
    Ping,
}

/// One attempt to run. `attempt` is the fencing token.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Assignment {
    pub attempt: AttemptId,
    pub job: JobId,
    pub task: u32,
    pub attempt_number: u32,
    pub command: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub cwd: Option<String>,
    pub resources: Resources,
    /// Flow steps: output parameters to read from `$ZENITH_OUTPUTS/<name>`, artifacts to
    /// fetch before start and to upload after success.
    #[serde(default, skip_serializing_if = "zenith_model::flow::StepIo::is_empty")]
    pub io: zenith_model::flow::StepIo,
    /// A gang job's member: its rank, the gang's hosts and where to meet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gang: Option<zenith_model::GangMember>,
}

/// `POST /agent/v1/report`: results and the heartbeat in one message.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportRequest {
    pub node_id: NodeId,
    pub session: SessionId,
    /// Attempts the agent runs, holds in its backlog, or holds unacknowledged results for.
    pub known: Vec<AttemptId>,
    /// Of `known`, attempts waiting in the agent's backlog (not started): a backlogged
    /// attempt known and not listed has started.
    #[serde(default)]
    pub waiting: Vec<AttemptId>,
    #[serde(default)]
    pub results: Vec<AttemptResult>,
    /// The disk holding the agent's logs and results is full (shown on the node).
    #[serde(default)]
    pub disk_full: bool,
    /// The agent is stopping (SIGTERM): no new work for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaving: Option<LeaveNotice>,
}

/// An agent's notice that it is stopping, repeated with every report until its last.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LeaveNotice {
    /// What runs may finish within this long (its `--shutdown-grace`); then the agent stops
    /// it and reports it `evicted` (requeued elsewhere).
    pub grace_ms: u64,
    /// Everything has ended and every result is acknowledged: the agent exits after this
    /// report.
    #[serde(default)]
    pub done: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AttemptResult {
    pub attempt: AttemptId,
    pub outcome: AttemptOutcome,
    /// Output parameters the attempt wrote (only when it asked for some and exited 0).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, String>,
    /// How long the attempt ran on the agent's clock (ms), from its process's spawn until its
    /// end was recorded (after any artifact upload); absent when it never started. Sizes the node's backlog (more exact than the server's view, which
    /// sees starts and ends only as reports arrive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ran_ms: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, Default)]
pub struct ReportResponse {
    /// Results now durable on the server (accepted, or refused as stale): drop them.
    pub acked: Vec<AttemptId>,
    pub kill: Vec<AttemptId>,
    /// The server does not know this session: register again.
    pub reregister: bool,
}

/// Which output stream of a process.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

/// Header of one frame in `POST /agent/v1/logs`: a JSON line, then `len` raw bytes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogFrame {
    pub attempt: AttemptId,
    pub stream: LogStream,
    pub offset: u64,
    pub len: u32,
}

/// The server's length of each log after an upload; the agent resumes from there.
#[derive(Clone, Debug, Serialize, Deserialize, Default)]
pub struct LogAck {
    pub lengths: Vec<(AttemptId, LogStream, u64)>,
}

/// Encodes frames for `POST /agent/v1/logs`.
pub fn encode_log_frames(frames: &[(LogFrame, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (h, data) in frames {
        // Serialising a plain struct to JSON cannot fail.
        out.extend_from_slice(serde_json::to_string(h).unwrap_or_default().as_bytes());
        out.push(b'\n');
        out.extend_from_slice(data);
    }
    out
}

/// Decodes frames; an error names the frame that is malformed.
pub fn decode_log_frames(mut body: &[u8]) -> Result<Vec<(LogFrame, &[u8])>, String> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let nl = body
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(format!("frame {}: header without newline", out.len()))?;
        let header: LogFrame =
            serde_json::from_slice(&body[..nl]).map_err(|e| format!("frame {}: {e}", out.len()))?;
        let rest = &body[nl + 1..];
        let len = header.len as usize;
        if rest.len() < len {
            return Err(format!(
                "frame {}: {} bytes announced, {} present",
                out.len(),
                len,
                rest.len()
            ));
        }
        out.push((header, &rest[..len]));
        body = &rest[len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_frames_roundtrip_and_reject_truncation() {
        let h1 = LogFrame {
            attempt: AttemptId(1),
            stream: LogStream::Stdout,
            offset: 0,
            len: 3,
        };
        let h2 = LogFrame {
            attempt: AttemptId(2),
            stream: LogStream::Stderr,
            offset: 7,
            len: 2,
        };
        let body = encode_log_frames(&[(h1.clone(), b"a\nb"), (h2.clone(), b"\n\n")]);
        let got = decode_log_frames(&body).unwrap();
        assert_eq!(got, vec![(h1, &b"a\nb"[..]), (h2, &b"\n\n"[..])]);
        assert!(decode_log_frames(&body[..body.len() - 1])
            .unwrap_err()
            .contains("frame 1"));
        assert!(decode_log_frames(b"{nope}\n").is_err());
    }

    #[test]
    fn credentials_parse_only_in_their_shape() {
        let secret = "ab".repeat(32);
        let c = format!("zn1:n-1.x:{secret}");
        assert_eq!(parse_credential(&c), Some(("n-1.x", secret.as_str())));
        assert_eq!(parse_credential(&format!("zn1:n:{}", "g".repeat(64))), None);
        assert_eq!(parse_credential(&format!("n:{secret}")), None);
        assert_eq!(parse_credential("zn1:n:abc"), None);
    }

    #[test]
    fn stream_messages_are_tagged() {
        let m = StreamMessage::Kill {
            attempts: vec![AttemptId(5)],
        };
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"type":"kill","attempts":[5]}"#
        );
    }
}

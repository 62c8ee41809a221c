//! The messages handlers and agent sessions send to the control loop.

use super::Reply;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use zenith_flowspec::FlowPlan;
use zenith_model::flow::{FlowSpec, RunId};
use zenith_model::{AttemptId, JobId, JobSpec, NodeId};
use zenith_protocol::agent::{
    RegisterRequest, RegisterResponse, ReportRequest, ReportResponse, SessionId, StreamMessage,
};
use zenith_protocol::api::{ExplainView, NodeView};

pub enum LoopMsg {
    Submit {
        specs: Vec<Arc<JobSpec>>,
        key: Option<zenith_engine::IdempotencyKey>,
        /// End states, read from the store, of jobs the specs name in `after` that ended.
        ended: std::collections::BTreeMap<JobId, zenith_model::JobState>,
        reply: Reply<zenith_engine::Submitted>,
    },
    /// Hold, release, update, requeue or delete a job (`Command::Hold`, `UpdateJob`,
    /// `Requeue`, `DeleteJob`); answered with the engine's outcome.
    JobControl {
        cmd: zenith_engine::Command,
        reply: Reply<zenith_engine::Outcome>,
    },
    Cancel {
        id: JobId,
        reply: Reply<()>,
    },
    /// `session`: the new registration's ID (random, made by the handler).
    Register {
        req: RegisterRequest,
        session: SessionId,
        reply: Reply<RegisterResponse>,
    },
    /// Gives a node its credential (answered once it is durable).
    Enroll {
        node: NodeId,
        name: String,
        reply: Reply<String>,
    },
    /// Revokes a node's credential (by node ID or name): cut off now, its attempts requeued.
    Revoke {
        node: String,
        reply: Reply<zenith_protocol::api::RevokeView>,
    },
    /// Cordon, drain, uncordon or remove a node (by node ID or name).
    NodeAction {
        node: String,
        action: NodeAction,
        reply: Reply<NodeView>,
    },
    /// Of these attempts, those that are not `node`'s (for log uploads): `Err` lists them.
    AttemptsOf {
        node: NodeId,
        attempts: Vec<AttemptId>,
        reply: oneshot::Sender<AttemptsOf>,
    },
    OpenStream {
        node: NodeId,
        session: SessionId,
        reply: oneshot::Sender<Option<mpsc::Receiver<StreamMessage>>>,
    },
    Report {
        req: ReportRequest,
        reply: Reply<ReportResponse>,
    },
    Explain {
        id: JobId,
        reply: oneshot::Sender<Option<ExplainView>>,
    },
    Nodes {
        reply: oneshot::Sender<Vec<NodeView>>,
    },
    Levels {
        reply: oneshot::Sender<zenith_engine::Levels>,
    },
    /// Answered once every batch flushed before it is committed (or refused). Batches flushed
    /// while nobody listened carry no events; an event subscriber waits on this before it
    /// answers, so a client that subscribes and then reads state finds those batches' changes
    /// in the store instead of missing them in both places.
    Barrier {
        reply: oneshot::Sender<()>,
    },
    /// Start a run: of a validated spec, or of the applied flow `name`.
    SubmitRun {
        flow: FlowSource,
        params: BTreeMap<String, String>,
        reply: Reply<RunId>,
    },
    ApplyFlow {
        spec: Arc<FlowSpec>,
        plan: Arc<FlowPlan>,
        reply: Reply<()>,
    },
    DeleteFlow {
        name: String,
        reply: Reply<()>,
    },
    CancelRun {
        id: RunId,
        reply: Reply<()>,
    },
    Approve {
        id: RunId,
        step: String,
        reply: Reply<()>,
    },
    /// Makes a person's API token (answered with its text once durable).
    CreateToken {
        new: crate::users::NewToken,
        reply: Reply<(String, zenith_model::tenancy::UserTokenRecord)>,
    },
    RevokeToken {
        id: String,
        reply: Reply<zenith_model::tenancy::UserTokenRecord>,
    },
    /// Set (`Some`, validated) or clear a namespace's settings.
    SetNamespace {
        name: String,
        settings: Option<zenith_model::namespace::NamespaceSettings>,
        reply: Reply<()>,
    },
    /// Every namespace's settings.
    Namespaces {
        reply: oneshot::Sender<Vec<zenith_model::namespace::NamespaceSettings>>,
    },
    /// The fair-share table.
    Shares {
        reply: oneshot::Sender<zenith_protocol::tenancy::ShareList>,
    },
    /// A request to record in the audit log (stamped and written with the next commit).
    Audit(zenith_model::tenancy::AuditRecord),
    /// Who runs an attempt (for artifact uploads): its node and flow step instance.
    AttemptOwner {
        attempt: AttemptId,
        reply: oneshot::Sender<Option<(NodeId, Option<zenith_model::flow::StepRef>)>>,
    },
}

/// What an operator does to a node.
#[derive(Clone, Copy, Debug)]
pub enum NodeAction {
    Cordon,
    /// Cordon; attempts still running after this many milliseconds are requeued.
    Drain(Option<u64>),
    Uncordon,
    Remove,
}

/// Which flow a run request means.
pub enum FlowSource {
    Spec(Arc<FlowSpec>, Arc<FlowPlan>),
    Applied(String),
}

/// Whose the attempts of a log upload are.
#[derive(Debug, Default)]
pub struct AttemptsOf {
    /// Running on another node: the upload is refused.
    pub others: Vec<AttemptId>,
    /// Not running anywhere (ended, lost, never existed): their frames are dropped.
    pub unknown: Vec<AttemptId>,
}

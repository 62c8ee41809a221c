//! The control loop: the one owner of cluster state.
//!
//! API handlers and agent sessions send [`LoopMsg`]s over a bounded channel. The loop takes a
//! batch of waiting messages, applies them to the engine, runs one scheduling pass, and hands
//! the batch's changes plus its replies and agent messages to the store writer, which sends
//! them only after the commit. Reads that need live state (explain, nodes) are answered at
//! once from memory; everything else is read from the store.

use crate::clock::Stopwatch;
use crate::convert;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::writer::{AfterCommit, CommitError, CommitFailed, WriterMsg};
use crate::Clock;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use zenith_engine::{Command, Effect, Engine, EngineConfig, Outcome, RunOf};
use zenith_model::flow::Trigger;
use zenith_model::{AttemptId, NodeId};
use zenith_protocol::agent::{
    Assignment, RegisterRequest, RegisterResponse, ReportRequest, ReportResponse, SessionId,
    StreamMessage,
};
use zenith_store::StoreError;

/// Most messages applied in one batch.
pub const MAX_BATCH: usize = 4096;
/// Capacity of each agent's outgoing stream (in messages; each holds a batch).
const SESSION_BUFFER: usize = 1024;
/// How often a degraded server tries whether the store accepts writes again.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How often timers, liveness and retention are checked.
const TICK: Duration = Duration::from_millis(50);

type Reply<T> = oneshot::Sender<Result<T, ApiError>>;

mod degraded;
mod msg;
mod nodes;
mod tenancy;

pub use degraded::Fatal;
pub use msg::{FlowSource, LoopMsg, NodeAction};

struct Session {
    id: SessionId,
    tx: mpsc::Sender<StreamMessage>,
    /// Taken by the stream request that follows registration.
    rx: Option<mpsc::Receiver<StreamMessage>>,
    /// The agent's last report said its disk is full.
    disk_full: bool,
}

/// Settings of the loop.
#[derive(Clone, Debug)]
pub struct LoopConfig {
    pub heartbeat_interval_ms: u64,
    pub retention_ms: u64,
    pub audit_retention_ms: u64,
    pub max_audit_records: u64,
    pub sweep_every: Duration,
    /// For rebuilding the engine after a failed commit.
    pub engine: EngineConfig,
}

pub struct ControlLoop {
    engine: Engine,
    clock: Clock,
    cfg: LoopConfig,
    /// One per registered node; dropped when the engine forgets the node.
    sessions: HashMap<NodeId, Session>,
    /// Node credentials enrolled or revoked since the last flush: written with its commit.
    key_changes: Vec<zenith_model::records::NodeKeyRecord>,
    /// People's tokens made, revoked (`Some`) or forgotten (`None`) since the last flush.
    token_changes: Vec<(String, Option<zenith_model::tenancy::UserTokenRecord>)>,
    /// Audit records since the last flush (at most `tenancy::MAX_PENDING_AUDIT`).
    audit: Vec<zenith_model::tenancy::AuditRecord>,
    writer: mpsc::Sender<WriterMsg>,
    metrics: Arc<Metrics>,
    /// Committed transitions for `/api/v1/events` subscribers.
    events: tokio::sync::broadcast::Sender<crate::events::EventBatch>,
    /// The engine's next job ID after the last flush: jobs at or above it in a batch were
    /// submitted in that batch (events say so).
    events_next_job: u64,
    shared: Shared,
    /// Generation of the engine's memory; bumped when it is rebuilt after a failed commit.
    gen: u64,
    /// Why the store refuses writes, while it does (new work is refused meanwhile).
    degraded: Option<Arc<StoreError>>,
}

/// What the loop shares with the rest of the server besides its inbox.
pub struct Shared {
    /// Failed commits, from the writer.
    pub failures: mpsc::Receiver<CommitFailed>,
    /// Set when the server must stop (the store cannot even be read).
    pub fatal: Arc<tokio::sync::watch::Sender<Option<Fatal>>>,
    /// Mirrors `degraded` for `/readyz` and metrics.
    pub degraded: Arc<AtomicBool>,
    /// Commit batches sent to the writer whose after-commit actions have not run yet.
    pub in_flight: Arc<std::sync::atomic::AtomicUsize>,
    /// Node credentials (the loop writes, agent requests read).
    pub keys: Arc<crate::node_keys::NodeKeys>,
    /// People's API tokens (the loop writes, API requests read).
    pub users: Arc<crate::users::UserTokens>,
}

fn reply_after<T: Send + 'static>(reply: Reply<T>, value: T) -> AfterCommit {
    Box::new(move |r: Result<(), &CommitError>| {
        let _ = reply.send(match r {
            Ok(()) => Ok(value),
            Err(e) => Err(ApiError::Unavailable(format!(
                "the store could not commit this request ({e}); nothing changed, retry later"
            ))),
        });
    })
}

fn send_after(tx: mpsc::Sender<StreamMessage>, msg: StreamMessage) -> AfterCommit {
    Box::new(move |r: Result<(), &CommitError>| {
        if r.is_ok() {
            // A full or closed stream drops the message: the node's next heartbeat reconciles
            // (unreceived assignments are requeued after the dispatch grace; kills are resent).
            let _ = tx.try_send(msg);
        }
    })
}

impl ControlLoop {
    pub fn new(
        engine: Engine,
        clock: Clock,
        cfg: LoopConfig,
        writer: mpsc::Sender<WriterMsg>,
        metrics: Arc<Metrics>,
        events: tokio::sync::broadcast::Sender<crate::events::EventBatch>,
        shared: Shared,
    ) -> Self {
        ControlLoop {
            events_next_job: engine.next_job_id(),
            engine,
            clock,
            cfg,
            sessions: HashMap::new(),
            key_changes: Vec::new(),
            token_changes: Vec::new(),
            audit: Vec::new(),
            writer,
            metrics,
            events,
            shared,
            gen: 0,
            degraded: None,
        }
    }

    /// Runs until `rx` closes or `shutdown` resolves.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<LoopMsg>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut probe = tokio::time::interval(PROBE_EVERY);
        probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sweep = tokio::time::interval(self.cfg.sweep_every);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                msg = rx.recv() => {
                    let Some(first) = msg else { break };
                    let mut batch = Vec::with_capacity(64);
                    batch.push(first);
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(m) => batch.push(m),
                            Err(_) => break,
                        }
                    }
                    let watch = Stopwatch::start();
                    let after = {
                        let _span = tracing::debug_span!("control_batch", messages = batch.len()).entered();
                        self.apply(batch)
                    };
                    self.metrics.pass_time.observe(watch.seconds());
                    if self.flush(after).await.is_err() { break; }
                }
                _ = tick.tick() => {
                    let now = self.clock.now();
                    let watch = Stopwatch::start();
                    let forgotten = match self.engine.apply(Command::Tick, now) {
                        Ok(Outcome::Ticked { forgotten }) => forgotten,
                        _ => Vec::new(), // a tick is never refused
                    };
                    self.metrics.pass_time.observe(watch.seconds());
                    // Sessions go with the nodes the engine forgets (not a scan per tick: with
                    // 10,000 nodes that cost 15% of a core).
                    for id in &forgotten {
                        self.sessions.remove(id);
                    }
                    if self.flush(Vec::new()).await.is_err() { break; }
                }
                _ = sweep.tick() => {
                    let now = self.clock.now();
                    let sweep = WriterMsg::Sweep {
                        now,
                        before: now.saturating_sub(self.cfg.retention_ms),
                        audit_before: now.saturating_sub(self.cfg.audit_retention_ms),
                        audit_keep: self.cfg.max_audit_records,
                    };
                    if self.writer.send(sweep).await.is_err() { break; }
                }
                Some(f) = self.shared.failures.recv() => {
                    if self.on_commit_failed(f).await.is_err() { break; }
                }
                _ = probe.tick(), if self.degraded.is_some() => {
                    if self.probe().await.is_err() { break; }
                }
                _ = &mut shutdown => break,
            }
        }
    }

    /// Applies a batch: refuses what a degraded store cannot take, turns each message into an
    /// engine command (or answers a read from memory), queues its reply behind the commit,
    /// then runs one scheduling pass for the whole batch.
    // Long by design: one short arm per message kind, so the whole dispatch reads in one place.
    fn apply(&mut self, batch: Vec<LoopMsg>) -> Vec<AfterCommit> {
        let now = self.clock.now();
        let mut after: Vec<AfterCommit> = Vec::new();
        for msg in batch {
            match msg {
                LoopMsg::Submit {
                    specs,
                    key,
                    ended,
                    reply,
                } => {
                    self.engine.note_ended(&ended);
                    let r = self.command(Command::Submit { specs, key }, now);
                    self.answer(r, reply, &mut after, |o| match o {
                        Outcome::Submitted(s) => Some(s),
                        _ => None,
                    });
                }
                LoopMsg::Cancel { id, reply } => {
                    let r = self.command(Command::Cancel { job: id }, now);
                    self.answer(r, reply, &mut after, done);
                }
                LoopMsg::JobControl { cmd, reply } => {
                    let r = self.command(cmd, now);
                    self.answer(r, reply, &mut after, Some);
                }
                LoopMsg::SubmitRun {
                    flow,
                    params,
                    reply,
                } => {
                    let flow = match flow {
                        FlowSource::Spec(spec, plan) => RunOf::Spec(spec, plan),
                        FlowSource::Applied(name) => RunOf::Applied(name),
                    };
                    let cmd = Command::SubmitRun {
                        flow,
                        params,
                        trigger: Trigger::Manual,
                    };
                    let r = self.command(cmd, now);
                    self.answer(r, reply, &mut after, |o| match o {
                        Outcome::RunStarted(id) => Some(id),
                        _ => None,
                    });
                }
                LoopMsg::ApplyFlow { spec, plan, reply } => {
                    let r = self.command(Command::ApplyFlow { spec, plan }, now);
                    self.answer(r, reply, &mut after, done);
                }
                LoopMsg::DeleteFlow { name, reply } => {
                    let r = self.command(Command::DeleteFlow { name }, now);
                    self.answer(r, reply, &mut after, done);
                }
                LoopMsg::CancelRun { id, reply } => {
                    let r = self.command(Command::CancelRun { run: id }, now);
                    self.answer(r, reply, &mut after, done);
                }
                LoopMsg::Approve { id, step, reply } => {
                    let r = self.command(Command::Approve { run: id, step }, now);
                    self.answer(r, reply, &mut after, done);
                }
                LoopMsg::Register {
                    req,
                    session,
                    reply,
                } => {
                    let resp = self.register(req, session, now);
                    self.reply_when_durable(reply, resp, &mut after);
                }
                LoopMsg::Enroll { node, name, reply } => {
                    self.enroll(node, name, reply, now, &mut after);
                }
                LoopMsg::Revoke { node, reply } => self.revoke(&node, reply, now, &mut after),
                LoopMsg::NodeAction {
                    node,
                    action,
                    reply,
                } => self.node_action(&node, action, reply, now, &mut after),
                LoopMsg::CreateToken { new, reply } => {
                    self.create_token(new, reply, now, &mut after);
                }
                LoopMsg::RevokeToken { id, reply } => {
                    self.revoke_token(&id, reply, now, &mut after);
                }
                LoopMsg::Audit(rec) => self.audit(rec, now),
                LoopMsg::SetNamespace {
                    name,
                    settings,
                    reply,
                } => {
                    let r = self.command(Command::SetNamespace { name, settings }, now);
                    self.answer(r, reply, &mut after, done);
                }
                LoopMsg::Namespaces { reply } => {
                    let _ = reply.send(self.engine.namespace_settings()); // reader left
                }
                LoopMsg::Shares { reply } => {
                    let list = zenith_protocol::tenancy::ShareList {
                        half_life_ms: self.engine.fair_share_half_life_ms(),
                        namespaces: self.engine.shares(),
                    };
                    let _ = reply.send(list); // a reader that left needs no answer
                }
                LoopMsg::AttemptsOf {
                    node,
                    attempts,
                    reply,
                } => {
                    let _ = reply.send(self.attempts_of(&node, attempts)); // uploader left
                }
                LoopMsg::OpenStream {
                    node,
                    session,
                    reply,
                } => {
                    let rx = self
                        .sessions
                        .get_mut(&node)
                        .filter(|s| s.id == session)
                        .and_then(|s| s.rx.take());
                    let _ = reply.send(rx); // the stream request gave up waiting: nothing to do
                }
                LoopMsg::Report { req, reply } => {
                    if self
                        .sessions
                        .get(&req.node_id)
                        .is_none_or(|s| s.id != req.session)
                    {
                        let _ = reply.send(Ok(ReportResponse {
                            reregister: true,
                            ..Default::default()
                        })); // an agent that gave up re-sends its report
                        continue;
                    }
                    if let Some(s) = self.sessions.get_mut(&req.node_id) {
                        s.disk_full = req.disk_full;
                    }
                    let resp = self.report(req, now);
                    self.reply_when_durable(reply, resp, &mut after);
                }
                LoopMsg::Explain { id, reply } => {
                    let holds = convert::Holds {
                        blocked: self.engine.blocked_reason(id),
                        quota: self.engine.quota_hit(id),
                        reservation: self.engine.reservation_note(id),
                        gang: self.engine.gang_note(id),
                    };
                    let view = self
                        .engine
                        .explain(id)
                        .map(|(state, e)| convert::explain_view(id, state, e, holds));
                    let _ = reply.send(view); // a reader that left needs no answer
                }
                LoopMsg::AttemptOwner { attempt, reply } => {
                    let _ = reply.send(self.engine.attempt_owner(attempt)); // as above
                }
                LoopMsg::Levels { reply } => {
                    let _ = reply.send(self.engine.levels()); // as above
                }
                LoopMsg::Barrier { reply } => after.push(Box::new(move |_| {
                    let _ = reply.send(()); // the subscriber that waited left
                })),
                LoopMsg::Nodes { reply } => {
                    let nodes = self
                        .engine
                        .nodes()
                        .into_iter()
                        .map(|n| {
                            let revoked = self.shared.keys.is_revoked(&n.id);
                            let full = self.sessions.get(&n.id).is_some_and(|s| s.disk_full);
                            convert::node_view(n, revoked, full)
                        })
                        .collect();
                    let _ = reply.send(nodes); // a reader that left needs no answer
                }
            }
        }
        self.engine.schedule(now);
        after
    }

    /// A command that changes work: refused while the store refuses writes (the degraded
    /// gate), else applied.
    fn command(&mut self, cmd: Command, now: u64) -> Result<Outcome, ApiError> {
        if self.degraded.is_some() {
            return Err(self.refusal());
        }
        self.engine.apply(cmd, now).map_err(convert::engine_error)
    }

    /// Replies after the commit when the command took effect, at once when it was refused.
    fn answer<T: Send + 'static>(
        &self,
        r: Result<Outcome, ApiError>,
        reply: Reply<T>,
        after: &mut Vec<AfterCommit>,
        pick: impl FnOnce(Outcome) -> Option<T>,
    ) {
        match r.and_then(|o| {
            pick(o).ok_or_else(|| ApiError::Internal("the engine answered another command".into()))
        }) {
            Ok(v) => after.push(reply_after(reply, v)),
            Err(e) => {
                let _ = reply.send(Err(e)); // the client that left needs no answer
            }
        }
    }

    /// Agent replies go after the commit; while degraded at once (their records wait in
    /// the engine for the store to recover).
    fn reply_when_durable<T: Send + 'static>(
        &self,
        reply: Reply<T>,
        value: T,
        after: &mut Vec<AfterCommit>,
    ) {
        if self.degraded.is_some() {
            let _ = reply.send(Ok(value)); // an agent that left registers or reports again
        } else {
            after.push(reply_after(reply, value));
        }
    }

    /// Registers a node (registration goes on while degraded: it is a heartbeat too) and
    /// opens its session.
    fn register(&mut self, req: RegisterRequest, session: SessionId, now: u64) -> RegisterResponse {
        let node = req.node_id.clone();
        let kill = match self
            .engine
            .apply(Command::Register(convert::registration(req)), now)
        {
            Ok(Outcome::Registered(r)) => r.kill,
            // Registration is never refused and answers `Registered`.
            _ => Vec::new(),
        };
        let (tx, rx) = mpsc::channel(SESSION_BUFFER);
        self.sessions.insert(
            node,
            Session {
                id: session.clone(),
                tx,
                rx: Some(rx),
                disk_full: false,
            },
        );
        RegisterResponse {
            session,
            heartbeat_interval_ms: self.cfg.heartbeat_interval_ms,
            heartbeat_timeout_ms: self.cfg.engine.heartbeat_timeout_ms,
            kill,
        }
    }

    /// Applies a report; while the store refuses writes, results stay in the agent's outbox
    /// and the report counts as a heartbeat only.
    fn report(&mut self, req: ReportRequest, now: u64) -> ReportResponse {
        let report = convert::node_report(req, self.degraded.is_none());
        match self.engine.apply(Command::Report(report), now) {
            Ok(Outcome::Reported { acked, reply, .. }) => ReportResponse {
                acked,
                kill: reply.kill,
                reregister: reply.reregister,
            },
            // A report is never refused and answers `Reported`.
            _ => ReportResponse {
                reregister: true,
                ..Default::default()
            },
        }
    }

    /// Hands the engine's changes, effects and the batch's replies to the writer.
    async fn flush(&mut self, mut after: Vec<AfterCommit>) -> Result<(), ()> {
        let observations = self.engine.take_observations();
        self.metrics
            .absorb_engine(self.engine.counters(), observations);
        if self.degraded.is_some() {
            // Changes and effects wait in the engine until the store accepts writes again.
            for a in after {
                a(Err(&CommitError::Degraded));
            }
            return Ok(());
        }
        let mut assign: BTreeMap<NodeId, Vec<Assignment>> = BTreeMap::new();
        let mut kill: BTreeMap<NodeId, Vec<AttemptId>> = BTreeMap::new();
        for e in self.engine.take_effects() {
            match e {
                Effect::Dispatch {
                    node,
                    assignment: a,
                } => {
                    let _span = tracing::debug_span!("dispatch", job = a.job.0, task = a.task, attempt = a.attempt.0, node = %node).entered();
                    tracing::debug!("dispatch");
                    assign
                        .entry(node)
                        .or_default()
                        .push(convert::assignment(&a));
                }
                Effect::Kill { node, attempt } => kill.entry(node).or_default().push(attempt),
            }
        }
        for (node, attempts) in kill {
            if let Some(s) = self.sessions.get(&node) {
                after.push(send_after(s.tx.clone(), StreamMessage::Kill { attempts }));
            }
        }
        for (node, attempts) in assign {
            if let Some(s) = self.sessions.get(&node) {
                after.push(send_after(s.tx.clone(), StreamMessage::Assign { attempts }));
            }
        }
        let mut changes = self.engine.take_changes();
        changes
            .node_keys
            .extend(self.key_changes.drain(..).map(|r| (r.node.clone(), r)));
        changes.user_tokens.extend(self.token_changes.drain(..));
        changes.audit.append(&mut self.audit);
        for r in changes.runs.values() {
            if r.spec.is_some() && r.finished_at.is_none() {
                tracing::info!(run = %r.id, flow = %r.name, trigger = %r.trigger, "flow run started");
            }
            if r.finished_at.is_some() {
                tracing::info!(run = %r.id, flow = %r.name, state = %r.state, reason = ?r.reason, "flow run finished");
            }
        }
        let first_new_job = std::mem::replace(&mut self.events_next_job, changes.next_job_id);
        if self.events.receiver_count() > 0 && !changes.is_empty() {
            let engine = &self.engine;
            let names = |n: &NodeId| engine.node_name(n).map(str::to_string);
            let cx = zenith_protocol::api::EventContext {
                time: self.clock.now(),
                first_new_job,
                node_name: &names,
            };
            let batch = Arc::new(zenith_protocol::api::events_of(&changes, &cx));
            let tx = self.events.clone();
            after.push(Box::new(move |r: Result<(), &CommitError>| {
                if r.is_ok() {
                    let _ = tx.send(batch);
                }
            }));
        }
        if changes.is_empty() && after.is_empty() {
            return Ok(());
        }
        if changes.is_empty()
            && self
                .shared
                .in_flight
                .load(std::sync::atomic::Ordering::Acquire)
                == 0
        {
            // Nothing to write and every earlier batch committed with its actions done: the
            // replies (heartbeats, mostly) can go now without a trip through the writer.
            for a in after {
                a(Ok(()));
            }
            self.metrics.batches_unwritten.inc();
            return Ok(());
        }
        self.shared
            .in_flight
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.writer
            .send(WriterMsg::Commit {
                gen: self.gen,
                changes: Box::new(changes),
                after,
            })
            .await
            .map_err(|_| ())
    }
}

/// For commands whose only answer is success.
fn done(o: Outcome) -> Option<()> {
    matches!(o, Outcome::Done).then_some(())
}

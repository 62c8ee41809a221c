//! The metric families' names and help texts, registered in groups; the order of the groups
//! is the order of the exposition text.

use super::Metrics;
use prometheus_client::registry::Registry;

impl Metrics {
    /// Jobs and attempts: totals exported from the engine's counters.
    pub(super) fn register_work(&self, r: &mut Registry) {
        r.register(
            "jobs_submitted",
            "Jobs accepted",
            self.jobs_submitted.clone(),
        );
        r.register(
            "jobs_finished",
            "Jobs that reached a final state, by state",
            self.jobs_finished.clone(),
        );
        r.register(
            "attempts_started",
            "Attempts dispatched to nodes",
            self.attempts_started.clone(),
        );
        r.register(
            "attempts_ended",
            "Attempts that ended, by outcome",
            self.attempts_ended.clone(),
        );
        r.register(
            "retries",
            "Retries scheduled after a failed attempt",
            self.retries.clone(),
        );
        r.register(
            "node_loss_requeues",
            "Tasks requeued because their node was lost",
            self.requeues.clone(),
        );
        r.register(
            "backlog_started",
            "Attempts started by an agent from its backlog (assigned before a slot freed)",
            self.backlog_started.clone(),
        );
        r.register(
            "stale_reports",
            "Agent reports refused by fencing",
            self.stale_reports.clone(),
        );
    }

    /// Flow runs, schedules, artifacts and applied flows.
    pub(super) fn register_flows(&self, r: &mut Registry) {
        r.register(
            "flow_runs_started",
            "Flow runs started",
            self.runs_started.clone(),
        );
        r.register(
            "flow_runs_finished",
            "Flow runs that reached a final state, by state",
            self.runs_finished.clone(),
        );
        r.register(
            "flow_schedule_fires",
            "Cron fires of applied flows, by result (started, skipped, failed)",
            self.schedule_fires.clone(),
        );
        r.register(
            "flow_deadlines_exceeded",
            "Flow runs failed by their deadline",
            self.run_deadlines.clone(),
        );
        r.register(
            "http_connections",
            "Open HTTP connections",
            self.http_connections.clone(),
        );
        r.register(
            "http_connections_refused",
            "HTTP connections closed at accept: their client address held its cap",
            self.http_connections_refused.clone(),
        );
        r.register(
            "tls_reloads",
            "Reloads of the server's TLS certificate (SIGHUP or file change), by result",
            self.tls_reloads.clone(),
        );
        r.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out",
            self.tls_handshake_failures.clone(),
        );
        r.register(
            "nodes_enrolled",
            "Nodes given a credential of their own with the join token",
            self.nodes_enrolled.clone(),
        );
        r.register(
            "nodes_revoked",
            "Node credentials revoked (zenith node revoke)",
            self.nodes_revoked.clone(),
        );
        r.register(
            "api_tokens_created",
            "People's API tokens created (zenith token create)",
            self.tokens_created.clone(),
        );
        r.register(
            "api_tokens_revoked",
            "People's API tokens revoked (zenith token revoke)",
            self.tokens_revoked.clone(),
        );
        r.register(
            "audit_records",
            "Requests recorded in the audit log (state-changing or refused)",
            self.audit_records.clone(),
        );
        r.register(
            "audit_dropped",
            "Audit records dropped: the control loop's inbox was full or the store refused writes too long",
            self.audit_dropped.clone(),
        );
        r.register(
            "agent_requests_refused",
            "Agent requests refused: bad or revoked credential, or not the node's own attempt",
            self.agent_refused.clone(),
        );
        r.register(
            "nodes_cordoned",
            "Ready nodes cordoned or draining: they take no new work",
            self.nodes_cordoned.clone(),
        );
        r.register(
            "node_actions",
            "Nodes cordoned, drained, opened again or removed by an operator",
            self.node_actions.clone(),
        );
        r.register(
            "evictions",
            "Attempts stopped and requeued elsewhere because their node's drain deadline passed or its agent stopped",
            self.evictions.clone(),
        );
        r.register(
            "preemptions",
            "Attempts stopped and requeued to make room for a higher-priority job (preemptible queues)",
            self.preemptions.clone(),
        );
        r.register(
            "gangs_started",
            "Gang jobs placed on all their nodes at once (each try of a gang counts once)",
            self.gangs_started.clone(),
        );
        r.register(
            "tasks_requeued",
            "Ended tasks queued again by hand (zenith job requeue)",
            self.tasks_requeued.clone(),
        );
        r.register(
            "jobs_deleted",
            "Ended jobs deleted by hand with their attempts and logs (zenith job delete)",
            self.jobs_deleted.clone(),
        );
        r.register(
            "reservations",
            "Nodes held for a job that did not fit, so that smaller later jobs cannot overtake it (EASY backfill)",
            self.reservations.clone(),
        );
        r.register(
            "node_leaves",
            "Agents that stopped (SIGTERM) and told the server: their nodes are left",
            self.node_leaves.clone(),
        );
        r.register(
            "quota_deferrals",
            "Times a scheduling pass passed over a job because its namespace was at a quota",
            self.quota_deferrals.clone(),
        );
        r.register(
            "oidc_key_fetches",
            "Fetches of the OIDC provider's key set, by result (ok, failed)",
            self.oidc_key_fetches.clone(),
        );
        r.register(
            "share_parties",
            "Fair-share parties kept: namespaces and the users in them",
            self.share_parties.clone(),
        );
        r.register(
            "idempotency_keys_evicted",
            "Idempotency keys dropped before their TTL to make room for newer ones",
            self.idempotency_keys_evicted.clone(),
        );
        r.register(
            "flow_retry_budget_exhausted",
            "Retries refused because the run's retryBudget was spent",
            self.retry_budget_exhausted.clone(),
        );
        r.register(
            "flow_runs_live",
            "Flow runs not yet finished",
            self.runs_live.clone(),
        );
        r.register(
            "artifact_bytes_stored",
            "Bytes of flow artifacts stored",
            self.artifact_bytes.clone(),
        );
        r.register(
            "flows_applied",
            "Applied flow definitions",
            self.flows_applied.clone(),
        );
    }

    /// Levels of the cluster, set from the engine at each scrape.
    pub(super) fn register_levels(&self, r: &mut Registry) {
        r.register("jobs", "Live jobs by queue and state", self.jobs.clone());
        r.register("nodes", "Nodes by state", self.nodes.clone());
        r.register(
            "running_attempts",
            "Attempts running now",
            self.running_attempts.clone(),
        );
        r.register(
            "backlogged_attempts",
            "Of the running attempts, those assigned to a node's backlog and not started yet",
            self.backlogged_attempts.clone(),
        );
        r.register(
            "cpus_capacity",
            "CPU cores of ready nodes",
            self.cpus_total.clone(),
        );
        r.register(
            "cpus_free",
            "Unreserved CPU cores of ready nodes",
            self.cpus_free.clone(),
        );
        r.register(
            "memory_capacity_bytes",
            "Memory of ready nodes",
            self.memory_total.clone(),
        );
        r.register(
            "memory_free_bytes",
            "Unreserved memory of ready nodes",
            self.memory_free.clone(),
        );
    }

    /// Latencies and sizes of the pipeline from submission to commit.
    pub(super) fn register_timings(&self, r: &mut Registry) {
        r.register(
            "submit_to_dispatch_seconds",
            "From submission to the first dispatch of a task",
            self.queue_wait.clone(),
        );
        r.register(
            "attempt_run_seconds",
            "From dispatch to the end of an attempt",
            self.run_time.clone(),
        );
        r.register(
            "control_pass_seconds",
            "One control-loop batch: apply and scheduling pass",
            self.pass_time.clone(),
        );
        r.register(
            "store_commit_seconds",
            "One group commit of the store",
            self.commit_time.clone(),
        );
        r.register(
            "store_batch_records",
            "Records written per group commit",
            self.batch_size.clone(),
        );
    }

    /// The server itself: its HTTP front, the store's health, leadership (HA) and the
    /// control loop's unwritten batches.
    pub(super) fn register_server(&self, r: &mut Registry) {
        r.register(
            "api_clients_tracked",
            "Client addresses with a rate-limit bucket",
            self.api_clients.clone(),
        );
        r.register(
            "store_degraded",
            "1 while the store refuses writes (new work is refused)",
            self.store_degraded.clone(),
        );
        r.register(
            "api_requests",
            "HTTP requests by route, method and status",
            self.api_requests.clone(),
        );
        r.register(
            "api_request_seconds",
            "HTTP request latency by route",
            self.api_latency.clone(),
        );
        r.register(
            "leader",
            "1 while this server holds the leader lease (PostgreSQL store; always 1 embedded)",
            self.leader.clone(),
        );
        r.register(
            "lease_epoch",
            "Leader lease epoch this server holds or last saw",
            self.lease_epoch.clone(),
        );
        r.register(
            "leader_terms",
            "Times this server took the leader lease",
            self.leader_terms.clone(),
        );
        r.register(
            "leader_losses",
            "Times this server lost the leader lease while running",
            self.leader_losses.clone(),
        );
        r.register(
            "forwarded_requests",
            "API requests this standby forwarded to the leader",
            self.forwarded.clone(),
        );
        r.register(
            "control_batches_unwritten",
            "Control-loop batches with nothing to write, answered without a store round trip",
            self.batches_unwritten.clone(),
        );
    }
}

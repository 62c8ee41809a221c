CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE jobs (
    id BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    queue TEXT NOT NULL,
    priority BIGINT NOT NULL,
    state TEXT NOT NULL,
    spec TEXT NOT NULL,
    task_count BIGINT NOT NULL,
    queued BIGINT NOT NULL, running BIGINT NOT NULL, succeeded BIGINT NOT NULL,
    failed BIGINT NOT NULL, cancelled BIGINT NOT NULL,
    cancel_requested BIGINT NOT NULL,
    reason TEXT,
    created_at BIGINT NOT NULL,
    finished_at BIGINT,
    run_id BIGINT,
    run_step BIGINT,
    run_instance BIGINT
);
CREATE INDEX jobs_state ON jobs (state, id);
CREATE INDEX jobs_queue ON jobs (queue, id);
CREATE INDEX jobs_live ON jobs (id) WHERE finished_at IS NULL;
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX jobs_run ON jobs (run_id) WHERE run_id IS NOT NULL;
CREATE TABLE tasks (
    job_id BIGINT NOT NULL,
    idx BIGINT NOT NULL,
    state TEXT NOT NULL,
    failures BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    attempt_id BIGINT,
    ready_at BIGINT,
    reason TEXT,
    PRIMARY KEY (job_id, idx)
);
CREATE TABLE attempts (
    id BIGINT PRIMARY KEY,
    job_id BIGINT NOT NULL,
    idx BIGINT NOT NULL,
    node TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    outcome TEXT
);
CREATE INDEX attempts_task ON attempts (job_id, idx, id);
CREATE INDEX attempts_open ON attempts (id) WHERE finished_at IS NULL;
CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    resources TEXT NOT NULL,
    labels TEXT NOT NULL,
    state TEXT NOT NULL,
    registered_at BIGINT NOT NULL,
    last_seen BIGINT NOT NULL
);
CREATE TABLE idempotency (
    key TEXT PRIMARY KEY,
    job_ids TEXT NOT NULL,
    fingerprint BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE TABLE flow_runs (
    id BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    params TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    retries_used BIGINT NOT NULL,
    trigger TEXT NOT NULL,
    cancel_requested BIGINT NOT NULL,
    deadline_at BIGINT,
    created_at BIGINT NOT NULL,
    finished_at BIGINT,
    expires_at BIGINT
);
CREATE INDEX flow_runs_live ON flow_runs (id) WHERE finished_at IS NULL;
CREATE INDEX flow_runs_finished ON flow_runs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX flow_runs_expiry ON flow_runs (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX flow_runs_name ON flow_runs (name, id);
CREATE TABLE flow_steps (
    run_id BIGINT NOT NULL,
    step BIGINT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    blocked BIGINT NOT NULL,
    instances BIGINT NOT NULL,
    PRIMARY KEY (run_id, step)
);
CREATE TABLE flow_instances (
    run_id BIGINT NOT NULL,
    step BIGINT NOT NULL,
    instance BIGINT NOT NULL,
    state TEXT NOT NULL,
    job_id BIGINT,
    item TEXT,
    outputs TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    reason TEXT,
    PRIMARY KEY (run_id, step, instance)
);
CREATE TABLE flow_defs (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    next_fire BIGINT
);
-- The database's clock in milliseconds: every lease decision uses it, never a server's clock.
CREATE FUNCTION zenith_now_ms() RETURNS BIGINT AS
    $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT $$ LANGUAGE sql VOLATILE;
-- The one leader lease. `epoch` grows by one at each takeover; the holder's writes check it.
CREATE TABLE zenith_lease (
    id INT PRIMARY KEY CHECK (id = 1),
    holder TEXT NOT NULL,
    url TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    acquired_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    commits BIGINT NOT NULL
);
INSERT INTO zenith_lease VALUES (1, '', '', 0, 0, 0, 0);
-- Past leaders: one row per epoch, written when the next one takes over.
CREATE TABLE zenith_terms (
    epoch BIGINT PRIMARY KEY,
    holder TEXT NOT NULL,
    url TEXT NOT NULL,
    acquired_at BIGINT NOT NULL,
    ended_at BIGINT NOT NULL,
    commits BIGINT NOT NULL
);
-- Servers sharing this database, for `zenith servers`; rows of servers gone quiet are pruned.
CREATE TABLE zenith_servers (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    version TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    last_seen BIGINT NOT NULL
);

ALTER TABLE jobs ADD COLUMN run_id INTEGER;
ALTER TABLE jobs ADD COLUMN run_step INTEGER;
ALTER TABLE jobs ADD COLUMN run_instance INTEGER;
CREATE INDEX jobs_run ON jobs (run_id) WHERE run_id IS NOT NULL;
CREATE TABLE flow_runs (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    params TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    retries_used INTEGER NOT NULL,
    trigger TEXT NOT NULL,
    cancel_requested INTEGER NOT NULL,
    deadline_at INTEGER,
    created_at INTEGER NOT NULL,
    finished_at INTEGER,
    expires_at INTEGER
);
CREATE INDEX flow_runs_live ON flow_runs (id) WHERE finished_at IS NULL;
CREATE INDEX flow_runs_finished ON flow_runs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX flow_runs_expiry ON flow_runs (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX flow_runs_name ON flow_runs (name, id);
CREATE TABLE flow_steps (
    run_id INTEGER NOT NULL,
    step INTEGER NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    blocked INTEGER NOT NULL,
    instances INTEGER NOT NULL,
    PRIMARY KEY (run_id, step)
) WITHOUT ROWID;
CREATE TABLE flow_instances (
    run_id INTEGER NOT NULL,
    step INTEGER NOT NULL,
    instance INTEGER NOT NULL,
    state TEXT NOT NULL,
    job_id INTEGER,
    item TEXT,
    outputs TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    reason TEXT,
    PRIMARY KEY (run_id, step, instance)
) WITHOUT ROWID;
CREATE TABLE flow_defs (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    next_fire INTEGER
);

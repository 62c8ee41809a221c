CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    queue TEXT NOT NULL,
    priority INTEGER NOT NULL,
    state TEXT NOT NULL,
    spec TEXT NOT NULL,
    task_count INTEGER NOT NULL,
    queued INTEGER NOT NULL, running INTEGER NOT NULL, succeeded INTEGER NOT NULL,
    failed INTEGER NOT NULL, cancelled INTEGER NOT NULL,
    cancel_requested INTEGER NOT NULL,
    reason TEXT,
    created_at INTEGER NOT NULL,
    finished_at INTEGER
);
CREATE INDEX jobs_state ON jobs (state, id);
CREATE INDEX jobs_live ON jobs (id) WHERE finished_at IS NULL;
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE TABLE tasks (
    job_id INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    state TEXT NOT NULL,
    failures INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    attempt_id INTEGER,
    ready_at INTEGER,
    reason TEXT,
    PRIMARY KEY (job_id, idx)
) WITHOUT ROWID;
CREATE TABLE attempts (
    id INTEGER PRIMARY KEY,
    job_id INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    node TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    finished_at INTEGER,
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
    registered_at INTEGER NOT NULL,
    last_seen INTEGER NOT NULL
);

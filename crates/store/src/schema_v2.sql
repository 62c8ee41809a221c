CREATE TABLE idempotency (
    key TEXT PRIMARY KEY,
    job_ids TEXT NOT NULL,
    fingerprint INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);

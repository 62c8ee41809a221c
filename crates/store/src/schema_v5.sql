-- Tenancy: the namespace of every job (listings filter on it), and the audit log.
ALTER TABLE jobs ADD COLUMN namespace TEXT NOT NULL DEFAULT 'default';
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    user TEXT NOT NULL,
    role TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    peer TEXT NOT NULL,
    status INTEGER NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX audit_at ON audit (at);

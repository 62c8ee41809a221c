-- Tenancy: the namespace of every flow run (listings filter on it).
ALTER TABLE flow_runs ADD COLUMN namespace TEXT NOT NULL DEFAULT 'default';
CREATE INDEX flow_runs_namespace ON flow_runs (namespace, id);

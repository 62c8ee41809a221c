-- Node lifecycle: cordoned (no new work) since, and a drain's deadline.
ALTER TABLE nodes ADD COLUMN cordoned_at INTEGER;
ALTER TABLE nodes ADD COLUMN drain_deadline INTEGER;

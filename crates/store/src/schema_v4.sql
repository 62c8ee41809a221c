-- Each of these cost every job an index insert and a delete on the writer's path (10-20% of
-- a commit). Restore now finds live jobs through jobs_state (state queued or running: the
-- same rows as finished_at IS NULL) and open attempts through their running tasks.
DROP INDEX jobs_live;
DROP INDEX attempts_open;

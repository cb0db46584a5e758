-- 0003 rollout recovery, PostgreSQL flavour (the SQLite flavour is 0003_rollout_recovery.sqlite.sql).
-- What a new process needs to resume or revert a rollout whose process died: the target
-- and change being applied (spec), the actuator's baseline snapshot taken before the
-- first step (baseline), and who runs it (flow_run_id, owner = host:pid) so the next run
-- can tell a live rollout from an orphaned one.

ALTER TABLE rollouts ADD COLUMN spec JSONB NOT NULL DEFAULT '{}';
ALTER TABLE rollouts ADD COLUMN baseline JSONB NOT NULL DEFAULT '{}';
ALTER TABLE rollouts ADD COLUMN flow_run_id TEXT;
ALTER TABLE rollouts ADD COLUMN owner TEXT NOT NULL DEFAULT '';

-- 0007: the newest step recorded with status error, as SQLite's 0010_run_error_seq: the
-- error trigger of record_step stays due until a checkpoint covers that step.

ALTER TABLE runs ADD COLUMN error_seq BIGINT NOT NULL DEFAULT 0;

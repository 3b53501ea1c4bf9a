-- 0010: the newest step recorded with status error, so the error trigger of record_step
-- stays due until a checkpoint covers that step (0: none; older runs start at 0).

ALTER TABLE runs ADD COLUMN error_seq INTEGER NOT NULL DEFAULT 0;

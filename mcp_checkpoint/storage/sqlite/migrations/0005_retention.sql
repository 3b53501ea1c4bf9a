-- 0005: retention (runs prune). A run remembers the prefix of its ledger that was pruned
-- (the hash of its last step anchors the chain of the steps left), pruned checkpoints
-- leave a tombstone so that provenance pointing at them says "pruned", and checkpoints
-- can be found by id alone.

ALTER TABLE runs ADD COLUMN pruned_seq INTEGER NOT NULL DEFAULT 0;

ALTER TABLE runs ADD COLUMN pruned_hash TEXT;

ALTER TABLE runs ADD COLUMN pruned_tokens INTEGER NOT NULL DEFAULT 0;

ALTER TABLE runs ADD COLUMN pruned_checkpoints INTEGER NOT NULL DEFAULT 0;

CREATE INDEX checkpoints_by_id ON checkpoints (tenant, checkpoint_id);

CREATE TABLE pruned_checkpoints (
    tenant        TEXT    NOT NULL,
    checkpoint_id TEXT    NOT NULL,
    run_id        TEXT    NOT NULL,
    number        INTEGER NOT NULL,
    through_seq   INTEGER NOT NULL,
    pruned_at     TEXT    NOT NULL,
    PRIMARY KEY (tenant, checkpoint_id)
);

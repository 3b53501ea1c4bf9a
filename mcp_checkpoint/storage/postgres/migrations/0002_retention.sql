-- 0002: retention (runs prune), as SQLite's 0005_retention. A run remembers the prefix of
-- its ledger that was pruned (the hash of its last step anchors the chain of the steps
-- left), pruned checkpoints leave a tombstone so that provenance pointing at them says
-- "pruned", and checkpoints can be found by id alone.

ALTER TABLE runs
    ADD COLUMN pruned_seq         BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN pruned_hash        TEXT,
    ADD COLUMN pruned_tokens      BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN pruned_checkpoints BIGINT NOT NULL DEFAULT 0;

CREATE INDEX checkpoints_by_id ON checkpoints (tenant, checkpoint_id);

CREATE TABLE pruned_checkpoints (
    tenant        TEXT COLLATE "C" NOT NULL,
    checkpoint_id TEXT COLLATE "C" NOT NULL,
    run_id        TEXT COLLATE "C" NOT NULL,
    number        BIGINT NOT NULL,
    through_seq   BIGINT NOT NULL,
    pruned_at     TEXT   NOT NULL,
    PRIMARY KEY (tenant, checkpoint_id)
);

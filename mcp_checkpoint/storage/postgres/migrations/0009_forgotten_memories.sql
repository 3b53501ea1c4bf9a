-- 0009: forget_memory leaves a tombstone, as SQLite's 0012: the memories and batches that
-- name a forgotten memory keep its id, and the tombstone says it was forgotten, and when.

CREATE TABLE forgotten_memories (
    tenant       TEXT COLLATE "C" NOT NULL,
    memory_id    TEXT COLLATE "C" NOT NULL,
    forgotten_at TEXT NOT NULL,
    PRIMARY KEY (tenant, memory_id)
);

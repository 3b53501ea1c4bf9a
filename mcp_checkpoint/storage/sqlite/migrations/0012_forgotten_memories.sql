-- 0012: forget_memory leaves a tombstone. A forgotten memory's row goes, but the memories
-- and batches that name it keep its id; the tombstone lets the web view and the CLI say
-- that the id was forgotten (and when) instead of that it points at nothing.

CREATE TABLE forgotten_memories (
    tenant       TEXT NOT NULL,
    memory_id    TEXT NOT NULL,
    forgotten_at TEXT NOT NULL,
    PRIMARY KEY (tenant, memory_id)
);

-- 0001: runs, their step ledgers and checkpoints; memory proposals; memories with FTS5.
-- Shipped migrations never change: fix forward with 0002_*.sql, 0003_*.sql, ...
-- Datetimes are ISO 8601 text with their offset (they round-trip exactly, and the ledger
-- hash covers them); *_us columns hold the same instant in epoch microseconds for ordering.
-- JSON columns hold JSON text.

CREATE TABLE runs (
    tenant               TEXT    NOT NULL,
    run_id               TEXT    NOT NULL,
    objective            TEXT    NOT NULL,
    acceptance_criteria  TEXT    NOT NULL,
    constraints          TEXT    NOT NULL,
    pinned               TEXT    NOT NULL,
    status               TEXT    NOT NULL,
    budget_tokens        INTEGER NOT NULL,
    created_at           TEXT    NOT NULL,
    updated_at           TEXT    NOT NULL,
    updated_us           INTEGER NOT NULL,
    head_seq             INTEGER NOT NULL,
    step_count           INTEGER NOT NULL,
    head_hash            TEXT    NOT NULL,
    head_tokens          INTEGER NOT NULL,
    checkpoint_count     INTEGER NOT NULL,
    latest_checkpoint_id TEXT,
    covered_seq          INTEGER NOT NULL,
    covered_tokens       INTEGER NOT NULL,
    version              INTEGER NOT NULL,
    PRIMARY KEY (tenant, run_id)
);

CREATE INDEX runs_by_update ON runs (tenant, updated_us DESC, run_id DESC);

CREATE INDEX runs_by_status_update ON runs (tenant, status, updated_us DESC, run_id DESC);

CREATE TABLE steps (
    tenant          TEXT    NOT NULL,
    run_id          TEXT    NOT NULL,
    seq             INTEGER NOT NULL,
    episode         INTEGER NOT NULL,
    tool            TEXT    NOT NULL,
    input           TEXT    NOT NULL,
    output          TEXT    NOT NULL,
    reasoning       TEXT,
    status          TEXT    NOT NULL,
    idempotency_key TEXT,
    tokens          INTEGER NOT NULL,
    cum_tokens      INTEGER NOT NULL,
    created_at      TEXT    NOT NULL,
    prev_hash       TEXT    NOT NULL,
    hash            TEXT    NOT NULL,
    request_hash    TEXT    NOT NULL,
    ack             TEXT    NOT NULL,
    PRIMARY KEY (tenant, run_id, seq),
    FOREIGN KEY (tenant, run_id) REFERENCES runs (tenant, run_id)
);

CREATE UNIQUE INDEX steps_by_idempotency_key ON steps (tenant, run_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE checkpoints (
    tenant        TEXT    NOT NULL,
    run_id        TEXT    NOT NULL,
    checkpoint_id TEXT    NOT NULL,
    number        INTEGER NOT NULL,
    parent_id     TEXT,
    through_seq   INTEGER NOT NULL,
    head_seq      INTEGER NOT NULL,
    content       TEXT    NOT NULL,
    source        TEXT    NOT NULL,
    tokens        INTEGER NOT NULL,
    created_at    TEXT    NOT NULL,
    PRIMARY KEY (tenant, run_id, checkpoint_id),
    UNIQUE (tenant, run_id, number),
    FOREIGN KEY (tenant, run_id) REFERENCES runs (tenant, run_id)
);

CREATE TABLE proposals (
    tenant       TEXT NOT NULL,
    batch_id     TEXT NOT NULL,
    run_id       TEXT,
    status       TEXT NOT NULL,
    items        TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    committed_at TEXT,
    accepted     TEXT NOT NULL,
    rejected     TEXT NOT NULL,
    memory_ids   TEXT NOT NULL,
    PRIMARY KEY (tenant, batch_id)
);

-- An integer rowid of its own, so the FTS5 index can use memories as external content.
CREATE TABLE memories (
    id            INTEGER PRIMARY KEY,
    tenant        TEXT    NOT NULL,
    memory_id     TEXT    NOT NULL,
    content       TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    scope         TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    confidence    REAL    NOT NULL,
    source_refs   TEXT    NOT NULL,
    batch_id      TEXT,
    run_id        TEXT,
    superseded_by TEXT,
    created_at    TEXT    NOT NULL,
    updated_at    TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    UNIQUE (tenant, memory_id)
);

CREATE VIRTUAL TABLE memories_fts USING fts5(
    content,
    content = 'memories',
    content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2'
);

-- The triggers keep the index in the transaction that changes the memory.
CREATE TRIGGER memories_fts_insert AFTER INSERT ON memories BEGIN
    INSERT INTO memories_fts (rowid, content) VALUES (new.id, new.content);
END;

CREATE TRIGGER memories_fts_delete AFTER DELETE ON memories BEGIN
    INSERT INTO memories_fts (memories_fts, rowid, content) VALUES ('delete', old.id, old.content);
END;

CREATE TRIGGER memories_fts_update AFTER UPDATE OF content ON memories BEGIN
    INSERT INTO memories_fts (memories_fts, rowid, content) VALUES ('delete', old.id, old.content);
    INSERT INTO memories_fts (rowid, content) VALUES (new.id, new.content);
END;

-- 0001: runs, their step ledgers and checkpoints; memory proposals; memories with
-- full-text search; memory vectors. Shipped migrations never change: fix forward with
-- 0002_*.sql, 0003_*.sql, ...
-- As in the SQLite store, datetimes are ISO 8601 text with their offset (they round-trip
-- exactly, and the ledger hash covers them); *_us columns hold the same instant in epoch
-- microseconds for ordering. JSON columns hold JSON text, kept byte for byte.
-- Ids compare bytewise (COLLATE "C"), so listings order as on every other backend.

-- English stemming (as SQLite's porter tokenizer) but no stopword list: the query side
-- drops stopwords itself (core.lexical), and a query made only of stopwords must still
-- find the memories that contain them.
CREATE TEXT SEARCH DICTIONARY mcpck_english_stem (TEMPLATE = snowball, LANGUAGE = english);

CREATE TEXT SEARCH CONFIGURATION mcpck_english (COPY = english);

ALTER TEXT SEARCH CONFIGURATION mcpck_english
    ALTER MAPPING FOR asciiword, asciihword, hword_asciipart, word, hword, hword_part
    WITH mcpck_english_stem;

CREATE TABLE runs (
    tenant               TEXT COLLATE "C" NOT NULL,
    run_id               TEXT COLLATE "C" NOT NULL,
    objective            TEXT    NOT NULL,
    acceptance_criteria  TEXT    NOT NULL,
    constraints          TEXT    NOT NULL,
    pinned               TEXT    NOT NULL,
    status               TEXT    NOT NULL,
    budget_tokens        BIGINT  NOT NULL,
    created_at           TEXT    NOT NULL,
    updated_at           TEXT    NOT NULL,
    updated_us           BIGINT  NOT NULL,
    head_seq             BIGINT  NOT NULL,
    step_count           BIGINT  NOT NULL,
    head_hash            TEXT    NOT NULL,
    head_tokens          BIGINT  NOT NULL,
    checkpoint_count     BIGINT  NOT NULL,
    latest_checkpoint_id TEXT COLLATE "C",
    covered_seq          BIGINT  NOT NULL,
    covered_tokens       BIGINT  NOT NULL,
    version              BIGINT  NOT NULL,
    PRIMARY KEY (tenant, run_id)
);

CREATE INDEX runs_by_update ON runs (tenant, updated_us DESC, run_id DESC);

CREATE INDEX runs_by_status_update ON runs (tenant, status, updated_us DESC, run_id DESC);

CREATE TABLE steps (
    tenant          TEXT COLLATE "C" NOT NULL,
    run_id          TEXT COLLATE "C" NOT NULL,
    seq             BIGINT  NOT NULL,
    episode         BIGINT  NOT NULL,
    tool            TEXT    NOT NULL,
    input           TEXT    NOT NULL,
    output          TEXT    NOT NULL,
    reasoning       TEXT,
    status          TEXT    NOT NULL,
    idempotency_key TEXT COLLATE "C",
    tokens          BIGINT  NOT NULL,
    cum_tokens      BIGINT  NOT NULL,
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
    tenant        TEXT COLLATE "C" NOT NULL,
    run_id        TEXT COLLATE "C" NOT NULL,
    checkpoint_id TEXT COLLATE "C" NOT NULL,
    number        BIGINT  NOT NULL,
    parent_id     TEXT COLLATE "C",
    through_seq   BIGINT  NOT NULL,
    head_seq      BIGINT  NOT NULL,
    content       TEXT    NOT NULL,
    source        TEXT    NOT NULL,
    tokens        BIGINT  NOT NULL,
    created_at    TEXT    NOT NULL,
    PRIMARY KEY (tenant, run_id, checkpoint_id),
    UNIQUE (tenant, run_id, number),
    FOREIGN KEY (tenant, run_id) REFERENCES runs (tenant, run_id)
);

CREATE TABLE proposals (
    tenant       TEXT COLLATE "C" NOT NULL,
    batch_id     TEXT COLLATE "C" NOT NULL,
    run_id       TEXT COLLATE "C",
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

-- tsv and doc_len follow content in the statement that writes it (generated columns).
CREATE TABLE memories (
    tenant        TEXT COLLATE "C" NOT NULL,
    memory_id     TEXT COLLATE "C" NOT NULL,
    content       TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    scope         TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    confidence    DOUBLE PRECISION NOT NULL,
    source_refs   TEXT    NOT NULL,
    batch_id      TEXT COLLATE "C",
    run_id        TEXT COLLATE "C",
    superseded_by TEXT COLLATE "C",
    created_at    TEXT    NOT NULL,
    updated_at    TEXT    NOT NULL,
    version       BIGINT  NOT NULL,
    tsv           TSVECTOR GENERATED ALWAYS AS
                      (to_tsvector('mcpck_english'::regconfig, content)) STORED,
    doc_len       INTEGER GENERATED ALWAYS AS
                      (length(to_tsvector('mcpck_english'::regconfig, content))) STORED,
    PRIMARY KEY (tenant, memory_id)
);

CREATE INDEX memories_fts ON memories USING gin (tsv);

-- Lexical search counts words among the memories it searches (a tenant's active memories,
-- maybe of one scope and kind).
CREATE INDEX memories_search ON memories (tenant, status, scope, kind);

-- Memory vectors for exact search with numpy (PostgresVectorIndex). One embedding space
-- (model_id, dim) for the whole table: the index checks it under an advisory lock in the
-- transaction that writes, so the rule holds across processes.
-- vector: dim little-endian float32 values, as given (the reader normalizes).
CREATE TABLE vectors (
    tenant    TEXT COLLATE "C" NOT NULL,
    memory_id TEXT COLLATE "C" NOT NULL,
    model_id  TEXT    NOT NULL,
    dim       INTEGER NOT NULL CHECK (dim > 0),
    scope     TEXT    NOT NULL,
    kind      TEXT    NOT NULL,
    vector    BYTEA   NOT NULL CHECK (octet_length(vector) = 4 * dim),
    PRIMARY KEY (tenant, memory_id)
);

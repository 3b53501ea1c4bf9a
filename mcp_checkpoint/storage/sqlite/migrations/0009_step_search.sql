-- 0009: the step ledger is searchable (search_steps). An FTS5 table of its own content
-- (the steps table has no stable integer key to serve as external content): each step's
-- tool, reasoning, input and output as one text, with the key of its step. A trigger
-- indexes every new step in the transaction that appends it; deleting a run or pruning
-- steps removes their rows explicitly (SqliteStore), and searches join the steps table,
-- so a step that is gone is never found. Batches are listed newest first (list_proposals).

CREATE VIRTUAL TABLE steps_fts USING fts5(
    body,
    tenant UNINDEXED,
    run_id UNINDEXED,
    seq UNINDEXED,
    tokenize = 'porter unicode61 remove_diacritics 2'
);

INSERT INTO steps_fts (body, tenant, run_id, seq)
SELECT tool || ' ' || coalesce(reasoning, '') || ' ' || input || ' ' || output,
       tenant, run_id, seq
FROM steps;

CREATE TRIGGER steps_fts_insert AFTER INSERT ON steps BEGIN
    INSERT INTO steps_fts (body, tenant, run_id, seq)
    VALUES (new.tool || ' ' || coalesce(new.reasoning, '') || ' ' || new.input || ' '
            || new.output, new.tenant, new.run_id, new.seq);
END;

CREATE INDEX proposals_by_created ON proposals (tenant, created_at DESC, batch_id DESC);

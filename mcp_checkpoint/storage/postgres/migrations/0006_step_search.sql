-- 0006: the step ledger is searchable (search_steps), as SQLite's 0009: each step's tool,
-- reasoning, input and output as one tsvector, kept by the row that holds the step (so a
-- deleted or pruned step takes its entry along), with a GIN index; the text is cut at
-- 200,000 characters, well under the 1 MB a tsvector may hold. Batches are listed newest
-- first (list_proposals).

ALTER TABLE steps ADD COLUMN tsv TSVECTOR GENERATED ALWAYS AS (
    to_tsvector('mcpck_english'::regconfig,
                left(tool || ' ' || coalesce(reasoning, '') || ' ' || input || ' ' || output,
                     200000))
) STORED;

CREATE INDEX steps_fts ON steps USING gin (tsv);

CREATE INDEX proposals_by_created ON proposals (tenant, created_at DESC, batch_id DESC);

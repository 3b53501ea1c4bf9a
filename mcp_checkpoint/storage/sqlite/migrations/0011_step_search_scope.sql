-- 0011: step search narrows in the index. steps_fts gains a second indexed column,
-- scope, holding one token per exact filter of search_steps: the tenant ('n' and the hex
-- of its UTF-8 bytes), the run ('r', tenant hex, 'x', run id hex), the tool ('t', hex)
-- and the status ('s', hex). A search ANDs the tokens of its filters with its words, so
-- FTS5 intersects posting lists instead of reading the content of every match, and the
-- newest matches of one run are found without looking at the rest of the ledger;
-- deleting or pruning a run finds its rows by its token instead of scanning every row.
-- bm25 gives the scope column no weight. The index is rebuilt from the steps, oldest
-- first (the rowid order is the order in which steps were stored).

DROP TRIGGER steps_fts_insert;
DROP TABLE steps_fts;

CREATE VIRTUAL TABLE steps_fts USING fts5(
    body,
    scope,
    tenant UNINDEXED,
    run_id UNINDEXED,
    seq UNINDEXED,
    tokenize = 'porter unicode61 remove_diacritics 2'
);

INSERT INTO steps_fts (body, scope, tenant, run_id, seq)
SELECT tool || ' ' || coalesce(reasoning, '') || ' ' || input || ' ' || output,
       'n' || hex(tenant) || ' r' || hex(tenant) || 'x' || hex(run_id)
       || ' t' || hex(tool) || ' s' || hex(status),
       tenant, run_id, seq
FROM steps ORDER BY rowid;

CREATE TRIGGER steps_fts_insert AFTER INSERT ON steps BEGIN
    INSERT INTO steps_fts (body, scope, tenant, run_id, seq)
    VALUES (new.tool || ' ' || coalesce(new.reasoning, '') || ' ' || new.input || ' '
            || new.output,
            'n' || hex(new.tenant) || ' r' || hex(new.tenant) || 'x' || hex(new.run_id)
            || ' t' || hex(new.tool) || ' s' || hex(new.status),
            new.tenant, new.run_id, new.seq);
END;

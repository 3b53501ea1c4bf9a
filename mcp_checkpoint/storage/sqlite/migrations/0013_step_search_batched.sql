-- 0013: steps are added to the search index (steps_fts) in batches instead of by a
-- trigger inside each step's own transaction, which wrote five more pages and cost a
-- fifth of a record_step. step_search_progress holds the highest steps rowid up to which
-- every step has its search row. The store indexes the steps above it in one statement:
-- before a search reads (so a search always sees every recorded step), in each
-- checkpoint's transaction, when the backlog reaches a batch, and after an import. Deleting
-- steps lowers it to the highest rowid left, because SQLite gives a new row the highest
-- rowid plus one and a rowid freed at the top is given again.

DROP TRIGGER steps_fts_insert;

CREATE TABLE step_search_progress (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    through_rowid INTEGER NOT NULL
);

INSERT INTO step_search_progress (id, through_rowid)
SELECT 1, coalesce(max(rowid), 0) FROM steps;

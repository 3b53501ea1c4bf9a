-- 0003: the memories' full-text index stems English words (Porter), so "deployed" finds
-- "deploy". Measured on the LoCoMo dev split: turn recall@5 0.506 -> 0.538 (with the
-- query's stopwords dropped). The index is external content: drop it, recreate it with
-- the new tokenizer, and rebuild it from the memories table. The triggers of 0001 keep
-- writing to it by name.
DROP TABLE memories_fts;

CREATE VIRTUAL TABLE memories_fts USING fts5(
    content,
    content = 'memories',
    content_rowid = 'id',
    tokenize = 'porter unicode61 remove_diacritics 2'
);

INSERT INTO memories_fts (memories_fts) VALUES ('rebuild');

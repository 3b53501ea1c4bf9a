-- 0006: a counter that every change to the memories table moves forward, in the same
-- transaction, whichever process or tool made it. Lexical search keeps per-word results
-- of the searched memories for as long as the counter has not moved (SqliteStore).
CREATE TABLE memories_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);

INSERT INTO memories_version (id, version) VALUES (1, 0);

CREATE TRIGGER memories_version_insert AFTER INSERT ON memories BEGIN
    UPDATE memories_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER memories_version_update AFTER UPDATE ON memories BEGIN
    UPDATE memories_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER memories_version_delete AFTER DELETE ON memories BEGIN
    UPDATE memories_version SET version = version + 1 WHERE id = 1;
END;

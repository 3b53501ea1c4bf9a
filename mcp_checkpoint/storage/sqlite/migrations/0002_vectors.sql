-- 0002: memory vectors in the store's own file, for exact search with numpy.
-- One embedding space (model_id, dim) for the whole table: the index code checks it inside
-- the BEGIN IMMEDIATE transaction that writes, so the rule holds across processes.
-- vector: dim little-endian float32 values, as given (the reader normalizes).

CREATE TABLE vectors (
    tenant    TEXT    NOT NULL,
    memory_id TEXT    NOT NULL,
    model_id  TEXT    NOT NULL,
    dim       INTEGER NOT NULL CHECK (dim > 0),
    scope     TEXT    NOT NULL,
    kind      TEXT    NOT NULL,
    vector    BLOB    NOT NULL CHECK (length(vector) = 4 * dim),
    PRIMARY KEY (tenant, memory_id)
);

-- A counter per tenant that moves with every change of its vectors (never reset, so a
-- cached matrix can never match a later state by accident). Readers compare it with the
-- one their cached matrix was built at, once PRAGMA data_version says another connection
-- committed something. (No INSERT OR IGNORE in the triggers: inside an UPSERT's DO UPDATE
-- the outer statement's conflict handling would replace the IGNORE.)
CREATE TABLE vector_generations (
    tenant     TEXT    PRIMARY KEY,
    generation INTEGER NOT NULL
);

CREATE TRIGGER vectors_generation_insert AFTER INSERT ON vectors BEGIN
    INSERT INTO vector_generations (tenant, generation) SELECT new.tenant, 0
        WHERE NOT EXISTS (SELECT 1 FROM vector_generations WHERE tenant = new.tenant);
    UPDATE vector_generations SET generation = generation + 1 WHERE tenant = new.tenant;
END;

CREATE TRIGGER vectors_generation_update AFTER UPDATE ON vectors BEGIN
    INSERT INTO vector_generations (tenant, generation) SELECT new.tenant, 0
        WHERE NOT EXISTS (SELECT 1 FROM vector_generations WHERE tenant = new.tenant);
    UPDATE vector_generations SET generation = generation + 1
        WHERE tenant IN (old.tenant, new.tenant);
END;

CREATE TRIGGER vectors_generation_delete AFTER DELETE ON vectors BEGIN
    UPDATE vector_generations SET generation = generation + 1 WHERE tenant = old.tenant;
END;

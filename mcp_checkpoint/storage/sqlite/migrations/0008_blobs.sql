-- 0008: content-addressed blobs (workspace snapshot files and their manifests), per tenant.
-- A blob's name is the SHA-256 of its bytes; checkpoints refer to manifests by name in their
-- content (snapshot.manifest), so a blob nothing refers to can be collected.

CREATE TABLE blobs (
    tenant     TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    size       INTEGER NOT NULL,
    data       BLOB    NOT NULL,
    created_at TEXT    NOT NULL
);

CREATE UNIQUE INDEX blobs_by_name ON blobs (tenant, name);

-- 0005: content-addressed blobs (workspace snapshot files and their manifests), per tenant.
-- A blob's name is the SHA-256 of its bytes; checkpoints refer to manifests by name in their
-- content (snapshot.manifest), so a blob nothing refers to can be collected.

CREATE TABLE blobs (
    tenant     TEXT COLLATE "C" NOT NULL,
    name       TEXT COLLATE "C" NOT NULL,
    size       BIGINT NOT NULL,
    data       BYTEA  NOT NULL,
    created_at TEXT   NOT NULL,
    PRIMARY KEY (tenant, name)
);

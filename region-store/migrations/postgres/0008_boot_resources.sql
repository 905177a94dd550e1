-- Boot resources (kernel, initrd, squashfs) by name, architecture and kind;
-- the content lives in the blob store under its sha256.
CREATE TABLE boot_resources (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    architecture TEXT NOT NULL,
    kind TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    created_ms BIGINT NOT NULL,
    UNIQUE (name, architecture, kind)
);

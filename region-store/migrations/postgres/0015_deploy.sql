-- Deploy and release. An OS image is a boot resource of kind `rootfs`; what
-- the installer needs beyond its bytes (format, unpacked size) is kept by
-- content address. Each deploy or release run of a machine is a row of
-- `deployments`: what the operator asked for (user data sealed with the
-- master key), how far it got, and how it ended.
CREATE TABLE os_images (
    sha256 TEXT PRIMARY KEY,
    format TEXT NOT NULL,
    uncompressed_bytes BIGINT NOT NULL
);

CREATE TABLE deployments (
    id TEXT PRIMARY KEY,
    machine_id TEXT NOT NULL,
    purpose TEXT NOT NULL,
    image_name TEXT NOT NULL,
    image_sha256 TEXT NOT NULL,
    layout TEXT NOT NULL,
    disk_serial TEXT NOT NULL,
    hostname TEXT NOT NULL,
    address TEXT,
    user_data_sealed TEXT NOT NULL,
    ssh_keys_json TEXT NOT NULL,
    erase TEXT NOT NULL,
    state TEXT NOT NULL,
    step TEXT NOT NULL,
    progress_pct BIGINT NOT NULL,
    host_key TEXT NOT NULL,
    failure TEXT NOT NULL,
    started_ms BIGINT NOT NULL,
    finished_ms BIGINT
);
CREATE INDEX deployments_by_machine ON deployments (machine_id, started_ms);

-- How far each rack's cache holds each boot resource (its last report).
CREATE TABLE rack_resources (
    rack_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    cached BIGINT NOT NULL,
    ready BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (rack_id, sha256)
);

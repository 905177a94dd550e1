-- Per-rack identity (issue: link security). Portable schema, see store/mod.rs.
CREATE TABLE enrolment_tokens (
    id TEXT PRIMARY KEY,
    secret_sha256 TEXT NOT NULL,
    rack_name TEXT,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    used_ms BIGINT,
    rack_id TEXT
);

CREATE TABLE rack_identities (
    rack_id TEXT PRIMARY KEY,
    -- The link secret, sealed with the region's master key (never in clear).
    link_secret_sealed TEXT NOT NULL,
    key_epoch BIGINT NOT NULL,
    -- The rack's broker password, sealed with the master key (broker auth, Mosquitto files).
    broker_password_sealed TEXT NOT NULL,
    enrolled_ms BIGINT NOT NULL,
    key_rotated_ms BIGINT NOT NULL,
    revoked_ms BIGINT,
    -- Highest sequence accepted from the rack (replay check), and the last sent to it.
    up_sequence BIGINT NOT NULL,
    down_sequence BIGINT NOT NULL
);

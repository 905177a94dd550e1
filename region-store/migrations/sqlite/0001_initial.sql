-- Portable schema shared with migrations/postgres: ids, addresses and JSON as
-- text, times as integer milliseconds, booleans as integers (see store/mod.rs).
CREATE TABLE config_state (
    id BIGINT PRIMARY KEY,
    generation BIGINT NOT NULL
);
INSERT INTO config_state (id, generation) VALUES (1, 1);

CREATE TABLE racks (
    id TEXT PRIMARY KEY,
    hostname TEXT NOT NULL,
    software_version TEXT NOT NULL,
    protocol_version BIGINT NOT NULL,
    online BIGINT NOT NULL,
    first_seen_ms BIGINT NOT NULL,
    last_seen_ms BIGINT NOT NULL,
    applied_generation BIGINT,
    last_apply_error TEXT,
    interfaces_json TEXT NOT NULL,
    services_json TEXT NOT NULL,
    health_json TEXT NOT NULL
);

CREATE TABLE subnets (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    cidr TEXT NOT NULL UNIQUE,
    gateway TEXT,
    dns_servers_json TEXT NOT NULL,
    domain TEXT,
    lease_time_secs BIGINT NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);

CREATE TABLE ip_ranges (
    id TEXT PRIMARY KEY,
    subnet_id TEXT NOT NULL REFERENCES subnets (id),
    start_addr TEXT NOT NULL,
    end_addr TEXT NOT NULL,
    purpose TEXT NOT NULL,
    comment TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX ip_ranges_by_subnet ON ip_ranges (subnet_id);

CREATE TABLE machines (
    id TEXT PRIMARY KEY,
    mac TEXT NOT NULL UNIQUE,
    hostname TEXT NOT NULL UNIQUE,
    architecture TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    last_used_ms BIGINT
);

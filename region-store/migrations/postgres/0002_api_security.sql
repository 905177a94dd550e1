-- API security: key roles, expiry and revocation, and the audit log.
-- Portable schema shared with migrations/postgres (see store/mod.rs).

-- Keys made before roles existed could do everything: they stay admin.
ALTER TABLE api_keys ADD COLUMN role TEXT NOT NULL DEFAULT 'admin';
ALTER TABLE api_keys ADD COLUMN expires_ms BIGINT;
ALTER TABLE api_keys ADD COLUMN revoked_ms BIGINT;

-- One row per mutating API request, whatever its outcome. Never a request
-- body: bodies may hold secrets. key_id is the key whose secret was presented
-- (null when none matched); path is the object, status the result.
CREATE TABLE audit_log (
    id TEXT PRIMARY KEY,
    time_ms BIGINT NOT NULL,
    key_id TEXT,
    source_ip TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    status BIGINT NOT NULL,
    action TEXT NOT NULL
);
CREATE INDEX audit_log_by_time ON audit_log (time_ms);

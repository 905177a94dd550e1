-- The machine lifecycle: each machine's status (with the one before it, for
-- abort), the deadline of a timed status (commissioning), the token its
-- ephemeral system presents (sealed with the master key, and hashed so that
-- results can be checked inside a transaction), and the hardware summary
-- that searches use. Full commissioning results live in their own table.
ALTER TABLE machines ADD COLUMN status TEXT NOT NULL DEFAULT 'new';
ALTER TABLE machines ADD COLUMN status_before TEXT;
ALTER TABLE machines ADD COLUMN status_changed_ms BIGINT;
ALTER TABLE machines ADD COLUMN status_deadline_ms BIGINT;
ALTER TABLE machines ADD COLUMN token_sealed TEXT;
ALTER TABLE machines ADD COLUMN token_sha256 TEXT;
ALTER TABLE machines ADD COLUMN cpu_count BIGINT;
ALTER TABLE machines ADD COLUMN memory_mib BIGINT;
ALTER TABLE machines ADD COLUMN storage_bytes BIGINT;
ALTER TABLE machines ADD COLUMN cpu_model TEXT;
ALTER TABLE machines ADD COLUMN firmware TEXT;
CREATE INDEX machines_by_status ON machines (status, cpu_count, memory_mib);

CREATE TABLE commissioning_results (
    id TEXT PRIMARY KEY,
    machine_id TEXT NOT NULL,
    received_ms BIGINT NOT NULL,
    rack_id TEXT NOT NULL,
    purpose TEXT NOT NULL,
    inventory_json TEXT NOT NULL,
    outputs_json TEXT NOT NULL
);
CREATE INDEX commissioning_results_by_machine ON commissioning_results (machine_id, received_ms);

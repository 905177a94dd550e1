-- Power control: each machine's BMC (password sealed with the master key),
-- the last observed power state, and the machine's event log.
ALTER TABLE machines ADD COLUMN power_json TEXT;
ALTER TABLE machines ADD COLUMN power_password_sealed TEXT;
ALTER TABLE machines ADD COLUMN power_state TEXT;
ALTER TABLE machines ADD COLUMN power_checked_ms BIGINT;
ALTER TABLE machines ADD COLUMN power_error TEXT;

CREATE TABLE machine_events (
    id TEXT PRIMARY KEY,
    machine_id TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX machine_events_by_machine ON machine_events (machine_id, at_ms);
ALTER TABLE racks ADD COLUMN bmc_networks_json TEXT NOT NULL DEFAULT '[]';

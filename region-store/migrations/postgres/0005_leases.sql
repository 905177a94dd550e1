-- DHCP leases as racks report them, and how far each rack's event queue has been applied.
CREATE TABLE leases (
    subnet_id TEXT NOT NULL,
    address TEXT NOT NULL,
    mac TEXT NOT NULL,
    state TEXT NOT NULL,
    expires_ms BIGINT NOT NULL,
    rack_id TEXT NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (subnet_id, address)
);
CREATE INDEX leases_by_mac ON leases (mac);
ALTER TABLE racks ADD COLUMN events_applied BIGINT NOT NULL DEFAULT 0;

-- Which racks serve DHCP on a subnet (JSON list of rack ids; empty: every
-- enrolled rack), and fixed addresses for known machines.
ALTER TABLE subnets ADD COLUMN dhcp_racks_json TEXT NOT NULL DEFAULT '[]';

CREATE TABLE reservations (
    id TEXT PRIMARY KEY,
    subnet_id TEXT NOT NULL REFERENCES subnets (id),
    mac TEXT NOT NULL,
    address TEXT NOT NULL,
    hostname TEXT,
    created_ms BIGINT NOT NULL,
    UNIQUE (subnet_id, mac),
    UNIQUE (subnet_id, address)
);

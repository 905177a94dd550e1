-- The operator's boot table: per subnet, the boot settings as JSON
-- (ipxe_script | ipxe_url, loaders by firmware slot) and whether its racks
-- answer IPv6 Router Solicitations; per machine, settings that override
-- its subnet's.
ALTER TABLE subnets ADD COLUMN boot_json TEXT NOT NULL DEFAULT '{}';
ALTER TABLE subnets ADD COLUMN router_advertisements TEXT NOT NULL DEFAULT 'not_a_router';
CREATE TABLE machine_boot (
    machine_id TEXT PRIMARY KEY REFERENCES machines (id) ON DELETE CASCADE,
    settings_json TEXT NOT NULL,
    updated_ms BIGINT NOT NULL
);

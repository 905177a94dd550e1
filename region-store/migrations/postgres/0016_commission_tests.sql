-- What the machine's current commissioning run was asked to do besides the
-- inventory: the hardware tests (comma-separated names) and how long to
-- listen for LLDP. Set with the Commission transition; read when its
-- intent is pushed and when its results are judged.
ALTER TABLE machines ADD COLUMN commission_tests TEXT NOT NULL DEFAULT '';
ALTER TABLE machines ADD COLUMN commission_lldp_secs BIGINT NOT NULL DEFAULT 0;

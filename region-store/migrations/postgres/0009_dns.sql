-- DNS domains the region manages, and their operator-made records. Machine
-- records (forward and reverse) are derived from leases and reservations.
CREATE TABLE dns_domains (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    ttl BIGINT NOT NULL,
    created_ms BIGINT NOT NULL
);

CREATE TABLE dns_records (
    id TEXT PRIMARY KEY,
    domain_id TEXT NOT NULL REFERENCES dns_domains (id),
    name TEXT NOT NULL,
    rtype TEXT NOT NULL,
    data TEXT NOT NULL,
    ttl BIGINT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX dns_records_by_domain ON dns_records (domain_id);

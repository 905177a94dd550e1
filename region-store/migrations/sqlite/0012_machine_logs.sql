-- Machine log lines from the racks' syslog relays. `rack_line_id` is the
-- rack's queue position: unique per rack, so a batch delivered twice is
-- stored once. `machine_id` is resolved from `mac` at insert; lines from
-- unknown senders keep only their MAC (or none). Times are ms since the
-- epoch; `logged_ms` is the message's own time stamp when it had one.
CREATE TABLE machine_logs (
    id INTEGER PRIMARY KEY,
    rack_id TEXT NOT NULL,
    rack_line_id BIGINT NOT NULL,
    machine_id TEXT REFERENCES machines (id) ON DELETE CASCADE,
    mac TEXT,
    source TEXT NOT NULL,
    received_ms BIGINT NOT NULL,
    logged_ms BIGINT,
    facility INTEGER,
    severity INTEGER,
    hostname TEXT,
    app_name TEXT,
    text TEXT NOT NULL,
    malformed INTEGER NOT NULL,
    truncated INTEGER NOT NULL,
    UNIQUE (rack_id, rack_line_id)
);
CREATE INDEX machine_logs_machine ON machine_logs (machine_id, id);
CREATE INDEX machine_logs_received ON machine_logs (received_ms);

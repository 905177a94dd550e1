-- The sequence of the Online status of each rack's current connection: the
-- will sealed just before it is the only offline status accepted, once
-- (protocol v2 presence; see edgemetal_protocol::PROTOCOL_VERSION).
ALTER TABLE racks ADD COLUMN presence_sequence BIGINT;

-- Each rack's own configuration: the generation it was last sent (it is in
-- sync when it applied that one) and the digest of its content, so that a
-- change elsewhere republishes nothing to it.
ALTER TABLE racks ADD COLUMN target_generation BIGINT;
ALTER TABLE racks ADD COLUMN target_digest TEXT;

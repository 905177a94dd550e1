-- Link key rotation: the next secret while a rotation is under way, and the previous one
-- (only a last will sealed before the switch is still accepted under it). Both sealed.
ALTER TABLE rack_identities ADD COLUMN next_secret_sealed TEXT;
ALTER TABLE rack_identities ADD COLUMN previous_secret_sealed TEXT;

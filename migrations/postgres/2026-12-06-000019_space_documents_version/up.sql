-- A second counter per space, bumped in the same transaction as every write of a
-- DocumentReference of the space: a server that read the types of a space's live
-- documents at one value knows they are unchanged while it holds, and a search
-- statement checks it itself before it skips its per-row type probes (R-ACC-6).
ALTER TABLE space_access ADD COLUMN documents_version BIGINT NOT NULL DEFAULT 0;

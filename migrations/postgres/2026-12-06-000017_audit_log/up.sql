-- The trace's log on PostgreSQL (src/store/audit_log.rs, src/audit/applier.rs):
-- a group of requests' events, made durable by one row before their answers,
-- moved into the chains and the searchable trace by the applier, which deletes
-- the row in the same transaction. Rows live for milliseconds; one left behind is an instance's that
-- stopped before applying it, which any instance applies.
CREATE TABLE audit_log (
    pos BIGSERIAL PRIMARY KEY,
    -- The instance that logged it (a UUID per start).
    instance TEXT NOT NULL,
    logged_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    -- `LoggedRequest::encode_group`.
    frame BYTEA NOT NULL
);
-- Kept in the row, compressed, rather than cut into TOAST rows: a group is
-- one heap row and one index entry.
ALTER TABLE audit_log ALTER COLUMN frame SET STORAGE MAIN;
DO $$
BEGIN
    ALTER TABLE audit_log ALTER COLUMN frame SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    NULL;
END $$;
-- Every row is deleted within milliseconds: vacuumed often, the table stays a
-- few pages that inserts reuse.
ALTER TABLE audit_log SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000,
    autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 2000);

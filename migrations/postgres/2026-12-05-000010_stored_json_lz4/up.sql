-- Stored JSON is compressed with lz4 instead of pglz, when this PostgreSQL has it
-- (built with lz4, as Debian's is): the same size, several times faster both ways.
-- Every AuditEvent (about 2.4 KB, over the 2 KB from which PostgreSQL compresses a
-- row) is compressed as it is appended and read back once by the trace's indexer;
-- the scale search at 100,000 documents served about 10 % more (BENCHMARKS.md).
-- Rows written before keep pglz: each value says how it was compressed.
DO $$
BEGIN
    ALTER TABLE resources ALTER COLUMN content SET COMPRESSION lz4;
    ALTER TABLE resource_versions ALTER COLUMN content SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    NULL;
END $$;

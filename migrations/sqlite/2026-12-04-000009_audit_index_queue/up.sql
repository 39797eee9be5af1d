-- The trace's search index, built off the answer's path (SPEC §8, R-AUD-2): an
-- AuditEvent is durable, chained, before the answer, as its `resources` row and
-- `audit_chain` link (rows at the end of their tables); its search-index rows, which
-- touch pages all over the database, are written later, many events at a time, by
-- the indexer (src/audit/indexer.rs). This queue names the events not indexed yet;
-- whoever searches the trace first waits for it to empty (read-your-writes).
CREATE TABLE audit_unindexed (
    resource_pk INTEGER PRIMARY KEY REFERENCES resources (pk) ON DELETE CASCADE
);

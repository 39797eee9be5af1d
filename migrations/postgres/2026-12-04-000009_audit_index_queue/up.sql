-- The trace's search index, built off the answer's path: see the SQLite migration
-- of the same name.
CREATE TABLE audit_unindexed (
    resource_pk BIGINT PRIMARY KEY REFERENCES resources (pk) ON DELETE CASCADE
);

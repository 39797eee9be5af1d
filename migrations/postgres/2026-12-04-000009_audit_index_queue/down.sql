DROP TABLE audit_unindexed;

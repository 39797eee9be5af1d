CREATE TABLE audit_chain_by_key (
    resource_pk BIGINT PRIMARY KEY REFERENCES resources (pk),
    chain_key TEXT NOT NULL,
    chain_seq BIGINT NOT NULL,
    request_id TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    UNIQUE (chain_key, chain_seq)
);
INSERT INTO audit_chain_by_key (resource_pk, chain_key, chain_seq, request_id, prev_hash, hash)
SELECT resource_pk, chain_key, chain_seq, request_id, prev_hash, hash FROM audit_chain ORDER BY resource_pk;
DROP TRIGGER audit_chain_no_update;
DROP TRIGGER audit_chain_no_delete;
DROP TABLE audit_chain;
ALTER TABLE audit_chain_by_key RENAME TO audit_chain;
CREATE INDEX audit_chain_request ON audit_chain (request_id);
CREATE TRIGGER audit_chain_no_update BEFORE UPDATE ON audit_chain
BEGIN SELECT RAISE(ABORT, 'AuditEvents are immutable'); END;
CREATE TRIGGER audit_chain_no_delete BEFORE DELETE ON audit_chain
BEGIN SELECT RAISE(ABORT, 'AuditEvents are immutable'); END;

-- The trace (SPEC §8): see the SQLite migration of the same name for the model.
CREATE TABLE audit_chain (
    resource_pk BIGINT PRIMARY KEY REFERENCES resources (pk),
    chain_key TEXT NOT NULL,
    chain_seq BIGINT NOT NULL,
    request_id TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    UNIQUE (chain_key, chain_seq)
);
CREATE INDEX audit_chain_request ON audit_chain (request_id);

CREATE TABLE audit_chain_head (
    chain_key TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);

CREATE FUNCTION audit_immutable() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'AuditEvents are immutable';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_event_immutable BEFORE UPDATE OR DELETE ON resources
FOR EACH ROW WHEN (OLD.res_type = 'AuditEvent') EXECUTE FUNCTION audit_immutable();
CREATE TRIGGER audit_chain_immutable BEFORE UPDATE OR DELETE ON audit_chain
FOR EACH ROW EXECUTE FUNCTION audit_immutable();

CREATE TABLE first_access (
    patient_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    accessed_at TEXT NOT NULL,
    PRIMARY KEY (patient_id, subject)
);

CREATE TABLE notification_outbox (
    id BIGSERIAL PRIMARY KEY,
    communication_id TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    delivered_at TEXT,
    last_error TEXT
);
CREATE INDEX notification_outbox_due ON notification_outbox (delivered_at, next_attempt_at);

-- The trace (SPEC §8). AuditEvents are rows of `resources` (so they are read and
-- searched like any resource) with a link in a hash chain per patient: each link
-- hashes the previous link's hash and the event's stored JSON, so an event changed,
-- removed or inserted outside the server breaks the chain (R-AUD-3).
CREATE TABLE audit_chain (
    resource_pk BIGINT PRIMARY KEY REFERENCES resources (pk),
    -- The patient whose trace holds the event; '' for events concerning no patient.
    chain_key TEXT NOT NULL,
    chain_seq BIGINT NOT NULL,
    -- The X-Request-Id of the request traced: finds every event of a request.
    request_id TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    UNIQUE (chain_key, chain_seq)
);
CREATE INDEX audit_chain_request ON audit_chain (request_id);

-- The last link of each chain: removing the newest events is detected too.
CREATE TABLE audit_chain_head (
    chain_key TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);

-- No path changes or deletes an AuditEvent or its link (R-AUD-3).
CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON resources
WHEN OLD.res_type = 'AuditEvent'
BEGIN SELECT RAISE(ABORT, 'AuditEvents are immutable'); END;
CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON resources
WHEN OLD.res_type = 'AuditEvent'
BEGIN SELECT RAISE(ABORT, 'AuditEvents are immutable'); END;
CREATE TRIGGER audit_chain_no_update BEFORE UPDATE ON audit_chain
BEGIN SELECT RAISE(ABORT, 'AuditEvents are immutable'); END;
CREATE TRIGGER audit_chain_no_delete BEFORE DELETE ON audit_chain
BEGIN SELECT RAISE(ABORT, 'AuditEvents are immutable'); END;

-- Which professional has already accessed which space: the first access is notified
-- to the patient (R-AUD-4).
CREATE TABLE first_access (
    patient_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    accessed_at TEXT NOT NULL,
    PRIMARY KEY (patient_id, subject)
);

-- Notifications waiting for delivery through the configured channel. Written in the
-- transaction that records their cause; delivered and retried by a background worker.
CREATE TABLE notification_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
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

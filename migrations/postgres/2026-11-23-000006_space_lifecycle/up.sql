-- See the SQLite migration of the same name.
CREATE TABLE space_lifecycle (
    patient_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    notified_at TEXT NOT NULL,
    changed_at TEXT NOT NULL,
    closed_at TEXT,
    purged_at TEXT,
    welcomed_at TEXT
);
CREATE INDEX space_lifecycle_state ON space_lifecycle (state, notified_at);
CREATE INDEX space_lifecycle_closed ON space_lifecycle (state, closed_at);

-- Spaces created before the lifecycle existed are open.
INSERT INTO space_lifecycle (patient_id, state, notified_at, changed_at, welcomed_at)
    SELECT res_id, 'active', last_updated, last_updated, last_updated
    FROM resources WHERE res_type = 'Patient';

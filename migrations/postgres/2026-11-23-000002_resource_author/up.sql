-- Who deposited each resource, as authenticated (not as the resource claims): the
-- author of R-ACC-7 (sees their masked documents) and R-ACC-9 (alone may change
-- them), and the deposit time from which INVISIBLE_PATIENT lapses (R-PAT-1).
CREATE TABLE resource_author (
    resource_pk BIGINT PRIMARY KEY REFERENCES resources (pk) ON DELETE CASCADE,
    actor TEXT NOT NULL,
    subject TEXT NOT NULL,
    organization TEXT,
    created_at TEXT NOT NULL
);

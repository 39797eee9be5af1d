
CREATE TABLE search_token_untyped (
    resource_pk BIGINT NOT NULL REFERENCES resources (pk) ON DELETE CASCADE,
    param TEXT NOT NULL,
    system TEXT,
    code TEXT NOT NULL
);
INSERT INTO search_token_untyped (resource_pk, param, system, code) SELECT resource_pk, param, system, code FROM search_token;
DROP TABLE search_token;
ALTER TABLE search_token_untyped RENAME TO search_token;
CREATE INDEX search_token_lookup ON search_token (param, code, system);
CREATE INDEX search_token_resource ON search_token (resource_pk);

CREATE TABLE search_string_untyped (
    resource_pk BIGINT NOT NULL REFERENCES resources (pk) ON DELETE CASCADE,
    param TEXT NOT NULL,
    normalized TEXT NOT NULL,
    exact TEXT NOT NULL
);
INSERT INTO search_string_untyped (resource_pk, param, normalized, exact) SELECT resource_pk, param, normalized, exact FROM search_string;
DROP TABLE search_string;
ALTER TABLE search_string_untyped RENAME TO search_string;
CREATE INDEX search_string_lookup ON search_string (param, normalized);
CREATE INDEX search_string_resource ON search_string (resource_pk);

CREATE TABLE search_date_untyped (
    resource_pk BIGINT NOT NULL REFERENCES resources (pk) ON DELETE CASCADE,
    param TEXT NOT NULL,
    low TEXT NOT NULL,
    high TEXT NOT NULL
);
INSERT INTO search_date_untyped (resource_pk, param, low, high) SELECT resource_pk, param, low, high FROM search_date;
DROP TABLE search_date;
ALTER TABLE search_date_untyped RENAME TO search_date;
CREATE INDEX search_date_lookup ON search_date (param, low, high);
CREATE INDEX search_date_resource ON search_date (resource_pk, param);

CREATE TABLE search_reference_untyped (
    resource_pk BIGINT NOT NULL REFERENCES resources (pk) ON DELETE CASCADE,
    param TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id TEXT NOT NULL
);
INSERT INTO search_reference_untyped (resource_pk, param, target_type, target_id) SELECT resource_pk, param, target_type, target_id FROM search_reference;
DROP TABLE search_reference;
ALTER TABLE search_reference_untyped RENAME TO search_reference;
CREATE INDEX search_reference_target ON search_reference (target_id, target_type, param);
CREATE INDEX search_reference_resource ON search_reference (resource_pk, param);

CREATE TABLE resource_compartment_untyped (
    resource_pk BIGINT NOT NULL REFERENCES resources (pk) ON DELETE CASCADE,
    patient_id TEXT NOT NULL,
    PRIMARY KEY (patient_id, resource_pk)
);
INSERT INTO resource_compartment_untyped (resource_pk, patient_id) SELECT resource_pk, patient_id FROM resource_compartment;
DROP TABLE resource_compartment;
ALTER TABLE resource_compartment_untyped RENAME TO resource_compartment;
CREATE INDEX resource_compartment_resource ON resource_compartment (resource_pk);

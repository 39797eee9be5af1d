-- Every index row names its resource's type and the lookups lead with it, so that a
-- search of one type never walks the index rows of another: above all the trace's,
-- which grows with every request and would otherwise slow each search of a space.

CREATE TABLE search_token_typed (
    resource_pk BIGINT NOT NULL REFERENCES resources (pk) ON DELETE CASCADE,
    res_type TEXT NOT NULL,
    param TEXT NOT NULL,
    system TEXT,
    code TEXT NOT NULL
);
INSERT INTO search_token_typed (resource_pk, res_type, param, system, code)
    SELECT x.resource_pk, r.res_type, x.param, x.system, x.code FROM search_token x JOIN resources r ON r.pk = x.resource_pk;
DROP TABLE search_token;
ALTER TABLE search_token_typed RENAME TO search_token;
CREATE INDEX search_token_lookup ON search_token (res_type, param, code, system);
CREATE INDEX search_token_resource ON search_token (resource_pk);

CREATE TABLE search_string_typed (
    resource_pk BIGINT NOT NULL REFERENCES resources (pk) ON DELETE CASCADE,
    res_type TEXT NOT NULL,
    param TEXT NOT NULL,
    normalized TEXT NOT NULL,
    exact TEXT NOT NULL
);
INSERT INTO search_string_typed (resource_pk, res_type, param, normalized, exact)
    SELECT x.resource_pk, r.res_type, x.param, x.normalized, x.exact FROM search_string x JOIN resources r ON r.pk = x.resource_pk;
DROP TABLE search_string;
ALTER TABLE search_string_typed RENAME TO search_string;
CREATE INDEX search_string_lookup ON search_string (res_type, param, normalized);
CREATE INDEX search_string_resource ON search_string (resource_pk);

CREATE TABLE search_date_typed (
    resource_pk BIGINT NOT NULL REFERENCES resources (pk) ON DELETE CASCADE,
    res_type TEXT NOT NULL,
    param TEXT NOT NULL,
    low TEXT NOT NULL,
    high TEXT NOT NULL
);
INSERT INTO search_date_typed (resource_pk, res_type, param, low, high)
    SELECT x.resource_pk, r.res_type, x.param, x.low, x.high FROM search_date x JOIN resources r ON r.pk = x.resource_pk;
DROP TABLE search_date;
ALTER TABLE search_date_typed RENAME TO search_date;
CREATE INDEX search_date_lookup ON search_date (res_type, param, low, high);
CREATE INDEX search_date_resource ON search_date (resource_pk, param);

CREATE TABLE search_reference_typed (
    resource_pk BIGINT NOT NULL REFERENCES resources (pk) ON DELETE CASCADE,
    res_type TEXT NOT NULL,
    param TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id TEXT NOT NULL
);
INSERT INTO search_reference_typed (resource_pk, res_type, param, target_type, target_id)
    SELECT x.resource_pk, r.res_type, x.param, x.target_type, x.target_id FROM search_reference x JOIN resources r ON r.pk = x.resource_pk;
DROP TABLE search_reference;
ALTER TABLE search_reference_typed RENAME TO search_reference;
CREATE INDEX search_reference_target ON search_reference (res_type, param, target_id, target_type);
CREATE INDEX search_reference_resource ON search_reference (resource_pk, param);

CREATE TABLE resource_compartment_typed (
    resource_pk BIGINT NOT NULL REFERENCES resources (pk) ON DELETE CASCADE,
    res_type TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    PRIMARY KEY (patient_id, res_type, resource_pk)
);
INSERT INTO resource_compartment_typed (resource_pk, res_type, patient_id)
    SELECT c.resource_pk, r.res_type, c.patient_id FROM resource_compartment c JOIN resources r ON r.pk = c.resource_pk;
DROP TABLE resource_compartment;
ALTER TABLE resource_compartment_typed RENAME TO resource_compartment;
CREATE INDEX resource_compartment_resource ON resource_compartment (resource_pk);

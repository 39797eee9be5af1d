-- Current version of every resource, and every version ever written.
CREATE TABLE resources (
    pk BIGSERIAL PRIMARY KEY,
    res_type TEXT NOT NULL,
    res_id TEXT NOT NULL,
    version_id BIGINT NOT NULL,
    -- Index format (YYYY-MM-DDTHH:MM:SS.ffffffZ): text order is time order.
    last_updated TEXT NOT NULL,
    deleted BOOLEAN NOT NULL DEFAULT FALSE,
    content TEXT NOT NULL,
    UNIQUE (res_type, res_id)
);
CREATE INDEX resources_type_updated ON resources (res_type, last_updated);

CREATE TABLE resource_versions (
    res_type TEXT NOT NULL,
    res_id TEXT NOT NULL,
    version_id BIGINT NOT NULL,
    last_updated TEXT NOT NULL,
    deleted BOOLEAN NOT NULL,
    -- POST, PUT, PATCH or DELETE: the history Bundle's entry.request.method.
    method TEXT NOT NULL,
    -- Empty for a deletion.
    content TEXT NOT NULL,
    PRIMARY KEY (res_type, res_id, version_id)
);
CREATE INDEX resource_versions_type_updated ON resource_versions (res_type, last_updated);

-- Search index of the current version, rewritten with each version.
CREATE TABLE search_token (
    resource_pk BIGINT NOT NULL REFERENCES resources (pk) ON DELETE CASCADE,
    param TEXT NOT NULL,
    system TEXT,
    code TEXT NOT NULL
);
CREATE INDEX search_token_lookup ON search_token (param, code, system);
CREATE INDEX search_token_resource ON search_token (resource_pk);

CREATE TABLE search_string (
    resource_pk BIGINT NOT NULL REFERENCES resources (pk) ON DELETE CASCADE,
    param TEXT NOT NULL,
    normalized TEXT NOT NULL,
    exact TEXT NOT NULL
);
CREATE INDEX search_string_lookup ON search_string (param, normalized);
CREATE INDEX search_string_resource ON search_string (resource_pk);

CREATE TABLE search_date (
    resource_pk BIGINT NOT NULL REFERENCES resources (pk) ON DELETE CASCADE,
    param TEXT NOT NULL,
    low TEXT NOT NULL,
    high TEXT NOT NULL
);
CREATE INDEX search_date_lookup ON search_date (param, low, high);
CREATE INDEX search_date_resource ON search_date (resource_pk, param);

CREATE TABLE search_reference (
    resource_pk BIGINT NOT NULL REFERENCES resources (pk) ON DELETE CASCADE,
    param TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id TEXT NOT NULL
);
CREATE INDEX search_reference_target ON search_reference (target_id, target_type, param);
CREATE INDEX search_reference_resource ON search_reference (resource_pk, param);

-- Patient compartment: which patient's space each resource belongs to. Every access
-- rule narrows through this one indexed table.
CREATE TABLE resource_compartment (
    resource_pk BIGINT NOT NULL REFERENCES resources (pk) ON DELETE CASCADE,
    patient_id TEXT NOT NULL,
    PRIMARY KEY (patient_id, resource_pk)
);
CREATE INDEX resource_compartment_resource ON resource_compartment (resource_pk);

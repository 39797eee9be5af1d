-- A DocumentReference's one type coding with a system (R-ACC-6 decides it by it),
-- kept on its compartment rows: a search of a space decides the type there, from
-- the compartment's index, instead of two probes of `search_token` per document.
-- NULL for other resources, and for a document with none or several (probed).
ALTER TABLE resource_compartment ADD COLUMN doc_system TEXT;
ALTER TABLE resource_compartment ADD COLUMN doc_code TEXT;
UPDATE resource_compartment c SET doc_system = sole.system, doc_code = sole.code
FROM (
    SELECT t.resource_pk, MIN(t.system) AS system, MIN(t.code) AS code
    FROM search_token t
    WHERE t.res_type = 'DocumentReference' AND t.param = 'type' AND t.system IS NOT NULL
    GROUP BY t.resource_pk
    HAVING COUNT(DISTINCT (t.system, t.code)) = 1
) sole
WHERE c.res_type = 'DocumentReference' AND c.resource_pk = sole.resource_pk;
-- The space's search reads them with the key, from the index alone.
ALTER TABLE resource_compartment DROP CONSTRAINT resource_compartment_pkey;
ALTER TABLE resource_compartment ADD CONSTRAINT resource_compartment_pkey
    PRIMARY KEY (patient_id, res_type, resource_pk) INCLUDE (doc_system, doc_code);

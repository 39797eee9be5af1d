-- A DocumentReference's one type coding with a system (R-ACC-6 decides it by it),
-- kept on its compartment rows: a search of a space decides the type there, from
-- the compartment's index, instead of two probes of `search_token` per document.
-- NULL for other resources, and for a document with none or several (probed).
ALTER TABLE resource_compartment ADD COLUMN doc_system TEXT;
ALTER TABLE resource_compartment ADD COLUMN doc_code TEXT;
UPDATE resource_compartment SET
    doc_system = (SELECT MIN(t.system) FROM search_token t WHERE t.resource_pk = resource_compartment.resource_pk
                  AND t.param = 'type' AND t.system IS NOT NULL),
    doc_code = (SELECT MIN(t.code) FROM search_token t WHERE t.resource_pk = resource_compartment.resource_pk
                AND t.param = 'type' AND t.system IS NOT NULL)
WHERE res_type = 'DocumentReference'
  AND (SELECT COUNT(*) FROM (SELECT DISTINCT t.system, t.code FROM search_token t
       WHERE t.resource_pk = resource_compartment.resource_pk AND t.param = 'type' AND t.system IS NOT NULL)) = 1;
-- The space's search reads them with the key, from this index alone.
CREATE INDEX resource_compartment_typed ON resource_compartment (patient_id, res_type, resource_pk, doc_system, doc_code);

-- An AuditEvent belongs to the space it concerns (its Patient entity), not to the
-- patient who acted (an agent may be another space's holder): the compartment rows of
-- earlier events that name a patient only as their agent are removed. Events
-- themselves are unchanged.
DELETE FROM resource_compartment
WHERE res_type = 'AuditEvent'
  AND NOT EXISTS (
    SELECT 1 FROM resources r,
      json_each(CASE WHEN r.res_type = 'AuditEvent' AND r.content <> '' THEN r.content ELSE '{}' END,
                '$.entity') e
    WHERE r.pk = resource_compartment.resource_pk
      AND json_extract(e.value, '$.what.reference') = 'Patient/' || resource_compartment.patient_id
  );

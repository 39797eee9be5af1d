-- An AuditEvent belongs to the space it concerns (its Patient entity), not to the
-- patient who acted (an agent may be another space's holder): the compartment rows of
-- earlier events that name a patient only as their agent are removed. Events
-- themselves are unchanged.
DELETE FROM resource_compartment c
WHERE c.res_type = 'AuditEvent'
  AND NOT EXISTS (
    SELECT 1 FROM resources r,
      jsonb_array_elements(CASE WHEN r.res_type = 'AuditEvent' AND r.content <> ''
                                THEN COALESCE(r.content::jsonb -> 'entity', '[]'::jsonb)
                                ELSE '[]'::jsonb END) e
    WHERE r.pk = c.resource_pk
      AND e -> 'what' ->> 'reference' = 'Patient/' || c.patient_id
  );

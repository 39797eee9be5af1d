INSERT INTO search_reference (resource_pk, res_type, param, target_type, target_id)
SELECT resource_pk, 'AuditEvent', 'entity', entity_type, entity_id FROM audit_index
WHERE entity_id <> '';
DROP INDEX audit_index_entity;
ALTER TABLE audit_index DROP COLUMN entity_id;
ALTER TABLE audit_index DROP COLUMN entity_type;

-- An event's one other `entity` (the document read, the List searched…) in its own
-- row of the trace's index, beside its space: a read's event then writes no row in
-- `search_reference` (a table and two indexes, three pages a trace commit; most
-- events name exactly one such resource). An event naming several keeps them in
-- `search_reference`, which searches read beside these columns
-- (src/store/audit_index.rs).
ALTER TABLE audit_index ADD COLUMN entity_type TEXT NOT NULL DEFAULT '';
ALTER TABLE audit_index ADD COLUMN entity_id TEXT NOT NULL DEFAULT '';
-- The events indexed so far with exactly one `entity` reference left generic.
UPDATE audit_index SET
    entity_type = (SELECT MIN(s.target_type) FROM search_reference s
                   WHERE s.resource_pk = audit_index.resource_pk AND s.param = 'entity'),
    entity_id = (SELECT MIN(s.target_id) FROM search_reference s
                 WHERE s.resource_pk = audit_index.resource_pk AND s.param = 'entity')
WHERE (SELECT COUNT(*) FROM search_reference s
       WHERE s.resource_pk = audit_index.resource_pk AND s.param = 'entity') = 1;
DELETE FROM search_reference WHERE res_type = 'AuditEvent' AND param = 'entity'
    AND resource_pk IN (SELECT resource_pk FROM audit_index WHERE entity_id <> '');
CREATE INDEX audit_index_entity ON audit_index (entity_id, entity_type);

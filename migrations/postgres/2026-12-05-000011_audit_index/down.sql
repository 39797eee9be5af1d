-- The events' moved rows back in the generic tables.
INSERT INTO resource_compartment (resource_pk, res_type, patient_id)
SELECT resource_pk, 'AuditEvent', space FROM audit_index WHERE space <> '';
INSERT INTO search_reference (resource_pk, res_type, param, target_type, target_id)
SELECT resource_pk, 'AuditEvent', param, 'Patient', space
FROM audit_index, (SELECT 'patient' AS param UNION ALL SELECT 'entity') params WHERE space <> '';
INSERT INTO search_token (resource_pk, res_type, param, system, code)
SELECT resource_pk, 'AuditEvent', 'participant', 'urn:oid:1.2.250.1.71.4.2.1', participant
FROM audit_index WHERE participant <> '';
INSERT INTO search_token (resource_pk, res_type, param, system, code)
SELECT resource_pk, 'AuditEvent', 'concealed', NULL, 'true' FROM audit_index WHERE concealed;
INSERT INTO search_token (resource_pk, res_type, param, system, code)
SELECT resource_pk, 'AuditEvent', 'type', 'http://terminology.hl7.org/CodeSystem/audit-event-type', event_type
FROM audit_index WHERE event_type <> '';
INSERT INTO search_token (resource_pk, res_type, param, system, code)
SELECT resource_pk, 'AuditEvent', 'subtype', 'http://hl7.org/fhir/restful-interaction', interaction
FROM audit_index WHERE interaction <> '';
INSERT INTO search_token (resource_pk, res_type, param, system, code)
SELECT resource_pk, 'AuditEvent', 'outcome', NULL, outcome FROM audit_index WHERE outcome <> '';
INSERT INTO search_date (resource_pk, res_type, param, low, high)
SELECT resource_pk, 'AuditEvent', 'date', recorded, recorded FROM audit_index;
DROP TABLE audit_index;

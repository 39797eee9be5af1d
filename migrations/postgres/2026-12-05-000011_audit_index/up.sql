-- The trace's own index (SPEC §8): one row per indexed AuditEvent holds what every
-- trace reader narrows by, instead of a row in each generic index table. The space
-- it concerns (R-PAT-4: also its `patient` and `entity` Patient references), when
-- it names exactly one; the IdNat_PS of its professional agent (R-ACC-11), when it
-- has exactly one; whether it is a refusal answered "not known" (`concealed`), and
-- whether it is kept from that professional (`withheld`: one of a request's events in
-- a space the answer did not tell them of, beside the one they read); its `recorded`,
-- which is also its `date` and its `lastUpdated`; and the codes of its `type`, its
-- REST `subtype` and its `outcome`. Values that do not
-- fit a column stay in the generic tables, which searches read beside it
-- (src/store/audit_index.rs).
CREATE TABLE audit_index (
    resource_pk BIGINT PRIMARY KEY REFERENCES resources (pk) ON DELETE CASCADE,
    -- '' when none (or several: then in resource_compartment).
    space TEXT NOT NULL,
    recorded TEXT NOT NULL,
    -- '' when none (or several: then in search_token).
    participant TEXT NOT NULL,
    concealed BOOLEAN NOT NULL,
    withheld BOOLEAN NOT NULL,
    -- '' when none (or several: then in search_token).
    event_type TEXT NOT NULL,
    interaction TEXT NOT NULL,
    outcome TEXT NOT NULL
);
CREATE INDEX audit_index_space ON audit_index (space, recorded);
CREATE INDEX audit_index_participant ON audit_index (participant, recorded);

-- The events indexed so far move to it.
INSERT INTO audit_index (resource_pk, space, recorded, participant, concealed, withheld,
    event_type, interaction, outcome)
SELECT r.pk,
    COALESCE((SELECT CASE WHEN COUNT(*) = 1 THEN MIN(c.patient_id) END
              FROM resource_compartment c WHERE c.resource_pk = r.pk), ''),
    r.last_updated,
    COALESCE((SELECT CASE WHEN COUNT(*) = 1 AND MIN(t.system) = 'urn:oid:1.2.250.1.71.4.2.1'
                     THEN MIN(t.code) END
              FROM search_token t WHERE t.resource_pk = r.pk AND t.param = 'participant'), ''),
    EXISTS (SELECT 1 FROM search_token t
            WHERE t.resource_pk = r.pk AND t.param = 'concealed' AND t.code = 'true'),
    FALSE,
    COALESCE((SELECT CASE WHEN COUNT(*) = 1 THEN MIN(t.code) END FROM search_token t
              WHERE t.resource_pk = r.pk AND t.param = 'type'
                AND t.system = 'http://terminology.hl7.org/CodeSystem/audit-event-type'), ''),
    COALESCE((SELECT CASE WHEN COUNT(*) = 1 THEN MIN(t.code) END FROM search_token t
              WHERE t.resource_pk = r.pk AND t.param = 'subtype'
                AND t.system = 'http://hl7.org/fhir/restful-interaction'), ''),
    COALESCE((SELECT CASE WHEN COUNT(*) = 1 THEN MIN(t.code) END FROM search_token t
              WHERE t.resource_pk = r.pk AND t.param = 'outcome' AND t.system IS NULL), '')
FROM resources r
WHERE r.res_type = 'AuditEvent'
  AND NOT EXISTS (SELECT 1 FROM audit_unindexed u WHERE u.resource_pk = r.pk);

DELETE FROM search_date WHERE res_type = 'AuditEvent' AND param = 'date';
DELETE FROM search_token WHERE res_type = 'AuditEvent' AND param = 'concealed';
DELETE FROM search_token WHERE res_type = 'AuditEvent' AND param = 'participant'
  AND resource_pk IN (SELECT resource_pk FROM audit_index WHERE participant <> '');
DELETE FROM search_token WHERE res_type = 'AuditEvent' AND param = 'type'
  AND system = 'http://terminology.hl7.org/CodeSystem/audit-event-type'
  AND resource_pk IN (SELECT resource_pk FROM audit_index WHERE event_type <> '');
DELETE FROM search_token WHERE res_type = 'AuditEvent' AND param = 'subtype'
  AND system = 'http://hl7.org/fhir/restful-interaction'
  AND resource_pk IN (SELECT resource_pk FROM audit_index WHERE interaction <> '');
DELETE FROM search_token WHERE res_type = 'AuditEvent' AND param = 'outcome'
  AND system IS NULL
  AND resource_pk IN (SELECT resource_pk FROM audit_index WHERE outcome <> '');
DELETE FROM search_reference WHERE res_type = 'AuditEvent' AND param IN ('patient', 'entity')
  AND target_type = 'Patient'
  AND EXISTS (SELECT 1 FROM audit_index a
              WHERE a.resource_pk = search_reference.resource_pk AND a.space = search_reference.target_id);
DELETE FROM resource_compartment WHERE res_type = 'AuditEvent'
  AND resource_pk IN (SELECT resource_pk FROM audit_index WHERE space <> '');

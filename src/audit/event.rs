//! The AuditEvent of one interaction for one patient, in IHE BALP shape (R-AUD-1):
//! `type` rest, `subtype` the interaction, `action`, `outcome`, the user agent with
//! `purposeOfUse` (the access mode), the client and the server agents, the patient
//! entity, the resources read or written, the query of a search and the request id.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::{Outcome, Touched, Trace};
use crate::access::{ActorKind, Principal};
use crate::fhir::IDNAT_PS_SYSTEM;

/// The deciding rule of a refusal, machine-readable beside `outcomeDesc`.
pub const RULE_EXTENSION: &str = "https://dmp-fhir-server.fr/fhir/StructureDefinition/audit-rule";
/// Marks a refusal answered "not known" (a resource hidden from the caller): kept
/// in the stored event, never shown.
pub const CONCEALED_EXTENSION: &str =
    "https://dmp-fhir-server.fr/fhir/StructureDefinition/audit-concealed";
/// TRE_R248-ModeAcces, the access modes (`normal`, `bris_de_glace`, `centre_15`).
pub const ACCESS_MODE_SYSTEM: &str = "urn:oid:1.2.250.1.213.1.1.4.248";
const PROFESSION_SYSTEM: &str =
    "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante";
const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const PARTICIPATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
const ROLE_CLASS: &str = "http://terminology.hl7.org/CodeSystem/v3-RoleClass";
const BALP_ENTITY_TYPE: &str = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType";

/// The `action` of an interaction (C/R/U/D/E); searches and Bundles execute.
fn action(trace: &Trace) -> &'static str {
    match trace.interaction {
        "create" => "C",
        "read" | "vread" | "history-instance" | "history-type" => "R",
        "update" | "patch" => "U",
        "delete" => "D",
        "" => match trace.method.as_str() {
            "GET" | "HEAD" => "R",
            "PUT" | "PATCH" => "U",
            "DELETE" => "D",
            _ => "E",
        },
        _ => "E",
    }
}

/// `0` success, `4` minor failure (the request was refused or wrong), `8` serious
/// failure (the server failed).
fn outcome_code(status: u16) -> &'static str {
    match status {
        0..=399 => "0",
        400..=499 => "4",
        _ => "8",
    }
}

fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({ "system": system, "code": code, "display": display })
}

/// The access mode as a CodeableConcept, with the emergency reason as its text.
fn access_mode(principal: &Principal) -> Value {
    let mut mode = json!({
        "coding": [{ "system": ACCESS_MODE_SYSTEM, "code": principal.purpose_of_use.code() }]
    });
    if let Some(reason) = &principal.access_reason {
        mode["text"] = json!(reason);
    }
    mode
}

/// The user agent: who asked, as authenticated.
fn user_agent(trace: &Trace, writes: bool) -> Value {
    let Some(principal) = &trace.principal else {
        return json!({
            "type": { "coding": [coding(PARTICIPATION, "IRCP", "information recipient")] },
            "who": { "display": "unauthenticated caller" },
            "requestor": true
        });
    };
    let mut agent = serde_json::Map::new();
    let kind = match principal.actor {
        ActorKind::Patient => coding(ROLE_CLASS, "PAT", "patient"),
        _ if writes => coding(ROLE_CLASS, "AGNT", "agent"),
        _ => coding(PARTICIPATION, "IRCP", "information recipient"),
    };
    agent.insert("type".into(), json!({ "coding": [kind] }));
    if let Some(role) = role(principal) {
        agent.insert("role".into(), json!([{ "coding": [role] }]));
    }
    agent.insert("who".into(), who(principal));
    if let Some(name) = &principal.name {
        agent.insert("name".into(), json!(name));
    }
    agent.insert("requestor".into(), json!(true));
    agent.insert("purposeOfUse".into(), json!([access_mode(principal)]));
    Value::Object(agent)
}

fn role(principal: &Principal) -> Option<Value> {
    match principal.actor {
        ActorKind::Professional => principal
            .profession
            .as_deref()
            .map(|code| json!({ "system": PROFESSION_SYSTEM, "code": code })),
        ActorKind::Representative => Some(json!({
            "system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
            "code": "GUARD",
            "display": "guardian"
        })),
        _ => None,
    }
}

/// The agent's identity: a professional by IdNat_PS, a patient by their Patient,
/// anyone else by subject within its issuer.
fn who(principal: &Principal) -> Value {
    match &principal.actor {
        ActorKind::Professional => {
            json!({ "identifier": { "system": IDNAT_PS_SYSTEM, "value": principal.subject } })
        }
        ActorKind::Patient if principal.patient.is_some() => {
            json!({ "reference": format!("Patient/{}", principal.patient.as_deref().unwrap_or_default()) })
        }
        _ => json!({ "identifier": { "system": principal.issuer, "value": principal.subject } }),
    }
}

fn client_agent(trace: &Trace) -> Value {
    let client = trace
        .principal
        .as_ref()
        .and_then(|principal| principal.client_id.clone())
        .unwrap_or_else(|| "client".to_owned());
    let mut agent = json!({
        "type": { "coding": [coding(DCM, "110153", "Source Role ID")] },
        "who": { "display": client },
        "requestor": false
    });
    if let Some(address) = &trace.client_address {
        agent["network"] = json!({ "address": address, "type": "2" });
    }
    agent
}

fn server_agent(trace: &Trace) -> Value {
    json!({
        "type": { "coding": [coding(DCM, "110152", "Destination Role ID")] },
        "who": { "display": trace.server },
        "requestor": false
    })
}

fn patient_entity(patient: &str) -> Value {
    json!({
        "what": { "reference": format!("Patient/{patient}") },
        "type": coding(ENTITY_TYPE, "1", "Person"),
        "role": coding(OBJECT_ROLE, "1", "Patient")
    })
}

fn resource_entity(reference: &str) -> Value {
    json!({
        "what": { "reference": reference },
        "type": coding(ENTITY_TYPE, "2", "System Object"),
        "role": coding(OBJECT_ROLE, "4", "Domain Resource")
    })
}

/// `AuditEvent.entity.detail.type` of a query entity naming the type searched.
pub const QUERY_TYPE_DETAIL: &str = "resourceType";

/// Builds the event of `trace` for `patient` (None: the interaction concerned no
/// patient's space, e.g. an unauthenticated call). `id` and `recorded` are given so
/// the stored JSON is final.
pub fn build(
    trace: &Trace,
    outcome: &Outcome,
    touched: &Touched,
    patient: Option<&str>,
    id: &str,
    recorded: &str,
) -> Value {
    let action = action(trace);
    let mut event = serde_json::Map::new();
    event.insert("resourceType".into(), json!("AuditEvent"));
    event.insert("id".into(), json!(id));
    event.insert(
        "meta".into(),
        json!({ "versionId": "1", "lastUpdated": recorded }),
    );
    if let Some(rule) = outcome.rule {
        let mut extensions = vec![json!({ "url": RULE_EXTENSION, "valueString": rule })];
        if outcome.concealed {
            extensions.push(json!({ "url": CONCEALED_EXTENSION, "valueBoolean": true }));
        }
        event.insert("extension".into(), json!(extensions));
    }
    event.insert(
        "type".into(),
        coding(
            "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "rest",
            "Restful Operation",
        ),
    );
    if !trace.interaction.is_empty() {
        let mut subtypes = vec![
            json!({ "system": "http://hl7.org/fhir/restful-interaction", "code": trace.interaction }),
        ];
        // R-MHD-8: the IHE transaction beside the REST interaction.
        if let Some(transaction) = trace.ihe_transaction {
            subtypes.push(json!({
                "system": crate::fhir::mhd::IHE_EVENT_TYPE_SYSTEM,
                "code": transaction.code,
                "display": transaction.display,
            }));
        }
        event.insert("subtype".into(), json!(subtypes));
    }
    event.insert("action".into(), json!(action));
    event.insert("recorded".into(), json!(recorded));
    event.insert("outcome".into(), json!(outcome_code(outcome.status)));
    let description = match (outcome.rule, &outcome.detail) {
        (Some(rule), Some(detail)) => Some(format!("{}: rule {rule}: {detail}", outcome.status)),
        (None, Some(detail)) => Some(format!("{}: {detail}", outcome.status)),
        (Some(rule), None) => Some(format!("{}: rule {rule}", outcome.status)),
        (None, None) if outcome.status >= 400 => Some(outcome.status.to_string()),
        (None, None) => None,
    };
    if let Some(description) = description {
        event.insert("outcomeDesc".into(), json!(description));
    }
    if let Some(principal) = &trace.principal {
        event.insert("purposeOfEvent".into(), json!([access_mode(principal)]));
    }
    let writes = matches!(action, "C" | "U" | "D");
    event.insert(
        "agent".into(),
        json!([
            user_agent(trace, writes),
            client_agent(trace),
            server_agent(trace)
        ]),
    );
    event.insert(
        "source".into(),
        json!({
            "observer": { "display": "dmp-fhir-server" },
            "type": [coding("http://terminology.hl7.org/CodeSystem/security-source-type", "4", "Application Server")]
        }),
    );
    let mut entities = Vec::new();
    if let Some(patient) = patient {
        entities.push(patient_entity(patient));
    }
    // The resources this interaction named or wrote in this patient's space.
    let mut named = Vec::new();
    if let (Some(kind), Some(id)) = (trace.resource_type, &trace.resource_id)
        && kind != "Patient"
    {
        named.push(format!("{kind}/{id}"));
    }
    for write in &touched.writes {
        let in_space = patient.is_none_or(|patient| write.patients.iter().any(|p| p == patient));
        let reference = format!("{}/{}", write.res_type, write.res_id);
        if in_space && write.res_type != "Patient" && !named.contains(&reference) {
            named.push(reference);
        }
    }
    entities.extend(named.iter().map(|reference| resource_entity(reference)));
    if let Some(query) = &trace.query {
        let mut entity = json!({
            "type": coding(ENTITY_TYPE, "2", "System Object"),
            "role": coding(OBJECT_ROLE, "24", "Query"),
            "query": STANDARD.encode(query.as_bytes())
        });
        // The type searched: what the query's ids are ids of.
        if let Some(resource_type) = trace.resource_type {
            entity["detail"] = json!([{ "type": QUERY_TYPE_DETAIL, "valueString": resource_type }]);
        }
        entities.push(entity);
    }
    entities.push(json!({
        "what": { "identifier": { "value": trace.request_id } },
        "type": coding(BALP_ENTITY_TYPE, "XrequestId", "X-Request-Id")
    }));
    event.insert("entity".into(), json!(entities));
    Value::Object(event)
}

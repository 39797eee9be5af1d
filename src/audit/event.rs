//! The AuditEvent of one interaction for one patient, in IHE BALP shape (R-AUD-1):
//! `type` rest, `subtype` the interaction, `action`, `outcome`, the user agent with
//! `purposeOfUse` (the access mode), the client and the server agents, the patient
//! entity, the resources read or written, the query of a search and the request id.
//!
//! The event is written straight to its JSON text from borrowed parts (one event per
//! answered request: a tree of JSON values cost a hundred allocations each).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

use super::{Outcome, Touched, Trace};
use crate::access::{ActorKind, Principal};
use crate::fhir::IDNAT_PS_SYSTEM;
use crate::store::audit_index::EventIndex;

/// The deciding rule of a refusal, machine-readable beside `outcomeDesc`.
pub const RULE_EXTENSION: &str = "https://dmp-fhir-server.fr/fhir/StructureDefinition/audit-rule";
/// Marks an event of a space the caller was not told the request concerned (a
/// resource there answered "not known"), or, in an event of no space, a refusal
/// answered so: kept in the stored event, never shown.
pub const CONCEALED_EXTENSION: &str =
    "https://dmp-fhir-server.fr/fhir/StructureDefinition/audit-concealed";
/// A batch entry refused as "not known" in this event's space: its rule, kept in
/// the stored event and shown to no reader through the API. Its author was told
/// only that the resource is not known, and whoever else reads the event may not
/// see that resource either (hidden from the holder, masked, of a type the matrix
/// keeps from them): the rule would tell what is there, as a single request's
/// refusal tells it only through the entity it names, which a batch has not.
pub const ENTRY_REFUSED_NOT_KNOWN_EXTENSION: &str =
    "https://dmp-fhir-server.fr/fhir/StructureDefinition/audit-entry-refused-not-known";
/// Marks an event of a request refused as "not known": its author reads its
/// description as answered, without the rule. Kept in the stored event, never shown.
pub const ANSWERED_NOT_KNOWN_EXTENSION: &str =
    "https://dmp-fhir-server.fr/fhir/StructureDefinition/audit-answered-not-known";
/// Marks an event its professional agent does not read: kept in the stored event,
/// never shown (see [`build`]).
pub const WITHHELD_EXTENSION: &str =
    "https://dmp-fhir-server.fr/fhir/StructureDefinition/audit-withheld-from-agent";
/// The marks above, which only the server reads.
pub const INTERNAL_MARKS: [&str; 4] = [
    CONCEALED_EXTENSION,
    ANSWERED_NOT_KNOWN_EXTENSION,
    WITHHELD_EXTENSION,
    ENTRY_REFUSED_NOT_KNOWN_EXTENSION,
];
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

#[derive(Serialize)]
struct Coding<'a> {
    system: &'a str,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    display: Option<&'a str>,
}

fn coding<'a>(system: &'a str, code: &'a str, display: &'a str) -> Coding<'a> {
    Coding {
        system,
        code,
        display: Some(display),
    }
}

#[derive(Serialize)]
struct Concept<'a> {
    coding: [Coding<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
}

fn concept(coding: Coding<'_>) -> Concept<'_> {
    Concept {
        coding: [coding],
        text: None,
    }
}

#[derive(Serialize)]
struct Identifier<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<&'a str>,
    value: &'a str,
}

/// A Reference: by literal reference, by identifier or by display only.
#[derive(Serialize, Default)]
struct Reference<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    identifier: Option<Identifier<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    display: Option<&'a str>,
}

fn reference_to<'a>(reference: String) -> Reference<'a> {
    Reference {
        reference: Some(reference),
        ..Reference::default()
    }
}

fn identified<'a>(system: Option<&'a str>, value: &'a str) -> Reference<'a> {
    Reference {
        identifier: Some(Identifier { system, value }),
        ..Reference::default()
    }
}

fn displayed(display: &str) -> Reference<'_> {
    Reference {
        display: Some(display),
        ..Reference::default()
    }
}

#[derive(Serialize)]
struct Network<'a> {
    address: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Agent<'a> {
    #[serde(rename = "type")]
    kind: Concept<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<[Concept<'a>; 1]>,
    who: Reference<'a>,
    /// The holder's account (the token's `sub`), beside their Patient as `who`.
    #[serde(skip_serializing_if = "Option::is_none")]
    alt_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    requestor: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    purpose_of_use: Option<[Concept<'a>; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    network: Option<Network<'a>>,
}

/// The access mode as a CodeableConcept, with the emergency reason as its text.
fn access_mode(principal: &Principal) -> Concept<'_> {
    Concept {
        coding: [Coding {
            system: ACCESS_MODE_SYSTEM,
            code: principal.purpose_of_use.code(),
            display: None,
        }],
        text: principal.access_reason.as_deref(),
    }
}

/// The user agent: who asked, as authenticated.
fn user_agent(trace: &Trace, writes: bool) -> Agent<'_> {
    let Some(principal) = &trace.principal else {
        return Agent {
            kind: concept(coding(PARTICIPATION, "IRCP", "information recipient")),
            role: None,
            who: displayed("unauthenticated caller"),
            alt_id: None,
            name: None,
            requestor: true,
            purpose_of_use: None,
            network: None,
        };
    };
    let kind = match principal.actor {
        ActorKind::Patient => coding(ROLE_CLASS, "PAT", "patient"),
        _ if writes => coding(ROLE_CLASS, "AGNT", "agent"),
        _ => coding(PARTICIPATION, "IRCP", "information recipient"),
    };
    Agent {
        kind: concept(kind),
        role: role(principal).map(|role| [concept(role)]),
        who: who(principal),
        alt_id: (principal.actor == ActorKind::Patient && principal.patient.is_some())
            .then_some(principal.subject.as_str()),
        name: principal.name.as_deref(),
        requestor: true,
        purpose_of_use: Some([access_mode(principal)]),
        network: None,
    }
}

fn role(principal: &Principal) -> Option<Coding<'_>> {
    match principal.actor {
        ActorKind::Professional => principal.profession.as_deref().map(|code| Coding {
            system: PROFESSION_SYSTEM,
            code,
            display: None,
        }),
        ActorKind::Representative => Some(coding(
            "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
            "GUARD",
            "guardian",
        )),
        _ => None,
    }
}

/// The agent's identity: a professional by IdNat_PS, a patient by their Patient,
/// anyone else by subject within its issuer.
fn who(principal: &Principal) -> Reference<'_> {
    match (&principal.actor, principal.patient.as_deref()) {
        (ActorKind::Professional, _) => identified(Some(IDNAT_PS_SYSTEM), &principal.subject),
        (ActorKind::Patient, Some(patient)) => reference_to(format!("Patient/{patient}")),
        _ => identified(Some(&principal.issuer), &principal.subject),
    }
}

fn client_agent(trace: &Trace) -> Agent<'_> {
    let client = trace
        .principal
        .as_ref()
        .and_then(|principal| principal.client_id.as_deref())
        .unwrap_or("client");
    Agent {
        kind: concept(coding(DCM, "110153", "Source Role ID")),
        role: None,
        who: displayed(client),
        alt_id: None,
        name: None,
        requestor: false,
        purpose_of_use: None,
        network: trace
            .client_address
            .as_deref()
            .map(|address| Network { address, kind: "2" }),
    }
}

fn server_agent(trace: &Trace) -> Agent<'_> {
    Agent {
        kind: concept(coding(DCM, "110152", "Destination Role ID")),
        role: None,
        who: displayed(&trace.server),
        alt_id: None,
        name: None,
        requestor: false,
        purpose_of_use: None,
        network: None,
    }
}

#[derive(Serialize)]
struct Detail<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "valueString")]
    value: &'a str,
}

#[derive(Serialize)]
struct Entity<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    what: Option<Reference<'a>>,
    #[serde(rename = "type")]
    kind: Coding<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<Coding<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    query: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<[Detail<'a>; 1]>,
}

fn patient_entity<'a>(patient: &str) -> Entity<'a> {
    Entity {
        what: Some(reference_to(format!("Patient/{patient}"))),
        kind: coding(ENTITY_TYPE, "1", "Person"),
        role: Some(coding(OBJECT_ROLE, "1", "Patient")),
        query: None,
        detail: None,
    }
}

fn resource_entity<'a>(reference: String) -> Entity<'a> {
    Entity {
        what: Some(reference_to(reference)),
        kind: coding(ENTITY_TYPE, "2", "System Object"),
        role: Some(coding(OBJECT_ROLE, "4", "Domain Resource")),
        query: None,
        detail: None,
    }
}

#[derive(Serialize)]
struct Extension<'a> {
    url: &'static str,
    #[serde(rename = "valueString", skip_serializing_if = "Option::is_none")]
    string: Option<&'a str>,
    #[serde(rename = "valueBoolean", skip_serializing_if = "Option::is_none")]
    boolean: Option<bool>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Meta<'a> {
    version_id: &'static str,
    last_updated: &'a str,
}

#[derive(Serialize)]
struct Source {
    observer: Reference<'static>,
    #[serde(rename = "type")]
    kind: [Coding<'static>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    resource_type: &'static str,
    id: &'a str,
    meta: Meta<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    extension: Vec<Extension<'a>>,
    #[serde(rename = "type")]
    kind: Coding<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    subtype: Vec<Coding<'a>>,
    action: &'static str,
    recorded: &'a str,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome_desc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    purpose_of_event: Option<[Concept<'a>; 1]>,
    agent: [Agent<'a>; 3],
    source: Source,
    entity: Vec<Entity<'a>>,
}

/// `AuditEvent.entity.detail.type` of a query entity naming the type searched.
pub const QUERY_TYPE_DETAIL: &str = "resourceType";

/// The JSON of the event of `trace` for `patient` (None: the interaction concerned
/// no patient's space, e.g. an unauthenticated call). `id` and `recorded` are given
/// so the stored JSON is final.
pub fn build(
    trace: &Trace,
    outcome: &Outcome,
    touched: &Touched,
    patient: Option<&str>,
    id: &str,
    recorded: &str,
) -> BuiltEvent {
    let action = action(trace);
    let mut extension = Vec::new();
    if let Some(rule) = outcome.rule {
        extension.push(Extension {
            url: RULE_EXTENSION,
            string: Some(rule),
            boolean: None,
        });
    }
    // A batch's entries refused by a rule (R-AUD-1): the event of each space an
    // entry concerned names its rule; a refusal answered "not known" apart, so that
    // its author reads their event as they were answered (see the extension).
    let in_this_event = |refusal: &&super::EntryRefusal| match patient {
        Some(patient) => refusal.patients.contains(patient),
        None => refusal.patients.is_empty(),
    };
    let (refused_entries, refused_not_known): (Vec<&super::EntryRefusal>, Vec<_>) =
        if outcome.rule.is_none() {
            touched
                .entry_refusals
                .iter()
                .filter(in_this_event)
                .partition(|refusal| !refusal.concealed)
        } else {
            (Vec::new(), Vec::new())
        };
    for refusal in &refused_not_known {
        extension.push(Extension {
            url: ENTRY_REFUSED_NOT_KNOWN_EXTENSION,
            string: Some(refusal.rule),
            boolean: None,
        });
    }
    for refusal in &refused_entries {
        if !extension
            .iter()
            .any(|known| known.url == RULE_EXTENSION && known.string == Some(refusal.rule))
        {
            extension.push(Extension {
                url: RULE_EXTENSION,
                string: Some(refusal.rule),
                boolean: None,
            });
        }
    }
    // What the author reads of their own request is what they were answered, and
    // an attempt answered "not known" reads as one at something nobody holds
    // (R-ACC-11):
    // - refused as "not known": the description without the rule;
    // - concealed: this space was not told to them (the request concerned it only
    //   through what it hid), so the event reads without it;
    // - withheld: had the hidden resource not existed, this event would not have
    //   been written, so they do not read it: the request's events in the spaces
    //   they were told of stand alone, or, when it told of none, the first concealed
    //   one reads as the attempt's one event (the patients' and their médecins
    //   traitants' traces show every one, R-PAT-4).
    let answered_not_known = outcome.rule.is_some() && outcome.concealed;
    let concealed = match patient {
        Some(patient) => touched.concealed.contains(patient),
        None => answered_not_known,
    };
    let withheld = patient.is_some_and(|patient| {
        touched.concealed.contains(patient)
            && (touched.told().next().is_some()
                || touched
                    .concealed
                    .first()
                    .is_some_and(|first| first != patient))
    });
    for (url, mark) in [
        (ANSWERED_NOT_KNOWN_EXTENSION, answered_not_known),
        (CONCEALED_EXTENSION, concealed),
        (WITHHELD_EXTENSION, withheld),
    ] {
        if mark {
            extension.push(Extension {
                url,
                string: None,
                boolean: Some(true),
            });
        }
    }
    let mut subtype = Vec::new();
    if let Some(step) = trace.account_step {
        subtype.push(coding(step.system, step.code, step.display));
    } else if !trace.interaction.is_empty() {
        subtype.push(Coding {
            system: "http://hl7.org/fhir/restful-interaction",
            code: trace.interaction,
            display: None,
        });
        // R-MHD-8: the IHE transaction beside the REST interaction.
        if let Some(transaction) = trace.ihe_transaction {
            subtype.push(coding(
                crate::fhir::mhd::IHE_EVENT_TYPE_SYSTEM,
                transaction.code,
                transaction.display,
            ));
        }
    }
    let entries_refused = (!refused_entries.is_empty()).then(|| {
        let rules: Vec<String> = refused_entries
            .iter()
            .map(|refusal| format!("{} rule {}", refusal.status, refusal.rule))
            .collect();
        format!("{}: entries refused: {}", outcome.status, rules.join(", "))
    });
    let outcome_desc = entries_refused.or_else(|| match (outcome.rule, &outcome.detail) {
        (Some(rule), Some(detail)) => Some(format!("{}: rule {rule}: {detail}", outcome.status)),
        (None, Some(detail)) => Some(format!("{}: {detail}", outcome.status)),
        (Some(rule), None) => Some(format!("{}: rule {rule}", outcome.status)),
        (None, None) if outcome.status >= 400 => Some(outcome.status.to_string()),
        (None, None) => None,
    });
    let writes = matches!(action, "C" | "U" | "D");
    let mut entity = Vec::new();
    if let Some(patient) = patient {
        entity.push(patient_entity(patient));
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
    entity.extend(named.into_iter().map(resource_entity));
    if let Some(query) = &trace.query {
        entity.push(Entity {
            what: None,
            kind: coding(ENTITY_TYPE, "2", "System Object"),
            role: Some(coding(OBJECT_ROLE, "24", "Query")),
            query: Some(STANDARD.encode(query.as_bytes())),
            // The type searched: what the query's ids are ids of.
            detail: trace.resource_type.map(|resource_type| {
                [Detail {
                    kind: QUERY_TYPE_DETAIL,
                    value: resource_type,
                }]
            }),
        });
    }
    entity.push(Entity {
        what: Some(identified(None, &trace.request_id)),
        kind: coding(BALP_ENTITY_TYPE, "XrequestId", "X-Request-Id"),
        role: None,
        query: None,
        detail: None,
    });
    let event = Event {
        resource_type: "AuditEvent",
        id,
        meta: Meta {
            version_id: "1",
            last_updated: recorded,
        },
        extension,
        kind: match trace.account_step {
            Some(_) => coding(DCM, "110114", "User Authentication"),
            None => coding(
                "http://terminology.hl7.org/CodeSystem/audit-event-type",
                "rest",
                "Restful Operation",
            ),
        },
        subtype,
        action,
        recorded,
        // BALP: a batch some of whose entries were refused is a minor failure.
        outcome: if refused_entries.is_empty() {
            outcome_code(outcome.status)
        } else {
            "4"
        },
        outcome_desc,
        purpose_of_event: trace
            .principal
            .as_ref()
            .map(|principal| [access_mode(principal)]),
        agent: [
            user_agent(trace, writes),
            client_agent(trace),
            server_agent(trace),
        ],
        source: Source {
            observer: displayed("dmp-fhir-server"),
            kind: [coding(
                "http://terminology.hl7.org/CodeSystem/security-source-type",
                "4",
                "Application Server",
            )],
        },
        entity,
    };
    let content = serde_json::to_string(&event).expect("an event of strings serialises");
    let index = EventIndex::of_parts(
        &serde_json::to_value(IndexedParts::of(&event)).expect("an event of strings serialises"),
    );
    debug_assert_eq!(
        index,
        EventIndex::of(&content),
        "an event's index from its parts is the index of its text"
    );
    BuiltEvent { content, index }
}

/// An event's stored JSON and its search index.
pub struct BuiltEvent {
    pub content: String,
    pub index: EventIndex,
}

/// What the trace's search parameters read of an event (the paths of AuditEvent's
/// parameters in `fhir::definitions`: `agent.who`, `entity.what`, `recorded`,
/// `type`, `subtype`, `outcome`, `extension`): the index is extracted from these
/// few values rather than from the event's text parsed again, which took a sixth
/// of an audited read's CPU. Debug builds check that both give the same index.
#[derive(Serialize)]
struct IndexedParts<'e, 'a> {
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    extension: &'e [Extension<'a>],
    #[serde(rename = "type")]
    kind: &'e Coding<'a>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    subtype: &'e [Coding<'a>],
    recorded: &'a str,
    outcome: &'static str,
    agent: Vec<AgentWho<'e, 'a>>,
    entity: Vec<EntityWhat<'e, 'a>>,
}

#[derive(Serialize)]
struct AgentWho<'e, 'a> {
    who: &'e Reference<'a>,
}

#[derive(Serialize)]
struct EntityWhat<'e, 'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    what: Option<&'e Reference<'a>>,
}

impl<'e, 'a> IndexedParts<'e, 'a> {
    fn of(event: &'e Event<'a>) -> IndexedParts<'e, 'a> {
        IndexedParts {
            extension: &event.extension,
            kind: &event.kind,
            subtype: &event.subtype,
            recorded: event.recorded,
            outcome: event.outcome,
            agent: event
                .agent
                .iter()
                .map(|agent| AgentWho { who: &agent.who })
                .collect(),
            entity: event
                .entity
                .iter()
                .map(|entity| EntityWhat {
                    what: entity.what.as_ref(),
                })
                .collect(),
        }
    }
}

//! `GET /metadata`: the CapabilityStatement, generated from the same resource table
//! as the router and the indexer so that it says exactly what is served.

use serde_json::{Value, json};

use crate::fhir::definitions::{COMMON_PARAMS, Interaction, RESOURCES};
use crate::fhir::mhd;

/// Canonical URL of the OperationDefinitions (each also served at
/// `GET [base]/OperationDefinition/{id}`).
pub const OPERATION_DEFINITION_BASE: &str = "https://dmp-fhir-server.fr/fhir/OperationDefinition/";

/// The OperationDefinitions of the operations the server runs.
const OPERATION_DEFINITIONS: &[(&str, &str)] = &[
    (
        "Patient-activate",
        include_str!("../../fhir-profiles/operations/Patient-activate.json"),
    ),
    (
        "Patient-oppose",
        include_str!("../../fhir-profiles/operations/Patient-oppose.json"),
    ),
    (
        "Patient-close",
        include_str!("../../fhir-profiles/operations/Patient-close.json"),
    ),
    (
        "Patient-reopen",
        include_str!("../../fhir-profiles/operations/Patient-reopen.json"),
    ),
    (
        "Communication-save-attachment",
        include_str!("../../fhir-profiles/operations/Communication-save-attachment.json"),
    ),
];

/// The OperationDefinition `id`, as JSON text.
pub fn operation_definition(id: &str) -> Option<&'static str> {
    OPERATION_DEFINITIONS
        .iter()
        .find(|(known, _)| *known == id)
        .map(|(_, text)| *text)
}

/// The CapabilityStatement's text for a base URL, built once per base URL (and per
/// day, its `date`): it depends on nothing else. The cache holds a few base URLs; the
/// `Host` header is the client's, so past that the text is built each time rather
/// than kept.
pub fn capability_statement_text(base_url: &str) -> std::sync::Arc<str> {
    use std::collections::HashMap;
    use std::sync::{Arc, OnceLock, RwLock};
    type Cache = RwLock<HashMap<(String, String), Arc<str>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(|| RwLock::new(HashMap::new()));
    let key = (
        base_url.to_owned(),
        chrono::Utc::now().format("%Y-%m-%d").to_string(),
    );
    if let Some(text) = cache.read().ok().and_then(|map| map.get(&key).cloned()) {
        return text;
    }
    let text: Arc<str> = capability_statement(base_url).to_string().into();
    if let Ok(mut map) = cache.write() {
        map.retain(|(_, day), _| *day == key.1);
        if map.len() < 16 {
            map.insert(key, Arc::clone(&text));
        }
    }
    text
}

/// The profiles a type's resources may claim and be checked against (R-MHD-2).
fn supported_profiles(resource_type: &str) -> Vec<&'static str> {
    match resource_type {
        "DocumentReference" => vec![mhd::PDSM_DOCUMENT_REFERENCE, mhd::PDSM_SIMPLIFIED_PUBLISH],
        "List" => vec![mhd::PDSM_SUBMISSION_SET, mhd::PDSM_FOLDER],
        _ => Vec::new(),
    }
}

pub fn capability_statement(base_url: &str) -> Value {
    let resources: Vec<Value> = RESOURCES
        .iter()
        .map(|def| {
            let interactions: Vec<Value> = def
                .interactions
                .iter()
                .map(|interaction| json!({ "code": interaction.code() }))
                .collect();
            let mut params: Vec<Value> = Vec::new();
            if def.supports(Interaction::SearchType) {
                for (name, kind) in COMMON_PARAMS {
                    params.push(json!({
                        "name": name,
                        "definition": format!("http://hl7.org/fhir/SearchParameter/Resource-{}", name.trim_start_matches('_')),
                        "type": kind.code(),
                    }));
                }
                for param in def.public_params() {
                    params.push(json!({ "name": param.name, "definition": param.definition, "type": param.kind.code() }));
                }
            }
            let includes: Vec<String> = if def.supports(Interaction::SearchType) {
                def.reference_params().map(|param| format!("{}:{}", def.name, param.name)).collect()
            } else {
                Vec::new()
            };
            let rev_includes: Vec<String> = if def.supports(Interaction::SearchType) {
                RESOURCES
                    .iter()
                    .filter(|source| source.supports(Interaction::SearchType))
                    .flat_map(|source| {
                        source
                            .reference_params()
                            .filter(|param| param.targets.contains(&def.name))
                            .map(move |param| format!("{}:{}", source.name, param.name))
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let mut resource = json!({
                "type": def.name,
                "profile": def.profile,
                "interaction": interactions,
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": def.supports(Interaction::Update),
                "conditionalCreate": def.supports(Interaction::Create),
                "conditionalRead": "not-supported",
                "conditionalUpdate": false,
                "conditionalDelete": "not-supported",
            });
            if !params.is_empty() {
                resource["searchParam"] = json!(params);
            }
            if !includes.is_empty() {
                resource["searchInclude"] = json!(includes);
            }
            if !rev_includes.is_empty() {
                resource["searchRevInclude"] = json!(rev_includes);
            }
            let supported = supported_profiles(def.name);
            if !supported.is_empty() {
                resource["supportedProfile"] = json!(supported);
            }
            if def.supports(Interaction::Patch) {
                resource["documentation"] = json!(format!(
                    "PATCH {0}/[id] and the conditional PATCH {0}?[search] (the one {0} the search matches among those the caller may see: none 404, several 412), in JSON Patch (application/json-patch+json) or FHIRPath Patch (a Parameters resource in application/fhir+json).",
                    def.name
                ));
            }
            if !def.operations.is_empty() {
                resource["operation"] = json!(def
                    .operations
                    .iter()
                    .map(|operation| json!({
                        "name": operation.name,
                        "definition": format!("{OPERATION_DEFINITION_BASE}{}", operation.definition),
                    }))
                    .collect::<Vec<_>>());
            }
            resource
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": chrono::Utc::now().format("%Y-%m-%d").to_string(),
        "publisher": "dmp-fhir-server",
        "kind": "instance",
        "software": { "name": "dmp-fhir-server", "version": env!("CARGO_PKG_VERSION") },
        "implementation": {
            "description": "FHIR R4 server for the French shared health record (Mon espace santé / DMP)",
            "url": base_url,
        },
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "patchFormat": ["application/json-patch+json", "application/fhir+json"],
        "instantiates": [
            mhd::PDSM_SERVER_CAPABILITIES,
            mhd::MHD_RECIPIENT_CAPABILITIES,
            mhd::MHD_RESPONDER_CAPABILITIES,
        ],
        "rest": [{
            "mode": "server",
            "documentation": "Bearer JWT (RS256 / ES256) from a trusted issuer is required for every interaction but this one. Search result parameters: _count, _offset (paging), _total=accurate, _sort (_lastUpdated, _id, date parameters), _include, _revinclude, _summary=count, _elements.",
            "security": {
                "cors": false,
                // SMART App Launch (R-ACT-4): where an app of the catalogue asks the
                // holder, as /.well-known/smart-configuration says too.
                "extension": [{
                    "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                    "extension": [
                        { "url": "authorize", "valueUri": format!("{base_url}/oauth/authorize") },
                        { "url": "token", "valueUri": format!("{base_url}/oauth/token") },
                        { "url": "revoke", "valueUri": format!("{base_url}/oauth/revoke") },
                        { "url": "manage", "valueUri": format!("{base_url}/compte") },
                    ],
                }],
                "service": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR" }] }],
                "description": "Authorization: Bearer <JWT> from a trusted issuer or from this server (holders and the apps they authorise: SMART App Launch, /.well-known/smart-configuration); claims as described in the server's README (actor, sub, patient, profession, scope, purpose_of_use)."
            },
            "resource": resources,
            "interaction": [{ "code": "transaction" }, { "code": "batch" }],
        }],
    })
}

//! Structural checks of incoming FHIR R4 resources.
//!
//! fhir-sdk has no R4 model; its R4B types are identical to R4 for the resources this
//! server accepts (Patient, DocumentReference, List, Binary, Consent, Communication,
//! and the medical profile's Observation, Condition, MedicationStatement and
//! AllergyIntolerance). Every
//! deserialisation of an fhir-sdk type instantiates serde code for all resources, which
//! is slow to compile, so it lives here behind one plain function that the server crate
//! calls: this crate compiles once and stays cached while the server changes.
//!
//! The server never stores the typed value: a round trip through these types drops
//! unknown elements and decimal precision. They only say whether the JSON is valid R4.

use fhir_sdk::r4b::resources::{
    AllergyIntolerance, AuditEvent, Binary, Bundle, CapabilityStatement, Communication, Condition,
    Consent, DocumentReference, List, MedicationStatement, Observation, OperationDefinition,
    OperationOutcome, Patient,
};

/// One structural problem, with the element path where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructureIssue {
    /// FHIRPath-like location, e.g. `DocumentReference.content[0].attachment`.
    pub path: String,
    /// What is wrong, in the words of the deserialiser.
    pub message: String,
}

/// Resource types clients may send, whose structure this crate checks.
pub const CHECKED_TYPES: &[&str] = &[
    "Patient",
    "DocumentReference",
    "List",
    "Binary",
    "Consent",
    "Communication",
    "Observation",
    "Condition",
    "MedicationStatement",
    "AllergyIntolerance",
];

/// Resource types the server writes itself; tests check its output with them.
pub const OUTPUT_TYPES: &[&str] = &[
    "Bundle",
    "OperationOutcome",
    "CapabilityStatement",
    "AuditEvent",
    "OperationDefinition",
];

/// Checks that `json` is a structurally valid R4 resource of `resource_type`.
///
/// Returns the first problem found, located by its element path. A type this crate
/// does not know is refused: the caller decides which types reach it.
pub fn check(resource_type: &str, json: &str) -> Result<(), StructureIssue> {
    match resource_type {
        "Patient" => check_as::<Patient>(resource_type, json),
        "DocumentReference" => check_as::<DocumentReference>(resource_type, json),
        "List" => check_as::<List>(resource_type, json),
        "Binary" => check_as::<Binary>(resource_type, json),
        "Consent" => check_as::<Consent>(resource_type, json),
        "Communication" => check_as::<Communication>(resource_type, json),
        "Observation" => check_as::<Observation>(resource_type, json),
        "Condition" => check_as::<Condition>(resource_type, json),
        "MedicationStatement" => check_as::<MedicationStatement>(resource_type, json),
        "AllergyIntolerance" => check_as::<AllergyIntolerance>(resource_type, json),
        "Bundle" => check_as::<Bundle>(resource_type, json),
        "OperationOutcome" => check_as::<OperationOutcome>(resource_type, json),
        "CapabilityStatement" => check_as::<CapabilityStatement>(resource_type, json),
        "AuditEvent" => check_as::<AuditEvent>(resource_type, json),
        "OperationDefinition" => check_as::<OperationDefinition>(resource_type, json),
        other => Err(StructureIssue {
            path: other.to_owned(),
            message: format!("resource type {other} is not accepted by this server"),
        }),
    }
}

fn check_as<T: serde::de::DeserializeOwned + serde::Serialize>(
    resource_type: &str,
    json: &str,
) -> Result<(), StructureIssue> {
    let mut deserializer = serde_json::Deserializer::from_str(json);
    // fhir-sdk ignores elements it does not know; R4 does not allow them (extensions
    // are the way to carry more), so the first one ignored is reported.
    let mut unknown: Option<String> = None;
    let mut note_unknown = |path: serde_ignored::Path<'_>| {
        if unknown.is_none() {
            unknown = Some(path.to_string());
        }
    };
    let tracking = serde_ignored::Deserializer::new(&mut deserializer, &mut note_unknown);
    let result = serde_path_to_error::deserialize::<_, T>(tracking);
    if let Ok(typed) = &result {
        // The resource's own elements go through a buffered (tagged) path that
        // serde_ignored cannot see: compare them with what the typed value writes back.
        let unknown_top = top_level_unknown(json, typed);
        if let Some((key, true)) = &unknown_top {
            return Err(StructureIssue {
                path: format!("{resource_type}.{key}"),
                message: format!("`{key}` is empty: FHIR JSON does not allow empty elements"),
            });
        }
        if let Some(location) = unknown_top.map(|(key, _)| key).or(unknown) {
            let location: Vec<&str> = location.split('.').filter(|step| *step != "?").collect();
            let element = location.last().copied().unwrap_or_default().to_owned();
            return Err(StructureIssue {
                path: format!("{resource_type}.{}", location.join(".")),
                message: format!(
                    "unknown element `{element}`: R4 does not define it here (use an extension)"
                ),
            });
        }
    }
    match result {
        Ok(_) => Ok(()),
        Err(error) => {
            let location = error.path().to_string();
            let path = if location == "." || location.is_empty() {
                resource_type.to_owned()
            } else {
                format!("{resource_type}.{location}")
            };
            Err(StructureIssue {
                path,
                message: error.into_inner().to_string(),
            })
        }
    }
}

/// A top-level element of `json` that the typed value does not write back, and
/// whether it was merely empty (`null`, `[]`, `{}`).
fn top_level_unknown<T: serde::Serialize>(json: &str, typed: &T) -> Option<(String, bool)> {
    let sent: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json).ok()?;
    let kept = serde_json::to_value(typed).ok()?;
    let kept = kept.as_object()?;
    sent.iter()
        .find(|(key, _)| !kept.contains_key(key.as_str()) && key.as_str() != "resourceType")
        .map(|(key, value)| {
            let empty = match value {
                serde_json::Value::Null => true,
                serde_json::Value::Array(items) => items.is_empty(),
                serde_json::Value::Object(map) => map.is_empty(),
                _ => false,
            };
            (key.clone(), empty)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_minimal_patient() {
        assert_eq!(
            check("Patient", r#"{"resourceType":"Patient","gender":"female"}"#),
            Ok(())
        );
    }

    #[test]
    fn names_the_path_of_a_bad_element() {
        let issue = check(
            "Patient",
            r#"{"resourceType":"Patient","birthDate":"not-a-date"}"#,
        )
        .unwrap_err();
        assert_eq!(issue.path, "Patient.birthDate");
    }

    #[test]
    fn refuses_a_bad_code() {
        let issue = check(
            "DocumentReference",
            r#"{"resourceType":"DocumentReference","status":"bogus","content":[{"attachment":{}}]}"#,
        )
        .unwrap_err();
        assert_eq!(issue.path, "DocumentReference.status");
    }

    #[test]
    fn refuses_unknown_types() {
        assert!(check("Encounter", r#"{"resourceType":"Encounter"}"#).is_err());
    }
}

#[cfg(test)]
mod unknown_elements {
    use super::*;

    #[test]
    fn an_element_r4_does_not_define_is_refused() {
        let issue = check(
            "Patient",
            r#"{"resourceType":"Patient","notAnElement":true}"#,
        )
        .unwrap_err();
        assert!(issue.message.contains("notAnElement"), "{issue:?}");
    }

    #[test]
    fn a_nested_unknown_element_is_located() {
        let issue = check(
            "Patient",
            r#"{"resourceType":"Patient","name":[{"family":"A","nickname":"B"}]}"#,
        )
        .unwrap_err();
        assert_eq!(issue.path, "Patient.name.0.nickname");
    }

    #[test]
    fn primitive_extensions_are_accepted() {
        let patient = r#"{"resourceType":"Patient","birthDate":"1970","_birthDate":{"extension":[{"url":"http://example.org/y","valueString":"v"}]}}"#;
        assert_eq!(check("Patient", patient), Ok(()));
    }

    #[test]
    fn empty_elements_are_named_as_such() {
        let issue = check("Patient", r#"{"resourceType":"Patient","name":[]}"#).unwrap_err();
        assert_eq!(issue.path, "Patient.name");
        assert!(issue.message.contains("empty"), "{issue:?}");
    }

    #[test]
    fn extensions_are_accepted() {
        let patient = r#"{"resourceType":"Patient","extension":[{"url":"http://example.org/x","valueDecimal":3.50}]}"#;
        assert_eq!(check("Patient", patient), Ok(()));
    }
}

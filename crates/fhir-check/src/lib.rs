//! Structural checks of incoming FHIR R4 resources.
//!
//! fhir-sdk has no R4 model; its R4B types are identical to R4 for the resources this
//! server accepts (Patient, DocumentReference, Binary, Consent, Communication). Every
//! deserialisation of an fhir-sdk type instantiates serde code for all resources, which
//! is slow to compile, so it lives here behind one plain function that the server crate
//! calls: this crate compiles once and stays cached while the server changes.
//!
//! The server never stores the typed value: a round trip through these types drops
//! unknown elements and decimal precision. They only say whether the JSON is valid R4.

use fhir_sdk::r4b::resources::{
    AuditEvent, Binary, Bundle, CapabilityStatement, Communication, Consent, DocumentReference,
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
    "Binary",
    "Consent",
    "Communication",
];

/// Resource types the server writes itself; tests check its output with them.
pub const OUTPUT_TYPES: &[&str] = &[
    "Bundle",
    "OperationOutcome",
    "CapabilityStatement",
    "AuditEvent",
];

/// Checks that `json` is a structurally valid R4 resource of `resource_type`.
///
/// Returns the first problem found, located by its element path. A type this crate
/// does not know is refused: the caller decides which types reach it.
pub fn check(resource_type: &str, json: &str) -> Result<(), StructureIssue> {
    match resource_type {
        "Patient" => check_as::<Patient>(resource_type, json),
        "DocumentReference" => check_as::<DocumentReference>(resource_type, json),
        "Binary" => check_as::<Binary>(resource_type, json),
        "Consent" => check_as::<Consent>(resource_type, json),
        "Communication" => check_as::<Communication>(resource_type, json),
        "Bundle" => check_as::<Bundle>(resource_type, json),
        "OperationOutcome" => check_as::<OperationOutcome>(resource_type, json),
        "CapabilityStatement" => check_as::<CapabilityStatement>(resource_type, json),
        "AuditEvent" => check_as::<AuditEvent>(resource_type, json),
        other => Err(StructureIssue {
            path: other.to_owned(),
            message: format!("resource type {other} is not accepted by this server"),
        }),
    }
}

fn check_as<T: serde::de::DeserializeOwned>(
    resource_type: &str,
    json: &str,
) -> Result<(), StructureIssue> {
    let mut deserializer = serde_json::Deserializer::from_str(json);
    match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
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
        assert!(check("Observation", r#"{"resourceType":"Observation"}"#).is_err());
    }
}

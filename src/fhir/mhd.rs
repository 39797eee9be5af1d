//! IHE MHD 4.2 and ANS PDSm 3.1 names this server speaks (SPEC §10): list types,
//! extensions, profiles and the IHE event codes of the MHD transactions.

/// `List.code` system of MHD SubmissionSets and Folders.
pub const LIST_TYPES: &str = "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes";
pub const SUBMISSION_SET: &str = "submissionset";
pub const FOLDER: &str = "folder";

pub const DESIGNATION_TYPE_EXTENSION: &str =
    "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-designationType";
pub const SOURCE_ID_EXTENSION: &str =
    "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-sourceId";
pub const AUTHOR_ORG_EXTENSION: &str =
    "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-authorOrg";
/// PDSm `isArchived` (TD3.3d): a boolean on DocumentReference and List.
pub const IS_ARCHIVED_EXTENSION: &str =
    "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-ext-is-archived";

/// The PDSm profiles whose required elements R-MHD-2 checks.
pub const PDSM_DOCUMENT_REFERENCE: &str = "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-comprehensive-document-reference";
pub const PDSM_SIMPLIFIED_PUBLISH: &str =
    "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-simplified-publish";
pub const PDSM_SUBMISSION_SET: &str = "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-submissionset-comprehensive";
pub const PDSM_FOLDER: &str =
    "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-folder-comprehensive";

/// The CapabilityStatements this server instantiates (R-MHD-8).
pub const PDSM_SERVER_CAPABILITIES: &str = "https://interop.esante.gouv.fr/ig/fhir/pdsm/CapabilityStatement/PDSm-GestionnaireDePartageDeDocuments";
pub const MHD_RECIPIENT_CAPABILITIES: &str =
    "https://profiles.ihe.net/ITI/MHD/CapabilityStatement/IHE.MHD.DocumentRecipient.Comprehensive";
pub const MHD_RESPONDER_CAPABILITIES: &str =
    "https://profiles.ihe.net/ITI/MHD/CapabilityStatement/IHE.MHD.DocumentResponder";

/// The TRE_A07 system (visibility of a document) as the SPEC spells it, and the
/// spelling some ANS examples use (`StatusVisibilite…`): both are read alike.
pub const TRE_A07_SYSTEM: &str = "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument";
pub const TRE_A07_SYSTEM_VARIANT: &str = "https://mos.esante.gouv.fr/NOS/TRE_A07-StatusVisibiliteDocument/FHIR/TRE-A07-StatusVisibiliteDocument";
/// Whether `system` is TRE_A07, in either spelling.
pub fn is_tre_a07(system: &str) -> bool {
    system == TRE_A07_SYSTEM || system == TRE_A07_SYSTEM_VARIANT
}
/// v3-Confidentiality: `N` unmasks (TD3.3a).
pub const CONFIDENTIALITY_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";

/// `AuditEvent.subtype` system of the IHE transactions (R-MHD-8).
pub const IHE_EVENT_TYPE_SYSTEM: &str = "urn:ihe:event-type-code";

/// An IHE transaction, as `AuditEvent.subtype` names it (`urn:ihe:event-type-code`).
#[derive(Debug)]
pub struct IheTransaction {
    pub code: &'static str,
    pub display: &'static str,
}

pub static ITI_65: IheTransaction = IheTransaction {
    code: "ITI-65",
    display: "Provide Document Bundle",
};
pub static ITI_66: IheTransaction = IheTransaction {
    code: "ITI-66",
    display: "Find Document Lists",
};
pub static ITI_67: IheTransaction = IheTransaction {
    code: "ITI-67",
    display: "Find Document References",
};
pub static ITI_68: IheTransaction = IheTransaction {
    code: "ITI-68",
    display: "Retrieve Document",
};
pub static ITI_105: IheTransaction = IheTransaction {
    code: "ITI-105",
    display: "Simplified Publish",
};

/// Whether a transaction Bundle is an ITI-65 Provide Document Bundle: it carries a
/// SubmissionSet List.
pub fn is_provide_bundle(bundle: &serde_json::Value) -> bool {
    bundle.get("type").and_then(serde_json::Value::as_str) == Some("transaction")
        && super::extract::values_at(bundle, "entry.resource")
            .into_iter()
            .any(is_submission_set)
}

/// Whether a resource is a SubmissionSet (a List coded `submissionset`).
pub fn is_submission_set(resource: &serde_json::Value) -> bool {
    resource
        .get("resourceType")
        .and_then(serde_json::Value::as_str)
        == Some("List")
        && super::extract::values_at(resource, "code.coding")
            .into_iter()
            .any(|coding| {
                coding.get("system").and_then(serde_json::Value::as_str) == Some(LIST_TYPES)
                    && coding.get("code").and_then(serde_json::Value::as_str)
                        == Some(SUBMISSION_SET)
            })
}

/// Whether a DocumentReference is an ITI-105 Simplified Publish (it claims the
/// PDSm profile).
pub fn is_simplified_publish(document: &serde_json::Value) -> bool {
    super::extract::values_at(document, "meta.profile")
        .into_iter()
        .any(|profile| profile.as_str() == Some(PDSM_SIMPLIFIED_PUBLISH))
}

/// A document's uniqueId (`masterIdentifier`), when it has a system and a value
/// (R-MHD-3).
pub fn master_identifier(document: &serde_json::Value) -> Option<(&str, &str)> {
    let master = document.get("masterIdentifier")?;
    Some((
        master.get("system")?.as_str()?,
        master.get("value")?.as_str()?,
    ))
}

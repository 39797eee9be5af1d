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
/// v3-Confidentiality: `N` unmasks (TD3.3a).
pub const CONFIDENTIALITY_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";

/// `AuditEvent.subtype` system of the IHE transactions (R-MHD-8).
pub const IHE_EVENT_TYPE_SYSTEM: &str = "urn:ihe:event-type-code";

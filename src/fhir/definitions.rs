//! What this server serves: resource types, their interactions and search parameters
//! (SPEC §3). The CapabilityStatement, the router and the indexer all read this table,
//! so they cannot disagree.

/// A FHIR RESTful interaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interaction {
    Read,
    Vread,
    Update,
    Patch,
    Delete,
    HistoryInstance,
    HistoryType,
    Create,
    SearchType,
    /// A named operation (`$activate`, `$save-attachment`…), declared apart from
    /// the RESTful interactions in the CapabilityStatement.
    Operation,
}

impl Interaction {
    /// The code used in CapabilityStatement and AuditEvent subtype.
    pub fn code(self) -> &'static str {
        match self {
            Interaction::Read => "read",
            Interaction::Vread => "vread",
            Interaction::Update => "update",
            Interaction::Patch => "patch",
            Interaction::Delete => "delete",
            Interaction::HistoryInstance => "history-instance",
            Interaction::HistoryType => "history-type",
            Interaction::Create => "create",
            Interaction::SearchType => "search-type",
            Interaction::Operation => "operation",
        }
    }

    /// Whether the interaction writes.
    pub fn is_write(self) -> bool {
        matches!(
            self,
            Interaction::Create
                | Interaction::Update
                | Interaction::Patch
                | Interaction::Delete
                | Interaction::Operation
        )
    }
}

/// Search parameter types supported by the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    Token,
    String,
    Date,
    Reference,
}

impl ParamKind {
    pub fn code(self) -> &'static str {
        match self {
            ParamKind::Token => "token",
            ParamKind::String => "string",
            ParamKind::Date => "date",
            ParamKind::Reference => "reference",
        }
    }
}

/// One search parameter: its name, type, the element paths it indexes and, for
/// references, the resource types it may point at.
#[derive(Debug)]
pub struct SearchParamDef {
    pub name: &'static str,
    pub kind: ParamKind,
    /// Dotted element paths from the resource root; arrays are walked through.
    pub paths: &'static [&'static str],
    /// For references: the target types indexed (others are ignored).
    pub targets: &'static [&'static str],
    /// Canonical URL of the definition (base FHIR or IHE).
    pub definition: &'static str,
    /// Indexed for the access rules only: not searchable, not in the
    /// CapabilityStatement.
    pub internal: bool,
}

/// A served resource type.
#[derive(Debug)]
pub struct ResourceDef {
    pub name: &'static str,
    pub interactions: &'static [Interaction],
    pub params: &'static [SearchParamDef],
    /// Base FHIR profile for the CapabilityStatement.
    pub profile: &'static str,
    /// Operations on an instance (`$name`), each with its OperationDefinition.
    pub operations: &'static [OperationDef],
    /// A log that grows while it is read (the trace): searched newest first by
    /// default, its paging links pinned to the instant of the first page.
    pub log: bool,
}

/// A named operation on instances of a type.
#[derive(Debug)]
pub struct OperationDef {
    /// Without the `$`.
    pub name: &'static str,
    /// The OperationDefinition's id (served at `OperationDefinition/{id}`).
    pub definition: &'static str,
    /// Every interaction the operation performs, on whichever type, its answer
    /// included (the resource it returns is read): a caller's SMART scopes must
    /// grant each (R-ACC-13), since the operation reads and writes through no other
    /// interaction the scopes would be checked on.
    pub performs: &'static [(&'static str, Interaction)],
}

/// What a lifecycle operation does: it changes the holder's space and answers with
/// its Patient (or, `$oppose`, a proof naming the person).
const LIFECYCLE_PERFORMS: &[(&str, Interaction)] = &[("Patient", Read), ("Patient", Update)];

impl ResourceDef {
    pub fn supports(&self, interaction: Interaction) -> bool {
        match interaction {
            Interaction::Operation => !self.operations.is_empty(),
            _ => self.interactions.contains(&interaction),
        }
    }

    /// The operation `$name`, if the type has it.
    pub fn operation(&self, name: &str) -> Option<&'static OperationDef> {
        let name = name.strip_prefix('$').unwrap_or(name);
        self.operations
            .iter()
            .find(|operation| operation.name == name)
    }

    /// A search parameter clients may use.
    pub fn param(&self, name: &str) -> Option<&'static SearchParamDef> {
        self.public_params().find(|param| param.name == name)
    }

    /// The parameters clients may use (every indexed one but the internal ones).
    pub fn public_params(&self) -> impl Iterator<Item = &'static SearchParamDef> {
        self.params.iter().filter(|param| !param.internal)
    }

    /// Reference parameters, for `_include` and `_revinclude`.
    pub fn reference_params(&self) -> impl Iterator<Item = &'static SearchParamDef> {
        self.public_params()
            .filter(|param| param.kind == ParamKind::Reference)
    }
}

use Interaction::*;
use ParamKind::*;

const fn p(
    name: &'static str,
    kind: ParamKind,
    paths: &'static [&'static str],
    targets: &'static [&'static str],
    definition: &'static str,
) -> SearchParamDef {
    SearchParamDef {
        name,
        kind,
        paths,
        targets,
        definition,
        internal: false,
    }
}

/// The identifiers (IdNat_PS) of a message's sender and recipients (R-MSG-5 opens a
/// conversation to its participants only) and of an AuditEvent's agents (R-ACC-11).
pub const PARTICIPANT: &str = "participant";

/// The Binary a DocumentReference's content points at: indexed so that a Binary is
/// readable by whoever may read a document pointing at it (SPEC §3).
pub const CONTENT_BINARY: &str = "content-binary";

/// An AuditEvent of a refusal answered "not known" (see `audit::event::CONCEALED_EXTENSION`).
pub const CONCEALED: &str = "concealed";
/// The internal parameter of an event kept from its professional agent.
pub const WITHHELD: &str = "withheld";

/// A DocumentReference's `masterIdentifier` (the XDS uniqueId), unique in the store.
pub const MASTER_IDENTIFIER: &str = "master-identifier";

static PATIENT: ResourceDef = ResourceDef {
    name: "Patient",
    interactions: &[
        Read,
        Vread,
        Update,
        Patch,
        HistoryInstance,
        HistoryType,
        Create,
        SearchType,
    ],
    params: &[
        p(
            "identifier",
            Token,
            &["identifier"],
            &[],
            "http://hl7.org/fhir/SearchParameter/Patient-identifier",
        ),
        p(
            "family",
            String,
            &["name.family"],
            &[],
            "http://hl7.org/fhir/SearchParameter/individual-family",
        ),
        p(
            "given",
            String,
            &["name.given"],
            &[],
            "http://hl7.org/fhir/SearchParameter/individual-given",
        ),
        p(
            "birthdate",
            Date,
            &["birthDate"],
            &[],
            "http://hl7.org/fhir/SearchParameter/individual-birthdate",
        ),
        p(
            "gender",
            Token,
            &["gender"],
            &[],
            "http://hl7.org/fhir/SearchParameter/individual-gender",
        ),
        p(
            "general-practitioner",
            Reference,
            &["generalPractitioner"],
            &["Practitioner", "Organization", "PractitionerRole"],
            "http://hl7.org/fhir/SearchParameter/Patient-general-practitioner",
        ),
    ],
    profile: "http://hl7.org/fhir/StructureDefinition/Patient",
    operations: &[
        OperationDef {
            name: "activate",
            definition: "Patient-activate",
            performs: LIFECYCLE_PERFORMS,
        },
        OperationDef {
            name: "oppose",
            definition: "Patient-oppose",
            performs: LIFECYCLE_PERFORMS,
        },
        OperationDef {
            name: "close",
            definition: "Patient-close",
            performs: LIFECYCLE_PERFORMS,
        },
        OperationDef {
            name: "reopen",
            definition: "Patient-reopen",
            performs: LIFECYCLE_PERFORMS,
        },
    ],
    log: false,
};

static DOCUMENT_REFERENCE: ResourceDef = ResourceDef {
    name: "DocumentReference",
    interactions: &[
        Read,
        Vread,
        Update,
        Patch,
        Delete,
        HistoryInstance,
        HistoryType,
        Create,
        SearchType,
    ],
    params: &[
        p(
            "patient",
            Reference,
            &["subject"],
            &["Patient"],
            "http://hl7.org/fhir/SearchParameter/clinical-patient",
        ),
        p(
            "subject",
            Reference,
            &["subject"],
            &["Patient", "Practitioner", "Group", "Device"],
            "http://hl7.org/fhir/SearchParameter/DocumentReference-subject",
        ),
        p(
            "type",
            Token,
            &["type"],
            &[],
            "http://hl7.org/fhir/SearchParameter/clinical-type",
        ),
        p(
            "category",
            Token,
            &["category"],
            &[],
            "http://hl7.org/fhir/SearchParameter/DocumentReference-category",
        ),
        p(
            "date",
            Date,
            &["date"],
            &[],
            "http://hl7.org/fhir/SearchParameter/DocumentReference-date",
        ),
        p(
            "author",
            Reference,
            &["author"],
            &[
                "Practitioner",
                "Organization",
                "PractitionerRole",
                "Patient",
                "Device",
                "RelatedPerson",
            ],
            "http://hl7.org/fhir/SearchParameter/DocumentReference-author",
        ),
        p(
            "status",
            Token,
            &["status"],
            &[],
            "http://hl7.org/fhir/SearchParameter/DocumentReference-status",
        ),
        p(
            "security-label",
            Token,
            &["securityLabel"],
            &[],
            "http://hl7.org/fhir/SearchParameter/DocumentReference-security-label",
        ),
        p(
            "identifier",
            Token,
            &["masterIdentifier", "identifier"],
            &[],
            "http://hl7.org/fhir/SearchParameter/clinical-identifier",
        ),
        p(
            "contenttype",
            Token,
            &["content.attachment.contentType"],
            &[],
            "http://hl7.org/fhir/SearchParameter/DocumentReference-contenttype",
        ),
        p(
            "creation",
            Date,
            &["content.attachment.creation"],
            &[],
            "https://profiles.ihe.net/ITI/MHD/SearchParameter/DocumentReference-Creation",
        ),
        p(
            "event",
            Token,
            &["context.event"],
            &[],
            "http://hl7.org/fhir/SearchParameter/DocumentReference-event",
        ),
        p(
            "facility",
            Token,
            &["context.facilityType"],
            &[],
            "http://hl7.org/fhir/SearchParameter/DocumentReference-facility",
        ),
        p(
            "setting",
            Token,
            &["context.practiceSetting"],
            &[],
            "http://hl7.org/fhir/SearchParameter/DocumentReference-setting",
        ),
        p(
            "period",
            Date,
            &["context.period"],
            &[],
            "http://hl7.org/fhir/SearchParameter/DocumentReference-period",
        ),
        p(
            "period-start",
            Date,
            &["context.period.start"],
            &[],
            "https://interop.esante.gouv.fr/ig/fhir/pdsm/SearchParameter/PDSm-DocumentReference-period-start",
        ),
        p(
            "period-end",
            Date,
            &["context.period.end"],
            &[],
            "https://interop.esante.gouv.fr/ig/fhir/pdsm/SearchParameter/PDSm-DocumentReference-period-end",
        ),
        p(
            "format",
            Token,
            &["content.format"],
            &[],
            "http://hl7.org/fhir/SearchParameter/DocumentReference-format",
        ),
        p(
            "related",
            Reference,
            &["context.related"],
            &[],
            "http://hl7.org/fhir/SearchParameter/DocumentReference-related",
        ),
        p(
            "relatesto",
            Reference,
            &["relatesTo.target"],
            &["DocumentReference"],
            "http://hl7.org/fhir/SearchParameter/DocumentReference-relatesto",
        ),
        p(
            "isArchived",
            Token,
            &[
                "extension[https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-ext-is-archived].valueBoolean",
            ],
            &[],
            "https://interop.esante.gouv.fr/ig/fhir/pdsm/SearchParameter/PDSm-isArchived",
        ),
        // MHD's chained author names, read from contained authors (a Practitioner
        // or PractitionerRole inside the DocumentReference) as from the index.
        p(
            "author.given",
            String,
            &[
                "author.resolve().name.given",
                "author.resolve().practitioner.display",
            ],
            &[],
            "http://hl7.org/fhir/SearchParameter/individual-given",
        ),
        p(
            "author.family",
            String,
            &[
                "author.resolve().name.family",
                "author.resolve().practitioner.display",
            ],
            &[],
            "http://hl7.org/fhir/SearchParameter/individual-family",
        ),
        // The XDS uniqueId alone, for its uniqueness (R-MHD-2).
        SearchParamDef {
            name: MASTER_IDENTIFIER,
            kind: Token,
            paths: &["masterIdentifier"],
            targets: &[],
            definition: "",
            internal: true,
        },
        SearchParamDef {
            name: CONTENT_BINARY,
            kind: Reference,
            paths: &["content.attachment.url"],
            targets: &["Binary"],
            definition: "",
            internal: true,
        },
    ],
    profile: "http://hl7.org/fhir/StructureDefinition/DocumentReference",
    operations: &[],
    log: false,
};

/// MHD SubmissionSets and Folders (R-MHD-5): Lists of a patient's space.
static LIST: ResourceDef = ResourceDef {
    name: "List",
    interactions: &[
        Read,
        Vread,
        Update,
        HistoryInstance,
        HistoryType,
        Create,
        SearchType,
    ],
    params: &[
        p(
            "patient",
            Reference,
            &["subject"],
            &["Patient"],
            "http://hl7.org/fhir/SearchParameter/clinical-patient",
        ),
        p(
            "subject",
            Reference,
            &["subject"],
            &["Patient", "Group", "Device", "Location"],
            "http://hl7.org/fhir/SearchParameter/List-subject",
        ),
        p(
            "code",
            Token,
            &["code"],
            &[],
            "http://hl7.org/fhir/SearchParameter/clinical-code",
        ),
        p(
            "status",
            Token,
            &["status"],
            &[],
            "http://hl7.org/fhir/SearchParameter/List-status",
        ),
        p(
            "date",
            Date,
            &["date"],
            &[],
            "http://hl7.org/fhir/SearchParameter/clinical-date",
        ),
        p(
            "identifier",
            Token,
            &["identifier"],
            &[],
            "http://hl7.org/fhir/SearchParameter/clinical-identifier",
        ),
        p(
            "item",
            Reference,
            &["entry.item"],
            &["DocumentReference", "List", "Binary"],
            "http://hl7.org/fhir/SearchParameter/List-item",
        ),
        p(
            "designationType",
            Token,
            &[
                "extension[https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-designationType].valueCodeableConcept",
            ],
            &[],
            "https://profiles.ihe.net/ITI/MHD/SearchParameter/List-DesignationType",
        ),
        p(
            "sourceId",
            Token,
            &[
                "extension[https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-sourceId].valueIdentifier",
            ],
            &[],
            "https://profiles.ihe.net/ITI/MHD/SearchParameter/List-SourceId",
        ),
        p(
            "source",
            Reference,
            &["source"],
            &[
                "Practitioner",
                "PractitionerRole",
                "Patient",
                "Device",
                "Organization",
            ],
            "http://hl7.org/fhir/SearchParameter/List-source",
        ),
        p(
            "source.given",
            String,
            &[
                "source.resolve().name.given",
                "source.resolve().practitioner.display",
            ],
            &[],
            "http://hl7.org/fhir/SearchParameter/individual-given",
        ),
        p(
            "source.family",
            String,
            &[
                "source.resolve().name.family",
                "source.resolve().practitioner.display",
            ],
            &[],
            "http://hl7.org/fhir/SearchParameter/individual-family",
        ),
        p(
            "authorOrg",
            Reference,
            &[
                "extension[https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-authorOrg].valueReference",
            ],
            &["Organization"],
            "https://interop.esante.gouv.fr/ig/fhir/pdsm/SearchParameter/PDSm-List-authorOrg",
        ),
        p(
            "isArchived",
            Token,
            &[
                "extension[https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-ext-is-archived].valueBoolean",
            ],
            &[],
            "https://interop.esante.gouv.fr/ig/fhir/pdsm/SearchParameter/PDSm-isArchived",
        ),
    ],
    profile: "http://hl7.org/fhir/StructureDefinition/List",
    operations: &[],
    log: false,
};

static BINARY: ResourceDef = ResourceDef {
    name: "Binary",
    interactions: &[Read, Vread, Create],
    params: &[],
    profile: "http://hl7.org/fhir/StructureDefinition/Binary",
    operations: &[],
    log: false,
};

static CONSENT: ResourceDef = ResourceDef {
    name: "Consent",
    interactions: &[
        Read,
        Vread,
        Update,
        Delete,
        HistoryInstance,
        HistoryType,
        Create,
        SearchType,
    ],
    params: &[
        p(
            "patient",
            Reference,
            &["patient"],
            &["Patient"],
            "http://hl7.org/fhir/SearchParameter/clinical-patient",
        ),
        p(
            "actor",
            Reference,
            &["provision.actor.reference"],
            &[
                "Practitioner",
                "Organization",
                "PractitionerRole",
                "Patient",
                "RelatedPerson",
                "Group",
                "CareTeam",
                "Device",
            ],
            "http://hl7.org/fhir/SearchParameter/Consent-actor",
        ),
        p(
            "status",
            Token,
            &["status"],
            &[],
            "http://hl7.org/fhir/SearchParameter/Consent-status",
        ),
        p(
            "purpose",
            Token,
            &["provision.purpose"],
            &[],
            "http://hl7.org/fhir/SearchParameter/Consent-purpose",
        ),
    ],
    profile: "http://hl7.org/fhir/StructureDefinition/Consent",
    operations: &[],
    log: false,
};

static COMMUNICATION: ResourceDef = ResourceDef {
    name: "Communication",
    interactions: &[
        Read,
        Vread,
        Delete,
        HistoryInstance,
        HistoryType,
        Create,
        SearchType,
    ],
    params: &[
        p(
            "patient",
            Reference,
            &["subject"],
            &["Patient"],
            "http://hl7.org/fhir/SearchParameter/Communication-patient",
        ),
        p(
            "sender",
            Reference,
            &["sender"],
            &[
                "Practitioner",
                "Organization",
                "PractitionerRole",
                "Patient",
                "Device",
                "RelatedPerson",
            ],
            "http://hl7.org/fhir/SearchParameter/Communication-sender",
        ),
        p(
            "recipient",
            Reference,
            &["recipient"],
            &[
                "Practitioner",
                "Organization",
                "PractitionerRole",
                "Patient",
                "Device",
                "RelatedPerson",
                "Group",
                "CareTeam",
            ],
            "http://hl7.org/fhir/SearchParameter/Communication-recipient",
        ),
        p(
            "part-of",
            Reference,
            &["partOf"],
            &["Communication"],
            "http://hl7.org/fhir/SearchParameter/Communication-part-of",
        ),
        p(
            "sent",
            Date,
            &["sent"],
            &[],
            "http://hl7.org/fhir/SearchParameter/Communication-sent",
        ),
        p(
            "category",
            Token,
            &["category"],
            &[],
            "http://hl7.org/fhir/SearchParameter/Communication-category",
        ),
        SearchParamDef {
            name: PARTICIPANT,
            kind: Token,
            paths: &["sender.identifier", "recipient.identifier"],
            targets: &[],
            definition: "",
            internal: true,
        },
    ],
    profile: "http://hl7.org/fhir/StructureDefinition/Communication",
    operations: &[OperationDef {
        name: "save-attachment",
        definition: "Communication-save-attachment",
        // It reads the message and creates a document of its attachment.
        performs: &[("Communication", Read), ("DocumentReference", Create)],
    }],
    log: false,
};

static AUDIT_EVENT: ResourceDef = ResourceDef {
    name: "AuditEvent",
    interactions: &[Read, SearchType],
    params: &[
        p(
            "patient",
            Reference,
            &["agent.who", "entity.what"],
            &["Patient"],
            "http://hl7.org/fhir/SearchParameter/AuditEvent-patient",
        ),
        p(
            "agent",
            Reference,
            &["agent.who"],
            &[
                "Practitioner",
                "Organization",
                "PractitionerRole",
                "Patient",
                "Device",
                "RelatedPerson",
            ],
            "http://hl7.org/fhir/SearchParameter/AuditEvent-agent",
        ),
        p(
            "date",
            Date,
            &["recorded"],
            &[],
            "http://hl7.org/fhir/SearchParameter/AuditEvent-date",
        ),
        p(
            "type",
            Token,
            &["type"],
            &[],
            "http://hl7.org/fhir/SearchParameter/AuditEvent-type",
        ),
        p(
            "subtype",
            Token,
            &["subtype"],
            &[],
            "http://hl7.org/fhir/SearchParameter/AuditEvent-subtype",
        ),
        p(
            "outcome",
            Token,
            &["outcome"],
            &[],
            "http://hl7.org/fhir/SearchParameter/AuditEvent-outcome",
        ),
        p(
            "entity",
            Reference,
            &["entity.what"],
            &[
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
            ],
            "http://hl7.org/fhir/SearchParameter/AuditEvent-entity",
        ),
        // Refusals answered "not known": a professional's own actions searched by
        // space leave them out (they concern no space the caller was told of).
        SearchParamDef {
            name: CONCEALED,
            kind: Token,
            paths: &[
                "extension[https://dmp-fhir-server.fr/fhir/StructureDefinition/audit-concealed].valueBoolean",
            ],
            targets: &[],
            definition: "",
            internal: true,
        },
        // An event its professional does not read (a request's other event in a
        // space the answer did not tell them of): their own actions leave it out.
        SearchParamDef {
            name: WITHHELD,
            kind: Token,
            paths: &[
                "extension[https://dmp-fhir-server.fr/fhir/StructureDefinition/audit-withheld-from-agent].valueBoolean",
            ],
            targets: &[],
            definition: "",
            internal: true,
        },
        // The agents' IdNat_PS: R-ACC-11 opens a trace to the professional who acted.
        SearchParamDef {
            name: PARTICIPANT,
            kind: Token,
            paths: &["agent.who.identifier"],
            targets: &[],
            definition: "",
            internal: true,
        },
    ],
    profile: "http://hl7.org/fhir/StructureDefinition/AuditEvent",
    operations: &[],
    // The trace grows with every request, reading it included (R-PAT-4).
    log: true,
};

/// The medical profile (R-UI-1): what the holder says of their own health, in their
/// space. Written by the holder (or a representative), read by the professionals the
/// space lets in (R-ACC-1 … 5, 12, 13); no habilitation matrix row names these types,
/// so any profession the matrix names reads them (R-ACC-12 refuses the others).
pub const MEDICAL_PROFILE: &[&str] = &[
    "Observation",
    "Condition",
    "MedicationStatement",
    "AllergyIntolerance",
];

/// Whether `resource_type` is a type of the medical profile.
pub fn is_medical_profile(resource_type: &str) -> bool {
    MEDICAL_PROFILE.contains(&resource_type)
}

/// Interactions of a medical profile type: everything but PATCH and operations
/// (all of them its holder's, R-UI-1).
pub const PROFILE_INTERACTIONS: &[Interaction] = &[
    Read,
    Vread,
    Update,
    Delete,
    HistoryInstance,
    HistoryType,
    Create,
    SearchType,
];

/// The `patient` parameter of a type whose `subject` is the patient.
const SUBJECT_PATIENT: SearchParamDef = p(
    "patient",
    Reference,
    &["subject"],
    &["Patient"],
    "http://hl7.org/fhir/SearchParameter/clinical-patient",
);

/// The `subject` parameter of a clinical type, defined at `definition`.
const fn clinical_subject(definition: &'static str) -> SearchParamDef {
    p(
        "subject",
        Reference,
        &["subject"],
        &["Patient", "Group", "Device", "Location"],
        definition,
    )
}

/// Height and weight (LOINC 8302-2, 29463-7) and any other measure the holder keeps.
static OBSERVATION: ResourceDef = ResourceDef {
    name: "Observation",
    interactions: PROFILE_INTERACTIONS,
    params: &[
        SUBJECT_PATIENT,
        clinical_subject("http://hl7.org/fhir/SearchParameter/Observation-subject"),
        p(
            "code",
            Token,
            &["code"],
            &[],
            "http://hl7.org/fhir/SearchParameter/clinical-code",
        ),
        p(
            "category",
            Token,
            &["category"],
            &[],
            "http://hl7.org/fhir/SearchParameter/Observation-category",
        ),
        p(
            "status",
            Token,
            &["status"],
            &[],
            "http://hl7.org/fhir/SearchParameter/Observation-status",
        ),
        p(
            "date",
            Date,
            &[
                "effectiveDateTime",
                "effectivePeriod",
                "effectiveInstant",
                "effectiveTiming.event",
            ],
            &[],
            "http://hl7.org/fhir/SearchParameter/clinical-date",
        ),
    ],
    profile: "http://hl7.org/fhir/StructureDefinition/Observation",
    operations: &[],
    log: false,
};

/// Conditions, current or past (illnesses, operations, pregnancies…).
static CONDITION: ResourceDef = ResourceDef {
    name: "Condition",
    interactions: PROFILE_INTERACTIONS,
    params: &[
        SUBJECT_PATIENT,
        clinical_subject("http://hl7.org/fhir/SearchParameter/Condition-subject"),
        p(
            "code",
            Token,
            &["code"],
            &[],
            "http://hl7.org/fhir/SearchParameter/clinical-code",
        ),
        p(
            "category",
            Token,
            &["category"],
            &[],
            "http://hl7.org/fhir/SearchParameter/Condition-category",
        ),
        p(
            "clinical-status",
            Token,
            &["clinicalStatus"],
            &[],
            "http://hl7.org/fhir/SearchParameter/Condition-clinical-status",
        ),
        p(
            "verification-status",
            Token,
            &["verificationStatus"],
            &[],
            "http://hl7.org/fhir/SearchParameter/Condition-verification-status",
        ),
        p(
            "onset-date",
            Date,
            &["onsetDateTime", "onsetPeriod"],
            &[],
            "http://hl7.org/fhir/SearchParameter/Condition-onset-date",
        ),
        p(
            "recorded-date",
            Date,
            &["recordedDate"],
            &[],
            "http://hl7.org/fhir/SearchParameter/Condition-recorded-date",
        ),
    ],
    profile: "http://hl7.org/fhir/StructureDefinition/Condition",
    operations: &[],
    log: false,
};

/// Treatments the holder takes (medicines, care, devices).
static MEDICATION_STATEMENT: ResourceDef = ResourceDef {
    name: "MedicationStatement",
    interactions: PROFILE_INTERACTIONS,
    params: &[
        SUBJECT_PATIENT,
        clinical_subject("http://hl7.org/fhir/SearchParameter/MedicationStatement-subject"),
        p(
            "code",
            Token,
            &["medicationCodeableConcept"],
            &[],
            "http://hl7.org/fhir/SearchParameter/clinical-code",
        ),
        p(
            "status",
            Token,
            &["status"],
            &[],
            "http://hl7.org/fhir/SearchParameter/medications-status",
        ),
        p(
            "effective",
            Date,
            &["effectiveDateTime", "effectivePeriod"],
            &[],
            "http://hl7.org/fhir/SearchParameter/MedicationStatement-effective",
        ),
    ],
    profile: "http://hl7.org/fhir/StructureDefinition/MedicationStatement",
    operations: &[],
    log: false,
};

/// Allergies and intolerances (food, medicines, others).
static ALLERGY_INTOLERANCE: ResourceDef = ResourceDef {
    name: "AllergyIntolerance",
    interactions: PROFILE_INTERACTIONS,
    params: &[
        p(
            "patient",
            Reference,
            &["patient"],
            &["Patient"],
            "http://hl7.org/fhir/SearchParameter/clinical-patient",
        ),
        p(
            "code",
            Token,
            &["code", "reaction.substance"],
            &[],
            "http://hl7.org/fhir/SearchParameter/clinical-code",
        ),
        p(
            "clinical-status",
            Token,
            &["clinicalStatus"],
            &[],
            "http://hl7.org/fhir/SearchParameter/AllergyIntolerance-clinical-status",
        ),
        p(
            "verification-status",
            Token,
            &["verificationStatus"],
            &[],
            "http://hl7.org/fhir/SearchParameter/AllergyIntolerance-verification-status",
        ),
        p(
            "type",
            Token,
            &["type"],
            &[],
            "http://hl7.org/fhir/SearchParameter/clinical-type",
        ),
        p(
            "category",
            Token,
            &["category"],
            &[],
            "http://hl7.org/fhir/SearchParameter/AllergyIntolerance-category",
        ),
        p(
            "criticality",
            Token,
            &["criticality"],
            &[],
            "http://hl7.org/fhir/SearchParameter/AllergyIntolerance-criticality",
        ),
        p(
            "date",
            Date,
            &["recordedDate"],
            &[],
            "http://hl7.org/fhir/SearchParameter/clinical-date",
        ),
    ],
    profile: "http://hl7.org/fhir/StructureDefinition/AllergyIntolerance",
    operations: &[],
    log: false,
};

/// Every served resource type, in CapabilityStatement order.
pub static RESOURCES: &[&ResourceDef] = &[
    &PATIENT,
    &DOCUMENT_REFERENCE,
    &LIST,
    &BINARY,
    &CONSENT,
    &COMMUNICATION,
    &OBSERVATION,
    &CONDITION,
    &MEDICATION_STATEMENT,
    &ALLERGY_INTOLERANCE,
    &AUDIT_EVENT,
];

/// The definition of a served type, if it is served.
pub fn resource(name: &str) -> Option<&'static ResourceDef> {
    RESOURCES.iter().copied().find(|def| def.name == name)
}

/// Search parameters every type has, handled on the resource table itself.
pub const COMMON_PARAMS: &[(&str, ParamKind)] = &[("_id", Token), ("_lastUpdated", Date)];

/// Parameters that may sort results: the date parameters plus `_lastUpdated`.
pub fn sortable(def: &ResourceDef, name: &str) -> bool {
    name == "_lastUpdated" || def.param(name).is_some_and(|param| param.kind == Date)
}

//! Checks of incoming resources: R4 structure (through fhir-sdk, in the fhir-check
//! crate) and the shape SPEC §3 requires of each type.

use serde_json::Value;

use super::extract::{parse_reference, values_at};
use super::stored::Incoming;
use super::{FINESS_SYSTEM, IDNAT_PS_SYSTEM};
use crate::error::{ApiError, IssueCode};

/// Runs every check on a resource received for `expected_type` (at once if it
/// passed them already, see [`check_ahead`]). `type_systems`: the code systems a
/// document's type is written in, those of the habilitation matrix in force
/// (`access::Matrix::type_systems`).
pub fn check(
    expected_type: &str,
    incoming: &Incoming,
    type_systems: &[String],
) -> Result<(), ApiError> {
    if incoming.checked_as() == Some(expected_type) {
        return Ok(());
    }
    match incoming.resource_type() {
        Some(kind) if kind == expected_type => {}
        Some(kind) => {
            return Err(ApiError::bad_request(
                IssueCode::Invalid,
                format!("resourceType {kind} does not match the endpoint's type {expected_type}"),
            )
            .at("resourceType"));
        }
        None => {
            return Err(
                ApiError::bad_request(IssueCode::Required, "resourceType is missing")
                    .at("resourceType"),
            );
        }
    }
    if let Some(id) = incoming.value().get("id")
        && !id.as_str().is_some_and(super::is_valid_id)
    {
        return Err(
            ApiError::bad_request(IssueCode::Value, "id must match [A-Za-z0-9-.]{1,64}")
                .at(format!("{expected_type}.id")),
        );
    }
    if let Some(path) = modifier_extension(incoming.value(), expected_type) {
        return Err(ApiError::unprocessable(
            IssueCode::NotSupported,
            format!("{path}: this server understands no modifier extension, so it refuses the resource (FHIR R4 §2.4)"),
        )
        .at(path));
    }
    if let Some(path) = bad_string(incoming.value(), expected_type) {
        return Err(ApiError::bad_request(
            IssueCode::Value,
            format!(
                "{path}: FHIR strings always hold non-whitespace content, and no whitespace but spaces, tabs and line breaks"
            ),
        )
        .at(path));
    }
    // The structural check sees the document's bytes (`data`) as a short stand-in:
    // their base64 is checked here, in place, and a body is not copied eight times over
    // by the typed check (memory per request stays near the body's size).
    if let Some(path) = bad_base64(incoming.value(), expected_type) {
        return Err(
            ApiError::bad_request(IssueCode::Value, format!("{path} is not base64")).at(path),
        );
    }
    let text = serde_json::to_string(&WithoutBytes(incoming.value())).expect("JSON serialises");
    fhir_check::check(expected_type, &text).map_err(|issue| {
        // serde reports a missing mandatory element at its parent: name the element.
        let missing = issue
            .message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next());
        match missing {
            Some(field) => ApiError::bad_request(
                IssueCode::Required,
                format!("not a valid R4 {expected_type}: {field} is required"),
            )
            .at(format!("{}.{field}", issue.path)),
            None => ApiError::bad_request(
                IssueCode::Structure,
                format!("not a valid R4 {expected_type}: {}", issue.message),
            )
            .at(issue.path),
        }
    })?;
    if let Some(path) = bad_extension(incoming.value(), expected_type) {
        return Err(ApiError::bad_request(
            IssueCode::Structure,
            format!(
                "{path}: an extension has a url and either one value[x] or extensions, and nothing else (FHIR R4 §2.17, ext-1)"
            ),
        )
        .at(path));
    }
    check_contained(incoming.value(), expected_type)?;
    check_is_archived(incoming.value(), expected_type)?;
    match expected_type {
        "Patient" => check_patient(incoming.value()),
        "DocumentReference" => check_document_reference(incoming.value(), type_systems),
        "Binary" => {
            require(incoming.value(), "Binary", &["contentType"])?;
            check_media_type(incoming.value(), "Binary.contentType")
        }
        "Consent" => check_consent(incoming.value()),
        "Communication" => check_communication(incoming.value()),
        "List" => check_list(incoming.value()),
        kind if super::definitions::is_medical_profile(kind) => {
            check_profile_entry(kind, incoming.value())
        }
        _ => Ok(()),
    }?;
    check_pdsm_profiles(expected_type, incoming.value())
}

/// [`check`] on the request's own thread, before the writer's turn: SQLite has one
/// writer, and the checks (the profile's typed parse above all) were a tenth of its
/// time per deposit. The resource is marked checked; the writer checks it again only
/// if it changed since (a conditional reference resolved, an id set).
pub fn check_ahead(
    expected_type: &'static str,
    incoming: &mut Incoming,
    type_systems: &[String],
) -> Result<(), ApiError> {
    check(expected_type, incoming, type_systems)?;
    incoming.mark_checked(expected_type);
    Ok(())
}

/// The invariants of contained resources (FHIR R4 DomainResource): dom-2, none
/// contains others; dom-4, none has `meta.versionId` or `meta.lastUpdated`; dom-5,
/// none has `meta.security`. 422 naming the element.
fn check_contained(value: &Value, kind: &str) -> Result<(), ApiError> {
    let Some(contained) = value.get("contained").and_then(Value::as_array) else {
        return Ok(());
    };
    for (index, resource) in contained.iter().enumerate() {
        let path = format!("{kind}.contained[{index}]");
        let breach = |invariant: &str, element: &str, text: &str| {
            Err(ApiError::unprocessable(
                IssueCode::Invariant,
                format!("{path}: {text} (FHIR invariant {invariant})"),
            )
            .at(format!("{path}.{element}")))
        };
        if resource.get("contained").is_some() {
            return breach(
                "dom-2",
                "contained",
                "a contained resource contains no other",
            );
        }
        let meta = resource.get("meta");
        for element in ["versionId", "lastUpdated"] {
            if meta.and_then(|meta| meta.get(element)).is_some() {
                return breach(
                    "dom-4",
                    &format!("meta.{element}"),
                    &format!("a contained resource has no meta.{element}"),
                );
            }
        }
        if meta.and_then(|meta| meta.get("security")).is_some() {
            return breach(
                "dom-5",
                "meta.security",
                "a contained resource has no security labels of its own",
            );
        }
    }
    Ok(())
}

/// PDSm's `isArchived` extension is one boolean and nothing else (TD3.3d): one that
/// carries more, or a second one, is refused, whatever path wrote it.
fn check_is_archived(value: &Value, kind: &str) -> Result<(), ApiError> {
    let archived = values_at(value, "extension")
        .into_iter()
        .filter(|extension| {
            extension.get("url").and_then(Value::as_str) == Some(super::mhd::IS_ARCHIVED_EXTENSION)
        })
        .count();
    if archived > 1 {
        return Err(ApiError::unprocessable(
            IssueCode::Value,
            "a resource carries the PDSm isArchived extension once",
        )
        .at(format!("{kind}.extension")));
    }
    for (index, extension) in values_at(value, "extension").into_iter().enumerate() {
        if extension.get("url").and_then(Value::as_str) != Some(super::mhd::IS_ARCHIVED_EXTENSION) {
            continue;
        }
        let well_formed = extension.as_object().is_some_and(|members| {
            members.len() == 2 && members.get("valueBoolean").is_some_and(Value::is_boolean)
        });
        if !well_formed {
            return Err(ApiError::unprocessable(
                IssueCode::Value,
                "the PDSm isArchived extension holds a valueBoolean and nothing else",
            )
            .at(format!("{kind}.extension[{index}]")));
        }
    }
    Ok(())
}

/// Most entries of one List (a SubmissionSet or Folder of a space's documents).
pub const MAX_LIST_ENTRIES: usize = 1000;

/// A List (MHD SubmissionSet or Folder) belongs to one patient's space (R-MHD-5).
fn check_list(value: &Value) -> Result<(), ApiError> {
    require(value, "List", &["status", "mode", "subject"])?;
    // Every answer decides each entry: a List holds a bounded number of them.
    let entries = values_at(value, "entry").len();
    if entries > MAX_LIST_ENTRIES {
        return Err(ApiError::new(
            actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
            IssueCode::TooCostly,
            format!("a List holds at most {MAX_LIST_ENTRIES} entries, not {entries}"),
        )
        .at("List.entry"));
    }
    require_patient_reference(value, "List", "subject")
}

/// The elements a PDSm profile requires, as (parent path, child): every value at
/// the parent (the resource for "") must carry the child. `custodian`, required by
/// the profiles, is left out: PDSm4DMP's requests never send it, the DMP being the
/// custodian of what it stores.
type Required = &'static [(&'static str, &'static str)];

const PDSM_COMPREHENSIVE_DOCUMENT: Required = &[
    ("", "masterIdentifier"),
    ("", "status"),
    ("", "type"),
    ("", "category"),
    ("", "subject"),
    ("", "date"),
    ("", "author"),
    ("", "securityLabel"),
    ("", "content"),
    ("", "context"),
    ("relatesTo", "code"),
    ("relatesTo", "target"),
    ("content", "attachment"),
    ("content", "format"),
    ("content.attachment", "contentType"),
    ("content.attachment", "language"),
    ("content.attachment", "size"),
    ("content.attachment", "hash"),
    ("content.attachment", "title"),
    ("content.attachment", "creation"),
    ("context", "period"),
    ("context", "facilityType"),
    ("context", "practiceSetting"),
    ("context", "sourcePatientInfo"),
    ("context.period", "start"),
];

const PDSM_SIMPLIFIED_PUBLISH: Required = &[
    ("", "masterIdentifier"),
    ("", "status"),
    ("", "subject"),
    ("", "date"),
    ("", "author"),
    ("", "content"),
    ("relatesTo", "code"),
    ("relatesTo", "target"),
    ("content", "attachment"),
    ("content.attachment", "contentType"),
    ("content.attachment", "data"),
    ("content.attachment", "title"),
];

const PDSM_SUBMISSION_SET: Required = &[
    ("", "status"),
    ("", "mode"),
    ("", "code"),
    ("", "subject"),
    ("", "date"),
    ("", "source"),
    (
        "",
        "extension[https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-designationType]",
    ),
    (
        "",
        "extension[https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-sourceId]",
    ),
    ("entry", "item"),
];

const PDSM_FOLDER: Required = &[
    ("", "status"),
    ("", "mode"),
    ("", "title"),
    ("", "code"),
    ("", "subject"),
    ("", "date"),
    ("", "entry"),
    (
        "",
        "extension[https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-designationType]",
    ),
    ("entry", "item"),
];

/// R-MHD-2: a resource that claims a PDSm profile in `meta.profile` has what the
/// profile requires (422 naming the element); other resources keep the plain FHIR
/// checks.
fn check_pdsm_profiles(kind: &str, value: &Value) -> Result<(), ApiError> {
    use super::mhd;
    for profile in values_at(value, "meta.profile") {
        let profile = profile.as_str().unwrap_or_default();
        let profile = profile.split('|').next().unwrap_or_default();
        let required = match (kind, profile) {
            ("DocumentReference", mhd::PDSM_DOCUMENT_REFERENCE) => PDSM_COMPREHENSIVE_DOCUMENT,
            ("DocumentReference", mhd::PDSM_SIMPLIFIED_PUBLISH) => PDSM_SIMPLIFIED_PUBLISH,
            ("List", mhd::PDSM_SUBMISSION_SET) => PDSM_SUBMISSION_SET,
            ("List", mhd::PDSM_FOLDER) => PDSM_FOLDER,
            _ => continue,
        };
        for (parent, child) in required {
            let parents = if parent.is_empty() {
                vec![value]
            } else {
                values_at(value, parent)
            };
            for holder in parents {
                if values_at(holder, child).is_empty() {
                    let element = child.split('[').next().unwrap_or(child);
                    let shown = if element == "extension" {
                        child
                            .rsplit('/')
                            .next()
                            .unwrap_or(child)
                            .trim_end_matches(']')
                            .to_owned()
                    } else {
                        element.to_owned()
                    };
                    let path = if parent.is_empty() {
                        format!("{kind}.{shown}")
                    } else {
                        format!("{kind}.{parent}.{shown}")
                    };
                    let short = profile.rsplit('/').next().unwrap_or(profile);
                    return Err(ApiError::unprocessable(
                        IssueCode::Required,
                        format!(
                            "{path} is required by the profile {short} that the resource claims"
                        ),
                    )
                    .at(path));
                }
            }
        }
    }
    Ok(())
}

/// The path (`Type.element[0].member`) of the first member of `value` for which
/// `breaks(name, value)` holds; the path is built only for what is found.
fn first_breach(
    value: &Value,
    root: &str,
    breaks: &dyn Fn(&str, &Value) -> bool,
) -> Option<String> {
    fn find(value: &Value, breaks: &dyn Fn(&str, &Value) -> bool) -> Option<Vec<String>> {
        match value {
            Value::Object(members) => members.iter().find_map(|(name, value)| {
                if breaks(name, value) {
                    return Some(vec![name.clone()]);
                }
                find(value, breaks).map(|mut path| {
                    path.push(name.clone());
                    path
                })
            }),
            Value::Array(items) => items.iter().enumerate().find_map(|(index, item)| {
                find(item, breaks).map(|mut path| {
                    path.push(format!("[{index}]"));
                    path
                })
            }),
            _ => None,
        }
    }
    find(value, breaks).map(|mut path| {
        path.push(root.to_owned());
        path.reverse();
        path.join(".").replace(".[", "[")
    })
}

/// The first `modifierExtension`: one the server does not understand changes the
/// meaning of what carries it, so the resource is refused.
fn modifier_extension(value: &Value, root: &str) -> Option<String> {
    first_breach(value, root, &|name, _| name == "modifierExtension")
}

/// The first string value FHIR does not allow (see [`is_fhir_string`]), in a member
/// or in an array of strings.
fn bad_string(value: &Value, root: &str) -> Option<String> {
    // `Narrative.div` is xhtml, not a string: a no-break space there is content.
    first_breach(value, root, &|name, value| match value {
        Value::String(_) if name == "div" => false,
        Value::String(text) => !is_fhir_string(text),
        Value::Array(items) => items
            .iter()
            .any(|item| item.as_str().is_some_and(|text| !is_fhir_string(text))),
        _ => false,
    })
}

/// The first `extension` array holding an extension of the wrong shape: the
/// structural check's types let unknown members and several values through.
fn bad_extension(value: &Value, root: &str) -> Option<String> {
    let well_formed = |extension: &Value| {
        let Some(members) = extension.as_object() else {
            return false;
        };
        let values = members
            .keys()
            .filter(|key| {
                key.strip_prefix("value")
                    .is_some_and(|kind| kind.starts_with(|c: char| c.is_ascii_uppercase()))
            })
            .count();
        members.get("url").is_some_and(Value::is_string)
            && values <= 1
            && !(values == 1 && members.contains_key("extension"))
            && members.keys().all(|key| {
                matches!(key.as_str(), "id" | "url" | "extension") || key.starts_with("value")
            })
    };
    first_breach(value, root, &|name, value| {
        matches!(name, "extension" | "modifierExtension")
            && value
                .as_array()
                .is_some_and(|items| !items.iter().all(well_formed))
    })
}

/// The first large `data` string that is not base64 (FHIR's base64Binary: the
/// alphabet in groups of four, `=` padding only at the end, whitespace allowed
/// between).
fn bad_base64(value: &Value, root: &str) -> Option<String> {
    first_breach(value, root, &|name, value| {
        name == "data"
            && value
                .as_str()
                .is_some_and(|text| text.len() > LARGE_BYTES && !is_base64(text.as_bytes()))
    })
}

/// Whether a string is one FHIR allows (`[ \r\n\t\S]+`, with non-whitespace
/// content), whitespace read as the validators read it (Unicode's).
fn is_fhir_string(text: &str) -> bool {
    text.chars().any(|c| !c.is_whitespace())
        && text
            .chars()
            .all(|c| !c.is_whitespace() || matches!(c, ' ' | '\t' | '\r' | '\n'))
}

/// Strings under a `data` member longer than this are checked in place and shown to
/// the structural check as a stand-in.
const LARGE_BYTES: usize = 256;

/// A resource serialised with each large `data` string replaced by a short valid
/// base64 stand-in (see [`bad_base64`]).
struct WithoutBytes<'a>(&'a Value);

impl serde::Serialize for WithoutBytes<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self.0 {
            Value::Object(members) => {
                let mut map = serializer.serialize_map(Some(members.len()))?;
                for (name, value) in members {
                    match value {
                        Value::String(text) if name == "data" && text.len() > LARGE_BYTES => {
                            map.serialize_entry(name, "AAAA")?;
                        }
                        other => map.serialize_entry(name, &WithoutBytes(other))?,
                    }
                }
                map.end()
            }
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&WithoutBytes(item))?;
                }
                seq.end()
            }
            other => other.serialize(serializer),
        }
    }
}

fn is_base64(bytes: &[u8]) -> bool {
    // FHIR's base64Binary: groups of four base64 characters, whitespace between them.
    let mut significant = 0usize;
    let mut padding = 0usize;
    for byte in bytes {
        match byte {
            b' ' | b'\t' | b'\r' | b'\n' => {}
            b'=' => {
                padding += 1;
                significant += 1;
            }
            byte if padding == 0
                && (byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'/')) =>
            {
                significant += 1;
            }
            _ => return false,
        }
    }
    significant.is_multiple_of(4) && padding <= 2
}

/// Whether `text` is a media type `type/subtype` with optional `; name=value`
/// parameters, in the token characters of RFC 9110 (no spaces inside a token, no
/// control characters): what a `Content-Type` header can carry.
pub fn is_media_type(text: &str) -> bool {
    let token = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    let mut parts = text.split(';');
    let essence = parts.next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    // A content's type is a type, not a range (`*/*`, `text/*` are for Accept).
    text.len() <= 255
        && token(kind)
        && token(subtype)
        && kind != "*"
        && subtype != "*"
        && parts.all(|parameter| {
            parameter
                .trim()
                .split_once('=')
                .is_some_and(|(name, value)| {
                    token(name.trim())
                        && (token(value.trim()) || {
                            let value = value.trim();
                            value.len() >= 2
                                && value.starts_with('"')
                                && value.ends_with('"')
                                && value
                                    .bytes()
                                    .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
                        })
                })
        })
}

fn check_media_type(value: &Value, path: &str) -> Result<(), ApiError> {
    match value.get("contentType").and_then(Value::as_str) {
        Some(media_type) if is_media_type(media_type) => Ok(()),
        _ => Err(ApiError::unprocessable(
            IssueCode::Value,
            format!("{path} must be a media type such as application/pdf"),
        )
        .at(path.to_owned())),
    }
}

fn missing(path: String) -> ApiError {
    ApiError::unprocessable(IssueCode::Required, format!("{path} is required")).at(path)
}

fn require(value: &Value, kind: &str, elements: &[&str]) -> Result<(), ApiError> {
    for element in elements {
        let present = match value.get(element) {
            None | Some(Value::Null) => false,
            Some(Value::Array(items)) => !items.is_empty(),
            Some(_) => true,
        };
        if !present {
            return Err(missing(format!("{kind}.{element}")));
        }
    }
    Ok(())
}

/// The reference at `element` must point at a Patient.
fn require_patient_reference(value: &Value, kind: &str, element: &str) -> Result<(), ApiError> {
    let reference = value
        .get(element)
        .and_then(|target| target.get("reference"))
        .and_then(Value::as_str);
    match reference.map(|text| (text, parse_reference(text))) {
        Some((_, Some((target, _)))) if target == "Patient" => Ok(()),
        Some((text, _)) if text.starts_with("urn:uuid:") => Ok(()),
        Some((text, _)) => Err(ApiError::unprocessable(
            IssueCode::Value,
            format!("{kind}.{element} must reference a Patient (Patient/id), got {text:?}"),
        )
        .at(format!("{kind}.{element}"))),
        None => Err(missing(format!("{kind}.{element}"))),
    }
}

fn check_document_reference(value: &Value, type_systems: &[String]) -> Result<(), ApiError> {
    require(
        value,
        "DocumentReference",
        &["status", "type", "subject", "content"],
    )?;
    require_patient_reference(value, "DocumentReference", "subject")?;
    check_document_type(value, type_systems)?;
    // The visibility codes (R-ACC-7, R-PAT-1, R-PAT-5) are read from securityLabel,
    // as PDSm puts them: in meta.security they would be stored and never applied.
    if values_at(value, "meta.security.system")
        .into_iter()
        .filter_map(Value::as_str)
        .any(super::mhd::is_tre_a07)
    {
        return Err(ApiError::unprocessable(
            IssueCode::Value,
            "DocumentReference.meta.security: a TRE_A07 visibility code (MASQUE_PS, INVISIBLE_PATIENT…) goes in securityLabel, where it is applied",
        )
        .at("DocumentReference.meta.security"));
    }
    for (index, content) in values_at(value, "content").into_iter().enumerate() {
        let attachment = content.get("attachment");
        let has_payload = attachment.is_some_and(|attachment| {
            attachment.get("data").is_some() || attachment.get("url").is_some()
        });
        if !has_payload {
            return Err(ApiError::unprocessable(
                IssueCode::Required,
                "each content.attachment needs data (inline) or url (a Binary)",
            )
            .at(format!("DocumentReference.content[{index}].attachment")));
        }
    }
    Ok(())
}

/// The habilitation matrix (R-ACC-6) compares a document's type codings with its own,
/// exactly: a type is written the one way the matrix reads it. At least one coding;
/// each with a system and a code, neither padded; the system one of those the matrix
/// in force writes (`type_systems`; the shipped matrix's are JDV_J07's, DOMAIN-CODES:
/// LOINC as `http://loinc.org`, not its OID, not `https`, not with a trailing slash;
/// TRE_A05 by its URL, not its OID). A type the matrix cannot read would be stored
/// and then read by no professional the matrix opens "all but…" to.
fn check_document_type(value: &Value, type_systems: &[String]) -> Result<(), ApiError> {
    let codings = values_at(value, "type.coding");
    if codings.is_empty() {
        return Err(ApiError::unprocessable(
            IssueCode::Required,
            "DocumentReference.type needs a coding (system and code): the habilitation matrix reads document types by code",
        )
        .at("DocumentReference.type.coding"));
    }
    for (index, coding) in codings.into_iter().enumerate() {
        let path = format!("DocumentReference.type.coding[{index}]");
        let system = coding.get("system").and_then(Value::as_str).unwrap_or("");
        let code = coding.get("code").and_then(Value::as_str).unwrap_or("");
        let canonical = |text: &str| !text.is_empty() && text.trim() == text;
        if !canonical(system) || !canonical(code) {
            return Err(ApiError::unprocessable(
                IssueCode::Value,
                "each type coding has a system and a code, without surrounding spaces",
            )
            .at(path));
        }
        // A code the matrix would read as another: a LOINC code in LOINC's own
        // syntax, any other of visible ASCII only. A zero-width or look-alike
        // character would make a kept type an unknown one, which "all but…"
        // professions read.
        let code_as_written = if system == super::LOINC_SYSTEM {
            loinc_code_syntax(code)
        } else {
            code.chars().all(|c| c.is_ascii_graphic())
        };
        if !code_as_written {
            return Err(ApiError::unprocessable(
                IssueCode::Value,
                "a document type's code is written as its code system writes it: LOINC's as digits, a hyphen and their check digit (11488-4), others in visible ASCII characters",
            )
            .at(format!("{path}.code")));
        }
        if !type_systems.iter().any(|known| known == system) {
            return Err(ApiError::unprocessable(
                IssueCode::Value,
                format!(
                    "a document type is a code of a system the habilitation matrix reads, written as it writes it ({}), not {system}",
                    type_systems.join(", ")
                ),
            )
            .at(format!("{path}.system")));
        }
    }
    Ok(())
}

/// LOINC's code syntax: one to seven digits without a leading zero, a hyphen, and
/// the check digit LOINC computes from them (mod 10, Luhn's): a padded or mistyped
/// code is no LOINC code.
fn loinc_code_syntax(code: &str) -> bool {
    let Some((number, check)) = code.split_once('-') else {
        return false;
    };
    let digits_only = |text: &str| text.bytes().all(|b| b.is_ascii_digit());
    if !(1..=7).contains(&number.len())
        || number.starts_with('0')
        || check.len() != 1
        || !digits_only(number)
        || !digits_only(check)
    {
        return false;
    }
    let sum: u32 = number
        .bytes()
        .chain(check.bytes())
        .rev()
        .enumerate()
        .map(|(position, digit)| {
            let digit = u32::from(digit - b'0');
            match position % 2 {
                0 => digit,
                _ if digit * 2 > 9 => digit * 2 - 9,
                _ => digit * 2,
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn check_consent(value: &Value) -> Result<(), ApiError> {
    require(
        value,
        "Consent",
        &["status", "scope", "category", "patient"],
    )?;
    // FHIR invariant ppc-1: a Consent says which policy it applies.
    if value.get("policy").is_none() && value.get("policyRule").is_none() {
        return Err(ApiError::unprocessable(
            IssueCode::Invariant,
            "Consent needs policy or policyRule (FHIR invariant ppc-1), e.g. policyRule v3-ActCode OPTIN",
        )
        .at("Consent.policyRule"));
    }
    require_patient_reference(value, "Consent", "patient")?;
    check_consent_provision(value)
}

/// A Consent is stored only if the rules can apply it as written: its provision is
/// not nested and has no limit they would not apply (period, data, actions…), and a
/// deny names each actor as the rules read them (R-ACC-2) — a professional by
/// IdNat_PS, an organisation by FINESS — so that a patient never believes someone
/// blocked (or authorised only for a while) who is not.
fn check_consent_provision(value: &Value) -> Result<(), ApiError> {
    let unapplied = |path: &str, message: &str| {
        Err(ApiError::unprocessable(IssueCode::Value, message.to_owned()).at(path.to_owned()))
    };
    if value.pointer("/provision/provision").is_some() {
        return unapplied(
            "Consent.provision.provision",
            "nested provisions are not applied: one Consent per decision",
        );
    }
    // The rules read a provision's type, actors and purposes: a limit they would not
    // apply (a period, some data, some actions) would make a permit wider, or a deny
    // narrower, than the patient meant.
    for element in [
        "period",
        "action",
        "securityLabel",
        "class",
        "code",
        "dataPeriod",
        "data",
    ] {
        if value
            .get("provision")
            .and_then(|provision| provision.get(element))
            .is_some()
        {
            return unapplied(
                &format!("Consent.provision.{element}"),
                &format!(
                    "provision.{element} is not applied: a Consent here is decided by its type, actors and purposes only"
                ),
            );
        }
    }
    let kind = value.pointer("/provision/type").and_then(Value::as_str);
    if value.get("provision").is_some() && !matches!(kind, Some("permit" | "deny")) {
        return unapplied(
            "Consent.provision.type",
            "provision.type says permit or deny: the rules apply nothing else",
        );
    }
    // The rules read a Consent naming actors (an authorisation, a block) or one with
    // a purpose and no actor (an emergency setting): not both, and only their purposes.
    let has_actors = !values_at(value, "provision.actor").is_empty();
    let purposes = values_at(value, "provision.purpose");
    if has_actors && !purposes.is_empty() {
        return unapplied(
            "Consent.provision.purpose",
            "a Consent names actors (authorise, block) or a purpose (BTG, ETREAT, MASKED for the whole space), not both",
        );
    }
    for (index, purpose) in purposes.into_iter().enumerate() {
        let code = purpose.get("code").and_then(Value::as_str);
        if !matches!(code, Some("BTG" | "ETREAT" | "MASKED")) {
            return unapplied(
                &format!("Consent.provision.purpose[{index}]"),
                "the purposes the rules apply are BTG, ETREAT and MASKED (v3-ActReason)",
            );
        }
    }
    if kind != Some("deny") {
        return Ok(());
    }
    for (index, actor) in values_at(value, "provision.actor").into_iter().enumerate() {
        let identifier = actor.pointer("/reference/identifier");
        let system = identifier
            .and_then(|identifier| identifier.get("system"))
            .and_then(Value::as_str);
        let id = identifier
            .and_then(|identifier| identifier.get("value"))
            .and_then(Value::as_str);
        let known = matches!(system, Some(IDNAT_PS_SYSTEM | FINESS_SYSTEM))
            && id.is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()));
        if !known {
            return unapplied(
                &format!("Consent.provision.actor[{index}].reference.identifier"),
                "a deny names a professional by IdNat_PS (system urn:oid:1.2.250.1.71.4.2.1) or an organisation by FINESS (system urn:oid:1.2.250.1.71.4.2.2): any other form could not be applied",
            );
        }
    }
    Ok(())
}

fn check_communication(value: &Value) -> Result<(), ApiError> {
    require(value, "Communication", &["status", "subject"])?;
    require_patient_reference(value, "Communication", "subject")
}

/// A medical profile entry (R-UI-1) belongs to one space, named by its patient
/// reference, and says what it is about (`code`; a treatment's medication).
fn check_profile_entry(kind: &str, value: &Value) -> Result<(), ApiError> {
    let patient = if kind == "AllergyIntolerance" {
        "patient"
    } else {
        "subject"
    };
    match kind {
        "MedicationStatement" => require(value, kind, &["status", patient])?,
        "Observation" => require(value, kind, &["status", "code", patient])?,
        _ => require(value, kind, &["code", patient])?,
    }
    require_patient_reference(value, kind, patient)?;
    check_clinical_invariants(kind, value)?;
    // Masking and visibility labels (MASQUE_PS, INVISIBLE_REPRESENTANTS_LEGAUX…)
    // are not applied to the medical profile: every professional the space lets in
    // reads it, and so does a representative. Refused rather than kept to no effect.
    if value
        .pointer("/meta/security")
        .and_then(Value::as_array)
        .is_some_and(|labels| !labels.is_empty())
        || values_at(value, "meta.tag.system")
            .into_iter()
            .filter_map(Value::as_str)
            .any(super::mhd::is_tre_a07)
    {
        return Err(ApiError::unprocessable(
            IssueCode::NotSupported,
            format!(
                "{kind}.meta.security: the medical profile carries no security label (it is read by every professional the space lets in and by its representatives); leave it out, or deposit a document to mask"
            ),
        )
        .at(format!("{kind}.meta.security")));
    }
    Ok(())
}

/// The R4 invariants of the medical profile's types that a structural check does not
/// see: ait-1 / ait-2 (AllergyIntolerance), con-4 / con-5 (Condition), obs-3 / obs-6 /
/// obs-7 (Observation). 422 naming the invariant. (The data types' own invariants,
/// such as a Period's start before its end, are not checked, as for every type.)
fn check_clinical_invariants(kind: &str, value: &Value) -> Result<(), ApiError> {
    let breach = |invariant: &str, path: &str, text: &str| {
        Err(ApiError::unprocessable(
            IssueCode::Invariant,
            format!("{kind}: {text} (FHIR R4 {invariant})"),
        )
        .at(format!("{kind}.{path}")))
    };
    // A code of the type's own status system (another system's « resolved » is not).
    let codes = |element: &str| -> Vec<&str> {
        let system = match (kind, element) {
            ("AllergyIntolerance", "verificationStatus") => {
                "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
            }
            ("AllergyIntolerance", _) => {
                "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
            }
            (_, "verificationStatus") => {
                "http://terminology.hl7.org/CodeSystem/condition-ver-status"
            }
            _ => "http://terminology.hl7.org/CodeSystem/condition-clinical",
        };
        values_at(value, &format!("{element}.coding"))
            .into_iter()
            .filter(|coding| coding["system"] == system)
            .filter_map(|coding| coding["code"].as_str())
            .collect()
    };
    let entered_in_error = codes("verificationStatus").contains(&"entered-in-error");
    let clinical_status = value.get("clinicalStatus").is_some();
    match kind {
        "AllergyIntolerance" if !entered_in_error && !clinical_status => breach(
            "ait-1",
            "clinicalStatus",
            "clinicalStatus is required unless verificationStatus is entered-in-error",
        ),
        "AllergyIntolerance" | "Condition" if entered_in_error && clinical_status => breach(
            if kind == "Condition" {
                "con-5"
            } else {
                "ait-2"
            },
            "clinicalStatus",
            "clinicalStatus is not given when verificationStatus is entered-in-error",
        ),
        "Condition"
            if value
                .as_object()
                .is_some_and(|object| object.keys().any(|key| key.starts_with("abatement")))
                && !codes("clinicalStatus")
                    .iter()
                    .any(|code| matches!(*code, "inactive" | "resolved" | "remission")) =>
        {
            breach(
                "con-4",
                "clinicalStatus",
                "an abated condition's clinicalStatus is inactive, resolved or remission",
            )
        }
        "Observation" => {
            if values_at(value, "referenceRange").into_iter().any(|range| {
                range.get("low").is_none()
                    && range.get("high").is_none()
                    && range.get("text").is_none()
            }) {
                return breach(
                    "obs-3",
                    "referenceRange",
                    "a reference range has a low, a high or a text",
                );
            }
            let has_value = |object: &Value| {
                object
                    .as_object()
                    .is_some_and(|object| object.keys().any(|key| key.starts_with("value")))
            };
            if value.get("dataAbsentReason").is_some() && has_value(value) {
                return breach(
                    "obs-6",
                    "dataAbsentReason",
                    "dataAbsentReason is given only when there is no value[x]",
                );
            }
            let coded = |concept: &Value| -> Vec<(Option<String>, Option<String>)> {
                concept["coding"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|coding| {
                        (
                            coding["system"].as_str().map(str::to_owned),
                            coding["code"].as_str().map(str::to_owned),
                        )
                    })
                    .collect()
            };
            let own = coded(&value["code"]);
            let repeats_code =
                value["component"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|component| {
                        coded(&component["code"])
                            .iter()
                            .any(|coding| own.contains(coding))
                    });
            if repeats_code && has_value(value) {
                return breach(
                    "obs-7",
                    "value[x]",
                    "an Observation whose component repeats its code carries no value[x] of its own",
                );
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// INS identifiers (FR Core Patient INS): a 15-character NIR whose last two digits
/// are the key `97 - (first 13 digits mod 97)`, Corsica's 2A / 2B counted as 19 / 18.
fn check_patient(value: &Value) -> Result<(), ApiError> {
    for (index, identifier) in values_at(value, "identifier").into_iter().enumerate() {
        let system = identifier.get("system").and_then(Value::as_str);
        if !system.is_some_and(|system| super::INS_SYSTEMS.contains(&system)) {
            continue;
        }
        let number = identifier
            .get("value")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !is_valid_nir(number) {
            return Err(ApiError::unprocessable(
                IssueCode::Value,
                format!("INS identifier {number:?} is not a valid 15-character NIR with its key"),
            )
            .at(format!("Patient.identifier[{index}].value")));
        }
    }
    Ok(())
}

/// Whether `nir` is 13 characters (digits, or 2A / 2B in the department) and a valid
/// two-digit key.
pub fn is_valid_nir(nir: &str) -> bool {
    if nir.len() != 15 || !nir.is_ascii() {
        return false;
    }
    let (body, key) = nir.split_at(13);
    let numeric = match &body[5..7] {
        "2A" | "2a" => format!("{}19{}", &body[..5], &body[7..]),
        "2B" | "2b" => format!("{}18{}", &body[..5], &body[7..]),
        _ => body.to_owned(),
    };
    let (Ok(number), Ok(key)) = (numeric.parse::<u64>(), key.parse::<u64>()) else {
        return false;
    };
    numeric.bytes().all(|b| b.is_ascii_digit()) && key == 97 - number % 97
}

/// The key of a 13-digit NIR body (for fixtures and the data generator).
pub fn nir_key(body: &str) -> Option<String> {
    let number: u64 = body.parse().ok()?;
    Some(format!("{:02}", 97 - number % 97))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_loinc_code_is_read_in_loinc_syntax_only() {
        for code in [
            "11488-4", "8302-2", "29463-7", "68599-0", "57833-6", "11502-2",
        ] {
            assert!(super::loinc_code_syntax(code), "{code}");
        }
        for code in [
            "",
            "11488",
            "-4",
            "11488-",
            "11488-41",
            "12345678-9",
            "11488-O",
            "68599-0\u{200b}",
            "６８５９９-０",
            " 11488-4",
            "11488–4",
            "068599-0",
            "68599-1",
            "11488-3",
        ] {
            assert!(!super::loinc_code_syntax(code), "{code:?}");
        }
    }

    #[test]
    fn large_bytes_are_checked_in_place() {
        let good = "QUJD".repeat(100);
        let value = serde_json::json!({ "content": [{ "attachment": { "data": good } },
                                                     { "attachment": { "data": format!("{good}!") } }] });
        assert_eq!(
            super::bad_base64(&value, "DocumentReference").as_deref(),
            Some("DocumentReference.content[1].attachment.data")
        );
        let text = serde_json::to_string(&super::WithoutBytes(&value)).unwrap();
        assert!(text.len() < 200 && text.contains("AAAA"), "{text}");
    }

    use super::*;

    #[test]
    fn nir_keys() {
        let body = "1800575123456";
        let nir = format!("{body}{}", nir_key(body).unwrap());
        assert!(is_valid_nir(&nir));
        assert!(!is_valid_nir("180057512345600"));
        assert!(!is_valid_nir("18005751234"));
        // Corsica: 2A counts as 19.
        let corsican = "2800519001001";
        let key = nir_key("2800519001001").unwrap();
        assert!(is_valid_nir(&format!(
            "{}2A{}{key}",
            &corsican[..5],
            &corsican[7..]
        )));
    }
}

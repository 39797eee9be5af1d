//! Pure FHIR domain: resource definitions, search parameters, validation, stored JSON.
//! No actix, no diesel.

pub mod date;
pub mod definitions;
pub mod extract;
pub mod mhd;
pub mod patch;
pub mod search;
pub mod stored;
pub mod validate;

/// INS-NIR identifier system (FR Core Patient INS).
pub const INS_NIR_SYSTEM: &str = "urn:oid:1.2.250.1.213.1.4.8";
/// Temporary INS-NIA system.
pub const INS_NIA_SYSTEM: &str = "urn:oid:1.2.250.1.213.1.4.9";
/// Test and demo INS-NIR systems.
pub const INS_NIR_TEST_SYSTEM: &str = "urn:oid:1.2.250.1.213.1.4.10";
pub const INS_NIR_DEMO_SYSTEM: &str = "urn:oid:1.2.250.1.213.1.4.11";
/// The systems of an INS (NIR, NIA, and the test and demonstration NIRs).
pub const INS_SYSTEMS: [&str; 4] = [
    INS_NIR_SYSTEM,
    INS_NIA_SYSTEM,
    INS_NIR_TEST_SYSTEM,
    INS_NIR_DEMO_SYSTEM,
];

/// The INS (system, value) a Patient carries: one space per person (R-LIFE-1).
pub fn ins_identifiers(patient: &serde_json::Value) -> Vec<(&str, &str)> {
    use serde_json::Value;
    extract::values_at(patient, "identifier")
        .into_iter()
        .filter_map(|identifier| {
            Some((
                identifier.get("system").and_then(Value::as_str)?,
                identifier.get("value").and_then(Value::as_str)?,
            ))
        })
        .filter(|(system, _)| INS_SYSTEMS.contains(system))
        .collect()
}
/// Legacy computed INS-C system.
pub const INS_C_SYSTEM: &str = "urn:oid:1.2.250.1.213.1.4.2";
/// FINESS (organisation) identifier system.
pub const FINESS_SYSTEM: &str = "urn:oid:1.2.250.1.71.4.2.2";

/// IdNat_PS, the national professional identifier.
pub const IDNAT_PS_SYSTEM: &str = "urn:oid:1.2.250.1.71.4.2.1";
/// LOINC, as DocumentReference types (JDV_J07) and the habilitation matrix write it.
pub const LOINC_SYSTEM: &str = "http://loinc.org";
/// TRE_A05-TypeDocComplementaire: the other system of DocumentReference types (JDV_J07).
pub const TRE_A05_SYSTEM: &str = "https://mos.esante.gouv.fr/NOS/TRE_A05-TypeDocComplementaire/FHIR/TRE-A05-TypeDocComplementaire";

/// Whether `text` holds a control character no FHIR string may contain (U+0000 to
/// U+001F but tab, line feed and carriage return). Such text matches nothing stored,
/// and PostgreSQL refuses U+0000 in any text it is given.
pub fn has_forbidden_control(text: &str) -> bool {
    text.chars()
        .any(|c| c < '\u{20}' && !matches!(c, '\t' | '\n' | '\r'))
}

/// Whether `id` is a valid FHIR logical id (`[A-Za-z0-9\-\.]{1,64}`) that a URL can
/// carry: not `.` or `..` alone, which clients and proxies resolve as path segments.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.bytes().any(|b| b != b'.')
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Splits `text` on `separator`, except inside `[…]` (an extension URL in a path
/// holds dots and slashes).
pub fn split_outside_brackets(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (at, c) in text.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            c if c == separator && depth == 0 => {
                parts.push(&text[start..at]);
                start = at + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// The bytes of a FHIR base64Binary (whitespace between the groups allowed).
pub fn decode_base64(data: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let compact: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .ok()
}

//! Search-index values extracted from a resource's JSON, per the parameter table.

use serde_json::Value;
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use super::date::{DateRange, parse_range};
use super::definitions::{ParamKind, ResourceDef, SearchParamDef};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEntry {
    pub param: &'static str,
    pub system: Option<String>,
    pub code: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StringEntry {
    pub param: &'static str,
    /// Lower-cased, accents removed: what default and `:contains` searches compare.
    pub normalized: String,
    /// As written, for `:exact`.
    pub exact: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateEntry {
    pub param: &'static str,
    pub range: DateRange,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceEntry {
    pub param: &'static str,
    pub target_type: String,
    pub target_id: String,
}

/// Everything the store indexes for one resource version.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IndexEntries {
    pub tokens: Vec<TokenEntry>,
    pub strings: Vec<StringEntry>,
    pub dates: Vec<DateEntry>,
    pub references: Vec<ReferenceEntry>,
    /// Patients whose compartment holds the resource; every access rule narrows by it.
    pub patients: Vec<String>,
}

/// Lower-cases and strips diacritics, as FHIR string search compares.
pub fn normalize(text: &str) -> String {
    text.nfd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Every value found at a dotted path, walking through arrays. Two steps go beyond
/// plain element names: `extension[URL]` keeps the extensions with that `url` (a
/// URL may hold dots), and `resolve()` follows a contained reference (`#id`) to the
/// resource of `value`'s `contained` that it names (MHD authors and sources are
/// contained Practitioners).
pub fn values_at<'a>(value: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut current = vec![value];
    for step in super::split_outside_brackets(path, '.') {
        let mut next = Vec::new();
        if step == "resolve()" {
            for item in current {
                if let Some(found) = resolve_contained(value, item) {
                    next.push(found);
                }
            }
            current = next;
            continue;
        }
        let (name, url) = match step.split_once('[') {
            Some((name, rest)) => (name, rest.strip_suffix(']')),
            None => (step, None),
        };
        for item in current {
            let found: Vec<&Value> = match item.get(name) {
                Some(Value::Array(items)) => items.iter().collect(),
                Some(found) => vec![found],
                None => Vec::new(),
            };
            next.extend(found.into_iter().filter(|found| {
                url.is_none_or(|url| found.get("url").and_then(Value::as_str) == Some(url))
            }));
        }
        current = next;
    }
    current
        .into_iter()
        .flat_map(|item| match item {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        })
        .collect()
}

/// The contained resource a `#id` reference names.
fn resolve_contained<'a>(root: &'a Value, reference: &Value) -> Option<&'a Value> {
    let id = reference
        .get("reference")
        .and_then(Value::as_str)?
        .strip_prefix('#')?;
    root.get("contained")?
        .as_array()?
        .iter()
        .find(|resource| resource.get("id").and_then(Value::as_str) == Some(id))
}

/// Splits a literal reference into (type, id). Accepts `Type/id`, an absolute URL
/// ending in `Type/id`, and either followed by `/_history/v`. Contained (`#x`) and
/// `urn:` references have no target in the store.
pub fn parse_reference(reference: &str) -> Option<(String, String)> {
    if reference.starts_with('#') || reference.starts_with("urn:") {
        return None;
    }
    let trimmed = match reference.find("/_history/") {
        Some(at) => &reference[..at],
        None => reference,
    };
    let mut parts = trimmed.rsplitn(3, '/');
    let id = parts.next()?;
    let resource_type = parts.next()?;
    let starts_upper = resource_type
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_uppercase());
    if starts_upper
        && resource_type.chars().all(|c| c.is_ascii_alphabetic())
        && super::is_valid_id(id)
    {
        Some((resource_type.to_owned(), id.to_owned()))
    } else {
        None
    }
}

/// Computes the index entries of `resource` (whose `id` is already set).
pub fn index(def: &ResourceDef, resource: &Value) -> IndexEntries {
    let mut entries = IndexEntries::default();
    for param in def.params {
        for path in param.paths {
            for value in values_at(resource, path) {
                add_value(&mut entries, param, value);
            }
        }
    }
    entries.patients = compartment_patients(def, resource, &entries);
    entries
}

/// The patients whose compartment holds `resource`, as [`index`] computes them,
/// without the rest of the index: what the access gate decides a version on.
pub fn compartment(def: &ResourceDef, resource: &Value) -> Vec<String> {
    let mut entries = IndexEntries::default();
    for param in def.params.iter().filter(|param| param.name == "patient") {
        for path in param.paths {
            for value in values_at(resource, path) {
                add_value(&mut entries, param, value);
            }
        }
    }
    compartment_patients(def, resource, &entries)
}

fn compartment_patients(
    def: &ResourceDef,
    resource: &Value,
    entries: &IndexEntries,
) -> Vec<String> {
    let mut patients: Vec<String> = match def.name {
        "Patient" => resource
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .into_iter()
            .collect(),
        "Binary" => resource
            .pointer("/securityContext/reference")
            .and_then(Value::as_str)
            .and_then(parse_reference)
            .filter(|(kind, _)| kind == "Patient")
            .map(|(_, id)| id)
            .into_iter()
            .collect(),
        // An event belongs to the space it concerns (its Patient entity), not to the
        // patient who acted (an agent may be another space's holder).
        "AuditEvent" => values_at(resource, "entity.what.reference")
            .into_iter()
            .filter_map(Value::as_str)
            .filter_map(parse_reference)
            .filter(|(kind, _)| kind == "Patient")
            .map(|(_, id)| id)
            .collect(),
        _ => entries
            .references
            .iter()
            .filter(|entry| entry.param == "patient" && entry.target_type == "Patient")
            .map(|entry| entry.target_id.clone())
            .collect(),
    };
    patients.sort();
    patients.dedup();
    patients
}

fn add_value(entries: &mut IndexEntries, param: &'static SearchParamDef, value: &Value) {
    match param.kind {
        ParamKind::Token => add_token(entries, param.name, value),
        ParamKind::String => {
            if let Some(text) = value.as_str() {
                entries.strings.push(StringEntry {
                    param: param.name,
                    normalized: normalize(text),
                    exact: text.to_owned(),
                });
            }
        }
        ParamKind::Date => {
            if let Some(range) = date_value_range(value) {
                entries.dates.push(DateEntry {
                    param: param.name,
                    range,
                });
            }
        }
        ParamKind::Reference => {
            let reference = value
                .get("reference")
                .and_then(Value::as_str)
                .or_else(|| value.as_str());
            if let Some((target_type, target_id)) = reference.and_then(parse_reference)
                && (param.targets.is_empty() || param.targets.contains(&target_type.as_str()))
            {
                entries.references.push(ReferenceEntry {
                    param: param.name,
                    target_type,
                    target_id,
                });
            }
        }
    }
}

/// The instants a date, dateTime, instant or Period covers. A Period runs from its
/// start to its end, open where one is missing (FHIR R4 §3.1.1.4.5), so that date
/// searches on it are overlap searches (MHD `period`).
fn date_value_range(value: &Value) -> Option<DateRange> {
    if let Some(text) = value.as_str() {
        return parse_range(text);
    }
    let start = value.get("start").and_then(Value::as_str);
    let end = value.get("end").and_then(Value::as_str);
    if start.is_none() && end.is_none() {
        return None;
    }
    let low = match start {
        Some(text) => parse_range(text)?.low,
        None => super::date::EARLIEST.to_owned(),
    };
    let high = match end {
        Some(text) => parse_range(text)?.high,
        None => super::date::LATEST.to_owned(),
    };
    Some(DateRange { low, high })
}

/// Tokens come from a code, a Coding, a CodeableConcept or an Identifier.
fn add_token(entries: &mut IndexEntries, param: &'static str, value: &Value) {
    let mut push = |system: Option<&str>, code: Option<&str>| {
        if let Some(code) = code.filter(|code| !code.is_empty()) {
            entries.tokens.push(TokenEntry {
                param,
                system: system.map(str::to_owned),
                code: code.to_owned(),
            });
        }
    };
    match value {
        Value::String(code) => push(None, Some(code)),
        Value::Bool(flag) => push(None, Some(if *flag { "true" } else { "false" })),
        Value::Object(object) => {
            let system = object.get("system").and_then(Value::as_str);
            if object.contains_key("value") {
                push(system, object.get("value").and_then(Value::as_str));
            } else if object.contains_key("code") {
                push(system, object.get("code").and_then(Value::as_str));
            }
            if let Some(Value::Array(codings)) = object.get("coding") {
                for coding in codings {
                    push(
                        coding.get("system").and_then(Value::as_str),
                        coding.get("code").and_then(Value::as_str),
                    );
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::definitions::resource;
    use serde_json::json;

    #[test]
    fn indexes_a_document_reference() {
        let document = json!({
            "resourceType": "DocumentReference", "id": "d1", "status": "current",
            "type": {"coding": [{"system": "http://loinc.org", "code": "11488-4"}]},
            "subject": {"reference": "Patient/p1"},
            "author": [{"reference": "https://x.example/fhir/Practitioner/pr1/_history/2"}],
            "date": "2024-01-02T10:00:00Z",
            "securityLabel": [{"system": "s", "code": "MASQUE_PS"}]
        });
        let entries = index(resource("DocumentReference").unwrap(), &document);
        assert!(entries.tokens.contains(&TokenEntry {
            param: "type",
            system: Some("http://loinc.org".into()),
            code: "11488-4".into()
        }));
        assert!(entries.tokens.contains(&TokenEntry {
            param: "status",
            system: None,
            code: "current".into()
        }));
        assert!(entries.references.contains(&ReferenceEntry {
            param: "author",
            target_type: "Practitioner".into(),
            target_id: "pr1".into()
        }));
        assert_eq!(entries.patients, vec!["p1".to_owned()]);
        assert_eq!(entries.dates[0].range.low, "2024-01-02T10:00:00.000000Z");
    }

    #[test]
    fn normalizes_accents_and_case() {
        assert_eq!(normalize("Hélène ÉLOÏSE"), "helene eloise");
    }

    #[test]
    fn reference_forms() {
        assert_eq!(
            parse_reference("Patient/1"),
            Some(("Patient".into(), "1".into()))
        );
        assert_eq!(parse_reference("#c1"), None);
        assert_eq!(parse_reference("urn:uuid:0d1f"), None);
        assert_eq!(parse_reference("patient/1"), None);
    }
}

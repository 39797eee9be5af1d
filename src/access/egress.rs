//! The egress gate's output: what may leave the server as a response body.
//!
//! A [`Released`] is the only thing a [`crate::service::FhirResponse`] or a Bundle
//! entry carries. Stored text becomes one only through [`super::Gate`]'s release
//! functions, which decide on that very version and the caller (`gate.rs`); the
//! constructor that takes stored text is private to `access/`. What the server
//! composes itself (a Bundle of released entries, the proof of opposition) has its
//! own named constructors, so that a grep finds every body that is not a stored row.

use chrono::Utc;
use indexmap::IndexMap;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::fhir::date::fhir_instant;

/// A response body released to this request's caller.
#[derive(Debug, Clone)]
pub struct Released(Box<RawValue>);

impl Serialize for Released {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl Released {
    /// Stored text the gate has let through. Only `access/` calls this.
    pub(super) fn from_store(text: String) -> Released {
        crate::memory::handled(text.len());
        Released::derived(text)
    }

    /// Text made from released bodies (a Bundle of them, a subset of one): not
    /// counted again as bodies handled (crate::memory).
    fn derived(text: String) -> Released {
        Released(
            RawValue::from_string(text)
                .unwrap_or_else(|_| RawValue::from_string("{}".to_owned()).expect("valid")),
        )
    }

    /// A Bundle: every entry's resource is itself a [`Released`]. Each entry is
    /// dropped once written, and the text is sized for all of them at once: an
    /// answer of many megabytes is held about once while it is written, not twice
    /// (or three times, while a growing buffer is copied into a larger one).
    pub fn bundle(mut bundle: BundleOut) -> Released {
        let entries = std::mem::take(&mut bundle.entry);
        let mut text = serde_json::to_vec(&bundle).expect("a bundle serialises");
        if !entries.is_empty() {
            // `entry` is BundleOut's last member: the others are written above.
            let size: usize = entries
                .iter()
                .map(|entry| {
                    entry
                        .resource
                        .as_ref()
                        .map_or(0, |resource| resource.text().len())
                        + 512
                })
                .sum();
            text.reserve_exact(size);
            // The object's closing brace goes after the entries.
            let closing = text.pop();
            debug_assert_eq!(closing, Some(b'}'));
            text.extend_from_slice(br#","entry":["#);
            for (index, entry) in entries.into_iter().enumerate() {
                if index > 0 {
                    text.push(b',');
                }
                serde_json::to_writer(&mut text, &entry).expect("an entry serialises");
            }
            text.extend_from_slice(b"]}");
        }
        Released::derived(String::from_utf8(text).expect("serde_json writes UTF-8"))
    }

    /// A resource the server composes for this answer from data the caller may
    /// already see (the proof of opposition of their own space).
    pub fn composed(resource: &Value) -> Released {
        Released::from_store(resource.to_string())
    }

    /// A warning the server writes about the request itself (search parameters it
    /// did not apply): an OperationOutcome of text it composes, no stored data.
    pub fn search_warning(parameters: &[String]) -> Released {
        let issues: Vec<Value> = parameters
            .iter()
            .map(|name| {
                let mut issue = serde_json::json!({
                    "severity": "warning",
                    "code": "not-supported",
                    "details": { "text": format!("search parameter {name:?} is not supported and was not applied (Prefer: handling=strict refuses it)") },
                });
                // A name that is not a FHIR string (empty, odd whitespace) is told in
                // the text only.
                let plain = name.chars().any(|c| !c.is_whitespace())
                    && name.chars().all(|c| !c.is_whitespace() || c == ' ');
                if plain {
                    issue["expression"] = serde_json::json!([name]);
                }
                issue
            })
            .collect();
        Released::from_store(
            serde_json::json!({ "resourceType": "OperationOutcome", "issue": issues }).to_string(),
        )
    }

    /// The JSON text.
    pub fn text(&self) -> &str {
        self.0.get()
    }

    /// The JSON text, without a copy (for the HTTP answer).
    pub fn into_text(self) -> String {
        let text: Box<str> = self.0.into();
        text.into_string()
    }

    /// `_elements`: keeps the named top-level elements (plus the mandatory ones) and
    /// tags the resource SUBSETTED. It only removes: nothing new can enter.
    pub fn subset(self, elements: &[String]) -> Released {
        // Borrowed from the released text: only the subset is a copy of it.
        let Ok(mut map) = serde_json::from_str::<IndexMap<String, &RawValue>>(self.text()) else {
            return self;
        };
        map.retain(|key, _| {
            matches!(key.as_str(), "resourceType" | "id" | "meta") || elements.contains(key)
        });
        let mut meta: Value = map
            .get("meta")
            .and_then(|meta| serde_json::from_str(meta.get()).ok())
            .unwrap_or_else(|| json!({}));
        crate::fhir::stored::mark_shown_in_part(
            &mut meta,
            "tag",
            json!({
                "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                "code": "SUBSETTED",
                "display": "subsetted"
            }),
        );
        let meta = RawValue::from_string(meta.to_string()).expect("valid");
        map.insert("meta".to_owned(), &meta);
        Released::derived(serde_json::to_string(&map).expect("raw values serialise"))
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleLink {
    pub relation: &'static str,
    pub url: String,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct BundleEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<Released>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<Value>,
}

/// A Bundle whose resources are embedded as stored text, never re-serialised.
/// `entry` stays the last member: [`Released::bundle`] writes it after the others.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleOut {
    pub resource_type: &'static str,
    pub id: String,
    pub meta: Value,
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub link: Vec<BundleLink>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entry: Vec<BundleEntry>,
}

impl BundleOut {
    pub fn new(kind: &'static str) -> BundleOut {
        BundleOut {
            resource_type: "Bundle",
            id: uuid::Uuid::new_v4().to_string(),
            meta: json!({ "lastUpdated": fhir_instant(Utc::now()) }),
            kind,
            total: None,
            link: Vec::new(),
            entry: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written entry by entry, a Bundle is the same text serde writes of it whole.
    #[test]
    fn a_bundle_written_entry_by_entry_is_the_bundle_serialised() {
        let make = |entries: usize| {
            let mut bundle = BundleOut::new("searchset");
            bundle.total = Some(7);
            bundle.link.push(BundleLink {
                relation: "self",
                url: "https://example.org/Patient?_count=2".to_owned(),
            });
            for n in 0..entries {
                bundle.entry.push(BundleEntry {
                    full_url: Some(format!("https://example.org/Patient/{n}")),
                    resource: Some(Released::from_store(format!(
                        r#"{{"resourceType":"Patient","id":"{n}","x":3.50}}"#
                    ))),
                    search: Some(json!({ "mode": "match" })),
                    ..BundleEntry::default()
                });
            }
            bundle
        };
        for entries in [0, 1, 3] {
            let bundle = make(entries);
            let whole = serde_json::to_string(&bundle).unwrap();
            assert_eq!(Released::bundle(bundle).text(), whole, "{entries} entries");
        }
    }

    #[test]
    fn subset_keeps_named_elements_and_tags() {
        let text = Released::from_store(
            r#"{"resourceType":"Patient","id":"1","meta":{"versionId":"1"},"gender":"male","birthDate":"1970","x":3.50}"#.to_owned(),
        )
        .subset(&["gender".to_owned(), "x".to_owned()]);
        let text = text.text();
        assert!(
            text.contains("\"gender\"") && text.contains("3.50") && !text.contains("birthDate"),
            "{text}"
        );
        assert!(text.contains("SUBSETTED"));
    }
}

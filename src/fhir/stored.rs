//! The stored form of a resource: the JSON the client sent, with the server's `id`
//! and `meta.versionId` / `meta.lastUpdated`. Top-level elements are kept as raw
//! JSON text, so nothing the client wrote is lost or re-formatted (decimals such as
//! `3.50` keep their precision); only `id` and `meta` are rewritten.

use indexmap::IndexMap;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::error::{ApiError, IssueCode};

/// A resource as received: its parsed value (for checks, indexing and storage) and
/// the client's own text of the top-level elements the value would not write back
/// byte for byte (a decimal's precision, an escape, spacing). An element the value
/// writes back as sent (a document's base64 above all) is held once, not twice.
#[derive(Debug, Clone)]
pub struct Incoming {
    value: Value,
    raw: IndexMap<String, Box<RawValue>>,
    /// The type this resource passed `fhir::validate::check` for, as it is now:
    /// every change made through these methods forgets it (the value is not
    /// reachable otherwise), so a check made before the writer's turn stands.
    checked_as: Option<&'static str>,
}

impl Incoming {
    /// Parses a request body. Anything but a JSON object is a 400.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        // One text, one meaning: a name twice in an object (readers disagree on
        // which one counts) or a control character in a string is refused.
        serde_json::from_slice::<Unambiguous>(body).map_err(|error| {
            ApiError::bad_request(IssueCode::Structure, format!("malformed JSON: {error}"))
        })?;
        let value: Value = serde_json::from_slice(body).map_err(|error| {
            ApiError::bad_request(IssueCode::Structure, format!("malformed JSON: {error}"))
        })?;
        crate::memory::handled(body.len());
        if !value.is_object() {
            return Err(ApiError::bad_request(
                IssueCode::Structure,
                "the body must be a JSON object (a FHIR resource)",
            ));
        }
        // Borrowed from the body: only the elements kept are copied.
        let sent: IndexMap<String, &RawValue> = serde_json::from_slice(body).map_err(|error| {
            ApiError::bad_request(IssueCode::Structure, format!("malformed JSON: {error}"))
        })?;
        let raw = sent
            .into_iter()
            .filter(|(key, text)| {
                // `meta` is always written from the value (the server's own meta).
                key != "meta"
                    && value
                        .get(key)
                        .is_none_or(|parsed| !writes_back_as(parsed, text.get()))
            })
            .map(|(key, text)| (key, text.to_owned()))
            .collect();
        Ok(Incoming {
            value,
            raw,
            checked_as: None,
        })
    }

    /// Builds from a value the server made or changed (no raw text to preserve).
    pub fn from_value(value: Value) -> Self {
        Incoming {
            value,
            raw: IndexMap::new(),
            checked_as: None,
        }
    }

    /// Replaces `value` by `changed`, keeping the raw text of every top-level element
    /// whose value did not change (used by PATCH). An element the client's text was
    /// not kept for (the value wrote it back as sent) is written from `changed`: an
    /// equal value whose object members a patch reordered is stored in its new order.
    pub fn with_changes(&self, changed: Value) -> Self {
        let raw = match &changed {
            Value::Object(map) => map
                .iter()
                .filter(|(key, item)| self.value.get(key.as_str()) == Some(*item))
                .filter_map(|(key, _)| self.raw.get(key).map(|text| (key.clone(), text.clone())))
                .collect(),
            _ => IndexMap::new(),
        };
        Incoming {
            value: changed,
            raw,
            checked_as: None,
        }
    }

    /// The resource's parsed value.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The resource's parsed value, taken out.
    pub fn into_value(self) -> Value {
        self.value
    }

    /// The type it passed the checks for, unchanged since.
    pub fn checked_as(&self) -> Option<&'static str> {
        self.checked_as
    }

    /// Records that it passed the checks for `resource_type` as it is now.
    pub(crate) fn mark_checked(&mut self, resource_type: &'static str) {
        self.checked_as = Some(resource_type);
    }

    pub fn resource_type(&self) -> Option<&str> {
        self.value.get("resourceType").and_then(Value::as_str)
    }

    pub fn id(&self) -> Option<&str> {
        self.value.get("id").and_then(Value::as_str)
    }

    /// Sets the id in both views (the stored text is built by [`Self::finish`]).
    pub fn set_id(&mut self, id: &str) {
        self.checked_as = None;
        self.value["id"] = Value::String(id.to_owned());
        self.raw.shift_remove("id");
    }

    /// Rewrites reference strings equal to `from` into `to` everywhere (transaction
    /// `urn:uuid:` resolution). Touched elements lose their raw text, others keep it.
    pub fn rewrite_references(&mut self, rewrite: &dyn Fn(&str) -> Option<String>) {
        let mut changed = self.value.clone();
        rewrite_in(&mut changed, rewrite);
        if changed != self.value {
            *self = self.with_changes(changed);
        }
    }

    /// A top-level element as it is to be written: as the client sent it, when the
    /// value would not write it back byte for byte.
    fn element<'a>(&'a self, key: &str, parsed: &'a Value) -> Element<'a> {
        match self.raw.get(key) {
            Some(text) => Element::Sent(text),
            None => Element::Parsed(parsed),
        }
    }

    /// The text to store: `resourceType`, `id`, `meta` (the client's meta with the
    /// server's `versionId` and `lastUpdated`), then every other element as sent.
    pub fn finish(&self, version: i64, last_updated: &str) -> String {
        let mut meta = match self.value.get("meta") {
            Some(Value::Object(meta)) => meta.clone(),
            _ => Map::new(),
        };
        meta.insert("versionId".into(), Value::String(version.to_string()));
        meta.insert("lastUpdated".into(), Value::String(last_updated.to_owned()));
        let meta = Value::Object(meta);
        // Borrowed, not copied: each element is written once, into the stored text.
        let empty = Map::new();
        let members = self.value.as_object().unwrap_or(&empty);
        let mut out: IndexMap<&str, Element<'_>> = IndexMap::with_capacity(members.len() + 1);
        for key in ["resourceType", "id"] {
            if let Some(parsed) = members.get(key) {
                out.insert(key, self.element(key, parsed));
            }
        }
        out.insert("meta", Element::Parsed(&meta));
        for (key, parsed) in members {
            if !matches!(key.as_str(), "resourceType" | "id" | "meta") {
                out.insert(key, self.element(key, parsed));
            }
        }
        let text = serde_json::to_string(&out).expect("raw values serialise");
        crate::memory::handled(text.len());
        text
    }
}

/// A top-level element of a stored resource: the client's text, or the value's.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum Element<'a> {
    Sent(&'a RawValue),
    Parsed(&'a Value),
}

/// Whether `parsed`, written compactly, is `text` byte for byte (compared as it is
/// written: no copy of a large element is made).
fn writes_back_as(parsed: &Value, text: &str) -> bool {
    /// Takes what is written as long as it is the rest of `text`; refuses (and so
    /// stops the writing of a large element) at the first difference.
    struct Compare<'a>(&'a [u8]);
    impl std::io::Write for Compare<'_> {
        fn write(&mut self, written: &[u8]) -> std::io::Result<usize> {
            let rest = self
                .0
                .strip_prefix(written)
                .ok_or_else(|| std::io::Error::other("differs"))?;
            self.0 = rest;
            Ok(written.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut compare = Compare(text.as_bytes());
    serde_json::to_writer(&mut compare, parsed).is_ok() && compare.0.is_empty()
}

/// A JSON document read only to check it: no object names a member twice, and no
/// string or name holds a control character FHIR strings may not contain.
struct Unambiguous;

impl<'de> serde::Deserialize<'de> for Unambiguous {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UnambiguousVisitor)
    }
}

struct UnambiguousVisitor;

impl<'de> serde::de::Visitor<'de> for UnambiguousVisitor {
    type Value = Unambiguous;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("JSON")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Unambiguous, E> {
        Ok(Unambiguous)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Unambiguous, E> {
        Ok(Unambiguous)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Unambiguous, E> {
        Ok(Unambiguous)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Unambiguous, E> {
        Ok(Unambiguous)
    }

    fn visit_unit<E>(self) -> Result<Unambiguous, E> {
        Ok(Unambiguous)
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Unambiguous, E> {
        if super::has_forbidden_control(text) {
            return Err(E::custom(
                "a string holds a control character FHIR strings may not contain",
            ));
        }
        Ok(Unambiguous)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut items: A,
    ) -> Result<Unambiguous, A::Error> {
        while items.next_element::<Unambiguous>()?.is_some() {}
        Ok(Unambiguous)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut members: A,
    ) -> Result<Unambiguous, A::Error> {
        let mut names = std::collections::HashSet::new();
        while let Some(name) = members.next_key::<String>()? {
            if super::has_forbidden_control(&name) {
                return Err(serde::de::Error::custom(
                    "a member name holds a control character",
                ));
            }
            members.next_value::<Unambiguous>()?;
            if names.contains(&name) {
                return Err(serde::de::Error::custom(format!(
                    "member {name:?} appears twice in one object"
                )));
            }
            names.insert(name);
        }
        Ok(Unambiguous)
    }
}

fn to_raw(value: &Value) -> Box<RawValue> {
    RawValue::from_string(value.to_string()).expect("a serialised value is valid JSON")
}

fn rewrite_in(value: &mut Value, rewrite: &dyn Fn(&str) -> Option<String>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                if key == "reference" || key == "url" {
                    if let Value::String(text) = item
                        && let Some(new) = rewrite(text)
                    {
                        *text = new;
                    }
                } else {
                    rewrite_in(item, rewrite);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| rewrite_in(item, rewrite)),
        _ => {}
    }
}

/// The server's own extensions (documented in the README).
pub const AUTHORISATION_EXTENSION: &str =
    "https://dmp-fhir-server.fr/fhir/StructureDefinition/dmp-authorisation";

/// Appends an extension to a stored resource's text, keeping every other element's
/// raw text (a caller-specific view: the stored resource is unchanged).
pub fn with_extension(content: &str, extension: &Value) -> String {
    // Borrowed from the stored text: only the answer is a copy of it.
    let Ok(mut map) = serde_json::from_str::<IndexMap<String, &RawValue>>(content) else {
        return content.to_owned();
    };
    let mut extensions: Vec<Box<RawValue>> = map
        .get("extension")
        .and_then(|raw| serde_json::from_str(raw.get()).ok())
        .unwrap_or_default();
    extensions.push(to_raw(extension));
    let text = serde_json::to_string(&extensions).expect("raw values serialise");
    let extensions = RawValue::from_string(text).expect("valid JSON");
    map.insert("extension".to_owned(), &extensions);
    serde_json::to_string(&map).expect("raw values serialise")
}

/// Removes a resource's extensions with these urls (and `extension` itself when
/// none is left): the server's own marks, kept in storage, not shown.
pub fn remove_extensions(resource: &mut Value, urls: &[&str]) {
    let Some(extensions) = resource.get_mut("extension").and_then(Value::as_array_mut) else {
        return;
    };
    extensions.retain(|extension| {
        !extension
            .get("url")
            .and_then(Value::as_str)
            .is_some_and(|url| urls.contains(&url))
    });
    if extensions.is_empty()
        && let Some(object) = resource.as_object_mut()
    {
        object.shift_remove("extension");
    }
}

/// Adds a v3-ObservationValue coding (`SUBSETTED`, `REDACTED`) to `meta.<element>`
/// (`tag` or `security`) of a resource shown in part.
pub fn mark_shown_in_part(meta: &mut Value, element: &str, coding: Value) {
    let Some(meta) = meta.as_object_mut() else {
        return;
    };
    match meta.get_mut(element).and_then(Value::as_array_mut) {
        Some(codings) => codings.push(coding),
        None => {
            meta.insert(element.to_owned(), Value::Array(vec![coding]));
        }
    }
}

/// Sets a top-level element of a stored resource's text (after `meta`, where FHIR
/// puts it when it is new), keeping every other element's raw text.
pub fn with_member(content: &str, name: &str, value: &Value) -> String {
    // Borrowed from the stored text: only the answer is a copy of it.
    let Ok(mut map) = serde_json::from_str::<IndexMap<String, &RawValue>>(content) else {
        return content.to_owned();
    };
    let member = to_raw(value);
    map.insert(name.to_owned(), &member);
    serde_json::to_string(&map).expect("raw values serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A resource checked before the writer's turn stays checked only as it was: a
    /// resolved conditional reference or a new id makes the writer check it again,
    /// and a check for one type does not stand for another.
    #[test]
    fn a_check_made_ahead_stands_only_for_the_resource_unchanged() {
        let loinc = [crate::fhir::LOINC_SYSTEM.to_owned()];
        let body = br#"{"resourceType":"DocumentReference","status":"current","type":{"coding":[{"system":"http://loinc.org","code":"11488-4"}]},"subject":{"reference":"Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|285067512345639"},"content":[{"attachment":{"url":"Binary/b1"}}]}"#;
        let mut incoming = Incoming::parse(body).unwrap();
        assert_eq!(incoming.checked_as(), None);
        // Unresolved, the subject is refused: the pipeline leaves a resource with
        // conditional references to the writer, which checks it once resolved.
        assert!(
            crate::fhir::validate::check_ahead("DocumentReference", &mut incoming, &loinc).is_err()
        );
        assert_eq!(incoming.checked_as(), None, "a failed check marks nothing");
        incoming.rewrite_references(&|reference| {
            reference
                .starts_with("Patient?")
                .then(|| "Patient/p1".to_owned())
        });
        crate::fhir::validate::check_ahead("DocumentReference", &mut incoming, &loinc).unwrap();
        assert_eq!(incoming.checked_as(), Some("DocumentReference"));
        incoming.rewrite_references(&|_| None);
        assert_eq!(
            incoming.checked_as(),
            Some("DocumentReference"),
            "nothing changed"
        );
        incoming.rewrite_references(&|reference| {
            (reference == "Patient/p1").then(|| "Patient/p2".to_owned())
        });
        assert_eq!(incoming.checked_as(), None, "a reference rewritten");
        crate::fhir::validate::check_ahead("DocumentReference", &mut incoming, &loinc).unwrap();
        incoming.set_id("d1");
        assert_eq!(incoming.checked_as(), None, "an id set");
        // A mark for another type is no check: a Patient body is still refused.
        let mut patient = Incoming::parse(br#"{"resourceType":"Patient"}"#).unwrap();
        crate::fhir::validate::check_ahead("Patient", &mut patient, &loinc).unwrap();
        assert!(crate::fhir::validate::check("DocumentReference", &patient, &loinc).is_err());
    }

    #[test]
    fn keeps_decimals_and_unknown_elements_as_sent() {
        let body = br#"{"resourceType":"Patient","extension":[{"url":"u","valueDecimal":3.50}],"meta":{"tag":[{"code":"t"}],"versionId":"9"}}"#;
        let mut incoming = Incoming::parse(body).unwrap();
        incoming.set_id("p1");
        let text = incoming.finish(2, "2024-01-01T00:00:00.000000Z");
        assert!(text.contains("3.50"), "{text}");
        assert!(text.starts_with(r#"{"resourceType":"Patient","id":"p1","meta":{"tag":[{"code":"t"}],"versionId":"2""#), "{text}");
    }

    /// What the value writes back as sent is held once; what it would write
    /// otherwise (an escape, spacing, a decimal's zeros) keeps the client's text.
    #[test]
    fn only_elements_the_value_would_rewrite_keep_their_own_text() {
        let body = br#"{"resourceType":"Binary","contentType":"caf\u00e9","x": { "a" : 1.50 },"data":"QUJD"}"#;
        let incoming = Incoming::parse(body).unwrap();
        let kept: Vec<&str> = incoming.raw.keys().map(String::as_str).collect();
        assert_eq!(kept, ["contentType", "x"]);
        let text = incoming.finish(1, "t");
        assert_eq!(
            text,
            r#"{"resourceType":"Binary","meta":{"versionId":"1","lastUpdated":"t"},"contentType":"caf\u00e9","x":{ "a" : 1.50 },"data":"QUJD"}"#
        );
    }

    #[test]
    fn changes_keep_untouched_raw_elements() {
        let incoming = Incoming::parse(
            br#"{"resourceType":"DocumentReference","status":"current","x":{"v":1.10}}"#,
        )
        .unwrap();
        let mut changed = incoming.value.clone();
        changed["status"] = Value::String("superseded".into());
        let text = incoming.with_changes(changed).finish(1, "t");
        assert!(
            text.contains("1.10") && text.contains("superseded"),
            "{text}"
        );
    }

    #[test]
    fn refuses_non_objects() {
        assert!(Incoming::parse(b"[1]").is_err());
        assert!(Incoming::parse(b"{").is_err());
    }
}

//! The PATCH formats clients send (R-MHD-7), brought to one JSON Patch (RFC 6902)
//! applied by the `json-patch` crate:
//! - JSON Patch, including the ANS examples' extension selector
//!   `/extension[url:'<url>']/valueBoolean` (TD3.3d), which is not a JSON Pointer:
//!   it is resolved against the stored resource (the extension with that url, added
//!   when a `replace` or `add` finds none);
//! - FHIRPath Patch (FHIR R4 §3.1.0.6), a `Parameters` resource whose `operation`s
//!   name simple paths: `Type.element`, `Type.element[n]`,
//!   `Type.extension.where(url='<url>')` or `Type.extension('<url>')`, then more
//!   element names. `add`, `insert`, `delete` and `replace` are understood; `move`
//!   and values given as nested parts are refused (422);
//! - JSON Merge Patch (RFC 7386), as client libraries send it.

use serde_json::{Map, Value, json};

use crate::error::{ApiError, IssueCode};

/// A PATCH body as received.
#[derive(Debug, Clone)]
pub enum PatchDocument {
    /// `application/json-patch+json`.
    Json(Value),
    /// A FHIRPath Patch `Parameters` resource.
    FhirPath(Value),
    /// JSON Merge Patch (RFC 7386, `application/merge-patch+json`, or an object
    /// sent as `application/json`, as client libraries such as fhirpy do).
    Merge(Value),
}

/// Most operations one PATCH may carry (bounded work).
const MAX_OPERATIONS: usize = 64;

/// Elements that repeat (arrays), for FHIRPath `add`: the element names of the
/// resources this server patches whose cardinality is `0..*`.
const REPEATING: &[&str] = &[
    "securityLabel",
    "extension",
    "category",
    "author",
    "identifier",
    "relatesTo",
    "content",
    "entry",
    "coding",
    "generalPractitioner",
    "contained",
];

fn unprocessable(message: impl Into<String>) -> ApiError {
    ApiError::unprocessable(IssueCode::Processing, message)
}

impl PatchDocument {
    /// The JSON Patch operations this document stands for on `current`.
    pub fn operations(
        &self,
        resource_type: &str,
        current: &Value,
    ) -> Result<json_patch::Patch, ApiError> {
        let operations = match self {
            PatchDocument::Json(document) => json_operations(document, current)?,
            PatchDocument::FhirPath(parameters) => {
                fhirpath_operations(parameters, resource_type, current)?
            }
            PatchDocument::Merge(document) => {
                if !document.is_object() {
                    return Err(ApiError::bad_request(
                        IssueCode::Invalid,
                        "a JSON Merge Patch is an object",
                    ));
                }
                let mut merged = current.clone();
                json_patch::merge(&mut merged, document);
                return Ok(json_patch::diff(current, &merged));
            }
        };
        serde_json::from_value(Value::Array(operations)).map_err(|error| {
            ApiError::bad_request(
                IssueCode::Invalid,
                format!("not a JSON Patch document: {error}"),
            )
        })
    }
}

fn json_operations(document: &Value, current: &Value) -> Result<Vec<Value>, ApiError> {
    let Some(operations) = document.as_array() else {
        return Err(ApiError::bad_request(
            IssueCode::Invalid,
            "a JSON Patch document is an array of operations",
        ));
    };
    if operations.len() > MAX_OPERATIONS {
        return Err(ApiError::bad_request(
            IssueCode::TooCostly,
            format!("a PATCH carries at most {MAX_OPERATIONS} operations"),
        ));
    }
    let mut resolved = Vec::with_capacity(operations.len());
    for operation in operations {
        let mut operation = operation.clone();
        for member in ["path", "from"] {
            let Some(path) = operation.get(member).and_then(Value::as_str) else {
                continue;
            };
            if !path.contains("[url:") {
                continue;
            }
            match selector_pointer(path, current)? {
                Selected::Found(pointer) => operation[member] = Value::String(pointer),
                Selected::Missing { array, url, rest } => {
                    let op = operation.get("op").and_then(Value::as_str).unwrap_or("");
                    if member != "path" || !matches!(op, "replace" | "add") {
                        return Err(unprocessable(format!(
                            "no extension with url {url} to {op} at {path}"
                        )));
                    }
                    let value = operation.get("value").cloned().unwrap_or(Value::Null);
                    operation = new_extension(current, &array, &url, &rest, value)?;
                }
            }
        }
        resolved.push(operation);
    }
    Ok(resolved)
}

/// What a selector path names in the stored resource.
enum Selected {
    Found(String),
    /// No extension with this url under the array at `array` (a pointer); `rest` is
    /// the member path after the selector (`valueBoolean`).
    Missing {
        array: String,
        url: String,
        rest: Vec<String>,
    },
}

/// Resolves `/a/extension[url:'X']/valueBoolean` to `/a/extension/3/valueBoolean`.
fn selector_pointer(path: &str, current: &Value) -> Result<Selected, ApiError> {
    let mut pointer = String::new();
    let segments = super::split_outside_brackets(path.trim_start_matches('/'), '/');
    let mut segments = segments.into_iter();
    while let Some(segment) = segments.next() {
        let Some((name, selector)) = segment.split_once("[url:") else {
            pointer.push('/');
            pointer.push_str(segment);
            continue;
        };
        let url = selector
            .strip_suffix(']')
            .map(|quoted| quoted.trim_matches(|c| c == '\'' || c == '"'))
            .ok_or_else(|| {
                ApiError::bad_request(
                    IssueCode::Invalid,
                    format!("malformed selector in {path:?}"),
                )
            })?;
        let array = format!("{pointer}/{name}");
        let found = current
            .pointer(&array)
            .and_then(Value::as_array)
            .and_then(|items| {
                items
                    .iter()
                    .position(|item| item.get("url").and_then(Value::as_str) == Some(url))
            });
        match found {
            Some(index) => pointer = format!("{array}/{index}"),
            None => {
                return Ok(Selected::Missing {
                    array,
                    url: url.to_owned(),
                    rest: segments.map(str::to_owned).collect(),
                });
            }
        }
    }
    Ok(Selected::Found(pointer))
}

/// An `add` of a new extension `{url, <rest>: value}` at the end of `array` (or a
/// new array holding it).
fn new_extension(
    current: &Value,
    array: &str,
    url: &str,
    rest: &[String],
    value: Value,
) -> Result<Value, ApiError> {
    let mut extension = Map::new();
    extension.insert("url".into(), Value::String(url.to_owned()));
    match rest {
        [] => {
            if let Value::Object(members) = value {
                extension.extend(members.into_iter().filter(|(key, _)| key != "url"));
            }
        }
        [member] => {
            extension.insert(member.clone(), value);
        }
        _ => {
            return Err(unprocessable(format!(
                "cannot create the extension {url} from a path this deep"
            )));
        }
    }
    Ok(if current.pointer(array).is_some() {
        json!({ "op": "add", "path": format!("{array}/-"), "value": extension })
    } else {
        json!({ "op": "add", "path": array, "value": [extension] })
    })
}

/// One FHIRPath Patch operation's parts.
struct Part<'a> {
    kind: &'a str,
    path: &'a str,
    name: Option<&'a str>,
    value: Option<&'a Value>,
    index: Option<u64>,
}

fn fhirpath_operations(
    parameters: &Value,
    resource_type: &str,
    current: &Value,
) -> Result<Vec<Value>, ApiError> {
    let operations: Vec<&Value> = parameters
        .get("parameter")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    if operations.is_empty() {
        return Err(ApiError::bad_request(
            IssueCode::Required,
            "a FHIRPath Patch carries at least one operation parameter",
        ));
    }
    if operations.len() > MAX_OPERATIONS {
        return Err(ApiError::bad_request(
            IssueCode::TooCostly,
            format!("a PATCH carries at most {MAX_OPERATIONS} operations"),
        ));
    }
    let mut result = Vec::with_capacity(operations.len());
    // Each operation applies to the resource as the ones before left it.
    let mut working = current.clone();
    for (at, operation) in operations.into_iter().enumerate() {
        if operation.get("name").and_then(Value::as_str) != Some("operation") {
            return Err(ApiError::bad_request(
                IssueCode::Invalid,
                format!("Parameters.parameter[{at}] is not an operation"),
            ));
        }
        let part = parts(operation).map_err(|message| {
            ApiError::bad_request(IssueCode::Invalid, format!("operation {at}: {message}"))
        })?;
        let path = part
            .path
            .strip_prefix(resource_type)
            .and_then(|rest| rest.strip_prefix('.').or(rest.is_empty().then_some("")))
            .ok_or_else(|| {
                unprocessable(format!(
                    "operation {at}: the path {:?} must start with {resource_type}",
                    part.path
                ))
            })?;
        let pointer = fhirpath_pointer(path, &working)
            .map_err(|message| unprocessable(format!("operation {at}: {message}")))?;
        let op = match part.kind {
            "replace" => {
                if working.pointer(&pointer).is_none() {
                    return Err(unprocessable(format!(
                        "operation {at}: nothing at {} to replace",
                        part.path
                    )));
                }
                json!({ "op": "replace", "path": pointer, "value": required_value(&part, at)? })
            }
            "delete" => {
                if working.pointer(&pointer).is_none() {
                    // FHIRPath Patch: deleting what is not there changes nothing.
                    continue;
                }
                json!({ "op": "remove", "path": pointer })
            }
            "add" => {
                let name = part.name.ok_or_else(|| {
                    ApiError::bad_request(
                        IssueCode::Required,
                        format!("operation {at}: add needs a name"),
                    )
                })?;
                let value = required_value(&part, at)?;
                let target = format!("{pointer}/{}", escape(name));
                match working.pointer(&target) {
                    Some(Value::Array(_)) => {
                        json!({ "op": "add", "path": format!("{target}/-"), "value": value })
                    }
                    None if REPEATING.contains(&name) => {
                        json!({ "op": "add", "path": target, "value": [value] })
                    }
                    None => json!({ "op": "add", "path": target, "value": value }),
                    Some(_) => {
                        return Err(unprocessable(format!(
                            "operation {at}: {}.{name} already has a value (use replace)",
                            part.path
                        )));
                    }
                }
            }
            "insert" => {
                let index = part.index.ok_or_else(|| {
                    ApiError::bad_request(
                        IssueCode::Required,
                        format!("operation {at}: insert needs an index"),
                    )
                })?;
                json!({ "op": "add", "path": format!("{pointer}/{index}"), "value": required_value(&part, at)? })
            }
            other => {
                return Err(unprocessable(format!(
                    "operation {at}: FHIRPath Patch {other:?} is not supported (add, insert, delete, replace)"
                )));
            }
        };
        let patch: json_patch::Patch = serde_json::from_value(Value::Array(vec![op.clone()]))
            .map_err(|error| unprocessable(format!("operation {at}: {error}")))?;
        json_patch::patch(&mut working, &patch)
            .map_err(|error| unprocessable(format!("operation {at} cannot be applied: {error}")))?;
        result.push(op);
    }
    Ok(result)
}

fn required_value<'a>(part: &Part<'a>, at: usize) -> Result<&'a Value, ApiError> {
    part.value.ok_or_else(|| {
        ApiError::bad_request(
            IssueCode::Required,
            format!("operation {at}: {} needs a value[x] part", part.kind),
        )
    })
}

fn parts(operation: &Value) -> Result<Part<'_>, String> {
    let mut part = Part {
        kind: "",
        path: "",
        name: None,
        value: None,
        index: None,
    };
    for item in operation
        .get("part")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let value_x = item.as_object().and_then(|members| {
            members
                .iter()
                .find(|(key, _)| key.starts_with("value"))
                .map(|(_, value)| value)
        });
        match item.get("name").and_then(Value::as_str) {
            Some("type") => part.kind = value_x.and_then(Value::as_str).unwrap_or(""),
            Some("path") => part.path = value_x.and_then(Value::as_str).unwrap_or(""),
            Some("name") => part.name = value_x.and_then(Value::as_str),
            Some("index") => part.index = value_x.and_then(Value::as_u64),
            Some("value") => {
                if value_x.is_none() && item.get("part").is_some() {
                    return Err(
                        "values given as nested parts are not supported: use value[x]".into(),
                    );
                }
                part.value = value_x;
            }
            Some(other) => return Err(format!("unknown part {other:?}")),
            None => return Err("a part without a name".into()),
        }
    }
    if part.kind.is_empty() || part.path.is_empty() {
        return Err("type and path are required".into());
    }
    Ok(part)
}

/// A JSON Pointer for a simple FHIRPath (after the type name) in `current`.
fn fhirpath_pointer(path: &str, current: &Value) -> Result<String, String> {
    let mut pointer = String::new();
    if path.is_empty() {
        return Ok(pointer);
    }
    for step in steps(path) {
        let (name, rest) = match step.find(['[', '(']) {
            Some(at) => (&step[..at], &step[at..]),
            None => (step.as_str(), ""),
        };
        if name == "where" || name == "extension" && rest.starts_with('(') {
            // `where(url='X')` filters the array at the pointer; `extension('X')`
            // is the extension array filtered by url.
            let url = rest
                .trim_start_matches('(')
                .trim_end_matches(')')
                .trim_start_matches("url")
                .trim_start_matches(|c: char| c == '=' || c.is_whitespace())
                .trim_matches(|c| c == '\'' || c == '"');
            if name == "extension" {
                pointer.push_str("/extension");
            }
            let index = current
                .pointer(&pointer)
                .and_then(Value::as_array)
                .and_then(|items| {
                    items
                        .iter()
                        .position(|item| item.get("url").and_then(Value::as_str) == Some(url))
                })
                .ok_or_else(|| format!("no element with url {url} in {path}"))?;
            pointer = format!("{pointer}/{index}");
            continue;
        }
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "the path {path:?} is beyond what this server patches"
            ));
        }
        // `value` after a url filter is the extension's `value[x]` whatever its type.
        let member = if name == "value" {
            current
                .pointer(&pointer)
                .and_then(Value::as_object)
                .and_then(|members| members.keys().find(|key| key.starts_with("value")).cloned())
                .unwrap_or_else(|| name.to_owned())
        } else {
            name.to_owned()
        };
        pointer.push('/');
        pointer.push_str(&escape(&member));
        if let Some(index) = rest
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
        {
            let index: usize = index
                .parse()
                .map_err(|_| format!("invalid index in {path:?}"))?;
            pointer = format!("{pointer}/{index}");
        } else if !rest.is_empty() {
            return Err(format!(
                "the path {path:?} is beyond what this server patches"
            ));
        }
    }
    Ok(pointer)
}

/// The dot-separated steps of a FHIRPath, dots inside parentheses or quotes kept.
fn steps(path: &str) -> Vec<String> {
    let mut steps = vec![String::new()];
    let (mut depth, mut quoted) = (0usize, false);
    for c in path.chars() {
        match c {
            '\'' => quoted = !quoted,
            '(' | '[' if !quoted => depth += 1,
            ')' | ']' if !quoted => depth = depth.saturating_sub(1),
            '.' if depth == 0 && !quoted => {
                steps.push(String::new());
                continue;
            }
            _ => {}
        }
        steps.last_mut().expect("never empty").push(c);
    }
    steps
}

fn escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARCHIVED: &str =
        "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-ext-is-archived";

    fn apply(document: PatchDocument, current: &Value) -> Value {
        let operations = document.operations("DocumentReference", current).unwrap();
        let mut patched = current.clone();
        json_patch::patch(&mut patched, &operations).unwrap();
        patched
    }

    #[test]
    fn the_ans_extension_selector_adds_then_replaces() {
        let current = json!({"resourceType": "DocumentReference", "status": "current"});
        let archive = PatchDocument::Json(json!([{
            "op": "replace",
            "path": format!("/extension[url:'{ARCHIVED}']/valueBoolean"),
            "value": true
        }]));
        let archived = apply(archive, &current);
        assert_eq!(
            archived["extension"],
            json!([{"url": ARCHIVED, "valueBoolean": true}])
        );
        let restore = PatchDocument::Json(json!([{
            "op": "replace",
            "path": format!("/extension[url:'{ARCHIVED}']/valueBoolean"),
            "value": false
        }]));
        let restored = apply(restore, &archived);
        assert_eq!(
            restored["extension"],
            json!([{"url": ARCHIVED, "valueBoolean": false}])
        );
    }

    #[test]
    fn fhirpath_patch_replaces_adds_and_deletes() {
        let current = json!({
            "resourceType": "DocumentReference", "status": "current",
            "securityLabel": [{"coding": [{"code": "N"}]}]
        });
        let document = PatchDocument::FhirPath(json!({
            "resourceType": "Parameters",
            "parameter": [
                {"name": "operation", "part": [
                    {"name": "type", "valueCode": "replace"},
                    {"name": "path", "valueString": "DocumentReference.status"},
                    {"name": "value", "valueCode": "superseded"}]},
                {"name": "operation", "part": [
                    {"name": "type", "valueCode": "add"},
                    {"name": "path", "valueString": "DocumentReference"},
                    {"name": "name", "valueString": "securityLabel"},
                    {"name": "value", "valueCodeableConcept": {"coding": [{"code": "MASQUE_PS"}]}}]},
                {"name": "operation", "part": [
                    {"name": "type", "valueCode": "delete"},
                    {"name": "path", "valueString": "DocumentReference.securityLabel[0]"}]}
            ]
        }));
        let patched = apply(document, &current);
        assert_eq!(patched["status"], "superseded");
        assert_eq!(
            patched["securityLabel"],
            json!([{"coding": [{"code": "MASQUE_PS"}]}])
        );
    }

    #[test]
    fn fhirpath_extension_filters() {
        let current = json!({
            "resourceType": "DocumentReference",
            "extension": [{"url": "other", "valueString": "x"}, {"url": ARCHIVED, "valueBoolean": false}]
        });
        let document = PatchDocument::FhirPath(json!({
            "resourceType": "Parameters",
            "parameter": [{"name": "operation", "part": [
                {"name": "type", "valueCode": "replace"},
                {"name": "path", "valueString": format!("DocumentReference.extension.where(url='{ARCHIVED}').value")},
                {"name": "value", "valueBoolean": true}]}]
        }));
        assert_eq!(
            apply(document, &current)["extension"][1]["valueBoolean"],
            true
        );
    }

    #[test]
    fn a_merge_patch_changes_what_it_names() {
        let current =
            json!({"resourceType": "DocumentReference", "status": "current", "description": "x"});
        let patched = apply(
            PatchDocument::Merge(json!({"status": "superseded", "description": null})),
            &current,
        );
        assert_eq!(
            patched,
            json!({"resourceType": "DocumentReference", "status": "superseded"})
        );
    }

    #[test]
    fn unsupported_operations_are_refused() {
        let current = json!({"resourceType": "DocumentReference"});
        let moving = PatchDocument::FhirPath(json!({
            "resourceType": "Parameters",
            "parameter": [{"name": "operation", "part": [
                {"name": "type", "valueCode": "move"},
                {"name": "path", "valueString": "DocumentReference.content"}]}]
        }));
        assert_eq!(
            moving
                .operations("DocumentReference", &current)
                .unwrap_err()
                .status
                .as_u16(),
            422
        );
        let foreign = PatchDocument::FhirPath(json!({
            "resourceType": "Parameters",
            "parameter": [{"name": "operation", "part": [
                {"name": "type", "valueCode": "replace"},
                {"name": "path", "valueString": "Patient.status"},
                {"name": "value", "valueCode": "x"}]}]
        }));
        assert!(foreign.operations("DocumentReference", &current).is_err());
    }
}

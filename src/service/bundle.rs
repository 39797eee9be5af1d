//! batch and transaction Bundles. A transaction resolves `urn:uuid:` references,
//! runs its entries in the FHIR order (DELETE, POST, PUT, PATCH, GET) inside the one
//! write transaction it is given, and fails whole on the first failing entry. A batch
//! runs each entry in its own transaction and reports each outcome.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::{Ctx, FhirResponse, Operation, execute, write};
use crate::access::{BundleEntry, BundleOut, Released};
use crate::error::{ApiError, IssueCode};
use crate::fhir::definitions::{self, Interaction, ResourceDef};
use crate::fhir::patch::PatchDocument;
use crate::fhir::stored::Incoming;
use crate::store::{Conn, dialect};

/// One classified entry.
pub struct Entry {
    pub index: usize,
    pub def: &'static ResourceDef,
    pub operation: Operation,
    /// The `fullUrl` of a POST entry, when it is a `urn:uuid:`.
    pub placeholder: Option<String>,
}

/// Kind of Bundle request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleKind {
    Batch,
    Transaction,
}

fn entry_error(index: usize, error: ApiError) -> ApiError {
    let mut error = error;
    error.message = format!("Bundle.entry[{index}]: {}", error.message);
    if error.expression.is_none() {
        error.expression = Some(format!("Bundle.entry[{index}]"));
    }
    error
}

/// Reads the Bundle's type and classifies every entry.
pub fn classify(
    bundle: &Incoming,
    base_url: &str,
    max_entries: usize,
) -> Result<(BundleKind, Vec<Result<Entry, ApiError>>), ApiError> {
    if bundle.resource_type() != Some("Bundle") {
        return Err(ApiError::bad_request(
            IssueCode::Invalid,
            "POST / expects a batch or transaction Bundle",
        )
        .at("resourceType"));
    }
    let kind = match bundle.value().get("type").and_then(Value::as_str) {
        Some("transaction") => BundleKind::Transaction,
        Some("batch") => BundleKind::Batch,
        other => {
            return Err(ApiError::bad_request(
                IssueCode::Invalid,
                format!("Bundle.type must be batch or transaction, got {other:?}"),
            )
            .at("Bundle.type"));
        }
    };
    let entries = match bundle.value().get("entry") {
        None => Vec::new(),
        Some(Value::Array(entries)) => entries.clone(),
        Some(_) => {
            return Err(ApiError::bad_request(
                IssueCode::Structure,
                "Bundle.entry must be an array",
            )
            .at("Bundle.entry"));
        }
    };
    if entries.len() > max_entries {
        return Err(ApiError::new(
            actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
            IssueCode::TooCostly,
            format!(
                "a Bundle holds at most {max_entries} entries, not {}",
                entries.len()
            ),
        )
        .at("Bundle.entry"));
    }
    let classified = entries
        .into_iter()
        .enumerate()
        .map(|(index, entry)| {
            classify_entry(index, &entry, base_url).map_err(|error| entry_error(index, error))
        })
        .collect();
    Ok((kind, classified))
}

fn classify_entry(index: usize, entry: &Value, base_url: &str) -> Result<Entry, ApiError> {
    let request = entry
        .get("request")
        .ok_or_else(|| ApiError::bad_request(IssueCode::Required, "entry.request is required"))?;
    let method = request.get("method").and_then(Value::as_str).unwrap_or("");
    let url = request.get("url").and_then(Value::as_str).ok_or_else(|| {
        ApiError::bad_request(IssueCode::Required, "entry.request.url is required")
    })?;
    // A URL holds no control character (RFC 3986); the ids and types in it are
    // matched in queries, where PostgreSQL refuses U+0000.
    if url.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            IssueCode::Invalid,
            "entry.request.url may not hold control characters",
        ));
    }
    let url = url
        .strip_prefix(base_url)
        .map(|rest| rest.trim_start_matches('/'))
        .unwrap_or(url);
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let segments: Vec<&str> = path
        .split('/')
        .filter(|segment| !segment.is_empty())
        .collect();
    let type_name = segments.first().copied().unwrap_or("");
    let def = definitions::resource(type_name)
        .ok_or_else(|| ApiError::not_found(format!("resource type {type_name:?} is not served")))?;
    let body = || -> Result<Incoming, ApiError> {
        let resource = entry.get("resource").ok_or_else(|| {
            ApiError::bad_request(IssueCode::Required, "entry.resource is required")
        })?;
        let text = serde_json::to_vec(resource).expect("a value serialises");
        Incoming::parse(&text)
    };
    let if_match = request
        .get("ifMatch")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let operation = match (method, segments.as_slice()) {
        ("POST", [_]) => Operation::Create {
            body: body()?,
            if_none_exist: request
                .get("ifNoneExist")
                .and_then(Value::as_str)
                .map(str::to_owned),
        },
        ("GET", [_]) => Operation::Search {
            params,
            strict: false,
        },
        ("GET", [_, "_history"]) => Operation::HistoryType { params },
        ("GET", [_, id]) => Operation::Read {
            id: (*id).to_owned(),
        },
        ("GET", [_, id, "_history"]) => Operation::HistoryInstance {
            id: (*id).to_owned(),
            params,
        },
        ("GET", [_, id, "_history", version]) => Operation::Vread {
            id: (*id).to_owned(),
            version: (*version).to_owned(),
        },
        ("PUT", [_, id]) => Operation::Update {
            id: (*id).to_owned(),
            body: body()?,
            if_match,
        },
        ("DELETE", [_, id]) => Operation::Delete {
            id: (*id).to_owned(),
            if_match,
        },
        ("PATCH", [_, id]) => Operation::Patch {
            id: (*id).to_owned(),
            patch: patch_from_entry(entry)?,
            if_match,
        },
        ("PATCH", [_]) if !params.is_empty() => Operation::ConditionalPatch {
            params,
            patch: patch_from_entry(entry)?,
            if_match,
        },
        ("PUT" | "DELETE" | "PATCH", [_]) => {
            return Err(ApiError::method_not_allowed(format!(
                "conditional {method} is not supported"
            )));
        }
        ("GET" | "POST" | "PUT" | "DELETE" | "PATCH", _) => {
            return Err(ApiError::bad_request(
                IssueCode::NotSupported,
                format!("unsupported entry URL {url:?}"),
            ));
        }
        _ => {
            return Err(ApiError::bad_request(
                IssueCode::Invalid,
                format!(
                    "entry.request.method must be GET, POST, PUT, PATCH or DELETE, got {method:?}"
                ),
            ));
        }
    };
    if !def.supports(operation.interaction()) {
        return Err(ApiError::method_not_allowed(format!(
            "{} does not support {}",
            def.name,
            operation.interaction().code()
        )));
    }
    let placeholder = entry
        .get("fullUrl")
        .and_then(Value::as_str)
        .filter(|url| url.starts_with("urn:uuid:") && method == "POST")
        .map(str::to_owned);
    Ok(Entry {
        index,
        def,
        operation,
        placeholder,
    })
}

/// FHIR carries a PATCH in a Bundle as a Binary of type application/json-patch+json,
/// or as a FHIRPath Patch `Parameters` resource (the MHD replacement, TD2.1).
fn patch_from_entry(entry: &Value) -> Result<PatchDocument, ApiError> {
    let resource = entry.get("resource").ok_or_else(|| {
        ApiError::bad_request(
            IssueCode::Required,
            "a PATCH entry needs a Binary (JSON Patch) or Parameters (FHIRPath Patch) resource",
        )
    })?;
    if resource.get("resourceType").and_then(Value::as_str) == Some("Parameters") {
        return Ok(PatchDocument::FhirPath(resource.clone()));
    }
    let is_patch = resource.get("resourceType").and_then(Value::as_str) == Some("Binary")
        && resource.get("contentType").and_then(Value::as_str)
            == Some("application/json-patch+json");
    let data = resource
        .get("data")
        .and_then(Value::as_str)
        .filter(|_| is_patch)
        .ok_or_else(|| {
            ApiError::bad_request(
                IssueCode::Invalid,
                "a PATCH entry needs a Binary of type application/json-patch+json with data, or a FHIRPath Patch Parameters",
            )
        })?;
    let bytes = STANDARD.decode(data).map_err(|_| {
        ApiError::bad_request(IssueCode::Invalid, "the PATCH Binary's data is not base64")
    })?;
    serde_json::from_slice(&bytes)
        .map(PatchDocument::Json)
        .map_err(|error| {
            ApiError::bad_request(
                IssueCode::Invalid,
                format!("the PATCH document is not JSON: {error}"),
            )
        })
}

fn order(interaction: Interaction) -> u8 {
    match interaction {
        Interaction::Delete => 0,
        Interaction::Create => 1,
        Interaction::Update => 2,
        Interaction::Patch => 3,
        _ => 4,
    }
}

fn response_entry(base_url: &str, response: FhirResponse) -> BundleEntry {
    let status = format!(
        "{} {}",
        response.status.as_u16(),
        response.status.canonical_reason().unwrap_or("")
    );
    let mut summary = json!({ "status": status.trim_end() });
    if let Some(location) = &response.location {
        summary["location"] = json!(location);
    }
    if let Some(version) = response.version {
        summary["etag"] = json!(format!("W/\"{version}\""));
    }
    if let Some(modified) = &response.last_modified {
        summary["lastModified"] = json!(modified);
    }
    let full_url = response.location.as_ref().map(|location| {
        let resource = location.split("/_history/").next().unwrap_or(location);
        format!("{base_url}/{resource}")
    });
    BundleEntry {
        full_url,
        resource: response.body,
        response: Some(summary),
        ..BundleEntry::default()
    }
}

fn error_entry(error: &ApiError) -> BundleEntry {
    BundleEntry {
        response: Some(json!({
            "status": format!("{}", error.status.as_u16()),
            "outcome": error.outcome(),
        })),
        ..BundleEntry::default()
    }
}

/// Runs a transaction inside the caller's write transaction. `authorize` is the
/// decide stage for one entry.
pub fn transaction(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    entries: Vec<Entry>,
    authorize: &dyn Fn(&ResourceDef, &Operation) -> Result<(), ApiError>,
) -> Result<FhirResponse, ApiError> {
    let count = entries.len();
    for entry in &entries {
        authorize(entry.def, &entry.operation).map_err(|error| entry_error(entry.index, error))?;
    }
    check_submission_sets(&entries)?;
    // Conditional references to the Patient (MHD ITI-65, R-MHD-1) first: the space
    // of every entry is known before anything is written.
    let mut entries = entries;
    for entry in &mut entries {
        if let Operation::Create { body, .. } | Operation::Update { body, .. } =
            &mut entry.operation
        {
            super::mhd::resolve_conditional_references(conn, ctx, body)
                .map_err(|error| entry_error(entry.index, error))?;
        }
    }
    let matches = take_turns(conn, ctx, &entries)?;
    // Give every urn:uuid POST its id (or its existing match), then point every
    // reference at it.
    let mut assigned: HashMap<String, String> = HashMap::new();
    let mut reuse: HashMap<usize, FhirResponse> = HashMap::new();
    let mut planned_ids: HashMap<usize, String> = HashMap::new();
    for entry in &entries {
        let Operation::Create { if_none_exist, .. } = &entry.operation else {
            continue;
        };
        let existing = match if_none_exist {
            Some(query) => write::existing_match(conn, ctx, entry.def, query)
                .map_err(|error| entry_error(entry.index, error))?,
            None => None,
        };
        let target = match &existing {
            Some(found) => found
                .location
                .as_deref()
                .and_then(|location| location.split("/_history/").next())
                .unwrap_or_default()
                .to_owned(),
            None => format!("{}/{}", entry.def.name, uuid::Uuid::new_v4()),
        };
        if let Some(found) = existing {
            reuse.insert(entry.index, found);
        }
        if let Some(placeholder) = &entry.placeholder {
            assigned.insert(placeholder.clone(), target.clone());
        }
        planned_ids.insert(
            entry.index,
            target.rsplit('/').next().unwrap_or_default().to_owned(),
        );
    }
    let rewrite = |reference: &str| assigned.get(reference).cloned();
    for entry in &mut entries {
        match &mut entry.operation {
            Operation::Create { body, .. } | Operation::Update { body, .. } => {
                body.rewrite_references(&rewrite)
            }
            _ => {}
        }
    }
    // R-MHD-1: a Binary without securityContext takes the space of the Bundle's
    // DocumentReference that points at it.
    let documents: Vec<Value> = entries
        .iter()
        .filter(|entry| entry.def.name == "DocumentReference")
        .filter_map(|entry| match &entry.operation {
            Operation::Create { body, .. } | Operation::Update { body, .. } => {
                Some(body.value().clone())
            }
            _ => None,
        })
        .collect();
    let document_refs: Vec<&Value> = documents.iter().collect();
    for entry in &mut entries {
        if entry.def.name != "Binary" {
            continue;
        }
        let id = planned_ids.get(&entry.index).cloned().unwrap_or_default();
        if let Operation::Create { body, .. } = &mut entry.operation
            && let Some(placed) = super::mhd::binary_with_space(body, &id, &document_refs)
        {
            *body = placed;
        }
    }
    let document_indexes: Vec<usize> = entries
        .iter()
        .filter(|entry| {
            entry.def.name == "DocumentReference"
                && matches!(
                    entry.operation,
                    Operation::Create { .. } | Operation::Update { .. }
                )
        })
        .map(|entry| entry.index)
        .collect();
    entries.sort_by_key(|entry| (order(entry.operation.interaction()), entry.index));
    let mut responses: Vec<Option<BundleEntry>> = (0..count).map(|_| None).collect();
    for entry in entries {
        let index = entry.index;
        let response = if let Some(done) = reuse.remove(&index) {
            done
        } else if let Operation::Create { body, .. } = entry.operation {
            let id = planned_ids.get(&index).cloned().unwrap_or_default();
            write::create_with_id(conn, ctx, entry.def, &id, body)
                .map_err(|error| entry_error(index, error))?
        } else if let (Some(matches), Operation::ConditionalPatch { .. }) =
            (&matches, &entry.operation)
        {
            patch_the_match_taken(conn, ctx, entry, matches.get(&index))
                .map_err(|error| entry_error(index, error))?
        } else {
            execute(conn, ctx, entry.def, entry.operation)
                .map_err(|error| entry_error(index, error))?
        };
        responses[index] = Some(response_entry(ctx.base_url, response));
    }
    // R-MHD-2: sizes and hashes against the bytes, once every Binary is stored.
    for (document, index) in documents.iter().zip(document_indexes) {
        super::mhd::check_attachments(conn, ctx, document)
            .map_err(|error| entry_error(index, error))?;
    }
    let mut bundle = BundleOut::new("transaction-response");
    bundle.entry = responses
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect();
    Ok(FhirResponse {
        status: StatusCode::OK,
        body: Some(Released::bundle(bundle)),
        version: None,
        last_modified: None,
        location: None,
    })
}

/// Every turn the entries name, in one order, before the first runs: crossed with
/// another transaction naming the same ones, neither waits on the other (see
/// `locks`). A conditional patch's match is found first, without its turn; an
/// entry that finds none, or several, fails as it runs. Returns, on PostgreSQL, the
/// match found for each conditional patch (by entry index).
fn take_turns(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    entries: &[Entry],
) -> Result<Option<HashMap<usize, String>>, ApiError> {
    let writes: Vec<(&'static ResourceDef, &Operation)> = entries
        .iter()
        .filter(|entry| entry.operation.interaction().is_write())
        .map(|entry| (entry.def, &entry.operation))
        .collect();
    let named = super::locks::named_by_transaction(&writes)?;
    if !crate::store::dialect::is_postgres(conn) {
        return Ok(None);
    }
    let mut matched = Vec::new();
    let mut matches = HashMap::new();
    for entry in entries {
        if let Operation::ConditionalPatch { params, .. } = &entry.operation
            && let Ok(id) = write::conditional_match(conn, ctx, entry.def, params)
        {
            matched.push((entry.def, id.clone()));
            matches.insert(entry.index, id);
        }
    }
    let spaces = super::locks::take_for_transaction(conn, &writes, named, &matched)?;
    // A space's turn comes before its version's row (a change of its lifecycle
    // takes the turn, then the row).
    ctx.gate.take_space_turns(conn, &spaces)?;
    super::locks::bump_in_order(conn, &spaces)?;
    Ok(Some(matches))
}

/// A transaction's conditional patch, on PostgreSQL: the match found when the
/// transaction took its turns is patched; a match that changed since (another
/// writer committed meanwhile) would be locked out of order, so the transaction is
/// refused (409) rather than made to wait on a writer that may wait on it.
fn patch_the_match_taken(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    entry: Entry,
    taken: Option<&String>,
) -> Result<FhirResponse, ApiError> {
    let Operation::ConditionalPatch {
        params,
        patch,
        if_match,
    } = entry.operation
    else {
        return execute(conn, ctx, entry.def, entry.operation);
    };
    let id = write::conditional_match(conn, ctx, entry.def, &params)?;
    if taken != Some(&id) {
        return Err(ApiError::conflict(format!(
            "the conditional PATCH matches another {} than when the transaction began: send it again",
            entry.def.name
        )));
    }
    write::patch(conn, ctx, entry.def, &id, &patch, if_match.as_deref())
}

/// R-MHD-1: an ITI-65 Bundle carries one SubmissionSet (a List coded
/// `submissionset`); a second one is refused.
fn check_submission_sets(entries: &[Entry]) -> Result<(), ApiError> {
    let submission_sets: Vec<usize> = entries
        .iter()
        .filter(|entry| entry.def.name == "List")
        .filter(|entry| match &entry.operation {
            Operation::Create { body, .. } | Operation::Update { body, .. } => {
                crate::fhir::mhd::is_submission_set(body.value())
            }
            _ => false,
        })
        .map(|entry| entry.index)
        .collect();
    if let [_, second, ..] = submission_sets.as_slice() {
        return Err(entry_error(
            *second,
            ApiError::unprocessable(
                IssueCode::Processing,
                "a Provide Document Bundle carries one SubmissionSet (ITI-65)",
            ),
        ));
    }
    Ok(())
}

/// Runs a batch: each entry on its own, in its own write transaction.
pub fn batch(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    entries: Vec<Result<Entry, ApiError>>,
    authorize: &dyn Fn(&ResourceDef, &Operation) -> Result<(), ApiError>,
) -> Result<FhirResponse, ApiError> {
    let mut bundle = BundleOut::new("batch-response");
    for entry in entries {
        ctx.gate.touched.begin_entry();
        let result = entry.and_then(|entry| {
            authorize(entry.def, &entry.operation)?;
            let def = entry.def;
            let operation = entry.operation;
            if operation.interaction().is_write() {
                ctx.gate.begin_transaction();
                dialect::write_transaction(conn, |conn| execute(conn, ctx, def, operation))
            } else {
                execute(conn, ctx, def, operation)
            }
        });
        ctx.gate.touched.end_entry(result.as_ref().err());
        bundle.entry.push(match result {
            Ok(response) => response_entry(ctx.base_url, response),
            Err(error) => error_entry(&error),
        });
    }
    Ok(FhirResponse {
        status: StatusCode::OK,
        body: Some(Released::bundle(bundle)),
        version: None,
        last_modified: None,
        location: None,
    })
}

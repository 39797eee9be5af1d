//! What IHE MHD / ANS PDSm asks of writes beyond plain FHIR (SPEC §10): conditional
//! references to the Patient by INS (R-MHD-1), the space of a Binary carried in the
//! same Bundle as its DocumentReference (R-MHD-1), the uniqueness of the XDS uniqueId
//! and the integrity of the bytes (R-MHD-2), and replacement (R-MHD-3).

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::Ctx;
use crate::error::{ApiError, IssueCode};
use crate::fhir::definitions::{self, MASTER_IDENTIFIER};
use crate::fhir::extract::{parse_reference, values_at};
use crate::fhir::search::{self as fhir_search, PageLimits};
use crate::fhir::stored::Incoming;
use crate::store::{self, Conn};

/// Most distinct conditional references one resource may carry (bounded work).
const MAX_CONDITIONAL_REFERENCES: usize = 8;

/// Replaces every conditional reference (`Patient?identifier=<system>|<value>`) by
/// the one Patient it matches among those the caller may search (FHIR R4 §3.1.0.1.3
/// "conditional references"): none is 422, several 412. Only Patient is searched
/// this way: another type's conditional reference is refused (422).
pub fn resolve_conditional_references(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    incoming: &mut Incoming,
) -> Result<(), ApiError> {
    let mut queries: Vec<String> = Vec::new();
    collect_conditional(incoming.value(), &mut queries);
    if queries.is_empty() {
        return Ok(());
    }
    queries.sort();
    queries.dedup();
    if queries.len() > MAX_CONDITIONAL_REFERENCES {
        return Err(ApiError::unprocessable(
            IssueCode::TooCostly,
            format!(
                "a resource may carry at most {MAX_CONDITIONAL_REFERENCES} distinct conditional references"
            ),
        ));
    }
    let mut resolved: HashMap<String, String> = HashMap::new();
    for query in queries {
        let target = resolve_one(conn, ctx, &query)?;
        resolved.insert(query, target);
    }
    incoming.rewrite_references(&|reference| resolved.get(reference).cloned());
    Ok(())
}

/// Whether a resource carries a conditional reference (`Type?query`), which the
/// writer resolves before checking it.
pub fn has_conditional_references(value: &Value) -> bool {
    let mut found = Vec::new();
    collect_conditional(value, &mut found);
    !found.is_empty()
}

/// The `Type?query` references in a resource (its `reference` members).
fn collect_conditional(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(members) => {
            for (name, item) in members {
                match (name.as_str(), item) {
                    ("reference", Value::String(text)) if is_conditional(text) => {
                        found.push(text.clone());
                    }
                    _ => collect_conditional(item, found),
                }
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|item| collect_conditional(item, found)),
        _ => {}
    }
}

/// `Type?…`: a conditional reference (a type name, then a query).
fn is_conditional(reference: &str) -> bool {
    reference.split_once('?').is_some_and(|(kind, _)| {
        kind.chars().next().is_some_and(|c| c.is_ascii_uppercase())
            && kind.chars().all(|c| c.is_ascii_alphabetic())
    })
}

fn resolve_one(conn: &mut Conn, ctx: &Ctx<'_>, reference: &str) -> Result<String, ApiError> {
    let (kind, query) = reference.split_once('?').expect("checked conditional");
    if kind != "Patient" {
        return Err(ApiError::unprocessable(
            IssueCode::NotSupported,
            format!("conditional references are resolved for Patient only, not {reference:?}"),
        ));
    }
    let def = definitions::resource("Patient").expect("Patient is served");
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    if pairs.is_empty() {
        return Err(ApiError::unprocessable(
            IssueCode::Invalid,
            format!("the conditional reference {reference:?} has no search parameters"),
        ));
    }
    let request = fhir_search::parse(def, &pairs, true, PageLimits::pages(2, 2))
        .map_err(|error| ApiError::unprocessable(IssueCode::Invalid, error.message))?;
    let narrowing = ctx.gate.search_narrowing(conn, &request)?;
    let rows = store::search::run(conn, &request, &narrowing)?.rows;
    ctx.gate
        .touched
        .people_found(rows.iter().map(|row| row.res_id.as_str()));
    match rows.as_slice() {
        [one] => Ok(format!("Patient/{}", one.res_id)),
        [] => Err(ApiError::unprocessable(
            IssueCode::NotFound,
            format!("the conditional reference {reference:?} matches no Patient"),
        )),
        _ => Err(ApiError::precondition_failed(format!(
            "the conditional reference {reference:?} matches more than one Patient"
        ))),
    }
}

/// The Binary ids a DocumentReference's attachments point at.
pub fn attached_binaries(document: &Value) -> Vec<String> {
    values_at(document, "content.attachment.url")
        .into_iter()
        .filter_map(Value::as_str)
        .filter_map(parse_reference)
        .filter(|(kind, _)| kind == "Binary")
        .map(|(_, id)| id)
        .collect()
}

/// R-MHD-1: a Binary sent without `securityContext` in the Bundle of the
/// DocumentReference that points at it belongs to that document's space. `documents`
/// are the Bundle's DocumentReferences (references already resolved).
pub fn binary_with_space(binary: &Incoming, id: &str, documents: &[&Value]) -> Option<Incoming> {
    if binary.value().get("securityContext").is_some() {
        return None;
    }
    let subjects: Vec<&Value> = documents
        .iter()
        .filter(|document| attached_binaries(document).iter().any(|bin| bin == id))
        .filter_map(|document| document.get("subject"))
        .collect();
    let subject = subjects.first()?;
    if subjects.iter().any(|other| other != subject) {
        return None;
    }
    let reference = subject.get("reference")?.as_str()?;
    let mut changed = binary.value().clone();
    changed["securityContext"] = json!({ "reference": reference });
    Some(binary.with_changes(changed))
}

/// R-MHD-2: the XDS uniqueId (`masterIdentifier`) names one document in the store.
/// Writers of the same uniqueId take turns until the transaction ends.
pub fn check_master_identifier(
    conn: &mut Conn,
    id: &str,
    document: &Value,
) -> Result<(), ApiError> {
    let Some((system, value)) = crate::fhir::mhd::master_identifier(document) else {
        return Ok(());
    };
    store::dialect::lock(conn, &super::locks::document_unique_id(system, value))?;
    if !store::access::live_with_token(
        conn,
        "DocumentReference",
        MASTER_IDENTIFIER,
        system,
        value,
        id,
    )?
    .is_empty()
    {
        return Err(ApiError::conflict(format!(
            "a document with masterIdentifier {system}|{value} is already stored: the uniqueId names one document"
        ))
        .at("DocumentReference.masterIdentifier"));
    }
    Ok(())
}

/// R-MHD-2: an attachment's `size` and `hash` (SHA-1, base64) match its bytes: the
/// inline `data`, or a Binary the caller deposited (someone else's content is not
/// compared, or the answer would tell its hash).
pub fn check_attachments(conn: &mut Conn, ctx: &Ctx<'_>, document: &Value) -> Result<(), ApiError> {
    for (index, attachment) in values_at(document, "content.attachment")
        .into_iter()
        .enumerate()
    {
        let size = attachment.get("size").and_then(Value::as_u64);
        let hash = attachment.get("hash").and_then(Value::as_str);
        if size.is_none() && hash.is_none() {
            continue;
        }
        let bytes = match attachment.get("data").and_then(Value::as_str) {
            Some(data) => crate::fhir::decode_base64(data),
            None => match attachment
                .get("url")
                .and_then(Value::as_str)
                .and_then(parse_reference)
            {
                Some((kind, id)) if kind == "Binary" => own_binary_bytes(conn, ctx, &id)?,
                _ => None,
            },
        };
        let Some(bytes) = bytes else { continue };
        let path = format!("DocumentReference.content[{index}].attachment");
        if let Some(size) = size
            && size != bytes.len() as u64
        {
            return Err(ApiError::unprocessable(
                IssueCode::Value,
                format!(
                    "attachment.size is {size} but the content has {} bytes",
                    bytes.len()
                ),
            )
            .at(format!("{path}.size")));
        }
        if let Some(hash) = hash {
            let actual = STANDARD.encode(openssl::sha::sha1(&bytes));
            if hash != actual {
                return Err(ApiError::unprocessable(
                    IssueCode::Value,
                    format!("attachment.hash is {hash} but the SHA-1 of the content is {actual}"),
                )
                .at(format!("{path}.hash")));
            }
        }
    }
    Ok(())
}

/// The bytes of a live Binary the caller deposited.
fn own_binary_bytes(conn: &mut Conn, ctx: &Ctx<'_>, id: &str) -> Result<Option<Vec<u8>>, ApiError> {
    let Some(row) = store::resources::current(conn, "Binary", id)?.filter(|row| !row.deleted)
    else {
        return Ok(None);
    };
    let principal = ctx.gate.principal;
    let own = store::resources::author_of(conn, row.pk)?.is_some_and(|author| {
        author.actor == principal.actor.code() && author.subject == principal.subject
    });
    if !own {
        return Ok(None);
    }
    let binary: Value = serde_json::from_str(&row.content).unwrap_or(Value::Null);
    Ok(binary
        .get("data")
        .and_then(Value::as_str)
        .and_then(crate::fhir::decode_base64))
}

/// The DocumentReferences a new one replaces (`relatesTo` `replaces`, R-MHD-3).
pub fn replaced_documents(document: &Value) -> Vec<String> {
    values_at(document, "relatesTo")
        .into_iter()
        .filter(|relation| relation.get("code").and_then(Value::as_str) == Some("replaces"))
        .filter_map(|relation| {
            relation
                .pointer("/target/reference")
                .and_then(Value::as_str)
        })
        .filter_map(parse_reference)
        .filter(|(kind, _)| kind == "DocumentReference")
        .map(|(_, id)| id)
        .collect()
}

//! create (with `If-None-Exist`), update (with `If-Match`), JSON Patch and logical
//! delete. Each runs inside the caller's write transaction.

use actix_web::http::StatusCode;
use chrono::Utc;
use serde_json::Value;

use super::read::writable_current;
use super::{Ctx, FhirResponse, mhd, parse_if_match};
use crate::access::rules::professional::MASQUE_PS;
use crate::audit::WriteFact;
use crate::error::{ApiError, IssueCode};
use crate::fhir::date::fhir_instant;
use crate::fhir::definitions::{Interaction, ResourceDef};
use crate::fhir::extract::{self, IndexEntries};
use crate::fhir::patch::PatchDocument;
use crate::fhir::search as fhir_search;
use crate::fhir::stored::AUTHORISATION_EXTENSION;
use crate::fhir::stored::Incoming;
use crate::fhir::validate;
use crate::lifecycle::{SPACE_NOTIFIED_EXTENSION, SPACE_STATE_EXTENSION, State};
use crate::store::{self, Conn, ResourceRow};

/// The version a write produces, the history method and the answer's status.
struct Planned<'r> {
    version: i64,
    method: &'static str,
    status: StatusCode,
    interaction: Interaction,
    /// The current row, for an update or patch.
    existing: Option<&'r ResourceRow>,
}

/// Writes `incoming` as version `version` of `def/id` after the access and
/// referential checks, and answers with the stored resource.
fn store_version(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    def: &'static ResourceDef,
    id: &str,
    incoming: &Incoming,
    plan: Planned<'_>,
) -> Result<FhirResponse, ApiError> {
    let Planned {
        version,
        method,
        status,
        interaction,
        existing,
    } = plan;
    // R-PAT-2, R-MHD-3: a document replacing a masked one keeps that masking unless
    // its depositor may lift it (the holder, or the professional who masked it), as
    // an update of the masked one would: replacing is no way around a masking.
    // A replacement that carries MASQUE_PS itself keeps the masking's author too:
    // its depositor does not become the masker who may lift it.
    let kept_masking = if def.name == "DocumentReference" && interaction == Interaction::Create {
        masking_kept_by_replacement(conn, ctx, def, incoming.value())?
    } else {
        None
    };
    let masked_copy;
    let incoming = if kept_masking.is_some() && !is_masked(incoming.value()) {
        masked_copy = with_masking(incoming);
        &masked_copy
    } else {
        incoming
    };
    let index = extract::index(def, incoming.value());
    // A resource of a patient's space must point at an existing, live Patient.
    if def.name != "Patient" {
        for patient in &index.patients {
            let live = store::resources::current(conn, "Patient", patient)?
                .is_some_and(|row| !row.deleted);
            if !live {
                return Err(ApiError::unprocessable(
                    IssueCode::Value,
                    format!("Patient/{patient} does not exist"),
                ));
            }
        }
    }
    // The write gate, on the old version and the new one.
    ctx.gate
        .check_write(conn, def, interaction, existing, Some(incoming.value()))?;
    if def.name == "Patient" {
        one_space_per_person(conn, ctx, id, incoming.value())?;
    }
    if def.name == "DocumentReference" {
        mhd::check_master_identifier(conn, id, incoming.value())?;
    }
    let last_updated = fhir_instant(Utc::now());
    // The space's state and the caller's authorisation are the server's to show
    // (R-LIFE-4, R-ACC-10): a client echoing a Patient it read does not store them.
    let stripped;
    let incoming = if def.name == "Patient" {
        stripped = without_presented_extensions(incoming);
        &stripped
    } else {
        incoming
    };
    let content = incoming.finish(version, &last_updated);
    let principal = ctx.gate.principal;
    let author = (version == 1).then(|| store::Author {
        actor: principal.actor.code().to_owned(),
        subject: principal.subject.clone(),
        organization: principal.organization.clone(),
        created_at: last_updated.clone(),
    });
    let pk = store::resources::write(
        conn,
        &store::resources::NewVersion {
            res_type: def.name,
            res_id: id,
            version_id: version,
            last_updated: &last_updated,
            deleted: false,
            method,
            content: &content,
            index: &index,
            author: author.as_ref(),
        },
    )?;
    // Who masks a document is recorded: only they (or the patient) lift it.
    if def.name == "DocumentReference" {
        let masked_before = existing.is_some_and(|row| {
            serde_json::from_str::<Value>(&row.content).is_ok_and(|value| is_masked(&value))
        });
        let masked_after = is_masked(incoming.value());
        // The patient's masking prevails: a holder writing a masked version makes the
        // masking theirs, even over one a professional made first.
        let holder_masks = masked_after && principal.own_patient().is_some();
        if let Some((actor, subject)) = &kept_masking {
            // The masking is still its author's: the depositor does not lift it later.
            store::resources::record_masking(conn, pk, Some((actor, subject)))?;
        } else if masked_before != masked_after || holder_masks {
            let masker = masked_after.then(|| (principal.actor.code(), principal.subject.as_str()));
            store::resources::record_masking(conn, pk, masker)?;
        }
    }
    // R-LIFE-1: a new space is pending from the notification date the feeding
    // system gives (or now).
    if def.name == "Patient" && version == 1 {
        let now = fhir_instant(ctx.gate.now());
        let notified_at = notified_at(incoming.value()).unwrap_or_else(|| now.clone());
        store::lifecycle::put(
            conn,
            &store::lifecycle::LifecycleRow {
                patient_id: id.to_owned(),
                state: State::Pending.code().to_owned(),
                notified_at,
                changed_at: now,
                closed_at: None,
                purged_at: None,
                welcomed_at: None,
            },
        )?;
    }
    ctx.gate.touched.write(WriteFact {
        res_type: def.name,
        res_id: id.to_owned(),
        interaction,
        patients: index.patients.clone(),
        hidden_from_patient: hidden_from_patient(incoming.value()),
    });
    ctx.gate.forget(id);
    // R-MHD-3: a new document that replaces others supersedes them, in the same
    // transaction, under the write gate of whoever may update them.
    if def.name == "DocumentReference" && interaction == Interaction::Create {
        for replaced in mhd::replaced_documents(incoming.value()) {
            supersede(conn, ctx, def, &replaced, &index.patients)?;
        }
    }
    let body = ctx.gate.release_written(
        conn,
        &store::resources::Stored {
            pk,
            res_type: def.name,
            res_id: id,
            version_id: version,
            deleted: false,
            content: &content,
            current: true,
        },
    )?;
    Ok(FhirResponse {
        status,
        body,
        version: Some(version),
        last_modified: Some(last_updated),
        location: Some(format!("{}/{id}/_history/{version}", def.name)),
    })
}

/// R-MHD-3: marks `target` superseded, as a PATCH of its status by the caller
/// would (R-ACC-9: only whoever may update it). It must be a document of the same
/// space; one the caller may not see is "not known", as if missing.
fn supersede(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    def: &'static ResourceDef,
    target: &str,
    space: &[String],
) -> Result<(), ApiError> {
    let unknown = || {
        ApiError::unprocessable(
            IssueCode::NotFound,
            format!("relatesTo replaces DocumentReference/{target}, which is not known"),
        )
        .at("DocumentReference.relatesTo")
    };
    let current = match writable_current(conn, ctx, def, target) {
        Ok(Some(row)) if !row.deleted => row,
        Ok(_) => return Err(unknown()),
        Err(error) if error.status.as_u16() == 404 => {
            let mut refusal = unknown();
            if let Some(rule) = error.rule {
                refusal = refusal.by_rule(rule).conceal();
            }
            return Err(refusal);
        }
        Err(error) => return Err(error),
    };
    if store::resources::compartment_of(conn, current.pk)? != space {
        return Err(ApiError::unprocessable(
            IssueCode::Processing,
            format!("DocumentReference/{target} is not in the space of the document replacing it"),
        )
        .at("DocumentReference.relatesTo"));
    }
    let status: Option<String> = serde_json::from_str::<Value>(&current.content)
        .ok()
        .and_then(|value| {
            value
                .get("status")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
    if status.as_deref() == Some("superseded") {
        return Ok(());
    }
    let operations = PatchDocument::Json(
        serde_json::json!([{ "op": "replace", "path": "/status", "value": "superseded" }]),
    );
    patch(conn, ctx, def, target, &operations, None).map(|_| ())
}

/// One space per person (R-LIFE-1, DMP TD0.2): an INS (NIR or NIA) names one live
/// Patient. Writers of the same INS take turns across instances until the
/// transaction ends, so two never both find it free.
fn one_space_per_person(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    id: &str,
    patient: &Value,
) -> Result<(), ApiError> {
    for (system, value) in crate::fhir::ins_identifiers(patient) {
        store::dialect::lock(conn, &super::locks::person(system, value))?;
        if let Some(other) =
            store::access::patients_with_identifier(conn, system, value, id)?.first()
        {
            // A lookup of that person (the answer names their space): their trace
            // shows it (R-AUD-1).
            ctx.gate.touched.patient(other);
            return Err(ApiError::conflict(format!(
                "Patient/{other} already holds the space of {system}|{value}: one space per person"
            ))
            .at("Patient.identifier"));
        }
    }
    Ok(())
}

/// The Patient without the extensions the server adds when it presents one.
fn without_presented_extensions(incoming: &Incoming) -> Incoming {
    let presented = [SPACE_STATE_EXTENSION, AUTHORISATION_EXTENSION];
    let Some(Value::Array(extensions)) = incoming.value().get("extension") else {
        return incoming.clone();
    };
    let kept: Vec<Value> = extensions
        .iter()
        .filter(|extension| {
            !extension
                .get("url")
                .and_then(Value::as_str)
                .is_some_and(|url| presented.contains(&url))
        })
        .cloned()
        .collect();
    if kept.len() == extensions.len() {
        return incoming.clone();
    }
    let mut changed = incoming.value().clone();
    let object = changed.as_object_mut().expect("a resource is an object");
    if kept.is_empty() {
        object.shift_remove("extension");
    } else {
        object.insert("extension".into(), Value::Array(kept));
    }
    incoming.with_changes(changed)
}

/// The notification date a feeding system gives a new Patient (R-LIFE-1), in the
/// index format.
fn notified_at(patient: &Value) -> Option<String> {
    extract::values_at(patient, "extension")
        .into_iter()
        .find(|extension| {
            extension.get("url").and_then(Value::as_str) == Some(SPACE_NOTIFIED_EXTENSION)
        })
        .and_then(|extension| extension.get("valueDateTime").and_then(Value::as_str))
        .and_then(|text| chrono::DateTime::parse_from_rfc3339(text).ok())
        .map(|time| fhir_instant(time.with_timezone(&Utc)))
}

/// Who masked a document the new one replaces, when the caller may not lift that
/// masking (R-PAT-2: only the holder, or the professional who masked it): the
/// replacement keeps it. A replaced document the caller may not change is left to
/// [`supersede`], which refuses the replacement as it would without this.
fn masking_kept_by_replacement(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    def: &'static ResourceDef,
    document: &Value,
) -> Result<Option<(String, String)>, ApiError> {
    let principal = ctx.gate.principal;
    if principal.own_patient().is_some() {
        return Ok(None);
    }
    for replaced in mhd::replaced_documents(document) {
        let row = match writable_current(conn, ctx, def, &replaced) {
            Ok(Some(row)) if !row.deleted => row,
            Ok(_) => continue,
            Err(error) if error.status.is_client_error() => continue,
            Err(error) => return Err(error),
        };
        let masked =
            serde_json::from_str::<Value>(&row.content).is_ok_and(|value| is_masked(&value));
        if !masked {
            continue;
        }
        // A masking of no record (stored before masking was recorded) is the
        // holder's: no professional lifts it.
        let masker = store::resources::masked_by(conn, row.pk)?
            .unwrap_or_else(|| ("patient".to_owned(), String::new()));
        if masker.0 != principal.actor.code() || masker.1 != principal.subject {
            return Ok(Some(masker));
        }
    }
    Ok(None)
}

/// `incoming` with MASQUE_PS added to its security labels.
fn with_masking(incoming: &Incoming) -> Incoming {
    let mut changed = incoming.value().clone();
    let label = serde_json::json!({
        "coding": [{ "system": crate::fhir::mhd::TRE_A07_SYSTEM, "code": MASQUE_PS }]
    });
    let object = changed.as_object_mut().expect("a resource is an object");
    match object.get_mut("securityLabel") {
        Some(Value::Array(labels)) => labels.push(label),
        _ => {
            object.insert("securityLabel".into(), Value::Array(vec![label]));
        }
    }
    incoming.with_changes(changed)
}

/// Whether a document carries MASQUE_PS (R-ACC-7).
fn is_masked(document: &Value) -> bool {
    extract::values_at(document, "securityLabel.coding")
        .into_iter()
        .any(|coding| coding.get("code").and_then(Value::as_str) == Some(MASQUE_PS))
}

/// A document the patient may not see yet (R-PAT-1), or their representatives may
/// not see (R-PAT-5, who read the same notifications): its writes are not announced
/// (R-AUD-4).
fn hidden_from_patient(resource: &Value) -> bool {
    extract::values_at(resource, "securityLabel.coding")
        .into_iter()
        .any(|coding| {
            matches!(
                coding.get("code").and_then(Value::as_str),
                Some("INVISIBLE_PATIENT" | "INVISIBLE_REPRESENTANTS_LEGAUX")
            )
        })
}

/// The rows an `If-None-Exist` query matches, as the caller may see them.
fn conditional_matches(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    def: &'static ResourceDef,
    query: &str,
) -> Result<Vec<store::resources::RowHead>, ApiError> {
    let query = query.trim_start_matches('?');
    let query = query.split_once('?').map_or(query, |(_, params)| params);
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    if pairs.is_empty() {
        return Err(ApiError::bad_request(
            IssueCode::Invalid,
            "If-None-Exist has no search parameters",
        ));
    }
    let request = fhir_search::parse(def, &pairs, true, fhir_search::PageLimits::pages(2, 2))?;
    let narrowing = ctx.gate.conditional_narrowing(conn, &request)?;
    Ok(store::search::run(conn, &request, &narrowing)?.rows)
}

pub fn create(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    def: &'static ResourceDef,
    incoming: Incoming,
    if_none_exist: Option<&str>,
) -> Result<FhirResponse, ApiError> {
    let mut incoming = incoming;
    mhd::resolve_conditional_references(conn, ctx, &mut incoming)?;
    validate::check(def.name, &incoming, ctx.gate.document_type_systems())?;
    if def.name == "DocumentReference" {
        mhd::check_attachments(conn, ctx, incoming.value())?;
    }
    if let Some(query) = if_none_exist
        && let Some(existing) = existing_match(conn, ctx, def, query)?
    {
        return Ok(existing);
    }
    insert(conn, ctx, def, &uuid::Uuid::new_v4().to_string(), incoming)
}

/// Stores a checked resource as version 1 of `def/id`.
fn insert(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    def: &'static ResourceDef,
    id: &str,
    mut incoming: Incoming,
) -> Result<FhirResponse, ApiError> {
    incoming.set_id(id);
    store_version(
        conn,
        ctx,
        def,
        id,
        &incoming,
        Planned {
            version: 1,
            method: "POST",
            status: StatusCode::CREATED,
            interaction: Interaction::Create,
            existing: None,
        },
    )
}

/// `If-None-Exist`: the one resource the query matches (answered 200 instead of a
/// create), none, or a 412 when it matches several.
pub fn existing_match(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    def: &'static ResourceDef,
    query: &str,
) -> Result<Option<FhirResponse>, ApiError> {
    // Conditional creates of the same query take turns, across instances, until
    // the end of the transaction: two never both find nothing and both create.
    store::dialect::lock(conn, &super::locks::query(def.name, query))?;
    let mut matches = conditional_matches(conn, ctx, def, query)?;
    if def.name == "Patient" {
        ctx.gate
            .touched
            .people_found(matches.iter().map(|head| head.res_id.as_str()));
    }
    match matches.len() {
        0 => Ok(None),
        1 => {
            let head = matches.pop().expect("one match");
            let existing = store::resources::complete(conn, head)?.ok_or_else(|| {
                ApiError::conflict("the matching resource changed meanwhile: try again")
            })?;
            // egress: the match's body only for whoever may read it or deposited it.
            let body = ctx.gate.release_written(conn, &existing.stored())?;
            Ok(Some(FhirResponse {
                status: StatusCode::OK,
                location: Some(format!(
                    "{}/{}/_history/{}",
                    def.name, existing.res_id, existing.version_id
                )),
                version: Some(existing.version_id),
                last_modified: Some(existing.last_updated),
                body,
            }))
        }
        _ => Err(ApiError::precondition_failed(format!(
            "If-None-Exist matches more than one {}",
            def.name
        ))),
    }
}

/// Create with a client-chosen id: in transactions, where a `urn:uuid` entry has been
/// given its id and its conditional references resolved beforehand.
pub fn create_with_id(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    def: &'static ResourceDef,
    id: &str,
    incoming: Incoming,
) -> Result<FhirResponse, ApiError> {
    validate::check(def.name, &incoming, ctx.gate.document_type_systems())?;
    insert(conn, ctx, def, id, incoming)
}

fn check_if_match(
    current: Option<&ResourceRow>,
    if_match: Option<&str>,
    def: &ResourceDef,
    id: &str,
) -> Result<(), ApiError> {
    let Some(if_match) = if_match else {
        return Ok(());
    };
    let expected = parse_if_match(if_match)?;
    match current {
        Some(row) if row.version_id == expected => Ok(()),
        Some(row) => Err(ApiError::precondition_failed(format!(
            "{}/{id} is at version {}, not {expected}",
            def.name, row.version_id
        ))),
        None => Err(ApiError::precondition_failed(format!(
            "{}/{id} does not exist",
            def.name
        ))),
    }
}

pub fn update(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    def: &'static ResourceDef,
    id: &str,
    incoming: Incoming,
    if_match: Option<&str>,
) -> Result<FhirResponse, ApiError> {
    match incoming.id() {
        Some(body_id) if body_id == id => {}
        Some(body_id) => {
            return Err(ApiError::bad_request(
                IssueCode::Invalid,
                format!("the resource's id {body_id:?} does not match the URL's id {id:?}"),
            )
            .at(format!("{}.id", def.name)));
        }
        None => {
            return Err(ApiError::bad_request(
                IssueCode::Required,
                "an update must carry the resource's id",
            )
            .at(format!("{}.id", def.name)));
        }
    }
    let mut incoming = incoming;
    mhd::resolve_conditional_references(conn, ctx, &mut incoming)?;
    validate::check(def.name, &incoming, ctx.gate.document_type_systems())?;
    if def.name == "DocumentReference" {
        mhd::check_attachments(conn, ctx, incoming.value())?;
    }
    if !crate::fhir::is_valid_id(id) {
        return Err(ApiError::bad_request(
            IssueCode::Value,
            format!("invalid id {id:?}"),
        ));
    }
    let current = match writable_current(conn, ctx, def, id) {
        // A hidden resource, with If-Match: the very answer of a missing one.
        Err(error) if error.concealed && if_match.is_some() => {
            let missing = check_if_match(None, if_match, def, id)
                .err()
                .unwrap_or(error.clone());
            return Err(match error.rule {
                Some(rule) => missing.by_rule(rule).conceal(),
                None => missing,
            });
        }
        other => other?,
    };
    check_if_match(current.as_ref(), if_match, def, id)?;
    let (version, status) = match &current {
        Some(row) => (row.version_id + 1, StatusCode::OK),
        None => (1, StatusCode::CREATED),
    };
    let withdraws = withdrawal(conn, ctx, def, current.as_ref(), incoming.value())?;
    let response = store_version(
        conn,
        ctx,
        def,
        id,
        &incoming,
        Planned {
            version,
            method: "PUT",
            status,
            interaction: if current.is_some() {
                Interaction::Update
            } else {
                Interaction::Create
            },
            existing: current.as_ref(),
        },
    )?;
    if withdraws {
        delete(conn, ctx, def, id)?;
    }
    Ok(response)
}

/// TD3.3c: a document whose status becomes `entered-in-error` is withdrawn, by
/// whoever may delete it (checked here, before anything is written): the version
/// written is kept in history, then the document is deleted (R-MHD-7). Whether the
/// write withdraws.
fn withdrawal(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    def: &'static ResourceDef,
    current: Option<&ResourceRow>,
    after: &Value,
) -> Result<bool, ApiError> {
    let Some(current) = current.filter(|row| !row.deleted) else {
        return Ok(false);
    };
    let status = |value: &Value| {
        value
            .get("status")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let before: Value = serde_json::from_str(&current.content).unwrap_or(Value::Null);
    let withdraws = def.name == "DocumentReference"
        && status(after).as_deref() == Some("entered-in-error")
        && status(&before).as_deref() != Some("entered-in-error");
    if withdraws {
        ctx.gate
            .check_write(conn, def, Interaction::Delete, Some(current), None)?;
    }
    Ok(withdraws)
}

pub fn patch(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    def: &'static ResourceDef,
    id: &str,
    patch_document: &PatchDocument,
    if_match: Option<&str>,
) -> Result<FhirResponse, ApiError> {
    let not_found = || ApiError::not_found(format!("{}/{id} is not known", def.name));
    let current = writable_current(conn, ctx, def, id)?.ok_or_else(not_found)?;
    if current.deleted {
        return Err(ApiError::gone(format!("{}/{id} was deleted", def.name)));
    }
    check_if_match(Some(&current), if_match, def, id)?;
    let stored = Incoming::parse(current.content.as_bytes())?;
    let operations = patch_document.operations(def.name, stored.value())?;
    // A patch may not grow the resource beyond what it carries (`copy` doubles what
    // it copies): checked after each operation, so that memory stays bounded.
    let growth_bound = (current.content.len() + json_size(&operations) + PATCH_SLACK_BYTES)
        .min(ctx.max_resource_bytes.max(current.content.len()));
    let mut patched = stored.value().clone();
    for operation in operations.iter() {
        json_patch::patch(&mut patched, std::slice::from_ref(operation)).map_err(|error| {
            ApiError::unprocessable(
                IssueCode::Processing,
                format!("the patch cannot be applied: {error}"),
            )
        })?;
        if json_size(&patched) > growth_bound {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                IssueCode::TooCostly,
                "the patch would make the resource larger than the resource and the patch together, or than the largest resource a request may send",
            ));
        }
    }
    if patched.get("id").and_then(Value::as_str) != Some(id)
        || patched.get("resourceType") != stored.value().get("resourceType")
    {
        return Err(ApiError::unprocessable(
            IssueCode::Invalid,
            "a patch may not change id or resourceType",
        ));
    }
    // The write gate judges a patch by what it changes, before anything else is said
    // about the result.
    crate::access::gate::check_changed_elements(
        def,
        Interaction::Patch,
        &current.content,
        &patched,
    )?;
    let withdraws = withdrawal(conn, ctx, def, Some(&current), &patched)?;
    let changed = stored.with_changes(patched);
    validate::check(def.name, &changed, ctx.gate.document_type_systems())?;
    let response = store_version(
        conn,
        ctx,
        def,
        id,
        &changed,
        Planned {
            version: current.version_id + 1,
            method: "PATCH",
            status: StatusCode::OK,
            interaction: Interaction::Patch,
            existing: Some(&current),
        },
    )?;
    if withdraws {
        delete(conn, ctx, def, id)?;
    }
    Ok(response)
}

/// Most matches a conditional PATCH examines when it is not narrowed to a space (a
/// search by identifier alone, among the caller's own deposits).
const CONDITIONAL_SCAN: usize = 50;

/// Result parameters mean nothing to a conditional PATCH: it patches the one match
/// there is. Refused, so that no page or order cuts the matches before the rules
/// have decided which the caller may see.
const RESULT_PARAMETERS: &[&str] = &[
    "_count",
    "_offset",
    "_sort",
    "_total",
    "_summary",
    "_elements",
    "_include",
    "_revinclude",
    "_contained",
    "_format",
];

/// `PATCH [type]?[search]` (R-MHD-7): the one resource the search matches among
/// those the caller may see is patched; none is 404 and several 412, whatever the
/// store holds beyond the caller's sight, so the answer tells nothing of hidden
/// resources. The search runs under the caller's narrowing (their space, their
/// professional's space named by the search); a professional's search by
/// `identifier` alone (TD3.3) and the system's match among their own deposits.
pub fn conditional_patch(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    def: &'static ResourceDef,
    params: &[(String, String)],
    patch_document: &PatchDocument,
    if_match: Option<&str>,
) -> Result<FhirResponse, ApiError> {
    let id = conditional_match(conn, ctx, def, params)?;
    patch(conn, ctx, def, &id, patch_document, if_match)
}

/// The one resource a conditional PATCH's search matches among those the caller may
/// see: 404 for none, 412 for several.
pub fn conditional_match(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    def: &'static ResourceDef,
    params: &[(String, String)],
) -> Result<String, ApiError> {
    if params.is_empty() {
        return Err(ApiError::bad_request(
            IssueCode::Invalid,
            "a conditional PATCH needs search parameters",
        ));
    }
    if let Some((name, _)) = params
        .iter()
        .find(|(name, _)| RESULT_PARAMETERS.contains(&name.split(':').next().unwrap_or("")))
    {
        return Err(ApiError::bad_request(
            IssueCode::Invalid,
            format!("{name} has no meaning in a conditional PATCH: it patches the one match"),
        )
        .at(name.clone()));
    }
    let limits = fhir_search::PageLimits::pages(CONDITIONAL_SCAN + 1, CONDITIONAL_SCAN + 1);
    let request = fhir_search::parse(def, params, true, limits)?;
    let system = ctx.gate.principal.actor == crate::access::ActorKind::System;
    let narrowing = if system {
        ctx.gate.conditional_narrowing(conn, &request)?
    } else {
        match ctx.gate.search_narrowing(conn, &request) {
            Ok(narrowing) => narrowing,
            // A professional naming no patient (or several): by identifier, among
            // the resources they deposited (R-ACC-9: only their author changes
            // them), so that what the SQL counts against the scan's bound is theirs
            // to know: a hidden resource never moves the answer.
            Err(error)
                if error.rule == Some("R-ACC-3")
                    && request.criteria.iter().any(|criterion| {
                        matches!(
                            criterion,
                            fhir_search::Criterion::Token {
                                param: "identifier",
                                negated: false,
                                ..
                            }
                        )
                    }) =>
            {
                store::Narrowing {
                    deposited_by: Some(store::search::Depositor {
                        actor: ctx.gate.principal.actor.code().to_owned(),
                        subject: ctx.gate.principal.subject.clone(),
                        organization: None,
                    }),
                    ..store::Narrowing::none()
                }
            }
            Err(error) => return Err(error),
        }
    };
    let heads = store::search::run(conn, &request, &narrowing)?.rows;
    if heads.len() > CONDITIONAL_SCAN {
        return Err(ApiError::precondition_failed(format!(
            "the conditional PATCH matches more than {CONDITIONAL_SCAN} candidates: narrow the search"
        )));
    }
    let mut matched: Vec<String> = Vec::new();
    for head in heads {
        let Some(row) = store::resources::complete(conn, head)? else {
            continue;
        };
        if system || ctx.gate.visible_quietly(conn, &row.stored())? {
            matched.push(row.res_id.clone());
        }
    }
    match matched.as_mut_slice() {
        [] => Err(ApiError::not_found(format!(
            "no {} matches the conditional PATCH",
            def.name
        ))),
        [id] => Ok(std::mem::take(id)),
        _ => Err(ApiError::precondition_failed(format!(
            "the conditional PATCH matches more than one {}",
            def.name
        ))),
    }
}

/// Room a patch may add beyond its own size (escapes, indentation of values).
const PATCH_SLACK_BYTES: usize = 64 * 1024;

/// The length of a value's JSON text, without building the text.
fn json_size(value: &impl serde::Serialize) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// DELETE with `If-Match`: a stale version is 412, never a lost update.
pub fn delete_if_match(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    def: &'static ResourceDef,
    id: &str,
    if_match: Option<&str>,
) -> Result<FhirResponse, ApiError> {
    if if_match.is_some() {
        let not_found = || ApiError::not_found(format!("{}/{id} is not known", def.name));
        let current = writable_current(conn, ctx, def, id)?.ok_or_else(not_found)?;
        check_if_match(Some(&current), if_match, def, id)?;
    }
    delete(conn, ctx, def, id)
}

pub fn delete(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    def: &'static ResourceDef,
    id: &str,
) -> Result<FhirResponse, ApiError> {
    let not_found = || ApiError::not_found(format!("{}/{id} is not known", def.name));
    let current = writable_current(conn, ctx, def, id)?.ok_or_else(not_found)?;
    if current.deleted {
        return Ok(FhirResponse {
            status: StatusCode::NO_CONTENT,
            body: None,
            version: Some(current.version_id),
            last_modified: Some(current.last_updated),
            location: None,
        });
    }
    let compartment = store::resources::compartment_of(conn, current.pk)?;
    ctx.gate
        .check_write(conn, def, Interaction::Delete, Some(&current), None)?;
    let last_updated = fhir_instant(Utc::now());
    let version = current.version_id + 1;
    let hidden = serde_json::from_str::<Value>(&current.content)
        .is_ok_and(|value| hidden_from_patient(&value));
    // R-MSG-3, R-PAT-2: what the patient deletes (a message, their own document, an
    // entry of their medical profile) is gone at once and for good, history included.
    if ctx.gate.principal.own_patient().is_some()
        && (matches!(def.name, "Communication" | "DocumentReference")
            || crate::fhir::definitions::is_medical_profile(def.name))
    {
        store::lifecycle::remove_resource(conn, def.name, id)?;
        ctx.gate.touched.write(WriteFact {
            res_type: def.name,
            res_id: id.to_owned(),
            interaction: Interaction::Delete,
            patients: compartment,
            hidden_from_patient: hidden,
        });
        return Ok(FhirResponse {
            status: StatusCode::NO_CONTENT,
            body: None,
            version: None,
            last_modified: None,
            location: None,
        });
    }
    ctx.gate.touched.write(WriteFact {
        res_type: def.name,
        res_id: id.to_owned(),
        interaction: Interaction::Delete,
        patients: compartment.clone(),
        hidden_from_patient: hidden,
    });
    store::resources::write(
        conn,
        &store::resources::NewVersion {
            res_type: def.name,
            res_id: id,
            version_id: version,
            last_updated: &last_updated,
            deleted: true,
            method: "DELETE",
            content: "",
            index: &IndexEntries {
                patients: compartment,
                ..IndexEntries::default()
            },
            author: None,
        },
    )?;
    Ok(FhirResponse {
        status: StatusCode::NO_CONTENT,
        body: None,
        version: Some(version),
        last_modified: Some(last_updated),
        location: None,
    })
}

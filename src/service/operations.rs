//! Operations on instances: the lifecycle of a space on Patient (`$activate`,
//! `$oppose`, `$close`, `$reopen`; R-LIFE-1…3) and saving a message's attachment as a
//! document on Communication (`$save-attachment`; R-MSG-4).

use actix_web::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::{Ctx, FhirResponse};
use crate::access::Released;
use crate::audit::WriteFact;
use crate::error::{ApiError, IssueCode};
use crate::fhir::date::fhir_instant;
use crate::fhir::definitions::{self, Interaction, ResourceDef};
use crate::fhir::extract::values_at;
use crate::fhir::stored::Incoming;
use crate::lifecycle::{Lifecycle, State, proof};
use crate::store::lifecycle::LifecycleRow;
use crate::store::{self, Conn};

/// Runs `$name` on `def/id`.
pub fn invoke(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    def: &'static ResourceDef,
    id: &str,
    name: &str,
    params: &[(String, String)],
) -> Result<FhirResponse, ApiError> {
    let operation = def.operation(name).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            IssueCode::NotSupported,
            format!("{} has no operation {name}", def.name),
        )
    })?;
    match (def.name, operation.name) {
        ("Communication", "save-attachment") => save_attachment(conn, ctx, id, params),
        ("Patient", action) => lifecycle(conn, ctx, id, action, params),
        _ => Err(ApiError::not_found(format!(
            "{} has no operation {name}",
            def.name
        ))),
    }
}

fn flag(params: &[(String, String)], name: &str) -> Result<bool, ApiError> {
    match params
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
    {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ApiError::bad_request(
            IssueCode::Value,
            format!("{name} must be true or false, got {other:?}"),
        )),
    }
}

fn conflict(rule: &'static str, message: &str) -> ApiError {
    ApiError::conflict(message.to_owned()).by_rule(rule)
}

/// The lifecycle operations, run by the holder of the space (or their
/// representative while the person is a minor).
fn lifecycle(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    id: &str,
    action: &str,
    params: &[(String, String)],
) -> Result<FhirResponse, ApiError> {
    // The space's turn alone: the writes deciding on its state wait, and a change
    // of it waits for those already decided (see `Gate::with_space_turns`). A
    // caller of another space is refused before it takes the turn.
    ctx.gate.check_own_space(id)?;
    store::dialect::lock(conn, &super::locks::space(id))?;
    let patient = store::resources::current(conn, "Patient", id)?
        .filter(|row| !row.deleted)
        .ok_or_else(|| ApiError::not_found(format!("Patient/{id} is not known")))?;
    ctx.gate.check_holder_operation(conn, id)?;
    let now = ctx.gate.now();
    let stamp = fhir_instant(now);
    let mut row = store::lifecycle::get(conn, id)?.unwrap_or_else(|| LifecycleRow {
        patient_id: id.to_owned(),
        state: State::Active.code().to_owned(),
        notified_at: patient.last_updated.clone(),
        changed_at: patient.last_updated.clone(),
        closed_at: None,
        purged_at: None,
        welcomed_at: Some(patient.last_updated.clone()),
    });
    let current =
        Lifecycle::from_row(&row).map_or(State::Active, |lifecycle| lifecycle.state_at(now));
    let mut opens = false;
    match (action, current) {
        ("activate", State::Closed) => {
            return Err(conflict(
                "R-LIFE-3",
                "the space is closed: $reopen reopens it",
            ));
        }
        ("activate", _) => opens = true,
        ("oppose", State::Closed) => {
            return Err(conflict(
                "R-LIFE-3",
                "the space is closed: $reopen reopens it",
            ));
        }
        ("oppose", State::Active) if store::lifecycle::holds_content(conn, id)? => {
            return Err(conflict(
                "R-LIFE-2",
                "the space holds documents or a medical profile: $close closes it",
            ));
        }
        ("oppose", _) => row.state = State::Opposed.code().to_owned(),
        ("close", state) => {
            if state != State::Closed {
                row.state = State::Closed.code().to_owned();
                row.closed_at = Some(stamp.clone());
            }
            // A deletion request: the law allows three months; the archive goes now
            // (again, after a reopening: what came since goes too).
            if flag(params, "delete")? {
                store::lifecycle::purge_space(conn, id)?;
                row.purged_at = Some(stamp.clone());
            }
        }
        ("reopen", State::Closed) => {
            opens = true;
            row.closed_at = None;
            // A later closure is purged in its turn, ten years on or on request.
            row.purged_at = None;
        }
        ("reopen", _) => {
            return Err(conflict("R-LIFE-3", "only a closed space is reopened"));
        }
        _ => {
            return Err(ApiError::not_found(format!(
                "Patient has no operation ${action}"
            )));
        }
    }
    if opens {
        row.state = State::Active.code().to_owned();
        if row.welcomed_at.is_none() {
            crate::notify::welcome(conn, id, &stamp)?;
            row.welcomed_at = Some(stamp.clone());
        }
    }
    row.changed_at = stamp.clone();
    store::lifecycle::put(conn, &row)?;
    ctx.gate.forget(id);
    ctx.gate.touched.write(WriteFact {
        res_type: "Patient",
        res_id: id.to_owned(),
        interaction: Interaction::Operation,
        patients: vec![id.to_owned()],
        hidden_from_patient: false,
    });
    if action == "oppose" {
        return opposition_proof(&patient.content, id, now);
    }
    let body = ctx.gate.release(conn, &patient.stored())?;
    Ok(FhirResponse {
        status: StatusCode::OK,
        body: Some(body),
        version: Some(patient.version_id),
        last_modified: Some(patient.last_updated),
        location: None,
    })
}

/// The proof of opposition, as a Binary (`Accept: application/pdf` gets the PDF
/// itself).
fn opposition_proof(
    patient: &str,
    id: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<FhirResponse, ApiError> {
    let value: Value = serde_json::from_str(patient).unwrap_or(Value::Null);
    let name = values_at(&value, "name")
        .first()
        .map(|name| {
            let family = name["family"].as_str().unwrap_or("").to_uppercase();
            let given: Vec<&str> = name["given"]
                .as_array()
                .map(|given| given.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            format!("{family} {}", given.join(" ")).trim().to_owned()
        })
        .unwrap_or_default();
    let number = values_at(&value, "identifier")
        .into_iter()
        .find(|identifier| {
            identifier["system"]
                .as_str()
                .is_some_and(|system| system.starts_with("urn:oid:1.2.250.1.213.1.4."))
        })
        .and_then(|identifier| identifier["value"].as_str())
        .unwrap_or("non renseigné")
        .to_owned();
    let reference = format!("Patient/{id}");
    let recorded = now.format("%d/%m/%Y à %H:%M (UTC)").to_string();
    let pdf = proof::render(&proof::ProofOfOpposition {
        name: &name,
        number: &number,
        recorded: &recorded,
        reference: &reference,
    })
    .map_err(|error| {
        tracing::error!(%error, "proof of opposition");
        ApiError::internal("the proof of opposition could not be produced")
    })?;
    let binary = json!({
        "resourceType": "Binary",
        "contentType": "application/pdf",
        "data": STANDARD.encode(pdf),
    });
    Ok(FhirResponse {
        status: StatusCode::OK,
        body: Some(Released::composed(&binary)),
        version: None,
        last_modified: None,
        location: None,
    })
}

/// R-MSG-4: the holder saves a message's attachment as a document of their space
/// (class 90, deposited by the patient). `index` picks the attachment (default: the
/// first); `type` may give the document type as `system|code`.
fn save_attachment(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    id: &str,
    params: &[(String, String)],
) -> Result<FhirResponse, ApiError> {
    let message = super::read::visible_current(
        conn,
        ctx,
        definitions::resource("Communication").expect("Communication is served"),
        id,
    )?;
    if message.deleted {
        return Err(ApiError::gone(format!("Communication/{id} was deleted")));
    }
    let value: Value = serde_json::from_str(&message.content).unwrap_or(Value::Null);
    let attachments = values_at(&value, "payload.contentAttachment");
    let index = match params.iter().find(|(key, _)| key == "index") {
        Some((_, text)) => text.parse::<usize>().map_err(|_| {
            ApiError::bad_request(
                IssueCode::Value,
                format!("index must be a number, got {text:?}"),
            )
        })?,
        None => 0,
    };
    let attachment = attachments.get(index).copied().ok_or_else(|| {
        ApiError::unprocessable(
            IssueCode::Value,
            format!("Communication/{id} has no attachment {index}"),
        )
    })?;
    let patient = value
        .pointer("/subject/reference")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let (system, code) = match params.iter().find(|(key, _)| key == "type") {
        Some((_, text)) => text.split_once('|').map_or_else(
            || ("https://mos.esante.gouv.fr/NOS/TRE_A05-TypeDocComplementaire/FHIR/TRE-A05-TypeDocComplementaire".to_owned(), text.clone()),
            |(system, code)| (system.to_owned(), code.to_owned()),
        ),
        None => (
            "https://mos.esante.gouv.fr/NOS/TRE_A05-TypeDocComplementaire/FHIR/TRE-A05-TypeDocComplementaire".to_owned(),
            "DOCPAT01".to_owned(),
        ),
    };
    let mut document = json!({
        "resourceType": "DocumentReference",
        "status": "current",
        "type": { "coding": [{ "system": system, "code": code }] },
        "category": [{ "coding": [{ "system": "urn:oid:1.2.250.1.213.1.1.4.1", "code": "90", "display": "Documents déposés par le patient" }] }],
        "subject": { "reference": patient },
        "date": fhir_instant(chrono::Utc::now()),
        "content": [{ "attachment": attachment }]
    });
    if let Some(title) = attachment.get("title") {
        document["description"] = title.clone();
    }
    let def = definitions::resource("DocumentReference").expect("DocumentReference is served");
    super::write::create(conn, ctx, def, Incoming::from_value(document), None)
}

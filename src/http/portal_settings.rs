//! The portal's messages, privacy settings and space (R-UI-1; R-MSG-1, 3, 4;
//! R-PAT-3; R-LIFE-1 … 3), each action through the FHIR pipeline as the holder.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde_json::{Value, json};

use super::internal::{Fhir, Refused};
use super::pages::{Csrf, csrf_of, page, render, see_other};
use super::portal::{entries, french_date, signed_in, signed_in_form};
use crate::AppState;

type State = web::Data<AppState>;

use crate::fhir::IDNAT_PS_SYSTEM as IDNAT_PS;

struct MessageView {
    id: String,
    from: String,
    date: String,
    text: String,
    attachments: Vec<(usize, String)>,
    answerable: bool,
    /// The message it answers (`inResponseTo`, else `partOf`), if any.
    parent: Option<String>,
    /// Stored since the holder last saw their messages, and not theirs.
    new: bool,
}

/// A conversation: its messages, oldest first, and the message an answer goes to
/// (the latest one the holder did not write).
struct ThreadView {
    with: String,
    messages: Vec<MessageView>,
    answer_to: Option<String>,
    /// How many of its messages are new.
    unread: usize,
}

/// Messages (newest first) as conversations, the most recently active first: each
/// message joins the conversation of the message it answers.
fn threads(messages: Vec<MessageView>) -> Vec<ThreadView> {
    let parents: std::collections::HashMap<String, Option<String>> = messages
        .iter()
        .map(|message| (message.id.clone(), message.parent.clone()))
        .collect();
    let root_of = |id: &str| {
        let mut current = id.to_owned();
        // Bounded by the number of messages: a loop of answers ends.
        for _ in 0..parents.len() {
            match parents.get(&current).cloned().flatten() {
                Some(parent) if parents.contains_key(&parent) => current = parent,
                _ => break,
            }
        }
        current
    };
    let mut order: Vec<String> = Vec::new();
    let mut grouped: std::collections::HashMap<String, Vec<MessageView>> = Default::default();
    for message in messages {
        let root = root_of(&message.id);
        if !grouped.contains_key(&root) {
            order.push(root.clone());
        }
        grouped.entry(root).or_default().push(message);
    }
    order
        .into_iter()
        .filter_map(|root| {
            let mut messages = grouped.remove(&root)?;
            messages.reverse();
            let answer_to = messages
                .iter()
                .rev()
                .find(|message| message.answerable)
                .map(|message| message.id.clone());
            let with = messages
                .iter()
                .find(|message| message.answerable)
                .map_or_else(
                    || "Mon espace santé".to_owned(),
                    |message| message.from.clone(),
                );
            Some(ThreadView {
                with,
                unread: messages.iter().filter(|message| message.new).count(),
                messages,
                answer_to,
            })
        })
        .collect()
}

#[derive(Template)]
#[template(path = "messages.html")]
struct MessagesPage<'a> {
    section: &'a str,
    notice: Option<&'a str>,
    error: Option<String>,
    csrf: &'a str,
    threads: Vec<ThreadView>,
    unread: usize,
}

#[derive(Template)]
#[template(path = "privacy.html")]
struct PrivacyPage<'a> {
    section: &'a str,
    notice: Option<&'a str>,
    error: Option<String>,
    csrf: &'a str,
    general_practitioner: Option<String>,
    /// (Consent id, who).
    blocked: Vec<(String, String)>,
    authorised: Vec<(String, String)>,
    /// (purpose, legend, allowed).
    emergency: Vec<(&'static str, &'static str, bool)>,
    /// The professionals who accessed the space: (IdNat_PS, name given, last
    /// access), newest first.
    accessed: Vec<(String, String, String)>,
}

#[derive(Template)]
#[template(path = "my_space.html")]
struct MySpacePage<'a> {
    section: &'a str,
    notice: Option<&'a str>,
    error: Option<String>,
    csrf: &'a str,
    state: String,
    confirm: &'a str,
    confirm_text: &'a str,
}

/// An IdNat_PS as typed: digits and letters only, at most 32.
fn idnat(typed: &str) -> Option<String> {
    let value: String = typed
        .trim()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    (!value.is_empty() && value.len() <= 32 && value.chars().all(|c| c.is_ascii_alphanumeric()))
        .then_some(value)
}

// ---- Messages (R-MSG-1, R-MSG-3, R-MSG-4) ----

async fn messages_page(
    state: &AppState,
    request: &HttpRequest,
    csrf: &Csrf,
    notice: Option<&str>,
    error: Option<String>,
) -> HttpResponse {
    let (session, fhir) = match signed_in(state, request, "/espace/messages").await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let seen = super::portal::messages_seen_at(state, &session).await;
    let mut latest_shown: Option<String> = None;
    let (messages, error) = match fhir
        .search(
            "Communication",
            vec![
                ("patient".into(), session.patient.clone()),
                // The messages only: notifications, however many, never push a
                // message off the page.
                (
                    "category:not".into(),
                    format!("{}|notification", crate::notify::CATEGORY_SYSTEM),
                ),
                ("_sort".into(), "-sent".into()),
                ("_count".into(), "100".into()),
            ],
        )
        .await
    {
        Ok(bundle) => (
            entries(&bundle)
                .into_iter()
                .filter(|message| !crate::notify::is_notification(message))
                .map(|message| {
                    let own = message
                        .pointer("/sender/reference")
                        .and_then(Value::as_str)
                        .is_some_and(|sender| sender == format!("Patient/{}", session.patient));
                    let stored_at = message
                        .pointer("/meta/lastUpdated")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned();
                    let new = !own && seen.as_deref().is_none_or(|seen| stored_at.as_str() > seen);
                    if latest_shown
                        .as_deref()
                        .is_none_or(|latest| stored_at.as_str() > latest)
                    {
                        latest_shown = Some(stored_at.clone());
                    }
                    MessageView {
                        new,
                        id: message["id"].as_str().unwrap_or("").to_owned(),
                        from: super::portal::sender_of(message, &session.patient),
                        date: french_date(message["sent"].as_str().unwrap_or(""), true),
                        text: message["payload"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|part| part["contentString"].as_str())
                            .collect::<Vec<_>>()
                            .join("\n"),
                        attachments: message["payload"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter(|part| part.get("contentAttachment").is_some())
                            .enumerate()
                            .map(|(index, part)| {
                                (
                                    index,
                                    part.pointer("/contentAttachment/title")
                                        .and_then(Value::as_str)
                                        .unwrap_or("pièce jointe")
                                        .to_owned(),
                                )
                            })
                            .collect(),
                        answerable: !own,
                        parent: message["inResponseTo"][0]["reference"]
                            .as_str()
                            .or_else(|| message["partOf"][0]["reference"].as_str())
                            .and_then(|reference| reference.strip_prefix("Communication/"))
                            .map(str::to_owned),
                    }
                })
                .collect(),
            error,
        ),
        Err(refused) => (Vec::new(), Some(refused.in_french())),
    };
    // Shown on this page, they are read: the mark moves to the latest one shown (not
    // to now, so that a message stored meanwhile stays new).
    if let Some(latest) = latest_shown {
        let accounts = state.accounts.clone();
        let _ = super::pages::blocking(move || accounts.saw_messages(&session, &latest)).await;
    }
    let html = render(&MessagesPage {
        section: "messages",
        notice,
        error,
        csrf: &csrf.value,
        unread: messages.iter().filter(|message| message.new).count(),
        threads: threads(messages),
    });
    page(StatusCode::OK, html, csrf, None)
}

/// `GET /espace/messages`.
pub async fn messages(state: State, request: HttpRequest) -> HttpResponse {
    let csrf = csrf_of(&state, &request);
    let notice = match request.query_string() {
        "fait=reponse" => Some("Votre réponse est envoyée."),
        "fait=supprime" => Some("Le message est supprimé."),
        "fait=enregistre" => Some("La pièce jointe est enregistrée dans vos documents."),
        _ => None,
    };
    messages_page(&state, &request, &csrf, notice, None).await
}

/// `POST /espace/messages/{id}/{repondre|supprimer|enregistrer}`.
pub async fn message_post(
    state: State,
    request: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> HttpResponse {
    let (id, verb) = path.into_inner();
    let (csrf, form, session, fhir) =
        match signed_in_form(&state, &request, payload, "/espace/messages").await {
            Ok(found) => found,
            Err(response) => return response,
        };
    let done = match verb.as_str() {
        "repondre" => {
            let text = form
                .get("texte")
                .trim()
                .chars()
                .take(4000)
                .collect::<String>();
            if text.is_empty() {
                return messages_page(
                    &state,
                    &request,
                    &csrf,
                    None,
                    Some("Écrivez votre réponse.".into()),
                )
                .await;
            }
            let original = match fhir.read("Communication", &id).await {
                Ok(original) => original,
                Err(refused) => {
                    return messages_page(&state, &request, &csrf, None, Some(refused.in_french()))
                        .await;
                }
            };
            let mut answer = json!({
                "resourceType": "Communication",
                "status": "completed",
                "subject": { "reference": format!("Patient/{}", session.patient) },
                "sender": { "reference": format!("Patient/{}", session.patient) },
                "inResponseTo": [{ "reference": format!("Communication/{id}") }],
                "sent": crate::fhir::date::fhir_instant(chrono::Utc::now()),
                "payload": [{ "contentString": text }],
            });
            if let Some(sender) = original
                .get("sender")
                .filter(|sender| sender.get("identifier").is_some())
            {
                answer["recipient"] = json!([{ "identifier": sender["identifier"] }]);
            }
            fhir.create("Communication", answer)
                .await
                .map(|_| "reponse")
        }
        "supprimer" => fhir.delete("Communication", &id).await.map(|()| "supprime"),
        "enregistrer" => {
            let Ok(index) = form.get("index").parse::<usize>() else {
                return messages_page(
                    &state,
                    &request,
                    &csrf,
                    None,
                    Some("Cette pièce jointe n'existe pas.".into()),
                )
                .await;
            };
            let index = index.to_string();
            fhir.invoke_json(
                "Communication",
                &id,
                "$save-attachment",
                vec![("index".into(), index)],
            )
            .await
            .map(|_| "enregistre")
        }
        _ => return see_other("/espace/messages"),
    };
    match done {
        Ok(what) => see_other(&format!("/espace/messages?fait={what}")),
        Err(refused) => {
            messages_page(&state, &request, &csrf, None, Some(refused.in_french())).await
        }
    }
}

// ---- Privacy (R-PAT-3) ----

/// The emergency settings, as the holder reads them.
const EMERGENCY: [(&str, &str); 3] = [
    (
        "BTG",
        "Accès en urgence par les professionnels de santé (bris de glace)",
    ),
    (
        "ETREAT",
        "Accès par le médecin régulateur du SAMU – centre 15",
    ),
    ("MASKED", "Accès en urgence à mes documents masqués"),
];

/// Whether the space allows `purpose` (no deny Consent of it; `MASKED` needs a
/// permit).
fn allows(consents: &[&Value], purpose: &str) -> bool {
    let of = |kind: &str| {
        consents.iter().any(|consent| {
            consent.pointer("/provision/type").and_then(Value::as_str) == Some(kind)
                && consent["provision"]["actor"].is_null()
                && consent["provision"]["purpose"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|coding| coding["code"] == purpose)
        })
    };
    if purpose == "MASKED" {
        of("permit") && !of("deny")
    } else {
        !of("deny")
    }
}

fn actor_of(consent: &Value) -> Option<String> {
    consent
        .pointer("/provision/actor/0/reference/identifier/value")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

async fn privacy_page(
    state: &AppState,
    request: &HttpRequest,
    csrf: &Csrf,
    notice: Option<&str>,
    error: Option<String>,
) -> HttpResponse {
    let (session, fhir) = match signed_in(state, request, "/espace/confidentialite").await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let general_practitioner =
        fhir.read("Patient", &session.patient)
            .await
            .ok()
            .and_then(|patient| {
                let gp = patient["generalPractitioner"].get(0)?;
                gp["display"]
                    .as_str()
                    .or_else(|| gp.pointer("/identifier/value").and_then(Value::as_str))
                    .or_else(|| gp["reference"].as_str())
                    .map(str::to_owned)
            });
    let bundle = fhir
        .search(
            "Consent",
            vec![
                ("patient".into(), session.patient.clone()),
                ("_count".into(), "200".into()),
            ],
        )
        .await;
    let (consents, error) = match &bundle {
        Ok(bundle) => (entries(bundle), error),
        Err(refused) => (Vec::new(), Some(refused.in_french())),
    };
    let with_actor = |kind: &str| -> Vec<(String, String)> {
        consents
            .iter()
            .filter(|consent| {
                consent.pointer("/provision/type").and_then(Value::as_str) == Some(kind)
            })
            .filter_map(|consent| Some((consent["id"].as_str()?.to_owned(), actor_of(consent)?)))
            .collect()
    };
    let accessed = professionals_who_accessed(&fhir, &session.patient).await;
    let html = render(&PrivacyPage {
        section: "confidentialite",
        accessed,
        notice,
        error,
        csrf: &csrf.value,
        general_practitioner,
        blocked: with_actor("deny"),
        authorised: with_actor("permit"),
        emergency: EMERGENCY
            .iter()
            .map(|(purpose, legend)| (*purpose, *legend, allows(&consents, purpose)))
            .collect(),
    });
    page(StatusCode::OK, html, csrf, None)
}

/// `GET /espace/confidentialite`.
pub async fn privacy(state: State, request: HttpRequest) -> HttpResponse {
    let csrf = csrf_of(&state, &request);
    let notice = (request.query_string() == "fait=oui").then_some("Vos choix sont enregistrés.");
    privacy_page(&state, &request, &csrf, notice, None).await
}

/// The professionals whose accesses the trace holds (its latest 500 events):
/// each once, with the name they gave and their latest access.
async fn professionals_who_accessed(
    fhir: &Fhir<'_>,
    patient: &str,
) -> Vec<(String, String, String)> {
    let mut seen: Vec<(String, String, String)> = Vec::new();
    for window in 0..5 {
        let Ok(bundle) = fhir
            .search(
                "AuditEvent",
                vec![
                    ("patient".into(), patient.to_owned()),
                    ("_sort".into(), "-date".into()),
                    ("_count".into(), "100".into()),
                    ("_offset".into(), (window * 100).to_string()),
                ],
            )
            .await
        else {
            break;
        };
        let events = entries(&bundle);
        let read = events.len();
        for event in events {
            let user = &event["agent"][0];
            if user
                .pointer("/who/identifier/system")
                .and_then(Value::as_str)
                != Some(IDNAT_PS)
            {
                continue;
            }
            let Some(id) = user
                .pointer("/who/identifier/value")
                .and_then(Value::as_str)
            else {
                continue;
            };
            if seen.iter().any(|(known, _, _)| known == id) {
                continue;
            }
            seen.push((
                id.to_owned(),
                user["name"].as_str().unwrap_or("").to_owned(),
                french_date(event["recorded"].as_str().unwrap_or(""), true),
            ));
        }
        if read < 100 {
            break;
        }
    }
    seen
}

/// A Consent of the holder's space (the shape of IHE PCF the API takes).
fn consent(patient: &str, kind: &str, actor: Option<&str>, purpose: Option<&str>) -> Value {
    let code = if kind == "deny" { "OPTOUT" } else { "OPTIN" };
    let mut consent = json!({
        "resourceType": "Consent",
        "status": "active",
        "scope": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy" }] },
        "category": [{ "coding": [{ "system": "http://loinc.org", "code": "59284-0" }] }],
        "patient": { "reference": format!("Patient/{patient}") },
        "policyRule": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": code }] },
        "provision": { "type": kind },
    });
    if let Some(actor) = actor {
        consent["provision"]["actor"] = json!([{
            "role": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP" }] },
            "reference": { "identifier": { "system": IDNAT_PS, "value": actor } },
        }]);
    }
    if let Some(purpose) = purpose {
        consent["provision"]["purpose"] = json!([{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": purpose }]);
    }
    consent
}

/// `POST /espace/confidentialite/{bloquer|autoriser|retirer|urgence|medecin-traitant}`.
pub async fn privacy_post(
    state: State,
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let verb = path.into_inner();
    let (csrf, form, session, fhir) =
        match signed_in_form(&state, &request, payload, "/espace/confidentialite").await {
            Ok(found) => found,
            Err(response) => return response,
        };
    let patient = session.patient.clone();
    let typed = idnat(form.get("idnat"));
    let invalid = || {
        Refused::told(
            400,
            "Un identifiant RPPS / ADELI est fait de chiffres (et de lettres).",
        )
    };
    let done: Result<(), Refused> = match verb.as_str() {
        "bloquer" | "autoriser" => match typed {
            // Said plainly rather than stored to no effect: the médecin traitant
            // keeps access to the space whatever is blocked (SPEC §5).
            Some(id) if verb == "bloquer" && general_practitioner_is(&fhir, &patient, &id).await => {
                Err(Refused::told(
                    409,
                    "Votre médecin traitant ne peut pas être bloqué. Déclarez-en un autre pour changer.",
                ))
            }
            Some(id) => {
                let kind = if verb == "bloquer" { "deny" } else { "permit" };
                fhir.create("Consent", consent(&patient, kind, Some(&id), None)).await.map(|_| ())
            }
            None => Err(invalid()),
        },
        "retirer" => {
            let id = form.get("consent");
            if id.is_empty() || id.len() > 64 {
                Err(invalid())
            } else {
                fhir.delete("Consent", id).await
            }
        }
        "urgence" => {
            let current = fhir
                .search("Consent", vec![("patient".into(), patient.clone()), ("_count".into(), "200".into())])
                .await;
            match current {
                Err(refused) => Err(refused),
                Ok(bundle) => {
                    let mut result = Ok(());
                    let consents = entries(&bundle);
                    for (purpose, _) in EMERGENCY {
                        let wanted = match form.get(purpose) {
                            "permit" => "permit",
                            "deny" => "deny",
                            _ => continue,
                        };
                        if allows(&consents, purpose) == (wanted == "permit") {
                            continue;
                        }
                        // The new choice is stored before the earlier ones go: an
                        // opposition never lapses in between (a deny wins while
                        // both stand).
                        if let Err(refused) = fhir
                            .create("Consent", consent(&patient, wanted, None, Some(purpose)))
                            .await
                        {
                            result = Err(refused);
                            continue;
                        }
                        for old in consents.iter().filter(|consent| {
                            consent["provision"]["actor"].is_null()
                                && consent["provision"]["purpose"]
                                    .as_array()
                                    .into_iter()
                                    .flatten()
                                    .any(|coding| coding["code"] == purpose)
                        }) {
                            if let Some(id) = old["id"].as_str()
                                && let Err(refused) = fhir.delete("Consent", id).await
                            {
                                result = Err(refused);
                            }
                        }
                    }
                    result
                }
            }
        }
        "medecin-traitant" => match typed {
            Some(id) => fhir
                .patch(
                    "Patient",
                    &patient,
                    json!([{ "op": "add", "path": "/generalPractitioner", "value": [{ "identifier": { "system": IDNAT_PS, "value": id } }] }]),
                )
                .await
                .map(|_| ()),
            None => Err(invalid()),
        },
        _ => return see_other("/espace/confidentialite"),
    };
    match done {
        Ok(()) => see_other("/espace/confidentialite?fait=oui"),
        Err(refused) => {
            privacy_page(&state, &request, &csrf, None, Some(refused.in_french())).await
        }
    }
}

/// Whether `id` (IdNat_PS) is the space's declared médecin traitant.
async fn general_practitioner_is(fhir: &Fhir<'_>, patient: &str, id: &str) -> bool {
    fhir.read("Patient", patient).await.is_ok_and(|resource| {
        resource["generalPractitioner"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|gp| gp.pointer("/identifier/value").and_then(Value::as_str) == Some(id))
    })
}

// ---- The space (R-LIFE-1 … 3) ----

fn state_in_french(patient: &Value) -> String {
    let state = patient["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|extension| {
            extension["url"]
                .as_str()
                .is_some_and(|url| url.ends_with("space-state"))
        })
        .and_then(|extension| extension["valueCode"].as_str())
        .unwrap_or(if patient["active"] == false {
            "closed"
        } else {
            "active"
        });
    match state {
        "active" => "ouvert",
        "pending" => "en attente d'activation",
        "opposed" => "opposition enregistrée",
        "closed" => "clôturé",
        other => other,
    }
    .to_owned()
}

async fn my_space_page(
    state: &AppState,
    request: &HttpRequest,
    csrf: &Csrf,
    confirm: &str,
    notice: Option<&str>,
    error: Option<String>,
) -> HttpResponse {
    let (session, fhir) = match signed_in(state, request, "/espace/mon-espace").await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let space = fhir
        .read("Patient", &session.patient)
        .await
        .map(|patient| state_in_french(&patient))
        .unwrap_or_else(|_| "inconnu".into());
    let confirm_text = match confirm {
        "close" => {
            "Votre espace sera clôturé : les professionnels n'y auront plus accès, ses données seront archivées 10 ans. Vous pourrez le rouvrir."
        }
        "delete" => {
            "Votre espace sera clôturé et ses données supprimées. Cette suppression ne peut pas être annulée."
        }
        "oppose" => {
            "Vous vous opposez à Mon espace santé. Le justificatif d'opposition (PDF) sera téléchargé : gardez-le, il ne sera plus disponible par la suite."
        }
        "reopen" => "Votre espace sera rouvert avec les données archivées.",
        "activate" => {
            "Votre espace sera activé : vous aurez la main sur votre santé et les professionnels autorisés y accéderont."
        }
        _ => "",
    };
    let html = render(&MySpacePage {
        section: "mon-espace",
        notice,
        error,
        csrf: &csrf.value,
        state: space,
        confirm: if confirm_text.is_empty() { "" } else { confirm },
        confirm_text,
    });
    page(StatusCode::OK, html, csrf, None)
}

/// `GET /espace/mon-espace`.
pub async fn my_space(state: State, request: HttpRequest) -> HttpResponse {
    let csrf = csrf_of(&state, &request);
    let notice = (request.query_string() == "fait=oui").then_some("Votre choix est enregistré.");
    my_space_page(&state, &request, &csrf, "", notice, None).await
}

/// `POST /espace/mon-espace`: an action, its confirmation, then the operation
/// (`$close`, `$close?delete=true`, `$oppose` with its PDF, `$reopen`).
pub async fn my_space_post(
    state: State,
    request: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let (csrf, form, session, fhir) =
        match signed_in_form(&state, &request, payload, "/espace/mon-espace").await {
            Ok(found) => found,
            Err(response) => return response,
        };
    let chosen = form.get("action");
    if form.get("confirmed") != "yes" {
        return my_space_page(&state, &request, &csrf, chosen, None, None).await;
    }
    let (operation, params, accept) = match chosen {
        "close" => ("$close", vec![], super::FHIR_JSON),
        "delete" => (
            "$close",
            vec![("delete".to_owned(), "true".to_owned())],
            super::FHIR_JSON,
        ),
        "oppose" => ("$oppose", vec![], "application/pdf"),
        "reopen" => ("$reopen", vec![], super::FHIR_JSON),
        "activate" => ("$activate", vec![], super::FHIR_JSON),
        _ => return see_other("/espace/mon-espace"),
    };
    let (status, _, bytes) = fhir
        .invoke("Patient", &session.patient, operation, params, accept)
        .await;
    if !(200..300).contains(&status) {
        return my_space_page(
            &state,
            &request,
            &csrf,
            "",
            None,
            Some(Refused::of_answer(status, &bytes).in_french()),
        )
        .await;
    }
    if chosen == "oppose" {
        return HttpResponse::Ok()
            .content_type("application/pdf")
            .insert_header((
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"justificatif-opposition.pdf\"",
            ))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .body(bytes);
    }
    see_other("/espace/mon-espace?fait=oui")
}

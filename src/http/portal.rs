//! The portal (R-UI-1): Mon espace santé in the browser for the signed-in holder,
//! under `/espace`. Every page reads and writes through the FHIR pipeline as the
//! holder (`internal::Fhir`, with an access token of their session): each rule
//! and the trace apply to what the portal shows and does as to any client. Pages
//! have the defences of `pages` (CSP, no-store, CSRF on every form).

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use base64::Engine;
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::internal::{Fhir, Refused};
use super::pages::{Csrf, Form, csrf_holds, csrf_of, page, render, see_other, session};
use crate::AppState;
use crate::account::Session;

type State = web::Data<AppState>;

/// TRE_A03 classes (DocumentReference.category), as the holder reads them.
const CATEGORIES: [(&str, &str); 11] = [
    ("10", "Comptes rendus"),
    ("11", "Synthèses"),
    ("31", "Imagerie médicale"),
    ("42", "Prescriptions"),
    ("43", "Dispensations"),
    ("44", "Plans de soins"),
    ("45", "Traitements administrés"),
    ("52", "Certificats"),
    ("60", "Remboursements"),
    ("90", "Documents déposés par le patient"),
    ("95", "Gestion"),
];
const CLASS_SYSTEM: &str = "urn:oid:1.2.250.1.213.1.1.4.1";
use crate::fhir::TRE_A05_SYSTEM as TRE_A05;
const TRE_A07: &str = "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument";
const CONFIDENTIALITY: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
/// What the holder may add themselves (TRE_A05 DOCPAT).
const OWN_TYPES: [(&str, &str); 4] = [
    ("DOCPAT01", "Document de santé"),
    ("DOCPAT02", "Résultat d'examen"),
    ("DOCPAT03", "Ordonnance"),
    ("DOCPAT04", "Compte rendu"),
];
/// Document types (DocumentReference.type) as the holder reads them, when the
/// document carries no display of its own (JDV_J07, TRE_A05; DOMAIN-CODES).
const TYPES: [(&str, &str); 24] = [
    ("11488-4", "Compte rendu de consultation"),
    ("11490-0", "Lettre de liaison de sortie"),
    ("11502-2", "Compte rendu de biologie"),
    ("18748-4", "Compte rendu d'imagerie"),
    ("34112-3", "Compte rendu hospitalier"),
    ("34874-8", "Compte rendu opératoire"),
    ("15508-5", "Compte rendu d'accouchement"),
    ("57833-6", "Prescription de produits de santé"),
    ("60593-1", "Dispensation médicamenteuse"),
    ("11369-6", "Historique des vaccinations"),
    ("68599-0", "Synthèse psychiatrique"),
    ("83901-9", "Bilan psychologique"),
    ("80788-3", "Projet personnalisé d'accompagnement"),
    ("75496-0", "Demande d'acte de télémédecine"),
    (
        "83981-1",
        "Lettre de liaison de sortie (structure sociale ou médico-sociale)",
    ),
    ("60591-5", "Synthèse médicale"),
    ("ATTEST-RESID", "Attestation de résidence"),
    ("EXPPAT_3", "Directives anticipées"),
    ("REMB", "Historique des remboursements"),
    ("SYNTH", "Synthèse"),
    ("DOCPAT01", "Document de santé"),
    ("DOCPAT02", "Résultat d'examen"),
    ("DOCPAT03", "Ordonnance"),
    ("DOCPAT04", "Compte rendu"),
];
/// Events read per search of the history, searches per page at most, and the
/// entries after which a page stops reading.
const HISTORY_WINDOW: usize = 100;
const HISTORY_WINDOWS: usize = 20;
const HISTORY_SHOWN: usize = 100;
/// Media types shown in the browser; anything else is downloaded.
const SHOWN: [&str; 3] = ["application/pdf", "image/png", "image/jpeg"];
/// Bytes of a document the holder adds.
const MAX_UPLOAD: usize = 10 * 1024 * 1024;

/// A document as a row of the pages.
struct DocumentRow {
    id: String,
    title: String,
    date: String,
    category: String,
    author: String,
    format: String,
    masked: bool,
    own: bool,
    inline: bool,
    /// A CDA, read as text on its own page.
    structured: bool,
}

struct MessageRow {
    from: String,
    date: String,
    text: String,
    /// A message (not a notification) stored since the holder last saw their
    /// messages, and not theirs.
    new: bool,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage<'a> {
    section: &'a str,
    notice: Option<&'a str>,
    error: Option<String>,
    name: String,
    documents: Vec<DocumentRow>,
    messages: Vec<MessageRow>,
    notifications: Vec<MessageRow>,
    /// New messages among the latest 20.
    unread: usize,
}

#[derive(Template)]
#[template(path = "documents.html")]
struct DocumentsPage<'a> {
    section: &'a str,
    notice: Option<&'a str>,
    error: Option<String>,
    csrf: &'a str,
    /// Code, label, whether it is the filter's.
    categories: Vec<(&'static str, &'static str, bool)>,
    from: &'a str,
    to: &'a str,
    documents: Vec<DocumentRow>,
}

#[derive(Template)]
#[template(path = "document.html")]
struct DocumentPage<'a> {
    section: &'a str,
    notice: Option<&'a str>,
    error: Option<String>,
    document: DocumentRow,
}

#[derive(Template)]
#[template(path = "add_document.html")]
struct AddDocumentPage<'a> {
    section: &'a str,
    notice: Option<&'a str>,
    error: Option<String>,
    csrf: &'a str,
    types: Vec<(&'static str, &'static str)>,
}

#[derive(Template)]
#[template(path = "history.html")]
struct HistoryPage<'a> {
    section: &'a str,
    notice: Option<&'a str>,
    error: Option<String>,
    professional: &'a str,
    everyone: bool,
    from: &'a str,
    to: &'a str,
    entries: Vec<String>,
    /// The query of the next part of the history, when there is more.
    more: Option<String>,
}

/// `DD/MM/YYYY` of a FHIR date or instant (and ` à HH:MM` with `time`, in UTC).
pub(super) fn french_date(text: &str, time: bool) -> String {
    let date = text.get(..10).unwrap_or(text);
    let mut parts = date.split('-');
    let (Some(year), Some(month), Some(day)) = (parts.next(), parts.next(), parts.next()) else {
        return text.to_owned();
    };
    let mut shown = format!("{day}/{month}/{year}");
    if time && let Some(clock) = text.get(11..16) {
        shown.push_str(&format!(" à {}", clock.replace(':', "h")));
    }
    shown
}

fn codes(concept: &Value) -> impl Iterator<Item = &Value> {
    concept["coding"].as_array().into_iter().flatten()
}

/// A DocumentReference as the holder reads it.
fn document_row(document: &Value) -> DocumentRow {
    let title = document["description"]
        .as_str()
        .or_else(|| {
            document
                .pointer("/content/0/attachment/title")
                .and_then(Value::as_str)
        })
        .or_else(|| codes(&document["type"]).find_map(|coding| coding["display"].as_str()))
        .or_else(|| {
            codes(&document["type"]).find_map(|coding| {
                let code = coding["code"].as_str()?;
                TYPES
                    .iter()
                    .find(|(known, _)| *known == code)
                    .map(|(_, label)| *label)
            })
        })
        .or_else(|| codes(&document["type"]).find_map(|coding| coding["code"].as_str()))
        .unwrap_or("Document")
        .to_owned();
    let category_code = document["category"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(codes)
        .find_map(|coding| coding["code"].as_str())
        .unwrap_or("");
    let category = CATEGORIES
        .iter()
        .find(|(code, _)| *code == category_code)
        .map_or(category_code, |(_, label)| label)
        .to_owned();
    let masked = document["securityLabel"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(codes)
        .any(|coding| coding["code"] == "MASQUE_PS");
    let format = document
        .pointer("/content/0/attachment/contentType")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let author = document["author"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|author| {
            // The name a depositor gave is not checked; their identifier is.
            let id = author
                .pointer("/identifier/value")
                .and_then(Value::as_str)?;
            Some(match author["display"].as_str() {
                Some(name) => format!("{name} (identifiant {id})"),
                None => format!("identifiant {id}"),
            })
        })
        .unwrap_or_else(|| {
            if category_code == "90" {
                "vous".to_owned()
            } else {
                "un professionnel de santé".to_owned()
            }
        });
    DocumentRow {
        id: document["id"].as_str().unwrap_or("").to_owned(),
        title,
        date: french_date(document["date"].as_str().unwrap_or(""), false),
        category,
        author,
        inline: SHOWN.contains(&format.as_str()),
        structured: matches!(
            format.as_str(),
            "text/xml" | "application/xml" | "application/hl7-v3+xml"
        ),
        format,
        masked,
        own: category_code == "90",
    }
}

/// The resources a searchset matched (not those it included).
pub(super) fn entries(bundle: &Value) -> Vec<&Value> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|entry| entry.pointer("/search/mode").and_then(Value::as_str) != Some("include"))
        .map(|entry| &entry["resource"])
        .collect()
}

/// Who sent a message, as the holder may trust it: a professional by their
/// IdNat_PS (which the server checks, R-MSG-5) beside the name they gave (which it
/// does not), the service by its own identifier, the holder as « Vous ».
pub(super) fn sender_of(message: &Value, patient: &str) -> String {
    let sender = &message["sender"];
    let system = sender.pointer("/identifier/system").and_then(Value::as_str);
    let value = sender.pointer("/identifier/value").and_then(Value::as_str);
    // The identifier first: it is what the server checked of a professional's.
    if system.is_none()
        && sender["reference"].as_str() == Some(format!("Patient/{patient}").as_str())
    {
        return "Vous".to_owned();
    }
    match (system, value) {
        (Some(IDNAT_PS), Some(id)) => match sender["display"].as_str() {
            Some(name) => format!("{name} (professionnel de santé, identifiant {id})"),
            None => format!("Professionnel de santé, identifiant {id}"),
        },
        (Some(crate::notify::SERVICE_SYSTEM), _) => "Mon espace santé".to_owned(),
        _ => "Expéditeur non vérifié".to_owned(),
    }
}

/// The read mark of the holder's messages (see `Accounts::messages_seen_at`), none
/// when it cannot be read (every message then shows as new).
pub(super) async fn messages_seen_at(state: &AppState, session: &Session) -> Option<String> {
    let (accounts, session) = (state.accounts.clone(), session.clone());
    super::pages::blocking(move || accounts.messages_seen_at(&session))
        .await
        .ok()
        .flatten()
}

/// A form of the portal: read, its CSRF token checked, the holder signed in.
pub(super) async fn signed_in_form<'a>(
    state: &'a AppState,
    request: &'a HttpRequest,
    payload: web::Payload,
    back: &str,
) -> Result<(Csrf, super::pages::Form, Session, Fhir<'a>), HttpResponse> {
    let (csrf, form) = super::pages::submitted(state, request, payload).await?;
    let (session, fhir) = signed_in(state, request, back).await?;
    Ok((csrf, form, session, fhir))
}

/// The signed-in holder and their FHIR client, or the sign-in page.
pub(super) async fn signed_in<'a>(
    state: &'a AppState,
    request: &'a HttpRequest,
    back: &str,
) -> Result<(Session, Fhir<'a>), HttpResponse> {
    let Some(session) = session(state, request).await else {
        let next = form_urlencoded::Serializer::new(String::new())
            .append_pair("next", back)
            .finish();
        return Err(see_other(&format!("/connexion?{next}")));
    };
    let token = state.accounts.access_token(&session).access_token;
    Ok((session, Fhir::new(state, request, token)))
}

fn refused_text(refused: &Refused) -> String {
    match refused.status {
        401 => "Votre session a pris fin : reconnectez-vous.".into(),
        404 => "Ce document n'existe pas, ou plus.".into(),
        _ => refused.in_french(),
    }
}

/// A page of the portal that does not exist, said in French.
pub async fn not_found(state: State, request: HttpRequest) -> HttpResponse {
    not_found_page(&csrf_of(&state, &request))
}

/// [`not_found`]'s page.
pub(super) fn not_found_page(csrf: &Csrf) -> HttpResponse {
    super::pages::message(
        StatusCode::NOT_FOUND,
        csrf,
        "Page introuvable",
        "Cette page n'existe pas, ou plus.",
        Some(("/espace", "Revenir à l'accueil de Mon espace santé")),
    )
}

/// `GET /espace`: the latest documents, messages and notifications.
pub async fn home(state: State, request: HttpRequest) -> HttpResponse {
    let csrf = csrf_of(&state, &request);
    let (session, fhir) = match signed_in(&state, &request, "/espace").await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let patient = session.patient.clone();
    let name = fhir
        .read("Patient", &patient)
        .await
        .ok()
        .and_then(|resource| {
            let name = resource["name"].get(0)?;
            let given = name["given"].get(0).and_then(Value::as_str).unwrap_or("");
            let family = name["family"].as_str().unwrap_or("");
            Some(format!("{given} {family}").trim().to_owned())
        })
        .unwrap_or_default();
    let mut error = None;
    let documents = match fhir
        .search(
            "DocumentReference",
            vec![
                ("patient".into(), patient.clone()),
                ("_sort".into(), "-date".into()),
                ("_count".into(), "5".into()),
            ],
        )
        .await
    {
        Ok(bundle) => entries(&bundle).into_iter().map(document_row).collect(),
        Err(refused) => {
            error = Some(refused_text(&refused));
            Vec::new()
        }
    };
    let mut communications = fhir
        .search(
            "Communication",
            vec![
                ("patient".into(), patient.clone()),
                (
                    "category:not".into(),
                    format!("{}|notification", crate::notify::CATEGORY_SYSTEM),
                ),
                ("_sort".into(), "-sent".into()),
                ("_count".into(), "20".into()),
            ],
        )
        .await
        .unwrap_or_default();
    // The latest notifications on their own: messages never push an emergency
    // access's notice off the page.
    let told = fhir
        .search(
            "Communication",
            vec![
                ("patient".into(), patient.clone()),
                (
                    "category".into(),
                    format!("{}|notification", crate::notify::CATEGORY_SYSTEM),
                ),
                ("_sort".into(), "-sent".into()),
                ("_count".into(), "5".into()),
            ],
        )
        .await
        .unwrap_or_default();
    if let (Some(all), Some(notices)) = (
        communications["entry"].as_array_mut(),
        told["entry"].as_array(),
    ) {
        all.retain(|entry| !crate::notify::is_notification(&entry["resource"]));
        all.extend(notices.iter().cloned());
    }
    let seen = messages_seen_at(&state, &session).await;
    let mut messages = Vec::new();
    let mut notifications = Vec::new();
    let mut unread = 0;
    for communication in entries(&communications) {
        let notification = crate::notify::is_notification(communication);
        let own = communication
            .pointer("/sender/reference")
            .and_then(Value::as_str)
            .is_some_and(|sender| sender == format!("Patient/{patient}"));
        let stored_at = communication
            .pointer("/meta/lastUpdated")
            .and_then(Value::as_str)
            .unwrap_or("");
        let new = !notification && !own && seen.as_deref().is_none_or(|seen| stored_at > seen);
        unread += usize::from(new);
        let row = MessageRow {
            new,
            from: sender_of(communication, &patient),
            date: french_date(communication["sent"].as_str().unwrap_or(""), true),
            text: communication
                .pointer("/payload/0/contentString")
                .and_then(Value::as_str)
                .unwrap_or("")
                .chars()
                .take(200)
                .collect(),
        };
        match notification {
            true if notifications.len() < 5 => notifications.push(row),
            false if messages.len() < 5 => messages.push(row),
            _ => {}
        }
    }
    let html = render(&HomePage {
        section: "accueil",
        notice: None,
        error,
        name,
        documents,
        messages,
        notifications,
        unread,
    });
    page(StatusCode::OK, html, &csrf, None)
}

/// A `YYYY-MM-DD` typed in a filter, or nothing.
fn filter_date(typed: &str) -> &str {
    let plain = typed.len() == 10 && chrono::NaiveDate::parse_from_str(typed, "%Y-%m-%d").is_ok();
    if plain { typed } else { "" }
}

fn query_value<'q>(query: &'q [(String, String)], name: &str) -> &'q str {
    query
        .iter()
        .find(|(key, _)| key == name)
        .map_or("", |(_, value)| value.as_str())
}

/// A notice carried by a redirection after an action (`?fait=…`).
fn notice_of(query: &[(String, String)]) -> Option<&'static str> {
    match query_value(query, "fait") {
        "masque" => Some("Le document est masqué aux professionnels de santé."),
        "demasque" => Some("Le document est de nouveau visible des professionnels autorisés."),
        "supprime" => Some("Le document a été supprimé."),
        "ajoute" => Some("Le document a été ajouté."),
        _ => None,
    }
}

async fn documents_page(
    state: &AppState,
    request: &HttpRequest,
    csrf: &Csrf,
    query: &[(String, String)],
    error: Option<String>,
) -> HttpResponse {
    let (session, fhir) = match signed_in(state, request, "/espace/documents").await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let category = CATEGORIES
        .iter()
        .map(|(code, _)| *code)
        .find(|code| *code == query_value(query, "categorie"))
        .unwrap_or("");
    let (from, to) = (
        filter_date(query_value(query, "du")),
        filter_date(query_value(query, "au")),
    );
    let mut params = vec![
        ("patient".to_owned(), session.patient.clone()),
        ("_sort".to_owned(), "-date".to_owned()),
        ("_count".to_owned(), "100".to_owned()),
    ];
    if !category.is_empty() {
        params.push(("category".into(), format!("{CLASS_SYSTEM}|{category}")));
    }
    if !from.is_empty() {
        params.push(("date".into(), format!("ge{from}")));
    }
    if !to.is_empty() {
        params.push(("date".into(), format!("le{to}")));
    }
    let (documents, error) = match fhir.search("DocumentReference", params).await {
        Ok(bundle) => (
            entries(&bundle).into_iter().map(document_row).collect(),
            error,
        ),
        Err(refused) => (Vec::new(), Some(refused_text(&refused))),
    };
    let html = render(&DocumentsPage {
        section: "documents",
        notice: notice_of(query),
        error,
        csrf: &csrf.value,
        categories: CATEGORIES
            .iter()
            .map(|(code, label)| (*code, *label, *code == category))
            .collect(),
        from,
        to,
        documents,
    });
    page(StatusCode::OK, html, csrf, None)
}

/// `GET /espace/documents`: by date, newest first; filters by class and period.
pub async fn documents(
    state: State,
    request: HttpRequest,
    query: web::Query<Vec<(String, String)>>,
) -> HttpResponse {
    let csrf = csrf_of(&state, &request);
    documents_page(&state, &request, &csrf, &query, None).await
}

/// `GET /espace/documents/{id}`.
pub async fn document(state: State, request: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let csrf = csrf_of(&state, &request);
    let id = path.into_inner();
    let (_, fhir) = match signed_in(&state, &request, "/espace/documents").await {
        Ok(found) => found,
        Err(response) => return response,
    };
    match fhir.read("DocumentReference", &id).await {
        Ok(document) => {
            let html = render(&DocumentPage {
                section: "documents",
                notice: None,
                error: None,
                document: document_row(&document),
            });
            page(StatusCode::OK, html, &csrf, None)
        }
        Err(refused) => {
            let query = Vec::new();
            let status = StatusCode::from_u16(refused.status).unwrap_or(StatusCode::NOT_FOUND);
            let mut response = documents_page(
                &state,
                &request,
                &csrf,
                &query,
                Some(refused_text(&refused)),
            )
            .await;
            *response.status_mut() = status;
            response
        }
    }
}

/// A document's media type and bytes (inline, or its Binary read through the
/// pipeline), or the answer to give instead.
async fn document_bytes(fhir: &Fhir<'_>, id: &str) -> Result<(String, Vec<u8>), HttpResponse> {
    let unavailable = |status: u16, text: String| {
        HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::NOT_FOUND))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .content_type("text/plain; charset=utf-8")
            .body(text)
    };
    let document = fhir
        .read("DocumentReference", id)
        .await
        .map_err(|refused| unavailable(refused.status, refused_text(&refused)))?;
    let attachment = &document["content"][0]["attachment"];
    let kind = attachment["contentType"]
        .as_str()
        .unwrap_or("application/octet-stream")
        .to_owned();
    let bytes = if let Some(data) = attachment["data"].as_str() {
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap_or_default()
    } else if let Some(binary) = attachment["url"]
        .as_str()
        .and_then(|url| url.rsplit_once("Binary/").map(|(_, id)| id.to_owned()))
    {
        let (status, _, bytes) = fhir.read_bytes("Binary", &binary, &kind).await;
        if status != 200 {
            return Err(unavailable(
                status,
                "Le contenu de ce document n'est pas disponible.".into(),
            ));
        }
        bytes.to_vec()
    } else {
        return Err(unavailable(
            404,
            "Le contenu de ce document n'est pas disponible ici.".into(),
        ));
    };
    Ok((kind, bytes))
}

/// `GET /espace/documents/{id}/contenu`: the document's bytes, shown in the
/// browser (PDF, PNG, JPEG) or downloaded, never run: no script, no style, no
/// frame of this site around it.
pub async fn content(state: State, request: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let id = path.into_inner();
    let (_, fhir) = match signed_in(&state, &request, "/espace/documents").await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let (kind, bytes) = match document_bytes(&fhir, &id).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let shown = SHOWN.contains(&kind.as_str());
    let served_as = if shown {
        kind.as_str()
    } else {
        "application/octet-stream"
    };
    let extension = match kind.as_str() {
        "application/pdf" => "pdf",
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "text/xml" | "application/xml" | "application/hl7-v3+xml" => "xml",
        _ => "bin",
    };
    HttpResponse::Ok()
        .content_type(served_as)
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!(
                "{}; filename=\"document.{extension}\"",
                if shown { "inline" } else { "attachment" }
            ),
        ))
        .insert_header((
            "Content-Security-Policy",
            "default-src 'none'; img-src 'self'; object-src 'self'; sandbox",
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(bytes)
}

#[derive(Template)]
#[template(path = "cda.html")]
struct CdaPage<'a> {
    section: &'a str,
    notice: Option<&'a str>,
    error: Option<String>,
    id: &'a str,
    title: String,
    sections: Vec<(String, Vec<String>)>,
}

/// The CDA readings the portal makes at once (each holds the document's bytes and
/// what it shows of them).
static CDA_READINGS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// `GET /espace/documents/{id}/lecture`: a CDA document read as text (its title,
/// its sections' titles and narrative).
pub async fn reading(state: State, request: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let csrf = csrf_of(&state, &request);
    let id = path.into_inner();
    let (_, fhir) = match signed_in(&state, &request, "/espace/documents").await {
        Ok(found) => found,
        Err(response) => return response,
    };
    // Up to the body bound's bytes of XML, fetched and read two at a time (so that
    // readings at once hold a bounded share of memory), off the HTTP worker.
    let Ok(_reading) = CDA_READINGS.acquire().await else {
        return see_other(&format!("/espace/documents/{id}"));
    };
    let (_, bytes) = match document_bytes(&fhir, &id).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let readable = actix_web::rt::task::spawn_blocking(move || super::cda::read(&bytes))
        .await
        .ok()
        .flatten();
    let Some(readable) = readable else {
        return see_other(&format!("/espace/documents/{id}"));
    };
    let html = render(&CdaPage {
        section: "documents",
        notice: None,
        error: None,
        id: &id,
        title: if readable.title.is_empty() {
            "Document".to_owned()
        } else {
            readable.title
        },
        sections: readable.sections,
    });
    page(StatusCode::OK, html, &csrf, None)
}

/// A document action from a form: checks the CSRF token, runs it, and goes
/// back to the list with what happened.
async fn document_action(
    state: &AppState,
    request: &HttpRequest,
    payload: web::Payload,
    id: &str,
    action: &str,
) -> HttpResponse {
    let (csrf, _form) = match super::pages::submitted(state, request, payload).await {
        Ok(submitted) => submitted,
        Err(response) => return response,
    };
    let (_, fhir) = match signed_in(state, request, "/espace/documents").await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let done = match action {
        "masquer" | "demasquer" => {
            let current = match fhir.read("DocumentReference", id).await {
                Ok(current) => current,
                Err(refused) => {
                    return documents_page(
                        state,
                        request,
                        &csrf,
                        &[],
                        Some(refused_text(&refused)),
                    )
                    .await;
                }
            };
            let mut labels: Vec<Value> = current["securityLabel"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|label| {
                    !codes(label).any(|coding| {
                        coding["code"] == "MASQUE_PS"
                            || (coding["system"] == CONFIDENTIALITY && coding["code"] == "N")
                    })
                })
                .collect();
            if action == "masquer" {
                labels.push(json!({ "coding": [{ "system": TRE_A07, "code": "MASQUE_PS" }] }));
            } else if labels.is_empty() {
                // As the DMP unmasks: the normal confidentiality.
                labels.push(json!({ "coding": [{ "system": CONFIDENTIALITY, "code": "N" }] }));
            }
            fhir.patch(
                "DocumentReference",
                id,
                json!([{ "op": "add", "path": "/securityLabel", "value": labels }]),
            )
            .await
            .map(|_| {
                if action == "masquer" {
                    "masque"
                } else {
                    "demasque"
                }
            })
        }
        "supprimer" => fhir
            .delete("DocumentReference", id)
            .await
            .map(|()| "supprime"),
        _ => return see_other("/espace/documents"),
    };
    match done {
        Ok(what) => see_other(&format!("/espace/documents?fait={what}")),
        Err(refused) => {
            documents_page(state, request, &csrf, &[], Some(refused_text(&refused))).await
        }
    }
}

/// `POST /espace/documents/{id}/{masquer|demasquer|supprimer}` (R-PAT-2, R-ACC-7).
pub async fn document_post(
    state: State,
    request: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> HttpResponse {
    let (id, action) = path.into_inner();
    document_action(&state, &request, payload, &id, &action).await
}

fn add_page(csrf: &Csrf, status: StatusCode, error: Option<String>) -> HttpResponse {
    let html = render(&AddDocumentPage {
        section: "documents",
        notice: None,
        error,
        csrf: &csrf.value,
        types: OWN_TYPES.to_vec(),
    });
    page(status, html, csrf, None)
}

/// `GET /espace/documents/ajouter`.
pub async fn add_form(state: State, request: HttpRequest) -> HttpResponse {
    let csrf = csrf_of(&state, &request);
    if let Err(response) = signed_in(&state, &request, "/espace/documents/ajouter").await {
        return response;
    }
    add_page(&csrf, StatusCode::OK, None)
}

/// The fields of an upload form: texts, and the one file with its media type.
struct Upload {
    fields: Vec<(String, String)>,
    file: Vec<u8>,
    file_type: String,
    file_name: String,
}

/// Reads a `multipart/form-data` upload, at most [`MAX_UPLOAD`] bytes of file and
/// 8 KiB of other fields.
async fn upload(mut multipart: actix_multipart::Multipart) -> Result<Upload, String> {
    let mut upload = Upload {
        fields: Vec::new(),
        file: Vec::new(),
        file_type: String::new(),
        file_name: String::new(),
    };
    let mut text_bytes = 0;
    while let Some(field) = multipart.next().await {
        let mut field = field.map_err(|_| "Le formulaire n'a pas pu être lu.".to_owned())?;
        let name = field.name().unwrap_or("").to_owned();
        let is_file = name == "fichier";
        if is_file {
            upload.file_type = field
                .content_type()
                .map(|kind| kind.essence_str().to_owned())
                .unwrap_or_default();
            upload.file_name = field
                .content_disposition()
                .and_then(|disposition| disposition.get_filename())
                .unwrap_or("")
                .chars()
                .take(200)
                .collect();
        }
        let mut value = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(|_| "Le formulaire n'a pas pu être lu.".to_owned())?;
            value.extend_from_slice(&chunk);
            if is_file && value.len() > MAX_UPLOAD {
                return Err("Le fichier dépasse 10 Mo.".into());
            }
            if !is_file && text_bytes + value.len() > 8 * 1024 {
                return Err("Le formulaire est trop long.".into());
            }
        }
        if is_file {
            upload.file = value;
        } else {
            text_bytes += value.len();
            upload
                .fields
                .push((name, String::from_utf8_lossy(&value).into_owned()));
        }
    }
    Ok(upload)
}

/// `POST /espace/documents/ajouter`: a document of class 90 deposited by the
/// holder (R-PAT-2), through the FHIR API.
pub async fn add(
    state: State,
    request: HttpRequest,
    multipart: actix_multipart::Multipart,
) -> HttpResponse {
    let csrf = csrf_of(&state, &request);
    let upload = match upload(multipart).await {
        Ok(upload) => upload,
        Err(text) => return add_page(&csrf, StatusCode::BAD_REQUEST, Some(text)),
    };
    let form = Form(upload.fields.clone());
    if !csrf_holds(&state, &request, &form) {
        return super::pages::csrf_refused(&csrf);
    }
    let (session, fhir) = match signed_in(&state, &request, "/espace/documents/ajouter").await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let title = form
        .get("titre")
        .trim()
        .chars()
        .take(200)
        .collect::<String>();
    if title.is_empty() {
        return add_page(
            &csrf,
            StatusCode::BAD_REQUEST,
            Some("Donnez un titre au document.".into()),
        );
    }
    // The bytes must be what their media type says (a page served inline later).
    let looks_right = match upload.file_type.as_str() {
        "application/pdf" => upload.file.starts_with(b"%PDF-"),
        "image/png" => upload.file.starts_with(b"\x89PNG\r\n\x1a\n"),
        "image/jpeg" => upload.file.starts_with(&[0xff, 0xd8, 0xff]),
        _ => false,
    };
    if !looks_right {
        return add_page(
            &csrf,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Some("Le fichier doit être un PDF, une image PNG ou JPEG.".into()),
        );
    }
    let kind = OWN_TYPES
        .iter()
        .map(|(code, _)| *code)
        .find(|code| *code == form.get("type"))
        .unwrap_or("DOCPAT01");
    let document = json!({
        "resourceType": "DocumentReference",
        "status": "current",
        "type": { "coding": [{ "system": TRE_A05, "code": kind }] },
        "category": [{ "coding": [{ "system": CLASS_SYSTEM, "code": "90", "display": "Documents déposés par le patient" }] }],
        "subject": { "reference": format!("Patient/{}", session.patient) },
        "date": crate::fhir::date::fhir_instant(chrono::Utc::now()),
        "description": title,
        "content": [{ "attachment": {
            "contentType": upload.file_type,
            "data": base64::engine::general_purpose::STANDARD.encode(&upload.file),
            "title": if upload.file_name.is_empty() { title.clone() } else { upload.file_name.clone() },
        } }],
    });
    match fhir.create("DocumentReference", document).await {
        Ok(_) => see_other("/espace/documents?fait=ajoute"),
        Err(refused) => add_page(
            &csrf,
            StatusCode::from_u16(refused.status).unwrap_or(StatusCode::BAD_REQUEST),
            Some(format!(
                "Le document n'a pas été ajouté. {}",
                refused.in_french()
            )),
        ),
    }
}

/// Who acted, as the history names them.
enum Actor {
    /// The holder (their Patient is the agent).
    You,
    /// Another holder (an attempt on this space, refused).
    OtherHolder,
    Representative,
    Professional(String),
    Service(String),
    /// A step of the account made before anyone was identified.
    Someone,
}

fn actor_of(event: &Value, patient: &str) -> Actor {
    let user = &event["agent"][0];
    if let Some(reference) = user.pointer("/who/reference").and_then(Value::as_str)
        && reference.starts_with("Patient/")
    {
        return if reference == format!("Patient/{patient}") {
            Actor::You
        } else {
            Actor::OtherHolder
        };
    }
    if user
        .pointer("/role/0/coding/0/code")
        .and_then(Value::as_str)
        == Some("GUARD")
    {
        return Actor::Representative;
    }
    let named = user["name"].as_str();
    match (
        user.pointer("/who/identifier/system")
            .and_then(Value::as_str),
        user.pointer("/who/identifier/value")
            .and_then(Value::as_str),
    ) {
        // The name a token gives beside the identifier the server checked: the
        // holder needs the identifier to block or authorise them.
        (Some(IDNAT_PS), Some(id)) => Actor::Professional(named.map_or_else(
            || format!("Le professionnel {id}"),
            |name| format!("{name} (identifiant {id})"),
        )),
        (_, Some(id)) => {
            Actor::Service(named.map_or_else(|| format!("Le service {id}"), str::to_owned))
        }
        _ if user.pointer("/who/display").and_then(Value::as_str)
            == Some("unauthenticated caller") =>
        {
            Actor::Someone
        }
        _ => Actor::Service(named.unwrap_or("Un service").to_owned()),
    }
}

use crate::fhir::IDNAT_PS_SYSTEM as IDNAT_PS;

/// The type of the first resource of the space the event names (not the Patient).
fn resource_named(event: &Value) -> &str {
    let mut kinds = event["entity"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|entity| entity.pointer("/what/reference").and_then(Value::as_str))
        .filter_map(|reference| reference.split_once('/').map(|(kind, _)| kind));
    let first = kinds.next();
    match (first, kinds.find(|kind| *kind != "Patient")) {
        (_, Some(other)) => other,
        (Some("Patient"), None)
            if event["subtype"][0]["code"] != "delete"
                && event["subtype"][0]["code"] != "create" =>
        {
            "Patient"
        }
        (Some(kind), None) if kind != "Patient" => kind,
        _ => "",
    }
}

/// One event of the trace as a sentence in French (R-PAT-4).
fn history_sentence(event: &Value, patient: &str) -> String {
    let actor = actor_of(event, patient);
    let user = &event["agent"][0];
    let (who, you) = match &actor {
        Actor::You => ("Vous".to_owned(), true),
        Actor::Professional(name) | Actor::Service(name) => (name.clone(), false),
        Actor::Someone => ("Quelqu'un".to_owned(), false),
        Actor::OtherHolder => ("Un autre usager".to_owned(), false),
        Actor::Representative => ("Un représentant légal".to_owned(), false),
    };
    let profession = match (
        &actor,
        user.pointer("/role/0/coding/0/code")
            .and_then(Value::as_str),
    ) {
        (Actor::Professional(_), Some("10")) => ", médecin,",
        (Actor::Professional(_), Some("21")) => ", pharmacien,",
        (Actor::Professional(_), Some("40")) => ", chirurgien-dentiste,",
        (Actor::Professional(_), Some("50")) => ", sage-femme,",
        (Actor::Professional(_), Some("60")) => ", infirmier,",
        (Actor::Professional(_), _) => ", professionnel de santé,",
        _ => "",
    };
    let has = if you { "avez" } else { "a" };
    let subtype = event
        .pointer("/subtype/0/code")
        .and_then(Value::as_str)
        .unwrap_or("");
    let searched = event["entity"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|entity| {
            entity
                .pointer("/detail/0/valueString")
                .and_then(Value::as_str)
        });
    let named = match (subtype, searched) {
        ("search-type", Some(kind)) => kind,
        _ => resource_named(event),
    };
    let thing = match named {
        "DocumentReference" | "Binary" => "un document",
        "Communication" => "un message",
        "Consent" => "vos paramètres de confidentialité",
        "AuditEvent" => "l'historique",
        "Patient" => "votre espace",
        "Observation" | "Condition" | "MedicationStatement" | "AllergyIntolerance" => {
            "votre profil médical"
        }
        // What the event names is not shown here (a document not yet visible to
        // the holder, a resource answered "not known").
        _ => "un élément",
    };
    let what = match subtype {
        "read" | "vread" => format!("{has} consulté {thing}"),
        "search-type" if thing == "votre espace" => format!("{has} consulté votre espace"),
        "search-type" => format!(
            "{has} consulté {}",
            match thing {
                "un document" => "la liste des documents",
                "un message" => "les messages",
                other => other,
            }
        ),
        "create" => match thing {
            "un document" => format!("{has} déposé un document"),
            "un message" => format!("{has} envoyé un message"),
            "votre espace" => format!("{has} créé votre espace"),
            "un élément" => format!("{has} ajouté un élément"),
            other => format!("{has} modifié {other}"),
        },
        "update" | "patch" => format!("{has} modifié {thing}"),
        "delete" => format!("{has} supprimé {thing}"),
        "operation" => format!("{has} changé l'état de votre espace"),
        "110122" if you => "vous êtes connecté(e) à Mon espace santé".to_owned(),
        "110122" => "s'est connecté(e) à Mon espace santé".to_owned(),
        "110123" if you => "vous êtes déconnecté(e)".to_owned(),
        "110123" => "s'est déconnecté(e)".to_owned(),
        "provisional-code-asked" => format!("{has} demandé un code provisoire"),
        "provisional-code-sent" => "Un code provisoire a été envoyé".to_owned(),
        "first-sign-in" => format!("{has} fait une première connexion avec le code provisoire"),
        "contacts-confirmed" => format!("{has} confirmé les coordonnées de contact"),
        "credentials-chosen" => format!("{has} choisi l'identifiant et le mot de passe"),
        "password-checked" if event["outcome"] == "0" => {
            format!("{has} saisi le mot de passe (code de connexion envoyé)")
        }
        "password-checked" => format!("{has} saisi un mot de passe"),
        "password-changed" => format!("{has} changé le mot de passe"),
        "app-authorised" => format!("{has} autorisé une application"),
        "app-revoked" => format!("{has} retiré l'autorisation d'une application"),
        "token-issued" => "Une application a reçu un jeton d'accès".to_owned(),
        _ => format!("{has} agi sur votre espace"),
    };
    let outcome = if event["outcome"] == "0" {
        ""
    } else {
        " (refusé)"
    };
    let subject = if what.starts_with(char::is_uppercase) {
        String::new()
    } else {
        format!("{who}{profession} ")
    };
    let mut sentence = format!(
        "{subject}{what} le {}{outcome}.",
        french_date(event["recorded"].as_str().unwrap_or(""), true)
    );
    let mode = event
        .pointer("/purposeOfEvent/0/coding/0/code")
        .and_then(Value::as_str);
    if matches!(mode, Some("bris_de_glace" | "centre_15")) {
        let reason = event
            .pointer("/purposeOfEvent/0/text")
            .and_then(Value::as_str)
            .unwrap_or("");
        sentence.push_str(&format!(
            " Accès en urgence{}{}",
            if mode == Some("centre_15") {
                " (SAMU – centre 15)"
            } else {
                ""
            },
            if reason.is_empty() {
                ".".to_owned()
            } else {
                format!(" : motif « {reason} ».")
            }
        ));
    }
    sentence
}

/// `GET /espace/historique`: who did what in the space, newest first (R-PAT-4);
/// filters by professional (IdNat_PS) and period.
pub async fn history(
    state: State,
    request: HttpRequest,
    query: web::Query<Vec<(String, String)>>,
) -> HttpResponse {
    let csrf = csrf_of(&state, &request);
    let (session, fhir) = match signed_in(&state, &request, "/espace/historique").await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let professional: String = query_value(&query, "professionnel")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(32)
        .collect();
    let (from, to) = (
        filter_date(query_value(&query, "du")),
        filter_date(query_value(&query, "au")),
    );
    // By default the history tells what others did; the holder's own acts on
    // demand (`tous=1`). The filters that the search cannot take (who acted) are
    // applied to windows of the trace read one after the other, up to
    // HISTORY_WINDOWS of them; past that, a link goes on from where the reading
    // stopped (`depuis`), so that nothing can be pushed out of reach.
    let everyone = query_value(&query, "tous") == "1";
    let mut offset: usize = query_value(&query, "depuis").parse().unwrap_or(0);
    let mut entries_found = Vec::new();
    let mut error = None;
    let mut more = None;
    for _ in 0..HISTORY_WINDOWS {
        let mut params = vec![
            ("patient".to_owned(), session.patient.clone()),
            ("_sort".to_owned(), "-date".to_owned()),
            ("_count".to_owned(), HISTORY_WINDOW.to_string()),
            ("_offset".to_owned(), offset.to_string()),
        ];
        if !from.is_empty() {
            params.push(("date".into(), format!("ge{from}")));
        }
        if !to.is_empty() {
            params.push(("date".into(), format!("le{to}")));
        }
        let bundle = match fhir.search("AuditEvent", params).await {
            Ok(bundle) => bundle,
            Err(refused) => {
                error = Some(refused_text(&refused));
                break;
            }
        };
        let window = entries(&bundle);
        let read = window.len();
        entries_found.extend(
            window
                .into_iter()
                .filter(|event| {
                    everyone || !matches!(actor_of(event, &session.patient), Actor::You)
                })
                .filter(|event| {
                    professional.is_empty()
                        || event
                            .pointer("/agent/0/who/identifier/value")
                            .and_then(Value::as_str)
                            == Some(professional.as_str())
                })
                .map(|event| history_sentence(event, &session.patient)),
        );
        offset += read;
        let has_next = bundle["link"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|link| link["relation"] == "next");
        if !has_next {
            more = None;
            break;
        }
        more = Some(offset);
        if entries_found.len() >= HISTORY_SHOWN {
            break;
        }
    }
    let more = more.map(|offset| {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("professionnel", &professional)
            .append_pair("du", from)
            .append_pair("au", to)
            .append_pair("tous", if everyone { "1" } else { "" })
            .append_pair("depuis", &offset.to_string())
            .finish()
    });
    let html = render(&HistoryPage {
        section: "historique",
        notice: None,
        error,
        professional: &professional,
        everyone,
        from,
        to,
        entries: entries_found,
        more,
    });
    page(StatusCode::OK, html, &csrf, None)
}

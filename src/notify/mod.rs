//! Notifications to the patient (R-AUD-4): a Communication from the service in the
//! patient's space, category `notification`, written in the same transaction as the
//! trace of its cause, plus an outbox row that [`delivery`] sends through the
//! configured [`channel`] and retries, never blocking or failing the request.
//!
//! Causes: a professional (or a feeding system) deposits or changes a document; a
//! professional sends a message; a professional accesses the space for the first
//! time; any `bris_de_glace` or `centre_15` access; a professional declares the
//! patient's consent. A document labelled `INVISIBLE_PATIENT` is not announced: the
//! patient is not to learn of it before the announcement consultation (R-PAT-1).

pub mod channel;
pub mod delivery;

use std::collections::HashSet;
use std::sync::mpsc;

use serde_json::{Value, json};

use crate::access::{ActorKind, PurposeOfUse};
use crate::audit::Record;
use crate::error::ApiError;
use crate::fhir::definitions::{self, Interaction};
use crate::fhir::extract;
use crate::store::{self, Conn};

/// `Communication.category` of notifications.
pub const CATEGORY_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/communication-category";

/// Whether a Communication is one of the service's notifications, as the server
/// searches them (`category=…|notification`): the portal sorts messages from
/// notifications by this one predicate.
pub fn is_notification(communication: &serde_json::Value) -> bool {
    codings_of_category(communication)
        .any(|coding| coding["system"] == CATEGORY_SYSTEM && coding["code"] == "notification")
}

/// Whether a Communication claims to be a notification in any spelling (a code
/// `notification` of any or no system, in any case): no client writes one, so that
/// none is taken for the service's, by the portal or by a client searching by code.
pub fn claims_notification(communication: &serde_json::Value) -> bool {
    codings_of_category(communication).any(|coding| {
        coding["code"]
            .as_str()
            .is_some_and(|code| code.trim().eq_ignore_ascii_case("notification"))
    })
}

fn codings_of_category(
    communication: &serde_json::Value,
) -> impl Iterator<Item = &serde_json::Value> {
    communication["category"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|category| category["coding"].as_array().into_iter().flatten())
}
/// `Communication.topic` of notifications: why the patient is told.
pub const KIND_SYSTEM: &str = "https://dmp-fhir-server.fr/fhir/CodeSystem/notification-kind";
/// The service as a message sender.
pub const SERVICE_SYSTEM: &str = "https://dmp-fhir-server.fr/fhir/sid/service";
/// The depositor (`resource_author.actor`) of what the service writes itself.
pub const SERVICE_ACTOR: &str = "service";

/// Why the patient is notified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    DocumentDeposited,
    DocumentChanged,
    NewMessage,
    FirstAccess,
    EmergencyAccess,
    ConsentDeclared,
    /// The service's welcome message when a space opens (R-MSG-2).
    Welcome,
}

impl Kind {
    pub fn code(self) -> &'static str {
        match self {
            Kind::DocumentDeposited => "document-deposited",
            Kind::DocumentChanged => "document-changed",
            Kind::NewMessage => "new-message",
            Kind::FirstAccess => "first-access",
            Kind::EmergencyAccess => "emergency-access",
            Kind::ConsentDeclared => "consent-declared",
            Kind::Welcome => "welcome",
        }
    }
}

/// One notification to write.
struct Notice {
    kind: Kind,
    patient: String,
    text: String,
    /// The resources it tells of.
    about: Vec<String>,
    /// Who acted, as [`actor_name`] names them.
    who: String,
}

/// How the patient's notifications name the one who acted.
pub fn actor_name(record: &Record) -> String {
    let Some(principal) = &record.trace.principal else {
        return String::new();
    };
    match (&principal.actor, &principal.name) {
        // The name a token gives, with the identifier the patient can block.
        (ActorKind::Professional, Some(name)) => {
            format!("{name} (identifiant {})", principal.subject)
        }
        (ActorKind::Professional, None) => {
            format!(
                "un professionnel de santé (identifiant {})",
                principal.subject
            )
        }
        (_, Some(name)) => name.clone(),
        _ => "un service".to_owned(),
    }
}

/// The accesses of a professional to spaces' content this request made (the spaces
/// the gate let them into, see `audit::Touched::accessed`): the first of each
/// (patient, professional) pair is told to the patient. Identity lookups (R-ACC-10)
/// are not accesses to a space's content; what a Patient search `_revinclude`s is.
pub fn accesses(record: &Record) -> Vec<(&str, &str)> {
    match &record.trace.principal {
        Some(principal) if principal.actor == ActorKind::Professional => record
            .touched
            .accessed
            .iter()
            .map(|patient| (patient.as_str(), principal.subject.as_str()))
            .collect(),
        _ => Vec::new(),
    }
}

/// What this request tells the patient, per SPEC R-AUD-4; `first_accesses` are the
/// (patient, professional) pairs seen for the first time in this commit.
fn notices(record: &Record, first_accesses: &HashSet<(String, String)>) -> Vec<Notice> {
    let Some(principal) = &record.trace.principal else {
        return Vec::new();
    };
    let who = actor_name(record);
    let mut notices = Vec::new();
    let professional = principal.actor == ActorKind::Professional;
    let feeds = professional || principal.actor == ActorKind::System;
    // Identity lookups (R-ACC-10) are not accesses to the space's content: the gate
    // records no access for them, but does for what a Patient search includes.
    if professional {
        for patient in &record.touched.accessed {
            if principal.purpose_of_use != PurposeOfUse::Normal {
                let mode = match principal.purpose_of_use {
                    PurposeOfUse::Centre15 => "centre 15 (SAMU)",
                    _ => "bris de glace",
                };
                let reason = principal
                    .access_reason
                    .as_deref()
                    .map(|reason| format!(" Motif : {reason}."))
                    .unwrap_or_default();
                notices.push(Notice {
                    kind: Kind::EmergencyAccess,
                    patient: patient.clone(),
                    text: format!(
                        "Accès en urgence ({mode}) à votre profil Mon espace santé par {who}.{reason}"
                    ),
                    about: Vec::new(),
                    who: who.clone(),
                });
            }
            if first_accesses.contains(&(patient.clone(), principal.subject.clone())) {
                notices.push(first_access_notice(patient, &who));
            }
        }
    }
    for write in &record.touched.writes {
        let reference = format!("{}/{}", write.res_type, write.res_id);
        let notice = match (write.res_type, write.interaction) {
            ("DocumentReference", Interaction::Create) if feeds && !write.hidden_from_patient => {
                Some((
                    Kind::DocumentDeposited,
                    format!(
                        "Un nouveau document a été ajouté à votre profil Mon espace santé par {who}."
                    ),
                ))
            }
            (
                "DocumentReference",
                Interaction::Update | Interaction::Patch | Interaction::Delete,
            ) if feeds && !write.hidden_from_patient => Some((
                Kind::DocumentChanged,
                format!("Un document de votre profil Mon espace santé a été modifié par {who}."),
            )),
            ("Communication", Interaction::Create) if professional => Some((
                Kind::NewMessage,
                format!(
                    "Vous avez reçu un nouveau message {} dans votre messagerie Mon espace santé.",
                    of_whom(&who)
                ),
            )),
            ("Consent", Interaction::Create) if professional => Some((
                Kind::ConsentDeclared,
                format!(
                    "{} a déclaré votre consentement pour accéder à votre profil Mon espace santé.",
                    capitalised(&who)
                ),
            )),
            _ => None,
        };
        if let Some((kind, text)) = notice {
            for patient in &write.patients {
                notices.push(Notice {
                    kind,
                    patient: patient.clone(),
                    text: text.clone(),
                    about: vec![reference.clone()],
                    who: who.clone(),
                });
            }
        }
    }
    notices
}

/// The patient is told `who` accessed their space for the first time.
fn first_access_notice(patient: &str, who: &str) -> Notice {
    Notice {
        kind: Kind::FirstAccess,
        patient: patient.to_owned(),
        text: format!("Pour la première fois, {who} a accédé à votre profil Mon espace santé."),
        about: Vec::new(),
        who: who.to_owned(),
    }
}

/// Writes the notification of a professional's first access to a space (`who`
/// as [`actor_name`] names them) and queues its delivery. Call it inside the
/// transaction that records the access.
pub fn queue_first_access(
    conn: &mut Conn,
    patient: &str,
    who: &str,
    now: &str,
) -> Result<(), ApiError> {
    send(conn, &first_access_notice(patient, who), now)
}

/// The notification as a Communication from the service to the patient.
fn communication(notice: &Notice, id: &str, now: &str) -> Value {
    let mut message = json!({
        "resourceType": "Communication",
        "id": id,
        "meta": { "versionId": "1", "lastUpdated": now },
        "status": "completed",
        "category": [{ "coding": [{ "system": CATEGORY_SYSTEM, "code": "notification", "display": "Notification" }] }],
        "subject": { "reference": format!("Patient/{}", notice.patient) },
        "topic": { "coding": [{ "system": KIND_SYSTEM, "code": notice.kind.code() }] },
        "sent": now,
        "recipient": [{ "reference": format!("Patient/{}", notice.patient) }],
        "sender": {
            "identifier": { "system": SERVICE_SYSTEM, "value": "mon-espace-sante" },
            "display": "Mon espace santé"
        },
        "payload": [{ "contentString": notice.text }]
    });
    if !notice.about.is_empty() {
        message["about"] = notice
            .about
            .iter()
            .map(|about| json!({ "reference": about }))
            .collect();
    }
    message
}

/// Whether `record` tells its patient something whoever accessed before (an
/// emergency access, a document deposited…), first accesses aside.
pub fn tells_regardless(record: &Record) -> bool {
    !notices(record, &HashSet::new()).is_empty()
}

/// Writes the notifications a group of requests causes (each with the time it was
/// recorded) and queues their delivery, with a few statements for the whole group.
/// Call it inside the transaction that records them. Documents one professional
/// deposited, or changed, in one space by one request are told in one notification
/// naming each (a feed of several documents, a transaction Bundle: one notice, not
/// one per document); separate requests are told apart, whether or not they
/// committed together. A first access is told once. Returns how many were queued.
pub fn queue_group<'a>(
    conn: &mut Conn,
    records: impl IntoIterator<Item = (&'a Record, &'a str)>,
    first_accesses: &HashSet<(String, String)>,
) -> Result<usize, ApiError> {
    // Each notice with the request it comes from.
    let mut pending: Vec<(Notice, &str, usize)> = Vec::new();
    for (request, (record, now)) in records.into_iter().enumerate() {
        for notice in notices(record, first_accesses) {
            let merges_with = |told: &(Notice, &str, usize)| {
                let (told, _, told_by) = told;
                let kinds_merge = match notice.kind {
                    Kind::DocumentDeposited | Kind::DocumentChanged => *told_by == request,
                    Kind::FirstAccess => true,
                    _ => false,
                };
                kinds_merge
                    && told.kind == notice.kind
                    && told.patient == notice.patient
                    && told.who == notice.who
            };
            if let Some((same, _, _)) = pending.iter_mut().find(|told| merges_with(told)) {
                same.about.extend(notice.about);
                continue;
            }
            pending.push((notice, now, request));
        }
    }
    for (notice, _, _) in &mut pending {
        let count = notice.about.len();
        let who = &notice.who;
        match notice.kind {
            Kind::DocumentDeposited if count > 1 => {
                notice.text = format!(
                    "{count} nouveaux documents ont été ajoutés à votre profil Mon espace santé par {who}."
                );
            }
            Kind::DocumentChanged if count > 1 => {
                notice.text = format!(
                    "{count} documents de votre profil Mon espace santé ont été modifiés par {who}."
                );
            }
            _ => {}
        }
    }
    // A space a later write of the same group closed or opposed (SQLite commits
    // concurrent writes together, their notices at the group's end) is told
    // nothing of the writes before: a deletion purged what they wrote (R-LIFE-3),
    // and nothing more reaches a closed or opposed space.
    let mut spaces: Vec<&str> = pending
        .iter()
        .map(|(notice, _, _)| notice.patient.as_str())
        .collect();
    spaces.sort_unstable();
    spaces.dedup();
    let mut shut = HashSet::new();
    for space in spaces {
        let state = store::lifecycle::get(conn, space)?.map(|row| row.state);
        if matches!(state.as_deref(), Some("closed" | "opposed")) {
            shut.insert(space.to_owned());
        }
    }
    let told: Vec<(&Notice, &str)> = pending
        .iter()
        .filter(|(notice, _, _)| !shut.contains(&notice.patient))
        .map(|(notice, now, _)| (notice, *now))
        .collect();
    send_all(conn, &told)?;
    Ok(told.len())
}

/// R-MSG-2: the service's welcome message, sent when a space opens. The patient may
/// answer it (R-MSG-1). Call it inside the transaction that opens the space.
pub fn welcome(conn: &mut Conn, patient: &str, now: &str) -> Result<(), ApiError> {
    send(
        conn,
        &Notice {
            kind: Kind::Welcome,
            patient: patient.to_owned(),
            text: "Bienvenue dans Mon espace santé. Vous pouvez y retrouver vos documents \
                   de santé, échanger avec vos professionnels de santé et décider qui \
                   accède à vos informations."
                .to_owned(),
            about: Vec::new(),
            who: String::new(),
        },
        now,
    )
}

/// Writes one notification and queues its delivery.
fn send(conn: &mut Conn, notice: &Notice, now: &str) -> Result<(), ApiError> {
    send_all(conn, &[(notice, now)])
}

/// Writes notifications (each with the time it is sent) and queues their delivery,
/// a statement per table for them all.
fn send_all(conn: &mut Conn, notices: &[(&Notice, &str)]) -> Result<(), ApiError> {
    if notices.is_empty() {
        return Ok(());
    }
    let def = definitions::resource("Communication").expect("Communication is served");
    struct Made {
        id: String,
        content: String,
        index: extract::IndexEntries,
        author: store::Author,
        payload: String,
    }
    let made: Vec<Made> = notices
        .iter()
        .map(|(notice, now)| {
            // Time-ordered: its index entries go at the end of theirs, not on a
            // random page (every document written sends one). It tells no more
            // than its `sent`.
            let id = uuid::Uuid::now_v7().to_string();
            let value = communication(notice, &id, now);
            let payload = json!({
                "notification": format!("Communication/{id}"),
                "patient": format!("Patient/{}", notice.patient),
                "kind": notice.kind.code(),
                "text": notice.text,
                "sent": now
            })
            .to_string();
            Made {
                content: value.to_string(),
                index: extract::index(def, &value),
                author: store::Author {
                    actor: SERVICE_ACTOR.into(),
                    subject: "notifications".into(),
                    organization: None,
                    created_at: (*now).to_owned(),
                },
                payload,
                id,
            }
        })
        .collect();
    let versions: Vec<store::resources::NewVersion<'_>> = made
        .iter()
        .zip(notices)
        .map(|(made, (_, now))| store::resources::NewVersion {
            res_type: "Communication",
            res_id: &made.id,
            version_id: 1,
            last_updated: now,
            deleted: false,
            method: "POST",
            content: &made.content,
            index: &made.index,
            author: Some(&made.author),
        })
        .collect();
    store::resources::write_all(conn, &versions)?;
    let outbox: Vec<store::audit::OutboxEntry<'_>> = made
        .iter()
        .zip(notices)
        .map(|(made, (notice, now))| store::audit::OutboxEntry {
            communication_id: &made.id,
            patient: &notice.patient,
            kind: notice.kind.code(),
            payload: &made.payload,
            now,
        })
        .collect();
    store::audit::enqueue_notifications(conn, &outbox)?;
    Ok(())
}

/// Wakes the delivery worker when notifications were committed (it also polls).
#[derive(Clone)]
pub struct Wakeup(mpsc::Sender<()>);

impl Wakeup {
    pub fn new() -> (Wakeup, mpsc::Receiver<()>) {
        let (sender, receiver) = mpsc::channel();
        (Wakeup(sender), receiver)
    }

    pub fn wake(&self) {
        // The worker gone (the server stopping) is not the waker's concern.
        let _ = self.0.send(());
    }
}

/// « de » before a name, elided before an article (« d'un professionnel »).
fn of_whom(who: &str) -> String {
    if who.starts_with("un ") || who.starts_with("une ") {
        format!("d'{who}")
    } else {
        format!("de {who}")
    }
}

/// The name at the start of a sentence.
fn capitalised(who: &str) -> String {
    let mut letters = who.chars();
    match letters.next() {
        Some(first) => first.to_uppercase().chain(letters).collect(),
        None => String::new(),
    }
}

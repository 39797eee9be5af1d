//! The trace (SPEC §8): an AuditEvent in IHE BALP shape for every interaction,
//! allowed, refused or failed, one per patient concerned (R-AUD-1); durable before the
//! response (R-AUD-2): a write's events commit in the write's own transaction, every
//! other request's through the group committer ([`writer`]); immutable and chained per
//! patient (R-AUD-3, [`chain`]); and the notifications they cause (R-AUD-4,
//! [`crate::notify`]).
//!
//! A structured log record per request also goes to the `audit` tracing target; like
//! the events, it never carries tokens or document contents.

pub mod applier;
pub mod chain;
pub mod event;
pub mod indexer;
pub mod log;
pub mod writer;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use chrono::Utc;

use crate::access::Principal;
use crate::error::ApiError;
use crate::fhir::date::fhir_instant;
use crate::fhir::definitions::Interaction;
use crate::store::Conn;

/// What the pipeline knows of a request, for its trace.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// The request's `X-Request-Id` (the client's if well-formed, else generated).
    pub request_id: String,
    pub method: String,
    pub principal: Option<Principal>,
    /// The FHIR interaction code (`read`, `search-type`, `transaction`…); empty when
    /// the request was refused before it was classified.
    pub interaction: &'static str,
    /// The IHE MHD transaction (ITI-65, ITI-67…) the request is, if any (R-MHD-8).
    pub ihe_transaction: Option<&'static crate::fhir::mhd::IheTransaction>,
    /// The step of the holder's account (sign-in, code, password…; R-ACT-1 … 4)
    /// the request is, if any: its event is a User Authentication event.
    pub account_step: Option<&'static AccountStep>,
    pub resource_type: Option<&'static str>,
    pub resource_id: Option<String>,
    /// The query string of a search.
    pub query: Option<String>,
    pub client_address: Option<String>,
    /// The server's base URL.
    pub server: String,
}

/// A step of a holder's account (SPEC §11), as its event's `subtype`: DICOM's
/// Login and Logout, the server's own codes for the other steps.
#[derive(Debug)]
pub struct AccountStep {
    pub system: &'static str,
    pub code: &'static str,
    pub display: &'static str,
}

/// The server's codes of account steps other than Login and Logout.
pub const ACCOUNT_STEP_SYSTEM: &str = "https://dmp-fhir-server.fr/fhir/CodeSystem/account-step";

impl AccountStep {
    const fn own(code: &'static str, display: &'static str) -> AccountStep {
        AccountStep {
            system: ACCOUNT_STEP_SYSTEM,
            code,
            display,
        }
    }

    /// A sign-in, when its one-time code is accepted (R-ACT-3).
    pub const LOGIN: AccountStep = AccountStep {
        system: "http://dicom.nema.org/resources/ontology/DCM",
        code: "110122",
        display: "Login",
    };
    pub const LOGOUT: AccountStep = AccountStep {
        system: "http://dicom.nema.org/resources/ontology/DCM",
        code: "110123",
        display: "Logout",
    };
    pub const PROVISIONAL_CODE_ASKED: AccountStep =
        AccountStep::own("provisional-code-asked", "Provisional code asked for");
    pub const PROVISIONAL_CODE_SENT: AccountStep =
        AccountStep::own("provisional-code-sent", "Provisional code sent");
    pub const FIRST_SIGN_IN: AccountStep = AccountStep::own("first-sign-in", "First sign-in");
    pub const CONTACTS_CONFIRMED: AccountStep =
        AccountStep::own("contacts-confirmed", "Contact details confirmed");
    pub const CREDENTIALS_CHOSEN: AccountStep =
        AccountStep::own("credentials-chosen", "Identifiant and password chosen");
    pub const PASSWORD_CHECKED: AccountStep =
        AccountStep::own("password-checked", "Password checked, one-time code sent");
    pub const PASSWORD_CHANGED: AccountStep =
        AccountStep::own("password-changed", "Password changed");
    pub const APP_AUTHORISED: AccountStep = AccountStep::own("app-authorised", "App authorised");
    pub const APP_REVOKED: AccountStep =
        AccountStep::own("app-revoked", "App authorisation revoked");
    pub const TOKEN_ISSUED: AccountStep = AccountStep::own("token-issued", "Access token issued");
}

/// How the request ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: u16,
    /// The rule that refused it.
    pub rule: Option<&'static str>,
    /// The server's own message for a refusal or error (never client content).
    pub detail: Option<String>,
    /// The refusal was answered as "not known" (a resource hidden from the caller):
    /// the caller's own reading of the event tells no more than that answer.
    pub concealed: bool,
}

impl Outcome {
    /// A request answered with `status`.
    pub fn answered(status: u16) -> Outcome {
        Outcome {
            status,
            rule: None,
            detail: None,
            concealed: false,
        }
    }

    /// A request refused or failed with `error`.
    pub fn failed(error: &ApiError) -> Outcome {
        Outcome {
            status: error.status.as_u16(),
            rule: error.rule,
            detail: Some(error.message.clone()),
            concealed: error.concealed,
        }
    }

    pub fn success(&self) -> bool {
        self.status < 400
    }
}

/// A resource the request wrote.
#[derive(Debug, Clone)]
pub struct WriteFact {
    pub res_type: &'static str,
    pub res_id: String,
    pub interaction: Interaction,
    /// The spaces it belongs to.
    pub patients: Vec<String>,
    /// A document the patient may not see yet (`INVISIBLE_PATIENT`): its deposit is
    /// not announced to them.
    pub hidden_from_patient: bool,
}

/// The spaces a request concerned and what it wrote, as the access stages saw them.
#[derive(Debug, Clone, Default)]
pub struct Touched {
    pub patients: BTreeSet<String>,
    /// Those of `patients` the request concerned only through what it hid from the
    /// caller (a resource answered "not known", an event shown without its space):
    /// their events are marked so, and never tie the caller to that space.
    pub concealed: BTreeSet<String>,
    pub writes: Vec<WriteFact>,
    /// The spaces whose content a professional was let into (read, searched,
    /// deposited into): what R-AUD-4's first-access and emergency notices tell.
    /// A refused attempt, a lookup of identities or the reading of one's own trace
    /// is no access.
    pub accessed: BTreeSet<String>,
    /// The refusals of a batch's entries, which the batch's events record beside
    /// its own outcome (R-AUD-1: every interaction, allowed or refused).
    pub entry_refusals: Vec<EntryRefusal>,
    /// While a batch entry runs: the spaces it concerns (see
    /// [`TouchedLog::begin_entry`]), and those only through what it hid.
    pub entry_patients: Option<BTreeSet<String>>,
    pub entry_concealed: BTreeSet<String>,
}

/// A batch entry refused by a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRefusal {
    pub rule: &'static str,
    pub status: u16,
    /// Answered "not known" (see [`Outcome::concealed`]).
    pub concealed: bool,
    /// The spaces the entry concerned: the refusal is in their events only.
    pub patients: BTreeSet<String>,
}

impl Touched {
    /// The spaces the caller was told the request concerned.
    pub fn told(&self) -> impl Iterator<Item = &String> {
        self.patients
            .iter()
            .filter(|patient| !self.concealed.contains(*patient))
    }
}

/// [`Touched`], filled in by the gate on the database thread and read by the
/// pipeline afterwards.
#[derive(Debug, Clone, Default)]
pub struct TouchedLog(Arc<Mutex<Touched>>);

impl TouchedLog {
    fn with<T>(&self, work: impl FnOnce(&mut Touched) -> T) -> T {
        let mut touched = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        work(&mut touched)
    }

    /// The request concerned this patient's space, and the caller is told so.
    pub fn patient(&self, patient: &str) {
        if !patient.is_empty() {
            self.with(|touched| {
                if let Some(entry) = &mut touched.entry_patients {
                    entry.insert(patient.to_owned());
                }
                if !touched.patients.contains(patient) {
                    touched.patients.insert(patient.to_owned());
                }
                touched.concealed.remove(patient);
            });
        }
    }

    /// The request concerned this patient's space through something hidden from
    /// the caller: concealed, unless the caller is told of it otherwise.
    pub fn concealed_patient(&self, patient: &str) {
        if !patient.is_empty() {
            self.with(|touched| {
                if let Some(entry) = &mut touched.entry_patients {
                    entry.insert(patient.to_owned());
                    touched.entry_concealed.insert(patient.to_owned());
                }
                if !touched.patients.contains(patient) {
                    touched.patients.insert(patient.to_owned());
                    touched.concealed.insert(patient.to_owned());
                }
            });
        }
    }

    /// A lookup of people (a conditional reference, a conditional create, a chain)
    /// found these Patients: each one's trace shows it (R-AUD-1), and the caller is
    /// told of the one it found, never of several (the answer names none of them).
    pub fn people_found<'a>(&self, found: impl ExactSizeIterator<Item = &'a str>) {
        let one = found.len() == 1;
        for patient in found {
            if one {
                self.patient(patient);
            } else {
                self.concealed_patient(patient);
            }
        }
    }

    /// A professional was let into this space's content (see [`Touched::accessed`]).
    pub fn accessed(&self, patient: &str) {
        if !patient.is_empty() {
            self.with(|touched| {
                if !touched.accessed.contains(patient) {
                    touched.accessed.insert(patient.to_owned());
                }
            });
        }
    }

    /// A batch entry begins: the spaces it concerns are noted apart, until
    /// [`Self::end_entry`].
    pub fn begin_entry(&self) {
        self.with(|touched| {
            touched.entry_patients = Some(BTreeSet::new());
            touched.entry_concealed.clear();
        });
    }

    /// The entry ended, refused with `error` when it was: a refusal by a rule is
    /// recorded with the spaces the entry concerned.
    pub fn end_entry(&self, error: Option<&ApiError>) {
        self.with(|touched| {
            let told = touched.entry_patients.take().unwrap_or_default();
            let hidden = std::mem::take(&mut touched.entry_concealed);
            if let Some(error) = error
                && let Some(rule) = error.rule
            {
                // A refusal answered "not known" is in the spaces the entry
                // concerned through what it hid, not in the one it named openly.
                let patients = if error.concealed && !hidden.is_empty() {
                    hidden
                } else {
                    told
                };
                let refusal = EntryRefusal {
                    rule,
                    status: error.status.as_u16(),
                    concealed: error.concealed,
                    patients,
                };
                if !touched.entry_refusals.contains(&refusal) {
                    touched.entry_refusals.push(refusal);
                }
            }
        });
    }

    /// The request wrote this resource.
    pub fn write(&self, fact: WriteFact) {
        self.with(|touched| {
            for patient in &fact.patients {
                touched.concealed.remove(patient);
            }
            if let Some(entry) = &mut touched.entry_patients {
                entry.extend(fact.patients.iter().cloned());
            }
            touched.patients.extend(fact.patients.iter().cloned());
            touched.writes.push(fact);
        });
    }

    /// Forgets the writes (their transaction was rolled back).
    pub fn rolled_back(&self) {
        self.with(|touched| touched.writes.clear());
    }

    pub fn snapshot(&self) -> Touched {
        self.with(|touched| touched.clone())
    }
}

/// Everything needed to write a request's trace.
#[derive(Debug, Clone)]
pub struct Record {
    pub trace: Trace,
    pub outcome: Outcome,
    pub touched: Touched,
}

/// One event, built and indexed, waiting for its place in a chain.
#[derive(Debug, Clone)]
pub struct PreparedEvent {
    pub id: String,
    /// The patient whose chain takes it ('' for none).
    pub chain_key: String,
    pub content: String,
    /// Its search index, written with it.
    pub index: crate::store::audit_index::EventIndex,
}

/// A request's events, built outside the commit (on the request's own thread) so
/// that the committer only writes.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub record: Record,
    pub recorded: String,
    pub events: Vec<PreparedEvent>,
}

/// Builds the request's events: one per patient concerned, or one concerning no
/// patient.
pub fn prepare(record: Record) -> Prepared {
    let recorded = fhir_instant(Utc::now());
    let patients: Vec<Option<&str>> = if record.touched.patients.is_empty() {
        vec![None]
    } else {
        record
            .touched
            .patients
            .iter()
            .map(|p| Some(p.as_str()))
            .collect()
    };
    let events = patients
        .into_iter()
        .map(|patient| {
            // Time-ordered: each event's id lands at the end of the (type, id) index
            // instead of on a random page of it (a page written per event per commit).
            // The time it tells is the event's `recorded`.
            let id = uuid::Uuid::now_v7().to_string();
            let event::BuiltEvent { content, index } = event::build(
                &record.trace,
                &record.outcome,
                &record.touched,
                patient,
                &id,
                &recorded,
            );
            PreparedEvent {
                index,
                content,
                chain_key: patient.unwrap_or("").to_owned(),
                id,
            }
        })
        .collect();
    Prepared {
        record,
        recorded,
        events,
    }
}

/// What a group's commit did: the notifications it queued, and where the chains
/// it appended to stand once it commits.
pub struct Persisted {
    pub notifications: usize,
    pub tips: chain::Tips,
}

/// The group's events, in order, as rows to append.
fn new_events<'a>(group: &[&'a Prepared]) -> Vec<crate::store::audit::NewAuditEvent<'a>> {
    group
        .iter()
        .flat_map(|prepared| {
            prepared
                .events
                .iter()
                .map(|event| crate::store::audit::NewAuditEvent {
                    id: &event.id,
                    recorded: &prepared.recorded,
                    content: &event.content,
                    index: &event.index,
                    chain_key: &event.chain_key,
                    request_id: &prepared.record.trace.request_id,
                })
        })
        .collect()
}

/// The group's successful requests: those that notify, and whose accesses count.
fn succeeded<'a, 'b>(group: &'b [&'a Prepared]) -> impl Iterator<Item = &'a Prepared> + 'b {
    group
        .iter()
        .copied()
        .filter(|prepared| prepared.record.outcome.success())
}

/// The (patient, professional) pairs of the group's successful requests.
fn group_accesses<'a>(group: &[&'a Prepared]) -> Vec<(&'a str, &'a str)> {
    succeeded(group)
        .flat_map(|prepared| crate::notify::accesses(&prepared.record))
        .collect()
}

/// Appends the events of these requests to their chains and queues the
/// notifications they cause, with a few statements for the whole group. Call it
/// inside a write transaction.
pub fn persist(conn: &mut Conn, group: &[&Prepared]) -> Result<Persisted, ApiError> {
    let tips = chain::append_all(conn, new_events(group))?;
    let accesses = group_accesses(group);
    let Some(first) = group.first() else {
        return Ok(Persisted {
            notifications: 0,
            tips,
        });
    };
    let first_accesses = if accesses.is_empty() {
        Default::default()
    } else {
        crate::store::audit::first_accesses(conn, &accesses, &first.recorded)?
    };
    let notifications = crate::notify::queue_group(
        conn,
        succeeded(group).map(|prepared| (&prepared.record, prepared.recorded.as_str())),
        &first_accesses,
    )?;
    Ok(Persisted {
        notifications,
        tips,
    })
}

/// Stores a write's trace with its write: at its group's end, with the traces of
/// the group's other writes in a few statements ([`persist`]), or at once without
/// group commit. `wakeup` is told when notifications were queued.
pub fn defer(
    conn: &mut Conn,
    end: &mut crate::store::GroupEnd,
    prepared: Prepared,
    wakeup: &crate::notify::Wakeup,
) -> Result<(), ApiError> {
    end.defer(conn, Box::new((prepared, wakeup.clone())), persist_deferred)
}

/// The [`crate::store::group_commit::Finish`] of [`defer`].
fn persist_deferred(
    conn: &mut Conn,
    items: Vec<Box<dyn std::any::Any + Send>>,
) -> Result<(), ApiError> {
    let deferred = items
        .into_iter()
        .map(|item| {
            item.downcast::<(Prepared, crate::notify::Wakeup)>()
                .map(|boxed| *boxed)
                .map_err(|_| ApiError::internal("a deferred trace of another type"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let group: Vec<&Prepared> = deferred.iter().map(|(prepared, _)| prepared).collect();
    let persisted = persist(conn, &group)?;
    if persisted.notifications > 0
        && let Some((_, wakeup)) = deferred.first()
    {
        wakeup.wake();
    }
    Ok(())
}

/// A request's events as the trace's log keeps them ([`log`]), for a request
/// that wrote nothing and tells its patient nothing but a first access: what
/// [`persist_logged`] needs to store them as [`persist`] would have, read back
/// from the log after a crash.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LoggedRequest {
    pub recorded: String,
    pub request_id: String,
    pub events: Vec<LoggedEvent>,
    /// The (patient, professional) pairs of its accesses (R-AUD-4: a first one is
    /// told), none for a request that failed.
    pub accesses: Vec<(String, String)>,
    /// How the patient's notification names the professional.
    pub who: String,
}

/// One event of a [`LoggedRequest`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LoggedEvent {
    pub id: String,
    pub chain_key: String,
    /// Written as it is after the request's other values (see
    /// [`LoggedRequest::encode_group`]), not as a JSON string.
    #[serde(skip)]
    pub content: String,
    /// Its search index: built with it, made again from `content` when read back
    /// from the log (it is not written there).
    #[serde(skip)]
    pub index: Option<crate::store::audit_index::EventIndex>,
}

impl LoggedRequest {
    /// Whether the request's events may go through the log: not those that must
    /// commit with what else the request causes (a write, an emergency access's
    /// notice), nor a request without events.
    pub fn may_log(prepared: &Prepared) -> bool {
        let record = &prepared.record;
        !prepared.events.is_empty()
            && record.touched.writes.is_empty()
            && !(record.outcome.success() && crate::notify::tells_regardless(record))
    }

    /// The request's events for the log (see [`LoggedRequest::may_log`]).
    pub fn of(prepared: Prepared) -> LoggedRequest {
        let record = &prepared.record;
        let accesses: Vec<(String, String)> = if record.outcome.success() {
            crate::notify::accesses(record)
                .into_iter()
                .map(|(patient, subject)| (patient.to_owned(), subject.to_owned()))
                .collect()
        } else {
            Vec::new()
        };
        let who = if accesses.is_empty() {
            String::new()
        } else {
            crate::notify::actor_name(record)
        };
        LoggedRequest {
            request_id: prepared.record.trace.request_id,
            recorded: prepared.recorded,
            events: prepared
                .events
                .into_iter()
                .map(|event| LoggedEvent {
                    id: event.id,
                    chain_key: event.chain_key,
                    content: event.content,
                    index: Some(event.index),
                })
                .collect(),
            accesses,
            who,
        }
    }
}

impl LoggedRequest {
    /// A group as one frame of the log: for each request, its values but the events'
    /// contents as JSON, then each event's content as it is (an event is JSON text
    /// already: escaping it again cost the committer a tenth of its time), each part
    /// after its length (4 bytes, little-endian).
    pub fn encode_group(group: &[LoggedRequest]) -> serde_json::Result<Vec<u8>> {
        let mut bytes = Vec::with_capacity(
            group
                .iter()
                .flat_map(|request| &request.events)
                .map(|event| event.content.len() + 256)
                .sum(),
        );
        let part = |bytes: &mut Vec<u8>, part: &[u8]| {
            let length = u32::try_from(part.len()).expect("a part under 4 GiB");
            bytes.extend_from_slice(&length.to_le_bytes());
            bytes.extend_from_slice(part);
        };
        for request in group {
            part(&mut bytes, &serde_json::to_vec(request)?);
            for event in &request.events {
                part(&mut bytes, event.content.as_bytes());
            }
        }
        Ok(bytes)
    }

    /// The group of a frame written by [`LoggedRequest::encode_group`].
    pub fn decode_group(mut bytes: &[u8]) -> Result<Vec<LoggedRequest>, String> {
        fn part<'a>(bytes: &mut &'a [u8]) -> Result<&'a [u8], String> {
            let (length, rest) = bytes
                .split_first_chunk::<4>()
                .ok_or("a part's length is cut")?;
            let length = u32::from_le_bytes(*length) as usize;
            let (part, rest) = rest
                .split_at_checked(length)
                .ok_or("a part is shorter than its length")?;
            *bytes = rest;
            Ok(part)
        }
        let mut group = Vec::new();
        while !bytes.is_empty() {
            let mut request: LoggedRequest =
                serde_json::from_slice(part(&mut bytes)?).map_err(|error| error.to_string())?;
            for event in &mut request.events {
                event.content = std::str::from_utf8(part(&mut bytes)?)
                    .map_err(|error| error.to_string())?
                    .to_owned();
            }
            group.push(request);
        }
        Ok(group)
    }
}

/// Appends the events of logged requests to their chains and tells the first
/// accesses among them, as [`persist`] does for the requests they were. Call it
/// inside a write transaction. Returns the number of notifications queued.
pub fn persist_logged(conn: &mut Conn, group: &[&LoggedRequest]) -> Result<usize, ApiError> {
    let made_again: Vec<Vec<crate::store::audit_index::EventIndex>> = group
        .iter()
        .map(|request| {
            request
                .events
                .iter()
                .filter(|event| event.index.is_none())
                .map(|event| crate::store::audit_index::EventIndex::of(&event.content))
                .collect()
        })
        .collect();
    let mut events = Vec::new();
    for (request, made_again) in group.iter().zip(&made_again) {
        let mut made_again = made_again.iter();
        for event in &request.events {
            let index = match &event.index {
                Some(index) => index,
                None => made_again.next().expect("one made again per missing index"),
            };
            events.push(crate::store::audit::NewAuditEvent {
                id: &event.id,
                recorded: &request.recorded,
                content: &event.content,
                index,
                chain_key: &event.chain_key,
                request_id: &request.request_id,
            });
        }
    }
    chain::append_all(conn, events)?;
    let accesses: Vec<(&str, &str)> = group
        .iter()
        .flat_map(|request| &request.accesses)
        .map(|(patient, subject)| (patient.as_str(), subject.as_str()))
        .collect();
    let Some(first) = group.first() else {
        return Ok(0);
    };
    if accesses.is_empty() {
        return Ok(0);
    }
    let mut first_accesses = crate::store::audit::first_accesses(conn, &accesses, &first.recorded)?;
    let mut notifications = 0;
    for request in group {
        for pair in &request.accesses {
            // Told once, by the first request of the group that made it.
            if first_accesses.remove(pair) {
                crate::notify::queue_first_access(conn, &pair.0, &request.who, &request.recorded)?;
                notifications += 1;
            }
        }
    }
    Ok(notifications)
}

/// Whether a group may go through [`persist_after_known_tips`]: the committer knows
/// where each of its chains stands (`known`, from its own earlier commits), and
/// no request of it tells its patient something whatever came before (an
/// emergency access, a write's notice).
pub fn fits_known_tips(group: &[&Prepared], known: &chain::Tips) -> bool {
    succeeded(group).all(|prepared| !crate::notify::tells_regardless(&prepared.record))
        && group
            .iter()
            .flat_map(|prepared| &prepared.events)
            .all(|event| known.contains_key(&event.chain_key))
        && group.iter().any(|prepared| !prepared.events.is_empty())
}

/// PostgreSQL: appends the group's events in one statement, outside any
/// transaction (one round trip instead of five), for a group that
/// [`fits_known_tips`], unless one of its (patient, professional) pairs is a first
/// access or a chain is no longer where `known` says. Returns where the chains
/// stand then, or `None` when the group needs [`persist`] (nothing was written).
///
/// The chains stay whole: the statement takes the chains' locks as [`persist`]
/// does, checks that each chain's head is the link its first new link follows, and
/// a link is unique by (chain, seq): a chain another transaction moves while the
/// statement waits for its lock fails the statement, which writes nothing.
pub fn persist_after_known_tips(
    conn: &mut Conn,
    group: &[&Prepared],
    known: &chain::Tips,
) -> Result<Option<chain::Tips>, ApiError> {
    let events = new_events(group);
    let mut tips: chain::Tips = events
        .iter()
        .filter_map(|event| {
            known
                .get_key_value(event.chain_key)
                .map(|(key, tip)| (key.clone(), tip.clone()))
        })
        .collect();
    let links = chain::link(events, &mut tips);
    match crate::store::audit::append_links_unless_first_access(
        conn,
        &links,
        &group_accesses(group),
    ) {
        Ok(appended) => Ok(appended.then_some(tips)),
        // A chain another transaction moved: the expected way this statement fails
        // (nothing of it is stored), not an error to log; the locking path follows.
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// Whether the group's events are stored: after a statement whose answer was lost
/// (the connection broke), it tells whether it committed (its events are written
/// all together or not at all).
pub fn group_stored(conn: &mut Conn, group: &[&Prepared]) -> Result<bool, ApiError> {
    match group.iter().flat_map(|prepared| &prepared.events).next() {
        Some(event) => event_stored(conn, &event.id),
        None => Ok(false),
    }
}

/// Whether the database holds this event (and so every event committed with it).
pub fn event_stored(conn: &mut Conn, id: &str) -> Result<bool, ApiError> {
    Ok(crate::store::resources::current(conn, "AuditEvent", id)?.is_some())
}

/// The log record of a request (the `audit` tracing target).
pub fn log(record: &Record) {
    let (actor, subject, purpose) = match &record.trace.principal {
        Some(principal) => (
            principal.actor.code().to_owned(),
            principal.subject.as_str(),
            principal.purpose_of_use.code(),
        ),
        None => ("anonymous".to_owned(), "", "normal"),
    };
    tracing::info!(
        target: "audit",
        request_id = record.trace.request_id,
        actor = %actor,
        subject,
        purpose_of_use = purpose,
        interaction = record.trace.interaction,
        resource_type = record.trace.resource_type.unwrap_or(""),
        resource_id = record.trace.resource_id.as_deref().unwrap_or(""),
        status = record.outcome.status,
        rule = record.outcome.rule.unwrap_or(""),
        "access"
    );
}

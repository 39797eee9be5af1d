//! The holders' own accounts (SPEC §11): a provisional code asked for with the
//! NIR (R-ACT-1), the first sign-in that confirms the contacts and chooses an
//! identifiant and a password (R-ACT-2), each sign-in with a password then a
//! one-time code (R-ACT-3), and the access tokens the server issues itself
//! (R-ACT-4, [`issuer`]), which go through the same pipeline as any other.
//!
//! Every step is one write transaction that also appends its AuditEvent (a User
//! Authentication event, `audit::AccountStep`), in the space's chain once the
//! space is known: failures commit too, with their counters. No answer tells
//! whether a NIR or an identifiant exists: the same answer, the same work (a
//! password hash is checked against a hash of nothing when there is no account;
//! the provisional code is looked up and sent by the courier's thread, after the
//! answer), and the failure counters are kept by what was typed, whether or not
//! it names anyone.

pub mod catalogue;
pub mod courier;
pub mod issuer;
pub mod limiter;
pub mod rules;
pub mod secret;
pub mod smart;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::access::{ActorKind, Principal, PurposeOfUse, principal::Standing};
use crate::audit::{self, AccountStep, Outcome, Record, Touched, Trace};
use crate::clock::Clock;
use crate::error::{ApiError, IssueCode};
use crate::fhir::date::fhir_instant;
use crate::store::accounts as stored;
use crate::store::{Conn, Db, dialect};
use courier::{Courier, Message};
use limiter::{Limit, Limiter};
use rules::Rule;
use secret::Pepper;

/// A provisional code lives 3 days (the letter's code is the insurer's).
const PROVISIONAL_CODE_LIFETIME: TimeDelta = TimeDelta::days(3);
/// Provisional codes a space is sent per day at most: more asks are answered
/// alike and send nothing.
const PROVISIONAL_CODES_PER_DAY: i64 = 3;
/// One-time codes a space is sent per hour at most (each is an e-mail or an SMS to
/// the holder).
const SIGN_IN_CODES_PER_HOUR: i64 = 10;
/// Identifiants found taken that one first sign-in ticket may try.
const TAKEN_IDENTIFIANT_TRIES: i64 = 5;
/// A one-time sign-in code lives 10 minutes.
const SIGN_IN_CODE_LIFETIME: TimeDelta = TimeDelta::minutes(10);
/// A first sign-in's ticket (between the code and the credentials): 30 minutes.
const ENROLMENT_LIFETIME: TimeDelta = TimeDelta::minutes(30);
/// Wrong tries of one code before it is spent.
const CODE_TRIES: i64 = 5;
/// Failures by one NIR or identifiant within [`FAILURE_WINDOW`] before a lock-out
/// of [`LOCK_OUT`].
const FAILURES_BEFORE_LOCK_OUT: i64 = 5;
const FAILURE_WINDOW: TimeDelta = TimeDelta::minutes(15);
const LOCK_OUT: TimeDelta = TimeDelta::minutes(15);
/// A session ends 30 minutes after its last use, and 12 hours after it began.
const SESSION_IDLE: TimeDelta = TimeDelta::minutes(30);
const SESSION_LIFETIME: TimeDelta = TimeDelta::hours(12);
/// The access tokens of a session live 10 minutes (a new one is asked for with
/// the session; sign-out ends them at once).
pub const ACCESS_TOKEN_SECONDS: i64 = 600;

/// Requests per address: asking for codes, and trying identities (a first
/// sign-in, a password, a one-time code).
const CODE_ASKS: Limit = Limit {
    requests: 5,
    window: Duration::from_secs(15 * 60),
};
const IDENTITY_TRIES: Limit = Limit {
    requests: 30,
    window: Duration::from_secs(15 * 60),
};

/// The Vitale card's serial number on a Patient (`Patient.identifier`): when the
/// space holds one, a provisional code is sent only to who gives it (R-ACT-1).
pub const VITALE_SERIAL_SYSTEM: &str = "https://dmp-fhir-server.fr/fhir/sid/carte-vitale-serie";

/// A refusal of an account step: its status, a message in French for the person,
/// and the rules broken (R-ACT-2), each one an issue of the OperationOutcome.
#[derive(Debug, Clone)]
pub struct AccountError {
    pub status: u16,
    pub code: IssueCode,
    pub message: String,
    /// Each rule broken, with the field it is about.
    pub rules: Vec<(&'static str, Rule)>,
    /// The field at fault, when one is.
    pub field: Option<&'static str>,
    /// Seconds to wait (429).
    pub retry_after: Option<u64>,
}

impl AccountError {
    fn new(status: u16, code: IssueCode, message: &str) -> AccountError {
        AccountError {
            status,
            code,
            message: message.to_owned(),
            rules: Vec::new(),
            field: None,
            retry_after: None,
        }
    }

    fn invalid(field: &'static str, message: &str) -> AccountError {
        AccountError {
            field: Some(field),
            ..AccountError::new(400, IssueCode::Invalid, message)
        }
    }

    fn broken(rules: Vec<(&'static str, Rule)>) -> AccountError {
        AccountError {
            field: rules.first().map(|(field, _)| *field),
            rules,
            ..AccountError::new(
                422,
                IssueCode::Value,
                "Certaines règles ne sont pas respectées : voir le détail.",
            )
        }
    }

    fn too_many(seconds: u64) -> AccountError {
        AccountError {
            retry_after: Some(seconds),
            ..AccountError::new(
                429,
                IssueCode::Throttled,
                &format!(
                    "Trop d'essais. Réessayez dans {} minute(s).",
                    seconds.div_ceil(60)
                ),
            )
        }
    }

    fn internal() -> AccountError {
        AccountError::new(
            500,
            IssueCode::Exception,
            "Le service est momentanément indisponible. Réessayez plus tard.",
        )
    }

    /// The answer for one identity that is not recognised, whatever the reason.
    fn not_recognised(message: &str) -> AccountError {
        AccountError::new(401, IssueCode::Login, message)
    }

    /// The OperationOutcome of the refusal: the message, then each rule broken.
    pub fn outcome(&self) -> Value {
        let severity = if self.status >= 500 { "fatal" } else { "error" };
        let mut first = json!({
            "severity": severity,
            "code": self.code.as_str(),
            "details": { "text": self.message },
        });
        if let Some(field) = self.field {
            first["expression"] = json!([field]);
        }
        let mut issues = vec![first];
        for (field, rule) in &self.rules {
            issues.push(json!({
                "severity": "error",
                "code": "value",
                "details": {
                    "coding": [{ "system": RULE_SYSTEM, "code": rule.code }],
                    "text": rule.text,
                },
                "expression": [field],
            }));
        }
        json!({ "resourceType": "OperationOutcome", "issue": issues })
    }
}

/// A step's refusal, as its trace records it.
pub trait Refusal {
    fn status(&self) -> u16;
    /// The server's own words (never what the caller typed).
    fn message(&self) -> String;
    /// The refusal of a step the server failed.
    fn failed(error: ApiError) -> Self;
}

impl Refusal for AccountError {
    fn status(&self) -> u16 {
        self.status
    }

    fn message(&self) -> String {
        self.message.clone()
    }

    fn failed(error: ApiError) -> Self {
        AccountError::from(error)
    }
}

/// The codes of the identifiant and password rules in answers.
pub const RULE_SYSTEM: &str = "https://dmp-fhir-server.fr/fhir/CodeSystem/account-rule";

impl From<ApiError> for AccountError {
    fn from(error: ApiError) -> AccountError {
        tracing::error!(%error, "an account step failed");
        AccountError::internal()
    }
}

/// Who asks, as the trace records it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub request_id: String,
    pub client_address: String,
    /// The server's base URL.
    pub server: String,
}

/// How a person asks for a provisional code (R-ACT-1).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CodeAsk {
    pub nir: String,
    pub birth_date: String,
    #[serde(default)]
    pub vitale_serial: Option<String>,
    /// `email` or `sms`.
    pub channel: String,
}

/// A first sign-in (R-ACT-2).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FirstSignIn {
    pub nir: String,
    pub birth_date: String,
    pub code: String,
}

/// The contact details confirmed at a first sign-in.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Contacts {
    pub ticket: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub mobile: String,
    /// Where one-time codes go: `email` or `sms`.
    pub channel: String,
}

/// The identifiant and password chosen at a first sign-in.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Credentials {
    pub ticket: String,
    pub identifiant: String,
    pub password: String,
    pub password_confirmation: String,
}

/// A first sign-in accepted: the ticket for the next steps, the contacts on file
/// and the rules of the identifiant and password, to show before typing.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Enrolment {
    pub ticket: String,
    pub email: String,
    pub mobile: String,
    pub identifiant_rules: Vec<RuleText>,
    pub password_rules: Vec<RuleText>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RuleText {
    pub code: &'static str,
    pub text: &'static str,
}

fn rule_texts(rules: &[Rule]) -> Vec<RuleText> {
    rules
        .iter()
        .map(|rule| RuleText {
            code: rule.code,
            text: rule.text,
        })
        .collect()
}

/// A password accepted: the one-time code was sent; it is typed with `challenge`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Challenge {
    pub challenge: String,
    pub channel: &'static str,
    /// Where it went, partly hidden (`j•••@exemple.fr`, `•• •• •• •• 78`).
    pub sent_to: String,
}

/// A person signed in: the session's secret (for the cookie) and an access token.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub session: String,
    pub token: AccessToken,
}

/// An access token of this server's own (R-ACT-4).
#[derive(Debug, Clone, Serialize)]
pub struct AccessToken {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    /// The Patient id of the space.
    pub patient: String,
}

/// A live session, as a request with its cookie finds it.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub account: String,
    pub patient: String,
}

struct Inner {
    db: Db,
    pepper: Pepper,
    issuer: issuer::OwnIssuer,
    courier: Courier,
    limiter: Limiter,
    clock: Arc<dyn Clock>,
    catalogue: catalogue::Catalogue,
}

/// The accounts' service, shared by the workers.
#[derive(Clone)]
pub struct Accounts {
    inner: Arc<Inner>,
}

/// Channels of codes.
fn channel_code(channel: &str) -> Option<&'static str> {
    match channel {
        "email" => Some("email"),
        "sms" => Some("sms"),
        _ => None,
    }
}

/// A NIR as typed: 13 characters and the 2-digit key, digits but for Corsica's
/// `2A` / `2B`; spaces are dropped.
fn nir(typed: &str) -> Result<String, AccountError> {
    let nir: String = typed.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = nir.as_bytes();
    let shaped = nir.len() == 15
        && bytes.iter().enumerate().all(|(at, byte)| {
            byte.is_ascii_digit() || (at == 6 && matches!(byte, b'A' | b'B' | b'a' | b'b'))
        });
    if !shaped {
        return Err(AccountError::invalid(
            "nir",
            "Le numéro de sécurité sociale compte 15 caractères (13 chiffres et la clé).",
        ));
    }
    Ok(nir.to_ascii_uppercase())
}

/// A birth date as typed: `YYYY-MM-DD`.
fn birth_date(typed: &str) -> Result<String, AccountError> {
    let typed = typed.trim();
    if typed.len() != 10 || chrono::NaiveDate::parse_from_str(typed, "%Y-%m-%d").is_err() {
        return Err(AccountError::invalid(
            "birthDate",
            "La date de naissance s'écrit AAAA-MM-JJ.",
        ));
    }
    Ok(typed.to_owned())
}

/// A value typed in a form: at most `max` bytes.
fn bounded<'a>(field: &'static str, value: &'a str, max: usize) -> Result<&'a str, AccountError> {
    if value.len() > max {
        return Err(AccountError::invalid(
            field,
            "Cette valeur est trop longue.",
        ));
    }
    Ok(value)
}

/// An e-mail address as confirmed: one `@`, a dotted domain, no spaces, at most
/// 254 characters.
fn email(typed: &str) -> Result<String, AccountError> {
    let typed = typed.trim();
    let shaped = typed.len() <= 254
        && !typed.chars().any(|c| c.is_whitespace() || c.is_control())
        && typed.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.ends_with('.')
        });
    if !shaped {
        return Err(AccountError::invalid(
            "email",
            "Cette adresse e-mail n'est pas valide.",
        ));
    }
    Ok(typed.to_owned())
}

/// A French mobile number (06 / 07, or +33 6 / 7), as `+336…`.
fn mobile(typed: &str) -> Result<String, AccountError> {
    let digits: String = typed
        .chars()
        .filter(|c| !matches!(c, ' ' | '.' | '-'))
        .collect();
    let national = digits
        .strip_prefix("+33")
        .map(|rest| format!("0{rest}"))
        .unwrap_or(digits);
    let shaped = national.len() == 10
        && national.bytes().all(|b| b.is_ascii_digit())
        && (national.starts_with("06") || national.starts_with("07"));
    if !shaped {
        return Err(AccountError::invalid(
            "mobile",
            "Ce numéro de mobile n'est pas valide (06 ou 07 et 8 chiffres).",
        ));
    }
    Ok(format!("+33{}", &national[1..]))
}

/// An address partly hidden, for the person to recognise it.
fn hidden(channel: &str, to: &str) -> String {
    if channel == "sms" {
        let last: String = to
            .chars()
            .rev()
            .take(2)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return format!("•• •• •• •• {last}");
    }
    match to.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}•••@{domain}")
        }
        None => "•••".to_owned(),
    }
}

/// The contacts of a Patient (`telecom`): its first e-mail address and its first
/// mobile number.
fn contacts_of(patient: &Value) -> (String, String) {
    let telecoms = patient["telecom"].as_array().cloned().unwrap_or_default();
    let email_on_file = telecoms
        .iter()
        .filter(|telecom| telecom["system"] == "email")
        .filter_map(|telecom| telecom["value"].as_str())
        .find_map(|value| email(value).ok())
        .unwrap_or_default();
    let mobile_on_file = telecoms
        .iter()
        .filter(|telecom| telecom["system"] == "phone" || telecom["system"] == "sms")
        .filter_map(|telecom| telecom["value"].as_str())
        .find_map(|value| mobile(value).ok())
        .unwrap_or_default();
    (email_on_file, mobile_on_file)
}

/// The Vitale serial numbers a Patient holds.
fn vitale_serials(patient: &Value) -> Vec<String> {
    patient["identifier"]
        .as_array()
        .map(|identifiers| {
            identifiers
                .iter()
                .filter(|identifier| identifier["system"] == VITALE_SERIAL_SYSTEM)
                .filter_map(|identifier| identifier["value"].as_str())
                .map(|value| value.trim().to_ascii_uppercase())
                .collect()
        })
        .unwrap_or_default()
}

/// The one space a NIR and a birth date name, if exactly one does.
fn space_of(conn: &mut Conn, nir: &str, born: &str) -> Result<Option<(String, Value)>, ApiError> {
    let rows = stored::patients_with_nir(conn, nir)?;
    let mut found = rows.into_iter().filter_map(|row| {
        let patient: Value = serde_json::from_str(&row.content).ok()?;
        (patient["birthDate"].as_str() == Some(born)).then_some((row.res_id, patient))
    });
    match (found.next(), found.next()) {
        (Some(one), None) => Ok(Some(one)),
        _ => Ok(None),
    }
}

/// Ends every code, ticket and sign-in challenge of the space still open but
/// `keep`: each was given under the contacts or credentials that are changing
/// (one opened with the old password, or sent to the old address, would outlive
/// the change).
fn end_outstanding(
    conn: &mut Conn,
    patient: &str,
    keep: Option<&str>,
    now: &str,
) -> Result<(), ApiError> {
    for purpose in ["provisional", "enrolment", "sign-in"] {
        stored::end_codes(conn, patient, purpose, keep, now)?;
    }
    Ok(())
}

/// The principal an account step acts as, for its trace.
fn holder(account: &str, patient: &str) -> Principal {
    Principal {
        actor: ActorKind::Patient,
        subject: account.to_owned(),
        issuer: issuer::ISSUER.to_owned(),
        patient: Some(patient.to_owned()),
        profession: None,
        specialty: None,
        organization: None,
        name: None,
        scopes: None,
        purpose_of_use: PurposeOfUse::Normal,
        access_reason: None,
        client_id: None,
        standing: None,
    }
}

/// What a step's trace says of who it concerned.
#[derive(Default)]
struct Traced {
    patient: Option<String>,
    principal: Option<Principal>,
}

impl Traced {
    fn space(&mut self, patient: &str) {
        self.patient = Some(patient.to_owned());
    }

    fn holder(&mut self, account: &str, patient: &str) {
        self.patient = Some(patient.to_owned());
        self.principal = Some(holder(account, patient));
    }
}

fn instant(at: DateTime<Utc>) -> String {
    fhir_instant(at)
}

impl Accounts {
    /// Loads (or makes, at first start) the server's pepper and signing keys.
    pub fn start(
        db: Db,
        channel: Arc<dyn crate::notify::channel::Channel>,
        clock: Arc<dyn Clock>,
        catalogue: catalogue::Catalogue,
    ) -> Result<Accounts, String> {
        let now = instant(Utc::now());
        let (pepper, issuer) = db
            .write_blocking(|conn| {
                let pepper = match stored::secret(conn, "code-pepper")? {
                    Some(pepper) => pepper,
                    None => {
                        stored::insert_secret(conn, "code-pepper", &Pepper::generate(), &now)?;
                        stored::secret(conn, "code-pepper")?
                            .ok_or_else(|| ApiError::internal("the pepper was not stored"))?
                    }
                };
                let issuer =
                    issuer::OwnIssuer::load_or_create(conn, &now).map_err(ApiError::internal)?;
                Ok((pepper, issuer))
            })
            .map_err(|error| format!("cannot load the accounts' secrets: {error}"))?;
        Ok(Accounts {
            inner: Arc::new(Inner {
                db,
                pepper: Pepper::from_stored(&pepper)?,
                issuer,
                courier: Courier::start(channel),
                limiter: Limiter::default(),
                clock,
                catalogue,
            }),
        })
    }

    /// The CSRF token a page's forms carry for a browser whose CSRF cookie holds
    /// `cookie`: keyed by the server's pepper, so that a cookie planted by someone
    /// else does not come with a token that matches it.
    pub fn csrf_token(&self, cookie: &str) -> String {
        self.inner.pepper.hash("csrf", cookie)
    }

    /// The server's own issuer.
    pub fn issuer(&self) -> &issuer::OwnIssuer {
        &self.inner.issuer
    }

    fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    fn limit(&self, caller: &Caller, kind: &'static str, limit: Limit) -> Result<(), AccountError> {
        self.inner
            .limiter
            .check(&caller.client_address, kind, limit)
            .map_err(AccountError::too_many)
    }

    /// Runs a step in one write transaction with its AuditEvent: `work`'s refusals
    /// commit too (with the counters they moved), a database failure rolls it
    /// back and is traced alone.
    fn step<T, E: Refusal>(
        &self,
        caller: &Caller,
        step: &'static AccountStep,
        work: impl FnOnce(&mut Conn, &mut Traced) -> Result<Result<T, E>, ApiError>,
    ) -> Result<T, E> {
        let record = |traced: &Traced, outcome: Outcome| Record {
            trace: Trace {
                request_id: caller.request_id.clone(),
                method: "POST".to_owned(),
                principal: traced.principal.clone(),
                account_step: Some(step),
                client_address: Some(caller.client_address.clone()),
                server: caller.server.clone(),
                ..Trace::default()
            },
            outcome,
            touched: Touched {
                patients: traced.patient.iter().cloned().collect(),
                ..Touched::default()
            },
        };
        let mut traced = Traced::default();
        let done = self.inner.db.write_blocking(|conn| {
            dialect::write_transaction(conn, |conn| {
                let result = work(conn, &mut traced)?;
                let outcome = match &result {
                    Ok(_) => Outcome::answered(200),
                    Err(refusal) => Outcome {
                        status: refusal.status(),
                        rule: None,
                        detail: Some(refusal.message()),
                        concealed: false,
                    },
                };
                let record = record(&traced, outcome);
                audit::log(&record);
                audit::persist(conn, &[&audit::prepare(record)])?;
                Ok(result)
            })
        });
        match done {
            Ok(result) => result,
            Err(error) => {
                let record = record(&traced, Outcome::failed(&error));
                audit::log(&record);
                let _ = self.inner.db.write_blocking(|conn| {
                    dialect::write_transaction(conn, |conn| {
                        audit::persist(conn, &[&audit::prepare(record)]).map(|_| ())
                    })
                });
                Err(E::failed(error))
            }
        }
    }

    /// Moves a failure counter: one more failure, and a lock-out past the limit.
    fn failed(&self, conn: &mut Conn, key: &str) -> Result<(), ApiError> {
        let now = self.now();
        let row = stored::throttle(conn, key)?;
        let mut row = match row {
            Some(row)
                if DateTime::parse_from_rfc3339(&row.window_start)
                    .is_ok_and(|start| now - start.with_timezone(&Utc) < FAILURE_WINDOW) =>
            {
                row
            }
            _ => stored::ThrottleRow {
                failures: 0,
                window_start: instant(now),
                locked_until: None,
            },
        };
        row.failures += 1;
        if row.failures >= FAILURES_BEFORE_LOCK_OUT {
            row.locked_until = Some(instant(now + LOCK_OUT));
            row.failures = 0;
            row.window_start = instant(now);
        }
        stored::put_throttle(conn, key, &row)?;
        Ok(())
    }

    /// Refuses while the counter is locked out, with the seconds left.
    fn locked(&self, conn: &mut Conn, key: &str) -> Result<Option<AccountError>, ApiError> {
        let now = self.now();
        let until = stored::throttle(conn, key)?
            .and_then(|row| row.locked_until)
            .and_then(|until| DateTime::parse_from_rfc3339(&until).ok())
            .map(|until| until.with_timezone(&Utc));
        Ok(until
            .filter(|until| *until > now)
            .map(|until| AccountError::too_many((until - now).num_seconds().max(1) as u64)))
    }

    /// R-ACT-1: asks for a provisional code. The answer is the same whether the NIR
    /// names a space or not, and comes before the lookup: the courier's thread
    /// finds the space, stores the code's hash and sends it to the contact chosen.
    pub fn ask_provisional_code(
        &self,
        caller: &Caller,
        ask: CodeAsk,
    ) -> Result<Value, AccountError> {
        let nir = nir(&ask.nir)?;
        let born = birth_date(&ask.birth_date)?;
        let channel = channel_code(&ask.channel)
            .ok_or_else(|| AccountError::invalid("channel", "Choisissez l'e-mail ou le SMS."))?;
        let serial = match &ask.vitale_serial {
            Some(serial) => Some(bounded("vitaleSerial", serial.trim(), 64)?.to_ascii_uppercase()),
            None => None,
        }
        .filter(|serial| !serial.is_empty());
        self.limit(caller, "code", CODE_ASKS)?;
        self.step::<(), AccountError>(caller, &AccountStep::PROVISIONAL_CODE_ASKED, |_, _| {
            Ok(Ok(()))
        })?;
        let accounts = self.clone();
        let caller = caller.clone();
        self.inner.courier.run(move || {
            accounts.send_provisional_code(&caller, &nir, &born, serial.as_deref(), channel)
        });
        Ok(json!({
            "resourceType": "OperationOutcome",
            "issue": [{
                "severity": "information",
                "code": "informational",
                "details": { "text": "Si ces informations correspondent à un espace Mon espace santé, un code provisoire vient d'être envoyé à l'adresse ou au numéro choisi. Il est valable 3 jours." },
            }],
        }))
    }

    /// The courier's part of R-ACT-1: the code's message, when the NIR, the birth
    /// date and (if the space holds one) the Vitale serial name one space with a
    /// contact of the kind chosen, and the space was sent fewer than three codes
    /// today. A new code ends the earlier ones.
    fn send_provisional_code(
        &self,
        caller: &Caller,
        nir: &str,
        born: &str,
        serial: Option<&str>,
        channel: &'static str,
    ) -> Option<Message> {
        let now = self.now();
        self.step(caller, &AccountStep::PROVISIONAL_CODE_SENT, |conn, traced| {
            let Some((patient, resource)) = space_of(conn, nir, born)? else {
                return Ok(Err(AccountError::not_recognised("no space matches")));
            };
            let serials = vitale_serials(&resource);
            if !serials.is_empty() && !serial.is_some_and(|serial| serials.iter().any(|s| s == serial)) {
                return Ok(Err(AccountError::not_recognised("no space matches")));
            }
            traced.space(&patient);
            // Once the holder confirmed contacts, codes go there only: the
            // insurer's file may hold an old address someone else reads now.
            let (email_on_file, mobile_on_file) = match stored::account_of_patient(conn, &patient)? {
                Some(account) => (account.email, account.mobile),
                None => contacts_of(&resource),
            };
            let to = if channel == "sms" { mobile_on_file } else { email_on_file };
            if to.is_empty() {
                return Ok(Err(AccountError::invalid(
                    "channel",
                    "the space holds no contact of the kind chosen",
                )));
            }
            let since = instant(now - TimeDelta::days(1));
            if stored::codes_since(conn, &patient, "provisional", &since)? >= PROVISIONAL_CODES_PER_DAY {
                return Ok(Err(AccountError::too_many(24 * 3600)));
            }
            let code = secret::provisional_code();
            let hash = self
                .inner
                .pepper
                .hash("provisional", &secret::normalise_provisional_code(&code));
            stored::end_codes(conn, &patient, "provisional", None, &instant(now))?;
            stored::insert_code(
                conn,
                &stored::NewCode {
                    id: &uuid::Uuid::now_v7().to_string(),
                    patient: &patient,
                    purpose: "provisional",
                    code_hash: &hash,
                    expires_at: &instant(now + PROVISIONAL_CODE_LIFETIME),
                },
                &instant(now),
            )?;
            Ok(Ok(Message {
                patient: patient.clone(),
                kind: "provisional-code",
                channel,
                to,
                text: format!(
                    "Mon espace santé : votre code provisoire est {code}. Il est valable 3 jours. \
                     Ne le communiquez à personne."
                ),
            }))
        })
        .ok()
    }

    /// R-ACT-2, first step: the NIR, the birth date and the provisional code. The
    /// code is spent; the answer is a ticket for the next steps, with the contacts
    /// on file and the rules of the identifiant and password.
    pub fn first_sign_in(
        &self,
        caller: &Caller,
        ask: FirstSignIn,
    ) -> Result<Enrolment, AccountError> {
        let nir = nir(&ask.nir)?;
        let born = birth_date(&ask.birth_date)?;
        let typed = secret::normalise_provisional_code(bounded("code", &ask.code, 64)?);
        self.limit(caller, "identity", IDENTITY_TRIES)?;
        let key = format!("first-sign-in:{}", self.inner.pepper.hash("nir", &nir));
        let typed_hash = self.inner.pepper.hash("provisional", &typed);
        let now = self.now();
        let refused = || {
            AccountError::not_recognised(
                "Ces informations ne permettent pas de vous identifier. Vérifiez-les, ou demandez un nouveau code provisoire.",
            )
        };
        self.step(caller, &AccountStep::FIRST_SIGN_IN, |conn, traced| {
            if let Some(locked) = self.locked(conn, &key)? {
                return Ok(Err(locked));
            }
            let space = space_of(conn, &nir, &born)?;
            let live = match &space {
                Some((patient, _)) => {
                    stored::live_code(conn, patient, "provisional", &instant(now))?
                }
                None => None,
            };
            // Compared in constant time, also when there is nothing to compare with.
            let expected = live.as_ref().map_or_else(
                || self.inner.pepper.hash("provisional", "-"),
                |code| code.code_hash.clone(),
            );
            let matches = secret::same(&typed_hash, &expected) && live.is_some();
            let (Some((patient, resource)), Some(code), true) = (space, live, matches) else {
                self.failed(conn, &key)?;
                return Ok(Err(refused()));
            };
            traced.space(&patient);
            if stored::use_code(conn, &code.id, &instant(now))? != 1 {
                return Ok(Err(refused()));
            }
            stored::clear_throttle(conn, &key)?;
            let ticket_id = uuid::Uuid::now_v7().to_string();
            let ticket_secret = secret::token();
            stored::insert_code(
                conn,
                &stored::NewCode {
                    id: &ticket_id,
                    patient: &patient,
                    purpose: "enrolment",
                    code_hash: &self.inner.pepper.hash("enrolment", &ticket_secret),
                    expires_at: &instant(now + ENROLMENT_LIFETIME),
                },
                &instant(now),
            )?;
            let (email_on_file, mobile_on_file) = match stored::account_of_patient(conn, &patient)?
            {
                Some(account) => (account.email, account.mobile),
                None => contacts_of(&resource),
            };
            Ok(Ok(Enrolment {
                ticket: format!("{ticket_id}.{ticket_secret}"),
                email: email_on_file,
                mobile: mobile_on_file,
                identifiant_rules: rule_texts(&rules::IDENTIFIANT_RULES),
                password_rules: rule_texts(&rules::PASSWORD_RULES),
            }))
        })
    }

    /// The space of a live first sign-in ticket (`id.secret`).
    fn ticket(
        &self,
        conn: &mut Conn,
        ticket: &str,
    ) -> Result<Result<stored::CodeRow, AccountError>, ApiError> {
        let expired = || {
            AccountError::new(
                401,
                IssueCode::Expired,
                "Cette étape a expiré. Recommencez la première connexion avec un code provisoire.",
            )
        };
        let Some((id, secret_part)) = ticket.split_once('.') else {
            return Ok(Err(expired()));
        };
        if id.len() > 64 || secret_part.len() > 128 {
            return Ok(Err(expired()));
        }
        let Some(row) = stored::code_by_id(conn, id)? else {
            return Ok(Err(expired()));
        };
        let now = instant(self.now());
        let live = row.purpose == "enrolment" && row.used_at.is_none() && row.expires_at > now;
        if !live
            || !secret::same(
                &self.inner.pepper.hash("enrolment", secret_part),
                &row.code_hash,
            )
        {
            return Ok(Err(expired()));
        }
        Ok(Ok(row))
    }

    /// R-ACT-2, second step: the contacts confirmed (or corrected), and where the
    /// one-time codes go.
    pub fn confirm_contacts(
        &self,
        caller: &Caller,
        contacts: Contacts,
    ) -> Result<Value, AccountError> {
        let channel = channel_code(&contacts.channel)
            .ok_or_else(|| AccountError::invalid("channel", "Choisissez l'e-mail ou le SMS."))?;
        let email_given = match contacts.email.trim() {
            "" => String::new(),
            typed => email(bounded("email", typed, 254)?)?,
        };
        let mobile_given = match contacts.mobile.trim() {
            "" => String::new(),
            typed => mobile(bounded("mobile", typed, 32)?)?,
        };
        let needed = if channel == "sms" {
            &mobile_given
        } else {
            &email_given
        };
        if needed.is_empty() {
            return Err(AccountError::invalid(
                if channel == "sms" { "mobile" } else { "email" },
                "Les codes de connexion vont à ce contact : renseignez-le.",
            ));
        }
        let now = instant(self.now());
        self.step(caller, &AccountStep::CONTACTS_CONFIRMED, |conn, traced| {
            let row =
                match self.ticket(conn, bounded("ticket", &contacts.ticket, 256).unwrap_or(""))? {
                    Ok(row) => row,
                    Err(refusal) => return Ok(Err(refusal)),
                };
            traced.space(&row.patient_id);
            let before = stored::account_of_patient(conn, &row.patient_id)?;
            let account = stored::put_contacts(
                conn,
                &uuid::Uuid::new_v4().to_string(),
                &row.patient_id,
                &email_given,
                &mobile_given,
                channel,
                &now,
            )?;
            traced.holder(&account, &row.patient_id);
            // Codes sent before, to the contacts that were, are no longer good.
            end_outstanding(conn, &row.patient_id, Some(&row.id), &now)?;
            // An account in use whose contacts change this way: its contacts as
            // they were are told, before they are replaced.
            if let Some(before) = before.filter(|before| before.identifiant.is_some()) {
                self.tell(
                    &before,
                    "Mon espace santé : les coordonnées de contact de votre compte sont en train \
                     d'être changées, avec un code provisoire. Si ce n'est pas vous, appelez le 3422.",
                );
            }
            Ok(Ok(
                json!({ "email": email_given, "mobile": mobile_given, "channel": channel }),
            ))
        })
    }

    /// R-ACT-2, third step: the identifiant and password, each rule checked and
    /// named. The ticket is spent, the person is signed in, and their other
    /// sessions end (a first sign-in again replaces the credentials).
    pub fn choose_credentials(
        &self,
        caller: &Caller,
        credentials: Credentials,
    ) -> Result<SignedIn, AccountError> {
        let identifiant = bounded("identifiant", &credentials.identifiant, 256)?.to_owned();
        let password = bounded("password", &credentials.password, 1024)?;
        let confirmation = bounded(
            "passwordConfirmation",
            &credentials.password_confirmation,
            1024,
        )?;
        self.limit(caller, "identity", IDENTITY_TRIES)?;
        let mut broken: Vec<(&'static str, Rule)> = rules::identifiant_breaks(&identifiant)
            .into_iter()
            .map(|rule| ("identifiant", rule))
            .collect();
        broken.extend(
            rules::password_breaks(password, confirmation)
                .into_iter()
                .map(|rule| ("password", rule)),
        );
        if !broken.is_empty() {
            return Err(AccountError::broken(broken));
        }
        // Hashed before the transaction: argon2id takes tens of milliseconds.
        let hash = secret::hash_password(password);
        let now = self.now();
        let session = secret::token();
        let session_id = secret::sha256_hex(&session);
        let signed_in = self.step(caller, &AccountStep::CREDENTIALS_CHOSEN, |conn, traced| {
            let row = match self.ticket(
                conn,
                bounded("ticket", &credentials.ticket, 256).unwrap_or(""),
            )? {
                Ok(row) => row,
                Err(refusal) => return Ok(Err(refusal)),
            };
            traced.space(&row.patient_id);
            let Some(account) = stored::account_of_patient(conn, &row.patient_id)? else {
                return Ok(Err(AccountError::new(
                    409,
                    IssueCode::BusinessRule,
                    "Confirmez d'abord vos coordonnées de contact.",
                )));
            };
            traced.holder(&account.id, &row.patient_id);
            if let Some(other) = stored::account_by_identifiant(conn, &identifiant)?
                && other.id != account.id
            {
                // Taken identifiants are told (they must be unique), a few per
                // ticket: the ticket is spent after that.
                stored::code_attempted(conn, &row.id)?;
                if row.attempts + 1 >= TAKEN_IDENTIFIANT_TRIES {
                    stored::use_code(conn, &row.id, &instant(now))?;
                }
                return Ok(Err(AccountError {
                    field: Some("identifiant"),
                    ..AccountError::new(
                        409,
                        IssueCode::Duplicate,
                        "Cet identifiant est déjà pris : choisissez-en un autre.",
                    )
                }));
            }
            stored::set_credentials(conn, &account.id, &identifiant, &hash, &instant(now))?;
            stored::use_code(conn, &row.id, &instant(now))?;
            end_outstanding(conn, &row.patient_id, None, &instant(now))?;
            // Chosen again (a lost password): nothing of the earlier credentials
            // stands, sessions and apps alike, and the holder is told.
            stored::end_sessions_of(conn, &account.id, None, &instant(now))?;
            stored::revoke_all_grants(conn, &account.id, &instant(now))?;
            if account.identifiant.is_some() {
                self.tell(
                    &account,
                    "Mon espace santé : l'identifiant et le mot de passe de votre compte viennent \
                     d'être choisis à nouveau, avec un code provisoire. Si ce n'est pas vous, \
                     appelez le 3422.",
                );
            }
            stored::insert_session(
                conn,
                &session_id,
                &account.id,
                &instant(now),
                &instant(now + SESSION_LIFETIME),
            )?;
            Ok(Ok((account.id, row.patient_id)))
        })?;
        let (account, patient) = signed_in;
        Ok(SignedIn {
            token: self.token_for(&account, &patient, &session_id),
            session,
        })
    }

    /// Tells an account's contacts (as the row holds them) something about it.
    fn tell(&self, account: &stored::AccountRow, text: &str) {
        for (channel, to) in [("email", &account.email), ("sms", &account.mobile)] {
            if !to.is_empty() {
                self.inner.courier.send(Message {
                    patient: account.patient_id.clone(),
                    kind: "credentials-changed",
                    channel,
                    to: to.clone(),
                    text: text.to_owned(),
                });
            }
        }
    }

    /// An access token of the session `session_id`.
    fn token_for(&self, account: &str, patient: &str, session_id: &str) -> AccessToken {
        let issued = Utc::now().timestamp();
        let claims = json!({
            "iss": issuer::ISSUER,
            "aud": issuer::AUDIENCE,
            "sub": account,
            "actor": "patient",
            "patient": patient,
            "sid": session_id,
            "iat": issued,
            "nbf": issued,
            "exp": issued + ACCESS_TOKEN_SECONDS,
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        AccessToken {
            access_token: self.inner.issuer.sign(&claims),
            token_type: "Bearer",
            expires_in: ACCESS_TOKEN_SECONDS,
            patient: patient.to_owned(),
        }
    }

    /// R-ACT-3, first step: the identifiant and password. Accepted, a one-time
    /// code goes to the account's chosen contact, to be typed with the challenge.
    pub fn sign_in(
        &self,
        caller: &Caller,
        identifiant: &str,
        password: &str,
    ) -> Result<Challenge, AccountError> {
        let identifiant = bounded("identifiant", identifiant, 256)?;
        let password = bounded("password", password, 1024)?;
        self.limit(caller, "identity", IDENTITY_TRIES)?;
        let key = format!(
            "sign-in:{}",
            self.inner.pepper.hash("identifiant", identifiant)
        );
        let refused = || AccountError::not_recognised("Identifiant ou mot de passe incorrect.");
        // The account and its hash are read first, the hash checked outside any
        // transaction, the outcome then written with its trace.
        let (account, locked) = self.inner.db.read_blocking(|conn| {
            Ok((
                stored::account_by_identifiant(conn, identifiant)?,
                self.locked(conn, &key)?,
            ))
        })?;
        let verified = locked.is_none()
            && secret::verify_password(
                password,
                account.as_ref().and_then(|a| a.password_hash.as_deref()),
            );
        let now = self.now();
        let otp = secret::one_time_code();
        let challenge = uuid::Uuid::new_v4().to_string();
        let answer = self.step(caller, &AccountStep::PASSWORD_CHECKED, |conn, traced| {
            if let Some(account) = &account {
                traced.space(&account.patient_id);
            }
            if let Some(locked) = self.locked(conn, &key)? {
                return Ok(Err(locked));
            }
            let (Some(account), true) = (&account, verified) else {
                self.failed(conn, &key)?;
                return Ok(Err(refused()));
            };
            traced.holder(&account.id, &account.patient_id);
            stored::clear_throttle(conn, &key)?;
            let since = instant(now - TimeDelta::hours(1));
            if stored::codes_since(conn, &account.patient_id, "sign-in", &since)?
                >= SIGN_IN_CODES_PER_HOUR
            {
                return Ok(Err(AccountError::too_many(15 * 60)));
            }
            stored::end_codes(conn, &account.patient_id, "sign-in", None, &instant(now))?;
            stored::insert_code(
                conn,
                &stored::NewCode {
                    id: &challenge,
                    patient: &account.patient_id,
                    purpose: "sign-in",
                    code_hash: &self.inner.pepper.hash("sign-in", &otp),
                    expires_at: &instant(now + SIGN_IN_CODE_LIFETIME),
                },
                &instant(now),
            )?;
            let channel = if account.code_channel == "sms" {
                "sms"
            } else {
                "email"
            };
            let to = if channel == "sms" {
                account.mobile.clone()
            } else {
                account.email.clone()
            };
            Ok(Ok((account.patient_id.clone(), channel, to)))
        })?;
        let (patient, channel, to) = answer;
        self.inner.courier.send(Message {
            patient,
            kind: "sign-in-code",
            channel,
            to: to.clone(),
            text: format!(
                "Mon espace santé : votre code de connexion est {otp}. Il est valable 10 minutes. \
                 Ne le communiquez à personne."
            ),
        });
        Ok(Challenge {
            challenge,
            channel,
            sent_to: hidden(channel, &to),
        })
    }

    /// R-ACT-3, second step: the one-time code of a challenge. Five wrong codes
    /// spend it.
    pub fn sign_in_code(
        &self,
        caller: &Caller,
        challenge: &str,
        code: &str,
    ) -> Result<SignedIn, AccountError> {
        let challenge = bounded("challenge", challenge, 64)?;
        let typed: String = bounded("code", code, 64)?
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        self.limit(caller, "identity", IDENTITY_TRIES)?;
        let now = self.now();
        let session = secret::token();
        let session_id = secret::sha256_hex(&session);
        let typed_hash = self.inner.pepper.hash("sign-in", &typed);
        let refused = || {
            AccountError::not_recognised(
                "Code incorrect ou expiré. Après 5 essais, reconnectez-vous pour recevoir un nouveau code.",
            )
        };
        let (account, patient) = self.step(caller, &AccountStep::LOGIN, |conn, traced| {
            let Some(row) = stored::code_by_id(conn, challenge)? else {
                return Ok(Err(refused()));
            };
            traced.space(&row.patient_id);
            let live = row.purpose == "sign-in"
                && row.used_at.is_none()
                && row.expires_at > instant(now)
                && row.attempts < CODE_TRIES;
            if !live {
                return Ok(Err(refused()));
            }
            let Some(account) = stored::account_of_patient(conn, &row.patient_id)? else {
                return Ok(Err(refused()));
            };
            // A locked identifiant signs in at neither step.
            if let Some(identifiant) = &account.identifiant {
                let key = format!(
                    "sign-in:{}",
                    self.inner.pepper.hash("identifiant", identifiant)
                );
                if let Some(locked) = self.locked(conn, &key)? {
                    return Ok(Err(locked));
                }
            }
            if !secret::same(&typed_hash, &row.code_hash) {
                stored::code_attempted(conn, &row.id)?;
                if row.attempts + 1 >= CODE_TRIES {
                    stored::use_code(conn, &row.id, &instant(now))?;
                }
                // Wrong codes count with wrong passwords: whoever holds the password
                // cannot try codes challenge after challenge.
                if let Some(identifiant) = &account.identifiant {
                    let key = format!(
                        "sign-in:{}",
                        self.inner.pepper.hash("identifiant", identifiant)
                    );
                    self.failed(conn, &key)?;
                }
                return Ok(Err(refused()));
            }
            if stored::use_code(conn, &row.id, &instant(now))? != 1 {
                return Ok(Err(refused()));
            }
            traced.holder(&account.id, &row.patient_id);
            stored::insert_session(
                conn,
                &session_id,
                &account.id,
                &instant(now),
                &instant(now + SESSION_LIFETIME),
            )?;
            Ok(Ok((account.id, row.patient_id)))
        })?;
        Ok(SignedIn {
            token: self.token_for(&account, &patient, &session_id),
            session,
        })
    }

    /// The live session of a cookie's secret, touched (its idle time starts again).
    pub fn session(&self, secret_value: &str) -> Result<Session, AccountError> {
        let ended = || AccountError::not_recognised("Votre session a pris fin. Connectez-vous.");
        if secret_value.is_empty() || secret_value.len() > 128 {
            return Err(ended());
        }
        let id = secret::sha256_hex(secret_value);
        let now = self.now();
        self.inner
            .db
            .write_blocking(|conn| {
                let Some(row) = self.live_session_row(conn, &id, now)? else {
                    return Ok(Err(ended()));
                };
                let Some(account) = stored::account_by_id(conn, &row.account_id)? else {
                    return Ok(Err(ended()));
                };
                stored::touch_session(conn, &id, &instant(now))?;
                Ok(Ok(Session {
                    id,
                    account: account.id,
                    patient: account.patient_id,
                }))
            })
            .map_err(AccountError::from)?
    }

    fn live_session_row(
        &self,
        conn: &mut Conn,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<stored::SessionRow>, ApiError> {
        let row = stored::live_session(conn, id, &instant(now))?;
        Ok(row.filter(|row| row.last_seen_at > instant(now - SESSION_IDLE)))
    }

    /// Whether a token of this server still stands: its session is live or its
    /// app's authorisation stands, and it says no more than they do (the account
    /// and its space; for an app, its client and no scope beyond those granted).
    pub fn standing_holds(&self, principal: &Principal) -> Result<bool, ApiError> {
        let now = self.now();
        let Some(standing) = &principal.standing else {
            return Ok(true);
        };
        let holder_of = |account: &stored::AccountRow| {
            principal.actor == ActorKind::Patient
                && principal.subject == account.id
                && principal.patient.as_deref() == Some(account.patient_id.as_str())
        };
        self.inner.db.read_blocking(|conn| match standing {
            Standing::Session(id) => {
                let Some(session) = self.live_session_row(conn, id, now)? else {
                    return Ok(false);
                };
                let account = stored::account_by_id(conn, &session.account_id)?;
                Ok(account.is_some_and(|account| holder_of(&account))
                    && principal.client_id.is_none())
            }
            Standing::AppGrant(id) => {
                let Some(grant) =
                    stored::grant(conn, id)?.filter(|grant| grant.revoked_at.is_none())
                else {
                    return Ok(false);
                };
                let account = stored::account_by_id(conn, &grant.account_id)?;
                let granted: Vec<&str> = grant.scopes.split_whitespace().collect();
                Ok(account.is_some_and(|account| holder_of(&account))
                    && principal.client_id.as_deref() == Some(grant.client_id.as_str())
                    && principal.scopes.as_ref().is_some_and(|scopes| {
                        !scopes.is_empty()
                            && scopes.iter().all(|scope| granted.contains(&scope.as_str()))
                    }))
            }
        })
    }

    /// A new access token for a live session.
    pub fn access_token(&self, session: &Session) -> AccessToken {
        self.token_for(&session.account, &session.patient, &session.id)
    }

    /// The read mark of the holder's messages (see `store::accounts::saw_messages`).
    pub fn messages_seen_at(&self, session: &Session) -> Result<Option<String>, AccountError> {
        Ok(self
            .inner
            .db
            .read_blocking(|conn| Ok(stored::messages_seen_at(conn, &session.account)?))?)
    }

    /// The holder saw their messages up to `at` (a message's `meta.lastUpdated`).
    pub fn saw_messages(&self, session: &Session, at: &str) -> Result<(), AccountError> {
        let at = at.to_owned();
        self.inner
            .db
            .write_blocking(|conn| Ok(stored::saw_messages(conn, &session.account, &at)?))?;
        Ok(())
    }

    /// Ends the session (sign-out): its tokens are refused from now on.
    pub fn sign_out(&self, caller: &Caller, session: &Session) -> Result<(), AccountError> {
        let now = instant(self.now());
        self.step(caller, &AccountStep::LOGOUT, |conn, traced| {
            traced.holder(&session.account, &session.patient);
            stored::end_session(conn, &session.id, &now)?;
            Ok(Ok(()))
        })
    }

    /// R-ACT-3: a new password, the current one typed again; every other session
    /// of the account ends.
    pub fn change_password(
        &self,
        caller: &Caller,
        session: &Session,
        current: &str,
        new: &str,
        confirmation: &str,
    ) -> Result<(), AccountError> {
        let current = bounded("currentPassword", current, 1024)?;
        let new = bounded("password", new, 1024)?;
        let confirmation = bounded("passwordConfirmation", confirmation, 1024)?;
        self.limit(caller, "identity", IDENTITY_TRIES)?;
        let broken: Vec<(&'static str, Rule)> = rules::password_breaks(new, confirmation)
            .into_iter()
            .map(|rule| ("password", rule))
            .collect();
        if !broken.is_empty() {
            return Err(AccountError::broken(broken));
        }
        let key = format!("password:{}", session.account);
        let (account, locked) = self.inner.db.read_blocking(|conn| {
            Ok((
                stored::account_by_id(conn, &session.account)?,
                self.locked(conn, &key)?,
            ))
        })?;
        let verified = locked.is_none()
            && secret::verify_password(
                current,
                account.as_ref().and_then(|a| a.password_hash.as_deref()),
            );
        let hash = if verified {
            Some(secret::hash_password(new))
        } else {
            None
        };
        let now = instant(self.now());
        self.step(caller, &AccountStep::PASSWORD_CHANGED, |conn, traced| {
            traced.holder(&session.account, &session.patient);
            if let Some(locked) = self.locked(conn, &key)? {
                return Ok(Err(locked));
            }
            let Some(hash) = &hash else {
                self.failed(conn, &key)?;
                return Ok(Err(AccountError {
                    field: Some("currentPassword"),
                    ..AccountError::not_recognised("Le mot de passe actuel est incorrect.")
                }));
            };
            stored::clear_throttle(conn, &key)?;
            stored::set_password(conn, &session.account, hash, &now)?;
            end_outstanding(conn, &session.patient, None, &now)?;
            stored::end_sessions_of(conn, &session.account, Some(&session.id), &now)?;
            // An app authorised by whoever knew the old password loses its access.
            stored::revoke_all_grants(conn, &session.account, &now)?;
            Ok(Ok(()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_identities_are_read_in_their_one_shape() {
        assert_eq!(nir("1 85 06 75 123 456 39").unwrap(), "185067512345639");
        assert_eq!(nir("185062a12345639").unwrap(), "185062A12345639");
        assert!(nir("18506751234563").is_err());
        assert!(nir("1850675123456x9").is_err());
        assert_eq!(birth_date(" 1985-06-15 ").unwrap(), "1985-06-15");
        assert!(birth_date("15/06/1985").is_err());
        assert!(birth_date("1985-02-30").is_err());
        assert_eq!(mobile("06 12 34 56 78").unwrap(), "+33612345678");
        assert_eq!(mobile("+33 7 12 34 56 78").unwrap(), "+33712345678");
        assert!(mobile("01 12 34 56 78").is_err());
        assert!(email("jean@exemple.fr").is_ok());
        assert!(email("jean@exemple").is_err());
        assert!(email("jean @exemple.fr").is_err());
        assert_eq!(hidden("email", "jean@exemple.fr"), "j•••@exemple.fr");
        assert_eq!(hidden("sms", "+33612345678"), "•• •• •• •• 78");
    }
}

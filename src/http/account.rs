//! The accounts' JSON API (SPEC §11, R-ACT-1 … R-ACT-4) under `/account/`, and the
//! server's public keys at `/.well-known/jwks.json`. Bodies are JSON objects of
//! at most [`MAX_BODY`] bytes with no unknown member; refusals are
//! OperationOutcomes with a French message and, for the identifiant and password,
//! one issue per rule broken. Answers are never cached. A signed-in person holds a
//! session cookie (`__Host-dmp-session`: `Secure`, `HttpOnly`, `SameSite=Lax`)
//! and gets access tokens with it; a form of another site cannot post JSON
//! (browsers send it only after a CORS preflight, which this server never grants).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::AppState;
use crate::account::{
    self, AccountError, Accounts, Caller, CodeAsk, Contacts, Credentials, FirstSignIn, Session,
    SignedIn,
};
use crate::error::IssueCode;

type State = web::Data<AppState>;

/// Bytes an account request's body may have.
pub const MAX_BODY: usize = 8 * 1024;

/// The session cookie's name (`__Host-`: set by this host only, over HTTPS, for
/// the whole site).
pub const SESSION_COOKIE: &str = "__Host-dmp-session";

fn no_store(mut response: HttpResponse, caller: &Caller) -> HttpResponse {
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    headers.insert(header::PRAGMA, header::HeaderValue::from_static("no-cache"));
    if let Ok(value) = header::HeaderValue::from_str(&caller.request_id) {
        headers.insert(header::HeaderName::from_static("x-request-id"), value);
    }
    response
}

fn refused(error: &AccountError, caller: &Caller) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(error.status)
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::build(status);
    response.content_type(super::FHIR_JSON);
    if let Some(seconds) = error.retry_after {
        response.insert_header((header::RETRY_AFTER, seconds.to_string()));
    }
    no_store(response.body(error.outcome().to_string()), caller)
}

fn answered(value: &impl serde::Serialize, caller: &Caller) -> HttpResponse {
    no_store(HttpResponse::Ok().json(value), caller)
}

/// The body, at most [`MAX_BODY`] bytes, within the configured time.
async fn read(
    state: &AppState,
    request: &HttpRequest,
    payload: web::Payload,
) -> Result<web::Bytes, AccountError> {
    super::body::read_limited(
        request,
        payload,
        MAX_BODY,
        std::time::Duration::from_millis(state.config.body_read_timeout_ms),
    )
    .await
    .map_err(|error| AccountError {
        status: error.status.as_u16(),
        code: error.code,
        message: match error.status.as_u16() {
            413 => "Le corps de la requête est trop long.".to_owned(),
            408 => "Le corps de la requête n'est pas arrivé à temps.".to_owned(),
            _ => "Le corps de la requête n'a pas pu être lu.".to_owned(),
        },
        rules: Vec::new(),
        field: None,
        retry_after: None,
    })
}

/// The body as `T`: a JSON object (`application/json`) of at most [`MAX_BODY`].
fn body<T: DeserializeOwned>(request: &HttpRequest, bytes: &[u8]) -> Result<T, AccountError> {
    let invalid = |message: &str| AccountError {
        status: 400,
        code: IssueCode::Structure,
        message: message.to_owned(),
        rules: Vec::new(),
        field: None,
        retry_after: None,
    };
    let json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|kind| {
            let kind = kind.split(';').next().unwrap_or("").trim();
            kind.eq_ignore_ascii_case("application/json")
        });
    if !json {
        return Err(AccountError {
            status: 415,
            ..invalid("Le corps de la requête doit être du JSON (Content-Type: application/json).")
        });
    }
    serde_json::from_slice(bytes).map_err(|error| {
        invalid(&format!(
            "Le corps de la requête n'a pas la forme attendue ({}).",
            error.classify().describe()
        ))
    })
}

/// What a serde_json error was, without the text it quoted.
trait Describe {
    fn describe(self) -> &'static str;
}

impl Describe for serde_json::error::Category {
    fn describe(self) -> &'static str {
        match self {
            serde_json::error::Category::Io => "lecture",
            serde_json::error::Category::Syntax => "JSON mal formé",
            serde_json::error::Category::Data => "champ manquant, inconnu ou d'un mauvais type",
            serde_json::error::Category::Eof => "JSON incomplet",
        }
    }
}

/// The body as `B`, read within its bounds.
async fn json_body<B: DeserializeOwned>(
    state: &AppState,
    request: &HttpRequest,
    payload: web::Payload,
) -> Result<B, AccountError> {
    let bytes = read(state, request, payload).await?;
    body(request, &bytes)
}

/// A step: its body parsed, `work` run on the blocking pool, then `answer` (or the
/// refusal).
async fn step<T, B>(
    state: State,
    request: HttpRequest,
    payload: web::Payload,
    work: impl FnOnce(Accounts, Caller, B) -> Result<T, AccountError> + Send + 'static,
    answer: impl FnOnce(T, &Caller) -> HttpResponse,
) -> HttpResponse
where
    T: Send + 'static,
    B: DeserializeOwned + Send + 'static,
{
    let caller = super::pages::caller(&state, &request);
    let parsed = match json_body::<B>(&state, &request, payload).await {
        Ok(parsed) => parsed,
        Err(error) => return refused(&error, &caller),
    };
    let accounts = state.accounts.clone();
    let step_caller = caller.clone();
    match super::pages::blocking(move || work(accounts, step_caller, parsed)).await {
        Ok(value) => answer(value, &caller),
        Err(error) => refused(&error, &caller),
    }
}

/// A step answered with its value as JSON.
async fn run<T, B>(
    state: State,
    request: HttpRequest,
    payload: web::Payload,
    work: impl FnOnce(Accounts, Caller, B) -> Result<T, AccountError> + Send + 'static,
) -> HttpResponse
where
    T: serde::Serialize + Send + 'static,
    B: DeserializeOwned + Send + 'static,
{
    step(state, request, payload, work, |value, caller| {
        answered(&value, caller)
    })
    .await
}

/// `POST /account/provisional-code` (R-ACT-1): always 202, whether the NIR names a
/// space or not.
pub async fn provisional_code(
    state: State,
    request: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    step(
        state,
        request,
        payload,
        |accounts, caller, ask: CodeAsk| accounts.ask_provisional_code(&caller, ask),
        |outcome, caller| {
            no_store(
                HttpResponse::Accepted()
                    .content_type(super::FHIR_JSON)
                    .body(outcome.to_string()),
                caller,
            )
        },
    )
    .await
}

/// `POST /account/first-sign-in` (R-ACT-2): NIR, birth date, provisional code.
pub async fn first_sign_in(
    state: State,
    request: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    run(
        state,
        request,
        payload,
        |accounts, caller, ask: FirstSignIn| accounts.first_sign_in(&caller, ask),
    )
    .await
}

/// `POST /account/contacts` (R-ACT-2): the contacts confirmed.
pub async fn contacts(state: State, request: HttpRequest, payload: web::Payload) -> HttpResponse {
    run(
        state,
        request,
        payload,
        |accounts, caller, contacts: Contacts| accounts.confirm_contacts(&caller, contacts),
    )
    .await
}

/// The answer of a sign-in: the token, and the session's cookie.
fn signed_in(signed_in: SignedIn, caller: &Caller) -> HttpResponse {
    let mut response = answered(&signed_in.token, caller);
    if let Ok(cookie) = header::HeaderValue::from_str(&session_cookie(&signed_in.session)) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// The `Set-Cookie` value of a session. `SameSite=Lax`: sent when an app sends
/// the browser to `/oauth/authorize` (a top-level navigation from another site),
/// never with another site's POST; the forms carry a CSRF token besides.
pub fn session_cookie(secret: &str) -> String {
    format!("{SESSION_COOKIE}={secret}; Path=/; Secure; HttpOnly; SameSite=Lax")
}

/// The `Set-Cookie` value that removes the session's cookie.
pub fn ended_session_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0")
}

async fn run_signed_in<B: DeserializeOwned + Send + 'static>(
    state: State,
    request: HttpRequest,
    payload: web::Payload,
    work: impl FnOnce(Accounts, Caller, B) -> Result<SignedIn, AccountError> + Send + 'static,
) -> HttpResponse {
    step(state, request, payload, work, signed_in).await
}

/// `POST /account/credentials` (R-ACT-2): identifiant and password; signs in.
pub async fn credentials(
    state: State,
    request: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    run_signed_in(
        state,
        request,
        payload,
        |accounts, caller, credentials: Credentials| {
            accounts.choose_credentials(&caller, credentials)
        },
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    identifiant: String,
    password: String,
}

/// `POST /account/sign-in` (R-ACT-3): identifiant and password; a one-time code
/// is sent.
pub async fn sign_in(state: State, request: HttpRequest, payload: web::Payload) -> HttpResponse {
    run(state, request, payload, |accounts, caller, ask: SignIn| {
        accounts.sign_in(&caller, &ask.identifiant, &ask.password)
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignInCode {
    challenge: String,
    code: String,
}

/// `POST /account/sign-in/code` (R-ACT-3): the one-time code; signs in.
pub async fn sign_in_code(
    state: State,
    request: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    run_signed_in(
        state,
        request,
        payload,
        |accounts, caller, ask: SignInCode| {
            accounts.sign_in_code(&caller, &ask.challenge, &ask.code)
        },
    )
    .await
}

/// The session of the request's cookie.
async fn session_of(state: &AppState, request: &HttpRequest) -> Result<Session, AccountError> {
    let secret = request
        .cookie(SESSION_COOKIE)
        .map(|cookie| cookie.value().to_owned())
        .unwrap_or_default();
    let accounts = state.accounts.clone();
    super::pages::blocking(move || accounts.session(&secret)).await
}

/// `POST /account/token`: a new access token for the signed-in session.
pub async fn token(state: State, request: HttpRequest, payload: web::Payload) -> HttpResponse {
    let caller = super::pages::caller(&state, &request);
    if let Err(error) = json_body::<Empty>(&state, &request, payload).await {
        return refused(&error, &caller);
    }
    match session_of(&state, &request).await {
        Ok(session) => answered(&state.accounts.access_token(&session), &caller),
        Err(error) => refused(&error, &caller),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

/// `POST /account/sign-out`: ends the session; its tokens are refused from now on.
pub async fn sign_out(state: State, request: HttpRequest, payload: web::Payload) -> HttpResponse {
    let caller = super::pages::caller(&state, &request);
    if let Err(error) = json_body::<Empty>(&state, &request, payload).await {
        return refused(&error, &caller);
    }
    let session = match session_of(&state, &request).await {
        Ok(session) => session,
        Err(error) => return refused(&error, &caller),
    };
    let accounts = state.accounts.clone();
    let step_caller = caller.clone();
    match super::pages::blocking(move || accounts.sign_out(&step_caller, &session)).await {
        Ok(()) => {
            let mut response = answered(&json!({ "signedOut": true }), &caller);
            if let Ok(cookie) = header::HeaderValue::from_str(&ended_session_cookie()) {
                response.headers_mut().append(header::SET_COOKIE, cookie);
            }
            response
        }
        Err(error) => refused(&error, &caller),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PasswordChange {
    current_password: String,
    password: String,
    password_confirmation: String,
}

/// `POST /account/password` (R-ACT-3): a new password for the signed-in account.
pub async fn password(state: State, request: HttpRequest, payload: web::Payload) -> HttpResponse {
    let caller = super::pages::caller(&state, &request);
    let change = match json_body::<PasswordChange>(&state, &request, payload).await {
        Ok(change) => change,
        Err(error) => return refused(&error, &caller),
    };
    let session = match session_of(&state, &request).await {
        Ok(session) => session,
        Err(error) => return refused(&error, &caller),
    };
    let accounts = state.accounts.clone();
    let step_caller = caller.clone();
    match super::pages::blocking(move || {
        accounts.change_password(
            &step_caller,
            &session,
            &change.current_password,
            &change.password,
            &change.password_confirmation,
        )
    })
    .await
    {
        Ok(()) => answered(&json!({ "passwordChanged": true }), &caller),
        Err(error) => refused(&error, &caller),
    }
}

/// `GET /account/rules`: the rules of the identifiant and password, to show
/// before anything is typed (R-ACT-2).
pub async fn rules() -> HttpResponse {
    let texts = |rules: &[account::rules::Rule]| -> Vec<Value> {
        rules
            .iter()
            .map(|rule| json!({ "code": rule.code, "text": rule.text }))
            .collect()
    };
    HttpResponse::Ok().json(json!({
        "identifiant": texts(&account::rules::IDENTIFIANT_RULES),
        "password": texts(&account::rules::PASSWORD_RULES),
    }))
}

/// `GET /.well-known/jwks.json`: the public keys of the tokens this server issues.
pub async fn jwks(state: State) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(state.accounts.issuer().jwks())
}

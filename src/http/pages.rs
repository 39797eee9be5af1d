//! The holder's pages in French (R-ACT-2, R-ACT-3, R-ACT-4): sign-in with the
//! password then the one-time code, the account (authorised apps, password,
//! sign-out) and the consent to an app. Server-rendered (askama templates,
//! every value escaped), plain forms, no script. Every page is sent with a strict
//! Content-Security-Policy, never cached, never framed; every form carries a CSRF
//! token derived from the browser's `__Host-dmp-csrf` cookie under the server's
//! key (a planted cookie comes with no token that matches it), on top of the
//! session cookie's `SameSite=Lax`.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;

use crate::AppState;
use crate::account::smart::{AuthorizeError, AuthorizeRequest, Checked, scope_in_french};
use crate::account::{AccountError, Caller, Session, rules, secret};

type State = web::Data<AppState>;

/// The CSRF cookie's name.
const CSRF_COOKIE: &str = "__Host-dmp-csrf";
/// Bytes a form's body may have.
const MAX_FORM: usize = 8 * 1024;

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    title: &'a str,
    text: &'a str,
    link: Option<(&'a str, &'a str)>,
}

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage<'a> {
    csrf: &'a str,
    next: &'a str,
    identifiant: &'a str,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "code.html")]
struct CodePage<'a> {
    csrf: &'a str,
    next: &'a str,
    challenge: &'a str,
    channel: &'a str,
    sent_to: &'a str,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "consent.html")]
struct ConsentPage<'a> {
    csrf: &'a str,
    app_name: &'a str,
    params: Vec<(&'static str, &'a str)>,
    scopes: Vec<(String, String)>,
}

struct AppRow {
    client_id: String,
    name: String,
    scopes: String,
    since: String,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage<'a> {
    csrf: &'a str,
    apps: Vec<AppRow>,
    notice: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "password.html")]
struct PasswordPage<'a> {
    csrf: &'a str,
    rules: Vec<&'static str>,
    errors: Vec<String>,
}

/// The browser's CSRF cookie (its own, or a new one, then set) and the token its
/// forms carry, derived from the cookie under the server's pepper.
pub(super) struct Csrf {
    cookie: String,
    /// The forms' `csrf` field.
    pub(super) value: String,
    new: bool,
}

pub(super) fn csrf_of(state: &AppState, request: &HttpRequest) -> Csrf {
    let (cookie, new) = match cookie_value(request) {
        Some(cookie) => (cookie, false),
        None => (secret::token(), true),
    };
    Csrf {
        value: state.accounts.csrf_token(&cookie),
        cookie,
        new,
    }
}

/// The CSRF cookie, when it has the shape the server gives it.
fn cookie_value(request: &HttpRequest) -> Option<String> {
    request
        .cookie(CSRF_COOKIE)
        .map(|cookie| cookie.value().to_owned())
        .filter(|value| {
            value.len() == 43
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        })
}

/// Whether a form's token is the one of the browser's cookie.
pub(super) fn csrf_holds(state: &AppState, request: &HttpRequest, form: &Form) -> bool {
    let typed = form.get("csrf");
    cookie_value(request).is_some_and(|cookie| {
        !typed.is_empty() && secret::same(&state.accounts.csrf_token(&cookie), typed)
    })
}

/// A page: the security headers, the CSRF cookie when new, and `form_action`
/// origins beside this one (the consent page's form leads to the app).
pub(super) fn page(
    status: StatusCode,
    html: String,
    csrf: &Csrf,
    form_action: Option<&str>,
) -> HttpResponse {
    let mut response = HttpResponse::build(status);
    response
        .content_type("text/html; charset=utf-8")
        .insert_header((
            "Content-Security-Policy",
            format!(
                "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'{}; \
                 frame-ancestors 'none'; base-uri 'none'",
                form_action
                    .map(|origin| format!(" {origin}"))
                    .unwrap_or_default()
            ),
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::CACHE_CONTROL, "no-store"));
    if csrf.new {
        response.append_header((
            header::SET_COOKIE,
            format!(
                "{CSRF_COOKIE}={}; Path=/; Secure; HttpOnly; SameSite=Strict",
                csrf.cookie
            ),
        ));
    }
    response.body(html)
}

pub(super) fn render(template: &impl Template) -> String {
    template.render().unwrap_or_else(|error| {
        tracing::error!(%error, "a page could not be rendered");
        "<!DOCTYPE html><html lang=\"fr\"><title>Erreur</title><p>Erreur du service.</p></html>"
            .into()
    })
}

pub(super) fn message(
    status: StatusCode,
    csrf: &Csrf,
    title: &str,
    text: &str,
    link: Option<(&str, &str)>,
) -> HttpResponse {
    page(
        status,
        render(&MessagePage { title, text, link }),
        csrf,
        None,
    )
}

pub(super) fn status_of(error: &AccountError) -> StatusCode {
    StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// A refused step's page with the delay to wait, when the refusal is a limit (429).
pub(super) fn with_retry_after(seconds: Option<u64>, mut response: HttpResponse) -> HttpResponse {
    if let Some(seconds) = seconds {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
    }
    response
}

/// A redirection after a form (303: the browser follows with a GET).
pub(super) fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// Where the browser may go after signing in: a page of the portal, or back to an
/// app's authorisation request on this server; nowhere else (no open redirect).
fn safe_next(next: &str) -> &str {
    let plain = |rest: &str| {
        rest.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-'))
    };
    let portal = ["/espace", "/compte"].iter().any(|root| {
        next == *root
            || next
                .strip_prefix(root)
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(|rest| !rest.starts_with('/') && plain(rest))
    });
    if (next.starts_with("/oauth/authorize?") || portal) && !next.contains(['\r', '\n', '\\']) {
        next
    } else {
        "/espace"
    }
}

/// A form's fields.
pub(super) struct Form(pub(super) Vec<(String, String)>);

impl Form {
    pub(super) fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map_or("", |(_, value)| value.as_str())
    }

    pub(super) fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .collect()
    }
}

/// The form of a POST: `application/x-www-form-urlencoded`, at most
/// [`MAX_FORM`] bytes.
pub(super) async fn form(
    state: &AppState,
    request: &HttpRequest,
    payload: web::Payload,
) -> Result<Form, StatusCode> {
    let urlencoded = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|kind| {
            kind.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !urlencoded {
        return Err(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    let bytes = super::body::read_limited(
        request,
        payload,
        MAX_FORM,
        std::time::Duration::from_millis(state.config.body_read_timeout_ms),
    )
    .await
    .map_err(|error| error.status)?;
    Ok(Form(form_urlencoded::parse(&bytes).into_owned().collect()))
}

pub(super) fn caller(state: &AppState, request: &HttpRequest) -> Caller {
    Caller {
        request_id: uuid::Uuid::now_v7().to_string(),
        client_address: request
            .peer_addr()
            .map(|address| address.ip().to_string())
            .unwrap_or_default(),
        server: super::pipeline::base_url(state, request),
    }
}

/// The signed-in session of the browser, if any.
pub(super) async fn session(state: &AppState, request: &HttpRequest) -> Option<Session> {
    let secret_value = request
        .cookie(super::account::SESSION_COOKIE)
        .map(|cookie| cookie.value().to_owned())?;
    let accounts = state.accounts.clone();
    actix_web::rt::task::spawn_blocking(move || accounts.session(&secret_value).ok())
        .await
        .ok()
        .flatten()
}

/// Runs account work on the blocking pool (password hashes, database).
pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, AccountError> + Send + 'static,
) -> Result<T, AccountError> {
    actix_web::rt::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|_| {
            Err(AccountError {
                status: 500,
                code: crate::error::IssueCode::Exception,
                message: "Le service est momentanément indisponible.".into(),
                rules: Vec::new(),
                field: None,
                retry_after: None,
            })
        })
}

pub(super) fn refused_form(status: StatusCode, csrf: &Csrf) -> HttpResponse {
    let text = match status {
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            "Ce formulaire n'a pas été envoyé comme un formulaire."
        }
        StatusCode::PAYLOAD_TOO_LARGE => "Ce formulaire est trop long.",
        _ => "Ce formulaire n'a pas pu être lu.",
    };
    message(
        status,
        csrf,
        "Formulaire refusé",
        text,
        Some(("/connexion", "Revenir à la connexion")),
    )
}

pub(super) fn csrf_refused(csrf: &Csrf) -> HttpResponse {
    message(
        StatusCode::FORBIDDEN,
        csrf,
        "Formulaire expiré",
        "Ce formulaire a expiré ou ne vient pas de Mon espace santé. Recommencez depuis la page de connexion.",
        Some(("/connexion", "Revenir à la connexion")),
    )
}

/// A form posted from a page: read, and its CSRF token checked; or the page
/// that refuses it.
pub(super) async fn submitted(
    state: &AppState,
    request: &HttpRequest,
    payload: web::Payload,
) -> Result<(Csrf, Form), HttpResponse> {
    let csrf = csrf_of(state, request);
    let form = match form(state, request, payload).await {
        Ok(form) => form,
        Err(status) => return Err(refused_form(status, &csrf)),
    };
    if !csrf_holds(state, request, &form) {
        return Err(csrf_refused(&csrf));
    }
    Ok((csrf, form))
}

/// Runs an account step on the blocking pool, as the browser's caller.
pub(super) async fn account_step<T: Send + 'static>(
    state: &AppState,
    request: &HttpRequest,
    work: impl FnOnce(&crate::account::Accounts, &Caller) -> Result<T, AccountError> + Send + 'static,
) -> Result<T, AccountError> {
    let accounts = state.accounts.clone();
    let step_caller = caller(state, request);
    blocking(move || work(&accounts, &step_caller)).await
}

/// The response with the cookie of a session just begun.
pub(super) fn with_session_cookie(mut response: HttpResponse, secret: &str) -> HttpResponse {
    response.headers_mut().append(
        header::SET_COOKIE,
        header::HeaderValue::from_str(&super::account::session_cookie(secret))
            .expect("a cookie of base64url"),
    );
    response
}

/// `GET /connexion`: the sign-in form (R-ACT-3).
pub async fn sign_in_form(
    state: State,
    request: HttpRequest,
    query: web::Query<Vec<(String, String)>>,
) -> HttpResponse {
    let csrf = csrf_of(&state, &request);
    let next = query
        .iter()
        .find(|(name, _)| name == "next")
        .map_or("/espace", |(_, value)| safe_next(value))
        .to_owned();
    if session(&state, &request).await.is_some() {
        return see_other(&next);
    }
    let html = render(&SignInPage {
        csrf: &csrf.value,
        next: &next,
        identifiant: "",
        error: None,
    });
    page(StatusCode::OK, html, &csrf, None)
}

/// `POST /connexion`: the password; the one-time code's form follows.
pub async fn sign_in(state: State, request: HttpRequest, payload: web::Payload) -> HttpResponse {
    let (csrf, form) = match submitted(&state, &request, payload).await {
        Ok(submitted) => submitted,
        Err(response) => return response,
    };
    let next = safe_next(form.get("next")).to_owned();
    let identifiant = form.get("identifiant").to_owned();
    let password = form.get("password").to_owned();
    let typed = identifiant.clone();
    match account_step(&state, &request, move |accounts, caller| {
        accounts.sign_in(caller, &typed, &password)
    })
    .await
    {
        Ok(challenge) => page(
            StatusCode::OK,
            render(&CodePage {
                csrf: &csrf.value,
                next: &next,
                challenge: &challenge.challenge,
                channel: challenge.channel,
                sent_to: &challenge.sent_to,
                error: None,
            }),
            &csrf,
            None,
        ),
        Err(error) => {
            let shown: String = identifiant.chars().take(64).collect();
            with_retry_after(
                error.retry_after,
                page(
                    status_of(&error),
                    render(&SignInPage {
                        csrf: &csrf.value,
                        next: &next,
                        identifiant: &shown,
                        error: Some(error.message),
                    }),
                    &csrf,
                    None,
                ),
            )
        }
    }
}

/// `POST /connexion/code`: the one-time code; signed in, the browser goes on.
pub async fn sign_in_code(
    state: State,
    request: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let (csrf, form) = match submitted(&state, &request, payload).await {
        Ok(submitted) => submitted,
        Err(response) => return response,
    };
    let next = safe_next(form.get("next")).to_owned();
    let challenge = form.get("challenge").to_owned();
    let code = form.get("code").to_owned();
    let typed_challenge = challenge.clone();
    match account_step(&state, &request, move |accounts, caller| {
        accounts.sign_in_code(caller, &typed_challenge, &code)
    })
    .await
    {
        Ok(signed_in) => with_session_cookie(see_other(&next), &signed_in.session),
        Err(error) => {
            let channel = if form.get("channel") == "sms" {
                "sms"
            } else {
                "email"
            };
            let sent_to: String = form.get("sent_to").chars().take(80).collect();
            with_retry_after(
                error.retry_after,
                page(
                    status_of(&error),
                    render(&CodePage {
                        csrf: &csrf.value,
                        next: &next,
                        challenge: &challenge.chars().take(64).collect::<String>(),
                        channel,
                        sent_to: &sent_to,
                        error: Some(error.message),
                    }),
                    &csrf,
                    None,
                ),
            )
        }
    }
}

/// `POST /deconnexion`: ends the session.
pub async fn sign_out(state: State, request: HttpRequest, payload: web::Payload) -> HttpResponse {
    let (csrf, _form) = match submitted(&state, &request, payload).await {
        Ok(submitted) => submitted,
        Err(response) => return response,
    };
    if let Some(session) = session(&state, &request).await {
        let _ = account_step(&state, &request, move |accounts, caller| {
            accounts.sign_out(caller, &session)
        })
        .await;
    }
    let mut response = message(
        StatusCode::OK,
        &csrf,
        "Vous êtes déconnecté(e)",
        "Votre session a pris fin.",
        Some(("/connexion", "Me reconnecter")),
    );
    response.headers_mut().append(
        header::SET_COOKIE,
        header::HeaderValue::from_str(&super::account::ended_session_cookie()).expect("a cookie"),
    );
    response
}

/// The account page of a session.
async fn account_page(
    state: &AppState,
    csrf: &Csrf,
    session: Session,
    notice: Option<&str>,
) -> HttpResponse {
    let accounts = state.accounts.clone();
    let apps = match blocking(move || accounts.apps(&session)).await {
        Ok(apps) => apps,
        Err(error) => {
            return with_retry_after(
                error.retry_after,
                message(status_of(&error), csrf, "Erreur", &error.message, None),
            );
        }
    };
    let apps = apps
        .into_iter()
        .map(|(grant, name)| AppRow {
            client_id: grant.client_id,
            name,
            scopes: grant
                .scopes
                .split_whitespace()
                .map(scope_in_french)
                .collect::<Vec<_>>()
                .join(" ; "),
            since: grant.created_at.get(..10).unwrap_or("").to_owned(),
        })
        .collect();
    page(
        StatusCode::OK,
        render(&AccountPage {
            csrf: &csrf.value,
            apps,
            notice,
        }),
        csrf,
        None,
    )
}

/// `GET /compte`: the signed-in holder's account.
pub async fn account(state: State, request: HttpRequest) -> HttpResponse {
    let csrf = csrf_of(&state, &request);
    match session(&state, &request).await {
        Some(session) => account_page(&state, &csrf, session, None).await,
        None => see_other("/connexion?next=/compte"),
    }
}

/// `POST /compte/applications/retirer`: the holder revokes an app (R-ACT-4).
pub async fn revoke_app(state: State, request: HttpRequest, payload: web::Payload) -> HttpResponse {
    let (csrf, form) = match submitted(&state, &request, payload).await {
        Ok(submitted) => submitted,
        Err(response) => return response,
    };
    let Some(session) = session(&state, &request).await else {
        return see_other("/connexion?next=/compte");
    };
    let client_id = form.get("client_id").to_owned();
    let revoking = session.clone();
    match account_step(&state, &request, move |accounts, caller| {
        accounts.revoke_app(caller, &revoking, &client_id)
    })
    .await
    {
        Ok(_) => {
            account_page(
                &state,
                &csrf,
                session,
                Some("L'autorisation a été retirée."),
            )
            .await
        }
        Err(error) => with_retry_after(
            error.retry_after,
            message(
                status_of(&error),
                &csrf,
                "Erreur",
                &error.message,
                Some(("/compte", "Retour à mon compte")),
            ),
        ),
    }
}

fn password_page(csrf: &Csrf, status: StatusCode, errors: Vec<String>) -> HttpResponse {
    page(
        status,
        render(&PasswordPage {
            csrf: &csrf.value,
            rules: rules::PASSWORD_RULES.iter().map(|rule| rule.text).collect(),
            errors,
        }),
        csrf,
        None,
    )
}

/// `GET /compte/mot-de-passe`: the password change form, its rules shown first.
pub async fn password_form(state: State, request: HttpRequest) -> HttpResponse {
    let csrf = csrf_of(&state, &request);
    match session(&state, &request).await {
        Some(_) => password_page(&csrf, StatusCode::OK, Vec::new()),
        None => see_other("/connexion?next=/compte"),
    }
}

/// `POST /compte/mot-de-passe` (R-ACT-3).
pub async fn password(state: State, request: HttpRequest, payload: web::Payload) -> HttpResponse {
    let (csrf, form) = match submitted(&state, &request, payload).await {
        Ok(submitted) => submitted,
        Err(response) => return response,
    };
    let Some(session) = session(&state, &request).await else {
        return see_other("/connexion?next=/compte");
    };
    let (current, new, confirmation) = (
        form.get("current_password").to_owned(),
        form.get("password").to_owned(),
        form.get("password_confirmation").to_owned(),
    );
    let changing = session.clone();
    match account_step(&state, &request, move |accounts, caller| {
        accounts.change_password(caller, &changing, &current, &new, &confirmation)
    })
    .await
    {
        Ok(()) => {
            account_page(
                &state,
                &csrf,
                session,
                Some("Votre mot de passe a été changé."),
            )
            .await
        }
        Err(error) => {
            let mut errors = vec![error.message.clone()];
            errors.extend(error.rules.iter().map(|(_, rule)| rule.text.to_owned()));
            with_retry_after(
                error.retry_after,
                password_page(&csrf, status_of(&error), errors),
            )
        }
    }
}

/// The origin (scheme, host and port) of a URL, for the CSP's `form-action`.
fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    let plain = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    plain.then(|| format!("{scheme}://{host}"))
}

fn consent_page(csrf: &Csrf, checked: &Checked) -> HttpResponse {
    let request = &checked.request;
    let html = render(&ConsentPage {
        csrf: &csrf.value,
        app_name: &checked.app.name,
        params: request.pairs(),
        scopes: checked
            .scopes
            .iter()
            .map(|scope| (scope.clone(), scope_in_french(scope)))
            .collect(),
    });
    page(
        StatusCode::OK,
        html,
        csrf,
        origin(&request.redirect_uri).as_deref(),
    )
}

/// What to answer a refused authorisation request.
fn authorize_refused(csrf: &Csrf, error: AuthorizeError) -> HttpResponse {
    match error {
        AuthorizeError::Shown(text) => message(
            StatusCode::BAD_REQUEST,
            csrf,
            "Demande d'autorisation refusée",
            &text,
            None,
        ),
        AuthorizeError::Redirect(location) => HttpResponse::Found()
            .insert_header((header::LOCATION, location))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .finish(),
    }
}

/// `GET /oauth/authorize` (SMART standalone launch): checked, then the sign-in if
/// needed, then the consent page.
pub async fn authorize(state: State, request: HttpRequest) -> HttpResponse {
    let csrf = csrf_of(&state, &request);
    let pairs: Vec<(String, String)> = form_urlencoded::parse(request.query_string().as_bytes())
        .into_owned()
        .collect();
    match checked_and_signed_in(&state, &request, &csrf, &pairs).await {
        Ok((checked, _)) => consent_page(&csrf, &checked),
        Err(response) => response,
    }
}

/// An authorisation request (a query, or the consent form's fields) checked, and
/// the browser's session; or what to answer instead: the refusal, or the sign-in
/// that comes back to the request.
async fn checked_and_signed_in(
    state: &AppState,
    request: &HttpRequest,
    csrf: &Csrf,
    pairs: &[(String, String)],
) -> Result<(Checked, Session), HttpResponse> {
    let asked = AuthorizeRequest::from_pairs(pairs).map_err(|text| {
        message(
            StatusCode::BAD_REQUEST,
            csrf,
            "Demande d'autorisation refusée",
            &text,
            None,
        )
    })?;
    let base = super::pipeline::base_url(state, request);
    let checked = state
        .accounts
        .check_authorize(asked, &base)
        .map_err(|error| authorize_refused(csrf, error))?;
    let Some(session) = session(state, request).await else {
        let next = form_urlencoded::Serializer::new(String::new())
            .append_pair("next", &checked.request.path())
            .finish();
        return Err(see_other(&format!("/connexion?{next}")));
    };
    Ok((checked, session))
}

/// `POST /oauth/authorize`: the holder's decision on the consent page.
pub async fn authorize_decision(
    state: State,
    request: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let (csrf, form) = match submitted(&state, &request, payload).await {
        Ok(submitted) => submitted,
        Err(response) => return response,
    };
    let (checked, session) = match checked_and_signed_in(&state, &request, &csrf, &form.0).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let approved = (form.get("decision") == "allow").then(|| form.all("granted"));
    match account_step(&state, &request, move |accounts, caller| {
        accounts.decide_authorize(caller, &session, &checked, approved.as_deref())
    })
    .await
    {
        Ok(location) => HttpResponse::SeeOther()
            .insert_header((header::LOCATION, location))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .finish(),
        Err(error) => with_retry_after(
            error.retry_after,
            message(status_of(&error), &csrf, "Erreur", &error.message, None),
        ),
    }
}

/// `GET /static/site.css`: the pages' stylesheet.
pub async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(include_str!("../../templates/site.css"))
}

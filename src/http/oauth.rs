//! SMART App Launch's machine endpoints (R-ACT-4): the discovery document, the
//! token endpoint (authorisation code with PKCE, refresh tokens changed at each
//! use) and revocation (RFC 7009). Their answers are JSON, never cached, readable
//! by apps of any origin (no cookie is read here). The browser's side,
//! `/oauth/authorize`, is in `pages`.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::AppState;
use crate::account::smart::{APP_TOKEN_SECONDS, OAuthError};

type State = web::Data<AppState>;

const MAX_FORM: usize = 8 * 1024;

fn json_answer(status: u16, body: &serde_json::Value) -> HttpResponse {
    HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status)
            .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR),
    )
    .insert_header((header::CACHE_CONTROL, "no-store"))
    .insert_header((header::PRAGMA, "no-cache"))
    .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
    .json(body)
}

fn refused(error: &OAuthError) -> HttpResponse {
    json_answer(error.status, &error.body())
}

/// The form of a token or revocation request.
async fn form(
    state: &AppState,
    request: &HttpRequest,
    payload: web::Payload,
) -> Result<Vec<(String, String)>, OAuthError> {
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
    let invalid = |description: &str| OAuthError {
        status: 400,
        error: "invalid_request",
        description: description.to_owned(),
    };
    if !urlencoded {
        return Err(invalid(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let bytes = super::body::read_limited(
        request,
        payload,
        MAX_FORM,
        std::time::Duration::from_millis(state.config.body_read_timeout_ms),
    )
    .await
    .map_err(|_| invalid("the body is too long or did not arrive"))?;
    Ok(form_urlencoded::parse(&bytes).into_owned().collect())
}

/// `POST /oauth/token`.
pub async fn token(state: State, request: HttpRequest, payload: web::Payload) -> HttpResponse {
    let form = match form(&state, &request, payload).await {
        Ok(form) => form,
        Err(error) => return refused(&error),
    };
    let accounts = state.accounts.clone();
    let step_caller = super::pages::caller(&state, &request);
    match actix_web::rt::task::spawn_blocking(move || accounts.token(&step_caller, &form)).await {
        Ok(Ok(answer)) => json_answer(200, &answer),
        Ok(Err(error)) => refused(&error),
        Err(_) => json_answer(500, &json!({ "error": "server_error" })),
    }
}

/// `POST /oauth/revoke` (RFC 7009): 200 whether the token was known or not.
pub async fn revoke(state: State, request: HttpRequest, payload: web::Payload) -> HttpResponse {
    let form = match form(&state, &request, payload).await {
        Ok(form) => form,
        Err(error) => return refused(&error),
    };
    let accounts = state.accounts.clone();
    let step_caller = super::pages::caller(&state, &request);
    match actix_web::rt::task::spawn_blocking(move || accounts.revoke_token(&step_caller, &form))
        .await
    {
        Ok(Ok(())) => json_answer(200, &json!({})),
        Ok(Err(error)) => refused(&error),
        Err(_) => json_answer(500, &json!({ "error": "server_error" })),
    }
}

/// `GET /.well-known/smart-configuration`: what an app needs to launch.
pub async fn smart_configuration(state: State, request: HttpRequest) -> HttpResponse {
    let base = super::pipeline::base_url(&state, &request);
    HttpResponse::Ok()
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        // Its URLs follow the request's Host (README, `--public-base-url`): no
        // shared cache keeps one Host's answer for another's.
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({
            "authorization_endpoint": format!("{base}/oauth/authorize"),
            "token_endpoint": format!("{base}/oauth/token"),
            "revocation_endpoint": format!("{base}/oauth/revoke"),
            "jwks_uri": format!("{base}/.well-known/jwks.json"),
            "management_endpoint": format!("{base}/compte"),
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "response_types_supported": ["code"],
            "token_endpoint_auth_methods_supported": ["none"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": [
                "launch/patient", "offline_access",
                "patient/*.rs", "patient/*.read", "patient/Patient.rs",
                "patient/DocumentReference.rs", "patient/DocumentReference.cruds",
                "patient/Binary.r", "patient/Communication.rs", "patient/Consent.rs",
                "patient/AuditEvent.rs"
            ],
            "capabilities": [
                "launch-standalone", "client-public", "context-standalone-patient",
                "permission-patient", "permission-offline",
                "permission-v1", "permission-v2"
            ],
            "access_token_lifetime_seconds": APP_TOKEN_SECONDS,
        }))
}

//! A page acting for the signed-in holder through the FHIR API: the page builds
//! the request a FHIR client would send (the holder's own access token, the FHIR
//! media type) and runs it through the same pipeline, so that every rule and the
//! trace apply to what a page does exactly as to any client (R-ACT-4, R-UI-1).
//! The request is made in memory with actix's request builder (no loopback
//! connection: the server may listen on TLS with client certificates, or on an
//! address it cannot reach itself).

use actix_web::http::{Method, header};
use actix_web::{HttpRequest, HttpResponse};

use super::pipeline::{self, Call};
use crate::AppState;
use crate::error::ApiError;

/// Runs `classify`'s call as the bearer of `token`, from the browser's address
/// and host, asking for `accept`.
pub async fn call_as(
    state: &AppState,
    browser: &HttpRequest,
    token: &str,
    method: Method,
    path: &str,
    accept: &str,
    classify: impl FnOnce(actix_web::web::Bytes) -> Result<Call, ApiError>,
) -> HttpResponse {
    let mut request = actix_web::test::TestRequest::default()
        .method(method)
        .uri(path)
        .insert_header((header::AUTHORIZATION, format!("Bearer {token}")))
        .insert_header((header::ACCEPT, accept.to_owned()));
    if let Some(host) = browser.headers().get(header::HOST) {
        request = request.insert_header((header::HOST, host.clone()));
    }
    if let Some(address) = browser.peer_addr() {
        request = request.peer_addr(address);
    }
    let request = request.to_http_request();
    pipeline::run(state, &request, None, classify).await
}

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
    // An id a page was given (a path segment, a form field) may make no URI: it
    // names no resource.
    if path.parse::<actix_web::http::Uri>().is_err() {
        return actix_web::ResponseError::error_response(&ApiError::not_found(
            "no resource has this id",
        ));
    }
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

/// A FHIR call refused or failed: its status and the OperationOutcome's words.
#[derive(Debug, Clone)]
pub struct Refused {
    pub status: u16,
    pub message: String,
}

/// The FHIR API as the signed-in holder's pages call it.
pub struct Fhir<'a> {
    state: &'a AppState,
    browser: &'a HttpRequest,
    token: String,
}

/// The body of an answer, read whole (an answer is bounded by `--max-answer-bytes`).
async fn body_of(answer: HttpResponse) -> (u16, Option<String>, actix_web::web::Bytes) {
    let status = answer.status().as_u16();
    let kind = answer
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let bytes = actix_web::body::to_bytes(answer.into_body())
        .await
        .unwrap_or_default();
    (status, kind, bytes)
}

fn json_answer(status: u16, bytes: &[u8]) -> Result<serde_json::Value, Refused> {
    let value: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    if (200..300).contains(&status) {
        Ok(value)
    } else {
        Err(Refused {
            status,
            message: value
                .pointer("/issue/0/details/text")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("refusé")
                .to_owned(),
        })
    }
}

impl<'a> Fhir<'a> {
    pub fn new(state: &'a AppState, browser: &'a HttpRequest, token: String) -> Fhir<'a> {
        Fhir {
            state,
            browser,
            token,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        accept: &str,
        classify: impl FnOnce(actix_web::web::Bytes) -> Result<Call, ApiError>,
    ) -> HttpResponse {
        call_as(
            self.state,
            self.browser,
            &self.token,
            method,
            path,
            accept,
            classify,
        )
        .await
    }

    /// A search of `type_name` with these parameters: the searchset Bundle.
    pub async fn search(
        &self,
        type_name: &str,
        params: Vec<(String, String)>,
    ) -> Result<serde_json::Value, Refused> {
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&params)
            .finish();
        let name = type_name.to_owned();
        let answer = self
            .call(
                Method::GET,
                &format!("/{type_name}?{query}"),
                super::FHIR_JSON,
                move |_| {
                    super::handlers::resource_call(
                        &name,
                        crate::service::Operation::Search {
                            params,
                            strict: false,
                        },
                    )
                },
            )
            .await;
        let (status, _, bytes) = body_of(answer).await;
        json_answer(status, &bytes)
    }

    pub async fn read(&self, type_name: &str, id: &str) -> Result<serde_json::Value, Refused> {
        let (status, _, bytes) = body_of(self.read_as(type_name, id, super::FHIR_JSON).await).await;
        json_answer(status, &bytes)
    }

    /// A read asking for `accept` (a Binary in its own media type): the answer.
    pub async fn read_as(&self, type_name: &str, id: &str, accept: &str) -> HttpResponse {
        let (name, id_owned) = (type_name.to_owned(), id.to_owned());
        self.call(
            Method::GET,
            &format!("/{type_name}/{id}"),
            accept,
            move |_| {
                super::handlers::resource_call(
                    &name,
                    crate::service::Operation::Read { id: id_owned },
                )
            },
        )
        .await
    }

    /// A read's status, media type and bytes (a Binary).
    pub async fn read_bytes(
        &self,
        type_name: &str,
        id: &str,
        accept: &str,
    ) -> (u16, Option<String>, actix_web::web::Bytes) {
        body_of(self.read_as(type_name, id, accept).await).await
    }

    /// A JSON Patch of the resource.
    pub async fn patch(
        &self,
        type_name: &str,
        id: &str,
        operations: serde_json::Value,
    ) -> Result<serde_json::Value, Refused> {
        let (name, id_owned) = (type_name.to_owned(), id.to_owned());
        let answer = self
            .call(
                Method::PATCH,
                &format!("/{type_name}/{id}"),
                super::FHIR_JSON,
                move |_| {
                    super::handlers::resource_call(
                        &name,
                        crate::service::Operation::Patch {
                            id: id_owned,
                            patch: crate::fhir::patch::PatchDocument::Json(operations),
                            if_match: None,
                        },
                    )
                },
            )
            .await;
        let (status, _, bytes) = body_of(answer).await;
        json_answer(status, &bytes)
    }

    pub async fn delete(&self, type_name: &str, id: &str) -> Result<(), Refused> {
        let (name, id_owned) = (type_name.to_owned(), id.to_owned());
        let answer = self
            .call(
                Method::DELETE,
                &format!("/{type_name}/{id}"),
                super::FHIR_JSON,
                move |_| {
                    super::handlers::resource_call(
                        &name,
                        crate::service::Operation::Delete {
                            id: id_owned,
                            if_match: None,
                        },
                    )
                },
            )
            .await;
        let (status, _, bytes) = body_of(answer).await;
        json_answer(status, &bytes).map(|_| ())
    }

    pub async fn create(
        &self,
        type_name: &str,
        resource: serde_json::Value,
    ) -> Result<serde_json::Value, Refused> {
        let name = type_name.to_owned();
        let answer = self
            .call(
                Method::POST,
                &format!("/{type_name}"),
                super::FHIR_JSON,
                move |_| {
                    super::handlers::resource_call(
                        &name,
                        crate::service::Operation::Create {
                            body: crate::fhir::stored::Incoming::from_value(resource),
                            if_none_exist: None,
                        },
                    )
                },
            )
            .await;
        let (status, _, bytes) = body_of(answer).await;
        json_answer(status, &bytes)
    }
}

impl Fhir<'_> {
    /// `POST [type]/[id]/$name` with these parameters, answered in `accept`.
    pub async fn invoke(
        &self,
        type_name: &str,
        id: &str,
        name: &str,
        params: Vec<(String, String)>,
        accept: &str,
    ) -> (u16, Option<String>, actix_web::web::Bytes) {
        let (type_owned, id_owned, name_owned) =
            (type_name.to_owned(), id.to_owned(), name.to_owned());
        let answer = self
            .call(
                Method::POST,
                &format!("/{type_name}/{id}/{name}"),
                accept,
                move |_| {
                    super::handlers::resource_call(
                        &type_owned,
                        crate::service::Operation::Invoke {
                            id: id_owned,
                            name: name_owned,
                            params,
                        },
                    )
                },
            )
            .await;
        body_of(answer).await
    }

    /// [`Fhir::invoke`] answered in FHIR JSON.
    pub async fn invoke_json(
        &self,
        type_name: &str,
        id: &str,
        name: &str,
        params: Vec<(String, String)>,
    ) -> Result<serde_json::Value, Refused> {
        let (status, _, bytes) = self
            .invoke(type_name, id, name, params, super::FHIR_JSON)
            .await;
        json_answer(status, &bytes)
    }
}

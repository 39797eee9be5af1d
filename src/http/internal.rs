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

/// A FHIR call refused or failed: its status, the OperationOutcome's words and the
/// rule that refused, if it says.
#[derive(Debug, Clone)]
pub struct Refused {
    pub status: u16,
    pub message: String,
    pub rule: Option<String>,
    /// `message` is the portal's own words, in French, for the holder.
    pub told: bool,
}

impl Refused {
    /// A refusal a page decides itself, said in French.
    pub fn told(status: u16, text: impl Into<String>) -> Refused {
        Refused {
            status,
            message: text.into(),
            rule: None,
            told: true,
        }
    }

    /// The refusal an answer of the FHIR API carries (its OperationOutcome).
    pub fn of_answer(status: u16, bytes: &[u8]) -> Refused {
        let value: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
        Refused {
            status,
            message: value
                .pointer("/issue/0/details/text")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("refusé")
                .to_owned(),
            rule: value
                .pointer("/issue/0/diagnostics")
                .and_then(serde_json::Value::as_str)
                .and_then(|diagnostics| diagnostics.strip_prefix("rule "))
                .map(str::to_owned),
            told: false,
        }
    }

    /// What the holder is told, in French: the API's words are for developers (and
    /// in English), so the page says what the status and the rule mean for them.
    pub fn in_french(&self) -> String {
        if self.told {
            return self.message.clone();
        }
        let by_rule = match self.rule.as_deref() {
            Some("R-LIFE-2") if self.status == 409 => {
                "Votre espace contient déjà des documents ou un profil médical : vous pouvez le clôturer (et le rouvrir plus tard) plutôt que vous y opposer."
            }
            Some("R-LIFE-2") => {
                "Vous vous êtes opposé(e) à Mon espace santé : activez votre espace pour y accéder."
            }
            Some("R-LIFE-3") if self.status == 409 => {
                "Votre espace est clôturé : rouvrez-le d'abord."
            }
            Some("R-LIFE-3") => "Votre espace est clôturé : rouvrez-le pour y accéder.",
            Some("R-LIFE-5") => {
                "L'accès d'un représentant légal prend fin à la majorité de la personne représentée."
            }
            Some("R-PAT-2") => {
                "Un document déposé par un professionnel ne peut être ni modifié ni supprimé par vous ; vous pouvez en revanche le masquer."
            }
            Some("R-PAT-3") => "Ce réglage de confidentialité n'est pas possible.",
            Some("R-MSG-1") => {
                "Vous pouvez répondre à un message, mais seul un professionnel de santé peut commencer une conversation."
            }
            Some("R-MSG-4") => {
                "Cette pièce jointe ne peut pas être enregistrée dans vos documents."
            }
            Some("R-ACC-13" | "R-ACC-12" | "R-PAT-1" | "R-PAT-5") => {
                "Cette action ne vous est pas permise."
            }
            _ => "",
        };
        if !by_rule.is_empty() {
            return by_rule.to_owned();
        }
        match self.status {
            401 => "Votre session a pris fin : reconnectez-vous.",
            403 => "Cette action ne vous est pas permise.",
            404 | 410 => "Cet élément n'existe pas, ou plus.",
            409 => "Cette action n'est pas possible dans l'état actuel de votre espace.",
            412 => "L'élément a changé entre-temps : rechargez la page et recommencez.",
            413 => "C'est trop volumineux.",
            415 => "Ce type de fichier n'est pas accepté.",
            400 | 422 => "Les informations envoyées ne sont pas valides.",
            429 => "Trop de demandes à la suite : réessayez dans quelques instants.",
            _ => "Le service est momentanément indisponible : réessayez plus tard.",
        }
        .to_owned()
    }
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
    if (200..300).contains(&status) {
        Ok(serde_json::from_slice(bytes).unwrap_or_default())
    } else {
        Err(Refused::of_answer(status, bytes))
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

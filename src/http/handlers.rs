//! Thin actix handlers: each reads what its route gives (path, query, headers, body)
//! and hands the pipeline a classification closure.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::FHIR_JSON;
use super::body::{content_type, is_fhir_json, require_fhir_json, unsupported};
use super::pipeline::{Call, run};
use crate::AppState;
use crate::error::{ApiError, IssueCode};
use crate::fhir::definitions::{self, Interaction, ResourceDef};
use crate::fhir::patch::PatchDocument;
use crate::fhir::stored::Incoming;
use crate::service::Operation;

type State = web::Data<AppState>;

/// The served type named by the route, or 404.
fn resource_def(type_name: &str) -> Result<&'static ResourceDef, ApiError> {
    definitions::resource(type_name).ok_or_else(|| {
        ApiError::not_found(format!(
            "resource type {type_name:?} is not served by this server"
        ))
    })
}

/// A resource call, 405 when the type does not support the interaction.
pub(super) fn resource_call(type_name: &str, operation: Operation) -> Result<Call, ApiError> {
    let def = resource_def(type_name)?;
    // An id no resource can have names nothing (a PUT says why it cannot create it).
    if let Some(id) = operation.id()
        && !matches!(operation, Operation::Update { .. })
        && !crate::fhir::is_valid_id(id)
    {
        return Err(ApiError::not_found(format!(
            "{}/{id:?} is not known",
            def.name
        )));
    }
    let interaction: Interaction = operation.interaction();
    if !def.supports(interaction) {
        return Err(ApiError::method_not_allowed(format!(
            "{} does not support {}",
            def.name,
            interaction.code()
        )));
    }
    Ok(Call::Resource { def, operation })
}

fn query_pairs(request: &HttpRequest) -> Vec<(String, String)> {
    form_urlencoded::parse(request.query_string().as_bytes())
        .into_owned()
        .collect()
}

fn header_value(request: &HttpRequest, name: &str) -> Option<String> {
    request
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// `Prefer: handling=strict` makes unknown search parameters an error.
fn strict_handling(request: &HttpRequest) -> bool {
    request
        .headers()
        .get_all("Prefer")
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split([',', ';']))
        .any(|part| part.trim() == "handling=strict")
}

fn error(error: ApiError) -> HttpResponse {
    error.error_response()
}

pub async fn metadata(state: State, request: HttpRequest) -> HttpResponse {
    if let Err(failure) = super::body::negotiate(&request, false) {
        return error(failure);
    }
    let base = super::pipeline::base_url(&state, &request);
    HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(super::capability::capability_statement_text(&base).to_string())
}

/// `GET /healthz`: the process answers (for load balancers and orchestrators). No
/// database, no token, no trace: it says nothing about anyone.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

/// `GET /OperationDefinition/{id}`: the definitions the CapabilityStatement names,
/// public like the CapabilityStatement.
pub async fn operation_definition(
    request: HttpRequest,
    path: web::Path<(String,)>,
) -> HttpResponse {
    if let Err(failure) = super::body::negotiate(&request, false) {
        return error(failure);
    }
    let (id,) = path.into_inner();
    match super::capability::operation_definition(&id) {
        Some(text) => HttpResponse::Ok().content_type(FHIR_JSON).body(text),
        None => error(ApiError::not_found(format!(
            "OperationDefinition/{id} is not known"
        ))),
    }
}

pub async fn method_not_allowed(request: HttpRequest) -> HttpResponse {
    error(ApiError::method_not_allowed(format!(
        "{} is not allowed on {}",
        request.method(),
        request.path()
    )))
}

/// Any path the router does not know.
pub async fn not_found(request: HttpRequest) -> HttpResponse {
    error(ApiError::not_found(format!(
        "no such endpoint: {}",
        request.path()
    )))
}

pub async fn read(
    state: State,
    request: HttpRequest,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (type_name, id) = path.into_inner();
    run(&state, &request, None, |_| {
        resource_call(&type_name, Operation::Read { id })
    })
    .await
}

pub async fn vread(
    state: State,
    request: HttpRequest,
    path: web::Path<(String, String, String)>,
) -> HttpResponse {
    let (type_name, id, version) = path.into_inner();
    run(&state, &request, None, |_| {
        resource_call(&type_name, Operation::Vread { id, version })
    })
    .await
}

pub async fn search_get(
    state: State,
    request: HttpRequest,
    path: web::Path<(String,)>,
) -> HttpResponse {
    let (type_name,) = path.into_inner();
    let params = query_pairs(&request);
    let strict = strict_handling(&request);
    run(&state, &request, None, |_| {
        resource_call(&type_name, Operation::Search { params, strict })
    })
    .await
}

/// POST `_search`: parameters in a form body (and possibly the URL too).
pub async fn search_post(
    state: State,
    request: HttpRequest,
    path: web::Path<(String,)>,
    payload: web::Payload,
) -> HttpResponse {
    let (type_name,) = path.into_inner();
    let strict = strict_handling(&request);
    let mut params = query_pairs(&request);
    run(&state, &request, Some(payload), |received| {
        match content_type(&request).as_deref() {
            Some("application/x-www-form-urlencoded") => {}
            None if received.is_empty() => {}
            other => {
                return Err(unsupported(&format!(
                    "POST _search takes application/x-www-form-urlencoded, not {}",
                    other.unwrap_or("no Content-Type")
                )));
            }
        }
        params.extend(form_urlencoded::parse(&received).into_owned());
        resource_call(&type_name, Operation::Search { params, strict })
    })
    .await
}

pub async fn history_type(
    state: State,
    request: HttpRequest,
    path: web::Path<(String,)>,
) -> HttpResponse {
    let (type_name,) = path.into_inner();
    let params = query_pairs(&request);
    run(&state, &request, None, |_| {
        resource_call(&type_name, Operation::HistoryType { params })
    })
    .await
}

pub async fn history_instance(
    state: State,
    request: HttpRequest,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (type_name, id) = path.into_inner();
    let params = query_pairs(&request);
    run(&state, &request, None, |_| {
        resource_call(&type_name, Operation::HistoryInstance { id, params })
    })
    .await
}

/// `POST [type]/[id]/$name`: the operation's inputs are the query's parameters and,
/// when there is a body, the Parameters resource's `valueX` primitives.
pub async fn operation(
    state: State,
    request: HttpRequest,
    path: web::Path<(String, String, String)>,
    payload: web::Payload,
) -> HttpResponse {
    let (type_name, id, name) = path.into_inner();
    run(&state, &request, Some(payload), |received| {
        if !name.starts_with('$') {
            return Err(ApiError::not_found(format!(
                "no such endpoint: {}",
                request.path()
            )));
        }
        let mut params = query_pairs(&request);
        if !received.is_empty() {
            require_fhir_json(&request)?;
            let parameters = Incoming::parse(&received)?;
            if parameters.resource_type() != Some("Parameters") {
                return Err(ApiError::bad_request(
                    IssueCode::Invalid,
                    "an operation's body must be a Parameters resource",
                ));
            }
            for parameter in parameters.value()["parameter"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let Some(key) = parameter["name"].as_str() else {
                    continue;
                };
                let value = parameter.as_object().and_then(|fields| {
                    fields.iter().find_map(|(field, value)| {
                        field.strip_prefix("value").map(|_| match value {
                            Value::String(text) => text.clone(),
                            other => other.to_string(),
                        })
                    })
                });
                if let Some(value) = value {
                    params.push((key.to_owned(), value));
                }
            }
        }
        resource_call(&type_name, Operation::Invoke { id, name, params })
    })
    .await
}

/// A Binary posted in its own media type becomes a Binary resource; the
/// `X-Security-Context` header (FHIR R4 §2.42) names the resource whose access
/// rules it follows.
fn binary_from_raw(request: &HttpRequest, media_type: &str, bytes: &[u8]) -> Incoming {
    let mut binary = json!({
        "resourceType": "Binary",
        "contentType": media_type,
        "data": STANDARD.encode(bytes),
    });
    if let Some(context) = header_value(request, "X-Security-Context") {
        binary["securityContext"] = json!({ "reference": context });
    }
    Incoming::from_value(binary)
}

pub async fn create(
    state: State,
    request: HttpRequest,
    path: web::Path<(String,)>,
    payload: web::Payload,
) -> HttpResponse {
    let (type_name,) = path.into_inner();
    let if_none_exist = header_value(&request, "If-None-Exist");
    run(&state, &request, Some(payload), |received| {
        let media_type = content_type(&request);
        let incoming = match media_type.as_deref() {
            Some(media_type) if type_name == "Binary" && !is_fhir_json(media_type) => {
                if media_type.contains("xml") && media_type.contains("fhir") {
                    return Err(unsupported(
                        "XML is not supported: send application/fhir+json",
                    ));
                }
                binary_from_raw(&request, media_type, &received)
            }
            _ => {
                require_fhir_json(&request)?;
                Incoming::parse(&received)?
            }
        };
        resource_call(
            &type_name,
            Operation::Create {
                body: incoming,
                if_none_exist,
            },
        )
    })
    .await
}

pub async fn update(
    state: State,
    request: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> HttpResponse {
    let (type_name, id) = path.into_inner();
    let if_match = header_value(&request, header::IF_MATCH.as_str());
    run(&state, &request, Some(payload), |received| {
        require_fhir_json(&request)?;
        let incoming = Incoming::parse(&received)?;
        resource_call(
            &type_name,
            Operation::Update {
                id,
                body: incoming,
                if_match,
            },
        )
    })
    .await
}

pub async fn patch(
    state: State,
    request: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> HttpResponse {
    let (type_name, id) = path.into_inner();
    let if_match = header_value(&request, header::IF_MATCH.as_str());
    run(&state, &request, Some(payload), |received| {
        let patch = patch_document(&request, &received)?;
        resource_call(
            &type_name,
            Operation::Patch {
                id,
                patch,
                if_match,
            },
        )
    })
    .await
}

/// `PATCH [type]?[search]`: the conditional patch (R-MHD-7, PDSm TD3.3).
pub async fn conditional_patch(
    state: State,
    request: HttpRequest,
    path: web::Path<(String,)>,
    payload: web::Payload,
) -> HttpResponse {
    let (type_name,) = path.into_inner();
    let if_match = header_value(&request, header::IF_MATCH.as_str());
    let params = query_pairs(&request);
    run(&state, &request, Some(payload), |received| {
        if params.is_empty() {
            return Err(ApiError::method_not_allowed(format!(
                "PATCH {type_name} needs an id (PATCH {type_name}/id) or search parameters (PATCH {type_name}?identifier=…)"
            )));
        }
        let patch = patch_document(&request, &received)?;
        resource_call(
            &type_name,
            Operation::ConditionalPatch {
                params,
                patch,
                if_match,
            },
        )
    })
    .await
}

/// A PATCH body: JSON Patch (`application/json-patch+json`), JSON Merge Patch
/// (`application/merge-patch+json`; `application/json` is either, by its shape) or
/// a FHIRPath Patch `Parameters` resource (`application/fhir+json`).
fn patch_document(request: &HttpRequest, received: &[u8]) -> Result<PatchDocument, ApiError> {
    match content_type(request).as_deref() {
        Some(
            media_type @ ("application/json-patch+json"
            | "application/merge-patch+json"
            | "application/json"),
        ) => {
            let patch: Value = serde_json::from_slice(received).map_err(|failure| {
                ApiError::bad_request(IssueCode::Structure, format!("malformed JSON: {failure}"))
            })?;
            // application/json: an array is a JSON Patch, an object a merge patch.
            Ok(match (media_type, patch.is_array()) {
                ("application/json-patch+json", _) | ("application/json", true) => {
                    PatchDocument::Json(patch)
                }
                _ => PatchDocument::Merge(patch),
            })
        }
        Some(media_type) if is_fhir_json(media_type) => {
            let parameters = Incoming::parse(received)?;
            if parameters.resource_type() != Some("Parameters") {
                return Err(ApiError::bad_request(
                    IssueCode::Invalid,
                    "a FHIRPath Patch is a Parameters resource",
                ));
            }
            Ok(PatchDocument::FhirPath(parameters.into_value()))
        }
        other => Err(unsupported(&format!(
            "PATCH takes application/json-patch+json, application/merge-patch+json or a FHIRPath Patch in application/fhir+json, not {}",
            other.unwrap_or("no Content-Type")
        ))),
    }
}

pub async fn delete(
    state: State,
    request: HttpRequest,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (type_name, id) = path.into_inner();
    let if_match = header_value(&request, header::IF_MATCH.as_str());
    run(&state, &request, None, |_| {
        resource_call(&type_name, Operation::Delete { id, if_match })
    })
    .await
}

/// POST to the base: a batch or transaction Bundle.
pub async fn bundle(state: State, request: HttpRequest, payload: web::Payload) -> HttpResponse {
    run(&state, &request, Some(payload), |received| {
        require_fhir_json(&request)?;
        Ok(Call::Bundle(Incoming::parse(&received)?))
    })
    .await
}

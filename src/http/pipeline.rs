//! The request pipeline, top to bottom in one function ([`run`]):
//!
//! ```text
//! negotiate ─▶ authenticate ─▶ classify ─▶ decide ─▶ narrow ─▶ store + check rows ─▶ shape ─▶ audit
//! ```
//!
//! The router has already named the resource type and interaction; `classify` turns
//! the route and body into an [`Operation`]. Every outcome, refusals and errors
//! included, reaches the audit stage.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use tracing::Instrument;

use super::FHIR_JSON;
use super::body::negotiate;
use crate::AppState;
use crate::access::{self, Gate, Principal};
use crate::audit::{self, AuditRecord};
use crate::error::{ApiError, information_outcome};
use crate::fhir::definitions::{Interaction, ResourceDef};
use crate::fhir::search::PageLimits;
use crate::fhir::stored::Incoming;
use crate::service::{self, Ctx, FhirResponse, Operation, bundle};

/// A classified request.
pub enum Call {
    /// One interaction on one resource type.
    Resource {
        def: &'static ResourceDef,
        operation: Operation,
    },
    /// A batch or transaction Bundle posted to the base.
    Bundle(Incoming),
}

impl Call {
    fn interaction_code(&self) -> &'static str {
        match self {
            Call::Resource { operation, .. } => operation.interaction().code(),
            Call::Bundle(_) => "batch/transaction",
        }
    }
}

/// Base URL for links: configured, or from the request's scheme and Host.
pub fn base_url(state: &AppState, request: &HttpRequest) -> String {
    match &state.config.public_base_url {
        Some(url) => url.clone(),
        None => {
            let info = request.connection_info();
            format!("{}://{}", info.scheme(), info.host())
        }
    }
}

/// Runs one request through every stage.
pub async fn run(
    state: &AppState,
    request: &HttpRequest,
    classify: impl FnOnce() -> Result<Call, ApiError>,
) -> HttpResponse {
    let request_id = uuid::Uuid::new_v4().to_string();
    let span = tracing::info_span!("request", request_id = %request_id, method = %request.method(), path = %request.path());
    async {
        let mut principal: Option<Principal> = None;
        let mut call_code = "unknown";
        let mut target: (Option<&'static str>, Option<String>) = (None, None);
        let result = stages(
            state,
            request,
            classify,
            &mut principal,
            &mut call_code,
            &mut target,
        )
        .await;
        let (response, status, rule) = match result {
            Ok(response) => {
                let status = response.status().as_u16();
                (response, status, None)
            }
            Err(error) => {
                tracing::info!(
                    status = error.status.as_u16(),
                    rule = error.rule.unwrap_or(""),
                    "refused or failed"
                );
                (error.error_response(), error.status.as_u16(), error.rule)
            }
        };
        // audit
        audit::record(&AuditRecord {
            request_id: &request_id,
            principal: principal.as_ref(),
            interaction: call_code,
            resource_type: target.0,
            resource_id: target.1.as_deref(),
            status,
            rule,
        });
        response
    }
    .instrument(span)
    .await
}

async fn stages(
    state: &AppState,
    request: &HttpRequest,
    classify: impl FnOnce() -> Result<Call, ApiError>,
    principal_out: &mut Option<Principal>,
    call_code: &mut &'static str,
    target: &mut (Option<&'static str>, Option<String>),
) -> Result<HttpResponse, ApiError> {
    // negotiate: JSON only (406 otherwise).
    let binary_read =
        request.method() == actix_web::http::Method::GET && request.path().starts_with("/Binary/");
    negotiate(request, binary_read)?;

    // authenticate: a valid bearer token, or a verified client certificate of a
    // professional in the directory; nothing else (401).
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    let certificate = request.conn_data::<crate::access::directory::ClientCertificate>();
    let principal = state
        .authenticator
        .authenticate_request(authorization, certificate)?;
    tracing::debug!(actor = principal.actor.code(), "authenticated");
    *principal_out = Some(principal.clone());

    // classify: the route and body become an operation.
    let call = classify()?;
    *call_code = call.interaction_code();
    if let Call::Resource { def, operation } = &call {
        *target = (Some(def.name), operation.id().map(str::to_owned));
    }

    // decide: coarse rules; default deny (403 naming the rule).
    let authorize = {
        let principal = principal.clone();
        move |def: &ResourceDef, interaction: Interaction| -> Result<(), ApiError> {
            let verdict = access::decide(&principal, def.name, interaction);
            tracing::debug!(rule = verdict.rule, allowed = verdict.allowed, "decided");
            if verdict.allowed {
                Ok(())
            } else {
                Err(ApiError::forbidden(verdict.reason).by_rule(verdict.rule))
            }
        }
    };
    if let Call::Resource { def, operation } = &call {
        authorize(def, operation.interaction())?;
    }

    // narrow and check rows: the gate compiles the rules into each query and
    // decides the rows that cannot be narrowed (service/, access/gate.rs).
    let matrix = std::sync::Arc::clone(&state.matrix);
    let spaces = std::sync::Arc::clone(&state.spaces);

    // store: the interaction runs on the blocking pool, narrowed and row-checked by
    // the gate it builds for this principal.
    let base = base_url(state, request);
    let limits = PageLimits {
        default: state.config.default_page_size,
        max: state.config.max_page_size,
    };
    // A Bundle manages its own transactions (one for a transaction, one per entry
    // for a batch); a single write gets one.
    let needs_transaction =
        matches!(&call, Call::Resource { operation, .. } if operation.interaction().is_write());
    let is_bundle = matches!(&call, Call::Bundle(_));
    let context_base = base.clone();
    let work = move |conn: &mut crate::store::Conn| -> Result<FhirResponse, ApiError> {
        let gate = Gate::new(&principal, &matrix, &spaces);
        let ctx = Ctx {
            gate: &gate,
            base_url: &context_base,
            limits,
        };
        match call {
            Call::Resource { def, operation } => service::execute(conn, &ctx, def, operation),
            Call::Bundle(incoming) => {
                let (kind, entries) = bundle::classify(&incoming, &context_base)?;
                match kind {
                    bundle::BundleKind::Transaction => {
                        let entries = entries.into_iter().collect::<Result<Vec<_>, _>>()?;
                        crate::store::dialect::write_transaction(conn, |conn| {
                            bundle::transaction(conn, &ctx, entries, &authorize)
                        })
                    }
                    bundle::BundleKind::Batch => bundle::batch(conn, &ctx, entries, &authorize),
                }
            }
        }
    };
    let response = if needs_transaction {
        state.db.transaction(work).await?
    } else if is_bundle {
        state.db.write(work).await?
    } else {
        state.db.run(work).await?
    };

    // shape.
    Ok(shape(request, &base, response, binary_read))
}

/// `Last-Modified` wants an HTTP date; the store keeps RFC 3339.
fn http_date(instant: &str) -> Option<String> {
    chrono::DateTime::parse_from_rfc3339(instant)
        .ok()
        .map(|time| {
            time.with_timezone(&chrono::Utc)
                .format("%a, %d %b %Y %H:%M:%S GMT")
                .to_string()
        })
}

fn prefer_return(request: &HttpRequest) -> Option<String> {
    request
        .headers()
        .get_all("Prefer")
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split([',', ';']))
        .filter_map(|part| part.trim().strip_prefix("return=").map(str::to_owned))
        .next()
}

/// Whether a Binary read asked for the document in its own media type.
fn wants_raw_binary(request: &HttpRequest) -> bool {
    let accept = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let has_format =
        form_urlencoded::parse(request.query_string().as_bytes()).any(|(key, _)| key == "_format");
    !accept.is_empty() && !has_format && !accept.contains("json") && !accept.contains("*/*")
}

fn shape(
    request: &HttpRequest,
    base: &str,
    response: FhirResponse,
    binary_read: bool,
) -> HttpResponse {
    let mut builder = HttpResponse::build(response.status);
    if let Some(version) = response.version {
        builder.insert_header((header::ETAG, format!("W/\"{version}\"")));
    }
    if let Some(modified) = response.last_modified.as_deref().and_then(http_date) {
        builder.insert_header((header::LAST_MODIFIED, modified));
    }
    if let Some(location) = &response.location
        && matches!(response.status, StatusCode::CREATED | StatusCode::OK)
        && request.method() != actix_web::http::Method::GET
    {
        builder.insert_header((header::LOCATION, format!("{base}/{location}")));
    }
    let Some(body) = response.body else {
        return builder.finish();
    };
    if binary_read
        && wants_raw_binary(request)
        && let Ok(binary) = serde_json::from_str::<Value>(&body)
        && let Some(data) = binary.get("data").and_then(Value::as_str)
        && let Ok(bytes) = STANDARD.decode(data)
    {
        let media_type = binary
            .get("contentType")
            .and_then(Value::as_str)
            .unwrap_or("application/octet-stream");
        return builder.content_type(media_type.to_owned()).body(bytes);
    }
    let is_write = request.method() != actix_web::http::Method::GET
        && request.path() != "/"
        && !request.path().ends_with("/_search");
    if is_write {
        match prefer_return(request).as_deref() {
            Some("minimal") => return builder.finish(),
            Some("OperationOutcome") => {
                return builder
                    .content_type(FHIR_JSON)
                    .body(information_outcome("the request succeeded").to_string());
            }
            _ => {}
        }
    }
    builder.content_type(FHIR_JSON).body(body)
}

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
use serde_json::Value;
use tracing::Instrument;

use super::FHIR_JSON;
use super::body::negotiate;
use crate::AppState;
use crate::access::{self, Gate};
use crate::audit::{self, Outcome, Record, TouchedLog, Trace};
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
            Call::Bundle(incoming)
                if incoming.value().get("type").and_then(Value::as_str) == Some("transaction") =>
            {
                "transaction"
            }
            Call::Bundle(_) => "batch",
        }
    }

    /// The IHE MHD transaction this request is (R-MHD-8), for its trace.
    fn ihe_transaction(&self) -> Option<&'static crate::fhir::mhd::IheTransaction> {
        use crate::fhir::mhd;
        match self {
            Call::Bundle(incoming) => {
                mhd::is_provide_bundle(incoming.value()).then_some(&mhd::ITI_65)
            }
            Call::Resource { def, operation } => match (def.name, operation.interaction()) {
                ("List", Interaction::SearchType) => Some(&mhd::ITI_66),
                ("DocumentReference", Interaction::SearchType) => Some(&mhd::ITI_67),
                ("Binary", Interaction::Read) => Some(&mhd::ITI_68),
                ("DocumentReference", Interaction::Create) => match operation {
                    Operation::Create { body, .. } if mhd::is_simplified_publish(body.value()) => {
                        Some(&mhd::ITI_105)
                    }
                    _ => None,
                },
                _ => None,
            },
        }
    }

    /// Whether the request may read AuditEvents or Communications (a read or
    /// search of them, an `_include` / `_revinclude` of them, a Bundle entry naming
    /// them): it then waits for the trace's applier and indexer to catch up
    /// (read-your-writes, R-PAT-4, R-ACC-11, R-AUD-4).
    fn may_read_trace(&self, query: Option<&str>) -> bool {
        // The notifications (Communications) a read causes are stored with its
        // events (R-AUD-4).
        let names_trace =
            |text: &str| text.contains("AuditEvent") || text.contains("Communication");
        match self {
            Call::Resource { def, .. } => names_trace(def.name) || query.is_some_and(names_trace),
            Call::Bundle(incoming) => names_trace(&incoming.value().to_string()),
        }
    }

    /// The query of a search, as the trace records it.
    fn query(&self) -> Option<String> {
        match self {
            Call::Resource {
                operation: Operation::Search { params, .. },
                ..
            } => Some(
                form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(params)
                    .finish(),
            ),
            _ => None,
        }
    }
}

/// Base URL for links: configured, or from the request's scheme and Host.
pub fn base_url(state: &AppState, request: &HttpRequest) -> String {
    match &state.config.public_base_url {
        Some(url) => url.clone(),
        // The connection's own scheme and Host header, never `Forwarded` or
        // `X-Forwarded-*` (any client can send those): behind a proxy, set
        // `--public-base-url`. A Host that is not a host name and port is not
        // echoed into links.
        None => {
            let scheme = if state.config.tls_cert.is_some() {
                "https"
            } else {
                "http"
            };
            let host = request
                .headers()
                .get(header::HOST)
                .and_then(|value| value.to_str().ok())
                .filter(|host| is_host(host))
                .map(str::to_owned)
                .unwrap_or_else(|| state.config.listen.to_string());
            format!("{scheme}://{host}")
        }
    }
}

/// Whether a `Host` header is a host name (or IP literal) with an optional port.
fn is_host(host: &str) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        Some((name, _)) if !name.ends_with(']') && name.contains(':') => (host, None),
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
        && port.is_none_or(|port| port.parse::<u16>().is_ok_and(|port| port > 0))
}

/// The request's id: the client's `X-Request-Id` when it is a short token, else a
/// new UUID. It is echoed in the response and recorded in the trace.
fn request_id(request: &HttpRequest) -> String {
    request
        .headers()
        .get(REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|value| {
            !value.is_empty()
                && value.len() <= 64
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
        // Time-ordered, so that the trace's index by request id grows at its end.
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned)
}

/// The header carrying the request id.
pub const REQUEST_ID: &str = "X-Request-Id";

/// Runs one request through every stage.
pub async fn run(
    state: &AppState,
    request: &HttpRequest,
    payload: Option<actix_web::web::Payload>,
    classify: impl FnOnce(actix_web::web::Bytes) -> Result<Call, ApiError>,
) -> HttpResponse {
    let request_id = request_id(request);
    let span = tracing::info_span!("request", request_id = %request_id, method = %request.method(), path = %request.path());
    async {
        let mut trace = Trace {
            request_id: request_id.clone(),
            method: request.method().to_string(),
            client_address: request.peer_addr().map(|address| address.ip().to_string()),
            server: base_url(state, request),
            ..Trace::default()
        };
        let touched = TouchedLog::default();
        let body_bytes = std::cell::Cell::new(0);
        let result = stages(
            state,
            request,
            payload,
            classify,
            &mut trace,
            &touched,
            &body_bytes,
        )
        .await;
        let (mut response, outcome, traced) = match result {
            Ok((response, traced)) => {
                let outcome = Outcome::answered(response.status().as_u16());
                (response, outcome, traced)
            }
            Err((error, traced)) => {
                tracing::info!(
                    status = error.status.as_u16(),
                    rule = error.rule.unwrap_or(""),
                    "refused or failed"
                );
                let outcome = Outcome::failed(&error);
                (error.error_response(), outcome, traced)
            }
        };
        // audit: durable before the response leaves (R-AUD-2). Writes were traced in
        // their write's transaction (at its group's end on SQLite); everything else
        // goes through the trace's committer.
        let record = Record {
            trace,
            outcome,
            touched: touched.snapshot(),
        };
        audit::log(&record);
        if !traced && let Err(error) = state.audit.record(audit::prepare(record)).await {
            tracing::error!(%error, "the trace could not be written; the answer is withheld");
            response = ApiError::internal(
                "the access could not be traced, so its result is withheld; try again",
            )
            .error_response();
        }
        if let Ok(value) = header::HeaderValue::from_str(&request_id) {
            response
                .headers_mut()
                .insert(header::HeaderName::from_static("x-request-id"), value);
        }
        // Health data, and answers that differ by caller: no cache keeps them
        // (a client revalidates with ETag / If-None-Match).
        if !response.headers().contains_key(header::CACHE_CONTROL) {
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("no-store"),
            );
        }
        // A large body read and parsed here, or a large answer: freed memory goes
        // back now, before the next large one arrives (crate::memory).
        let answer_bytes = match actix_web::body::MessageBody::size(response.body()) {
            actix_web::body::BodySize::Sized(bytes) => usize::try_from(bytes).unwrap_or(usize::MAX),
            _ => 0,
        };
        crate::memory::settle_request(body_bytes.get(), answer_bytes);
        response
    }
    .instrument(span)
    .await
}

/// The stages; the flag says whether the trace was already written with the
/// request's own write transaction.
async fn stages(
    state: &AppState,
    request: &HttpRequest,
    payload: Option<actix_web::web::Payload>,
    classify: impl FnOnce(actix_web::web::Bytes) -> Result<Call, ApiError>,
    trace: &mut Trace,
    touched: &TouchedLog,
    body_bytes: &std::cell::Cell<usize>,
) -> Result<(HttpResponse, bool), (ApiError, bool)> {
    let untraced = |error: ApiError| (error, false);
    // negotiate: JSON only (406 otherwise).
    // A Binary read, or the proof of opposition, may be answered in its own media type.
    let binary_read = (request.method() == actix_web::http::Method::GET
        && request.path().starts_with("/Binary/"))
        || (request.method() == actix_web::http::Method::POST
            && request.path().ends_with("/$oppose"));
    negotiate(request, binary_read).map_err(untraced)?;

    // authenticate: a valid bearer token, or a verified client certificate of a
    // professional in the directory; nothing else (401).
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    let certificate = request.conn_data::<crate::access::directory::ClientCertificate>();
    let principal = state
        .authenticator
        .authenticate_request(authorization, certificate)
        .map_err(untraced)?;
    tracing::debug!(actor = principal.actor.code(), "authenticated");
    trace.principal = Some(principal.clone());
    // A token of the server's own stands on a session or an app's authorisation:
    // signed out or revoked, it is refused at once, not at its expiry (R-ACT-3, 4).
    if principal.standing.is_some() {
        let accounts = state.accounts.clone();
        let claims = principal.clone();
        let holds = actix_web::rt::task::spawn_blocking(move || accounts.standing_holds(&claims))
            .await
            .map_err(|_| untraced(ApiError::internal("the session check failed")))?
            .map_err(untraced)?;
        if !holds {
            return Err(untraced(ApiError::unauthorized(
                "the session or authorisation this token was issued under has ended",
            )));
        }
    }

    // The body is read only now, from an authenticated caller, within its size and
    // time bounds (413, 408), and within the bytes all requests may hold at once:
    // its share is held until the answer is built.
    let read_timeout = std::time::Duration::from_millis(state.config.body_read_timeout_ms);
    let (body, _body_share) = match payload {
        Some(payload) => {
            let share = super::body::hold_share(
                request,
                &state.bodies_in_flight,
                state.config.max_inflight_body_bytes.div_ceil(1024),
                state.config.max_body_bytes,
                read_timeout,
            )
            .await
            .map_err(untraced)?;
            let body = super::body::read_limited(
                request,
                payload,
                state.config.max_body_bytes,
                read_timeout,
            )
            .await
            .map_err(untraced)?;
            body_bytes.set(body.len());
            (body, Some(share))
        }
        None => (actix_web::web::Bytes::new(), None),
    };

    // classify: the route and body become an operation.
    let mut call = classify(body).map_err(untraced)?;
    trace.interaction = call.interaction_code();
    trace.ihe_transaction = call.ihe_transaction();
    trace.query = call.query();
    if let Call::Resource { def, operation } = &call {
        trace.resource_type = Some(def.name);
        trace.resource_id = operation.id().map(str::to_owned);
    }

    // decide: coarse rules; default deny (403 naming the rule).
    let authorize = {
        let principal = principal.clone();
        move |def: &ResourceDef, operation: &Operation| -> Result<(), ApiError> {
            let verdict = access::decide_request(
                &principal,
                def.name,
                operation.interaction(),
                &operation.performs(def),
            );
            tracing::debug!(rule = verdict.rule, allowed = verdict.allowed, "decided");
            if verdict.allowed {
                Ok(())
            } else {
                Err(ApiError::forbidden(verdict.reason).by_rule(verdict.rule))
            }
        }
    };
    if let Call::Resource { def, operation } = &call {
        authorize(def, operation).map_err(untraced)?;
    }
    // A resource created or replaced is checked here, not on the writer's turn;
    // one with conditional references only once they are resolved, there.
    if let Call::Resource {
        def,
        operation: Operation::Create { body, .. } | Operation::Update { body, .. },
    } = &mut call
        && !service::mhd::has_conditional_references(body.value())
    {
        crate::fhir::validate::check_ahead(def.name, body, state.matrix.type_systems())
            .map_err(untraced)?;
    }

    // The trace is read as of now: every event of a request answered so far is
    // stored and searchable, with the notifications it caused.
    if call.may_read_trace(trace.query.as_deref()) {
        state.audit.stored().await.map_err(untraced)?;
        state.trace_index.caught_up().await.map_err(untraced)?;
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
        max_offset: state.config.max_offset,
        max_parameters: state.config.max_search_parameters,
        max_values: state.config.max_search_values,
        max_sort: state.config.max_sort_terms,
        max_includes: state.config.max_includes,
        max_include_rows: state.config.max_include_rows,
        max_history_scan: state.config.max_history_scan,
    };
    let single_write =
        matches!(&call, Call::Resource { operation, .. } if operation.interaction().is_write());
    // A read of one resource by id, but a Binary's (megabytes to decode and check):
    // short enough to run on the request's own thread.
    let point_read = matches!(
        &call,
        Call::Resource { def, operation }
            if def.name != "Binary"
                && matches!(operation.interaction(), Interaction::Read | Interaction::Vread)
    );
    let writes = single_write || matches!(&call, Call::Bundle(_));
    let context_base = base.clone();
    let gate_touched = touched.clone();
    let now = state.clock.now();
    let max_answer_bytes = state.config.max_answer_bytes;
    let max_bundle_entries = state.config.max_bundle_entries;
    let max_resource_bytes = state.config.max_body_bytes;
    let run_call = move |conn: &mut crate::store::Conn| -> Result<FhirResponse, ApiError> {
        let mut gate = Gate::new(&principal, &matrix, &spaces)
            .with_touched(gate_touched)
            .with_answer_limit(max_answer_bytes)
            .at(now);
        if writes {
            gate = gate.with_space_turns();
        }
        let ctx = Ctx {
            gate: &gate,
            base_url: &context_base,
            limits,
            max_resource_bytes,
        };
        match call {
            Call::Resource { def, operation } => service::execute(conn, &ctx, def, operation),
            Call::Bundle(incoming) => {
                let (kind, entries) =
                    bundle::classify(&incoming, &context_base, max_bundle_entries)?;
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
    let response = if writes {
        // A write and its trace commit together; a refused or failed write is traced
        // in a transaction of its own, still before the answer.
        let trace = trace.clone();
        let touched = touched.clone();
        let wakeup = state.notifications.clone();
        let written = state
            .db
            .write_deferring(move |conn, end| {
                // The trace is stored at the end of the write's group, in its
                // transaction (`audit::defer`): the write and its trace commit
                // together, or neither does.
                let traced = |conn: &mut crate::store::Conn,
                              end: &mut crate::store::GroupEnd,
                              outcome: Outcome| {
                    let record = Record {
                        trace: trace.clone(),
                        outcome,
                        touched: touched.snapshot(),
                    };
                    audit::defer(conn, end, audit::prepare(record), &wakeup)
                };
                let answered = |conn: &mut crate::store::Conn,
                                end: &mut crate::store::GroupEnd,
                                response: FhirResponse| {
                    traced(conn, end, Outcome::answered(response.status.as_u16()))?;
                    Ok(response)
                };
                let mark = end.mark();
                let result = if single_write {
                    crate::store::dialect::write_transaction(conn, |conn| {
                        let response = run_call(conn)?;
                        answered(conn, end, response)
                    })
                } else {
                    // A transaction Bundle commits inside; a batch commits per entry.
                    run_call(conn).and_then(|response| {
                        crate::store::dialect::write_transaction(conn, |conn| {
                            answered(conn, end, response)
                        })
                    })
                };
                match result {
                    Ok(response) => Ok(Ok(response)),
                    Err(error) => {
                        // Nothing of the rolled-back write stays, its trace neither.
                        end.forget_since(mark);
                        touched.rolled_back();
                        let failure = end.mark();
                        let traced = crate::store::dialect::write_transaction(conn, |conn| {
                            traced(conn, end, Outcome::failed(&error))
                        })
                        .is_ok();
                        if !traced {
                            // Then traced once, by the trace's committer (below,
                            // `traced` false), not also at the group's end.
                            end.forget_since(failure);
                        }
                        Ok(Err((error, traced)))
                    }
                }
            })
            .await
            .map_err(untraced)?;
        match written {
            Ok(response) => (response, true),
            Err(failure) => return Err(failure),
        }
    } else {
        let response = if point_read {
            state.db.run_point_read(run_call).await
        } else {
            state.db.run(run_call).await
        };
        (response.map_err(untraced)?, false)
    };

    // shape.
    let (response, traced) = response;
    Ok((shape(request, &base, response, binary_read), traced))
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
/// How a Binary (or the proof of opposition) is answered (R-MHD-6, ITI-68).
#[derive(Debug, PartialEq, Eq)]
enum BinaryAnswer {
    /// The Binary resource, in `application/fhir+json`.
    Resource,
    /// The bytes in their own media type.
    Raw,
    /// Accept allows neither (406).
    NotAcceptable,
}

/// A Binary goes out as its own bytes when Accept names its media type (or its
/// family, or `*/*`) or, for a read, when there is no Accept at all; as the Binary
/// resource when Accept or `_format` asks for FHIR JSON.
fn binary_answer(request: &HttpRequest, media_type: &str, raw_by_default: bool) -> BinaryAnswer {
    let has_format =
        form_urlencoded::parse(request.query_string().as_bytes()).any(|(key, _)| key == "_format");
    if has_format {
        return BinaryAnswer::Resource;
    }
    let ranges = super::body::accept_ranges(request);
    if ranges.is_empty() {
        return if raw_by_default {
            BinaryAnswer::Raw
        } else {
            BinaryAnswer::Resource
        };
    }
    if ranges.iter().any(|range| range.contains("json")) {
        return BinaryAnswer::Resource;
    }
    let essence = media_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let family = essence.split('/').next().unwrap_or("");
    // `*/*` takes the bytes of a read (ITI-68); the proof of opposition answers its
    // Binary resource unless its own type is asked for.
    let matches = ranges.iter().any(|range| {
        (range == "*/*" && raw_by_default)
            || *range == essence
            || range
                .strip_suffix("/*")
                .is_some_and(|prefix| prefix == family)
    });
    match (matches, raw_by_default) {
        (true, _) => BinaryAnswer::Raw,
        // `*/*` aside, the proof of opposition answered JSON to what it cannot match.
        (false, false) => BinaryAnswer::Resource,
        (false, true) => BinaryAnswer::NotAcceptable,
    }
}

/// Media types a browser displays without running anything: shown inline; every
/// other type is sent as an attachment.
fn shown_inline(media_type: &str) -> bool {
    let essence = media_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    matches!(
        essence.as_str(),
        "application/pdf" | "image/png" | "image/jpeg" | "image/gif" | "text/plain"
    )
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
        && let Ok(binary) = serde_json::from_str::<Value>(body.text())
        && binary.get("resourceType").and_then(Value::as_str) == Some("Binary")
        && let Some(data) = binary.get("data").and_then(Value::as_str)
    {
        // A stored type that is not a well-formed media type (stored before types
        // were checked) goes out as bytes.
        let media_type = binary
            .get("contentType")
            .and_then(Value::as_str)
            .filter(|media_type| crate::fhir::validate::is_media_type(media_type))
            .unwrap_or("application/octet-stream");
        let read = request.method() == actix_web::http::Method::GET;
        match binary_answer(request, media_type, read) {
            BinaryAnswer::Resource => {
                return builder.content_type(FHIR_JSON).body(body.into_text());
            }
            BinaryAnswer::NotAcceptable => {
                return ApiError::new(
                    StatusCode::NOT_ACCEPTABLE,
                    crate::error::IssueCode::NotSupported,
                    format!(
                        "this content is {media_type}: ask for it (or */*), or for application/fhir+json"
                    ),
                )
                .error_response();
            }
            BinaryAnswer::Raw => {}
        }
        let Some(bytes) = crate::fhir::decode_base64(data) else {
            return builder.content_type(FHIR_JSON).body(body.into_text());
        };
        // The document is the patient's, not a page of this server: a browser shows
        // it inert (no script, no same-origin access) and saves what it would run.
        builder.insert_header((
            header::CONTENT_SECURITY_POLICY,
            "sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'",
        ));
        if !shown_inline(media_type) {
            builder.insert_header((header::CONTENT_DISPOSITION, "attachment"));
        }
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
    builder.content_type(FHIR_JSON).body(body.into_text())
}

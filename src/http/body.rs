//! Request bodies and media types: the size limit (413), content types (415) and
//! the Accept / `_format` negotiation (406: JSON only).

use actix_web::HttpRequest;
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::web;
use futures_util::StreamExt;

use crate::error::{ApiError, IssueCode};

/// 413: the body passes `limit` bytes.
fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        IssueCode::TooLong,
        format!("the request body exceeds the limit of {limit} bytes"),
    )
}

/// The body's `Content-Length`, when it declares one; 413 when it passes `limit`.
fn declared_length(request: &HttpRequest, limit: usize) -> Result<Option<usize>, ApiError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    match declared {
        Some(length) if length > limit => Err(too_large(limit)),
        declared => Ok(declared),
    }
}

/// Waits for this request's share of the bytes all requests may hold at once: its
/// `Content-Length` (413 past `limit`, before any wait), or `limit` without one. 503
/// when the share does not come within `timeout`.
pub async fn hold_share(
    request: &HttpRequest,
    in_flight: &std::sync::Arc<tokio::sync::Semaphore>,
    capacity_kib: usize,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    let declared = declared_length(request, limit)?;
    // Never more than the whole: a share larger than it would wait for ever.
    let kib = declared
        .unwrap_or(limit)
        .div_ceil(1024)
        .clamp(1, capacity_kib.max(1));
    let kib = u32::try_from(kib).unwrap_or(u32::MAX);
    let busy = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            IssueCode::Transient,
            "the server holds as many request bodies as it may: try again shortly",
        )
    };
    match actix_web::rt::time::timeout(timeout, in_flight.clone().acquire_many_owned(kib)).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => Err(busy()),
    }
}

/// Reads the whole body, refusing it with 413 as soon as it passes `limit` bytes and
/// with 408 when it has not all arrived within `timeout` (a body trickled byte by
/// byte holds no worker for long).
pub async fn read_limited(
    request: &HttpRequest,
    payload: web::Payload,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<web::Bytes, ApiError> {
    actix_web::rt::time::timeout(timeout, read_within(request, payload, limit))
        .await
        .unwrap_or_else(|_| {
            Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                IssueCode::Timeout,
                format!(
                    "the request body did not arrive within {} ms",
                    timeout.as_millis()
                ),
            ))
        })
}

async fn read_within(
    request: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, ApiError> {
    let declared = declared_length(request, limit)?;
    // Room for the declared length at once: growing by doubling would hold up to
    // twice the body while it arrives.
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|error| {
            ApiError::bad_request(
                IssueCode::Structure,
                format!("cannot read the body: {error}"),
            )
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The media type of the request body, lower-cased, without parameters.
pub fn content_type(request: &HttpRequest) -> Option<String> {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| {
            value
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
}

/// Whether a media type is FHIR JSON (or plain JSON, which FHIR servers accept).
pub fn is_fhir_json(media_type: &str) -> bool {
    matches!(
        media_type,
        "application/fhir+json" | "application/json" | "application/json+fhir"
    )
}

/// 415 unless the body is FHIR JSON.
pub fn require_fhir_json(request: &HttpRequest) -> Result<(), ApiError> {
    match content_type(request) {
        Some(media_type) if is_fhir_json(&media_type) => Ok(()),
        Some(media_type) => Err(unsupported(&format!(
            "Content-Type {media_type} is not supported: send application/fhir+json"
        ))),
        None => Err(unsupported(
            "Content-Type is required: send application/fhir+json",
        )),
    }
}

pub fn unsupported(message: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        IssueCode::NotSupported,
        message,
    )
}

fn not_acceptable(message: String) -> ApiError {
    ApiError::new(StatusCode::NOT_ACCEPTABLE, IssueCode::NotSupported, message)
}

fn is_json_media(media_type: &str) -> bool {
    matches!(
        media_type,
        "*/*"
            | "application/*"
            | "application/fhir+json"
            | "application/json"
            | "application/json+fhir"
            | "json"
            | "text/json"
    )
}

/// The media ranges of `Accept`, lower-cased, without their parameters.
pub fn accept_ranges(request: &HttpRequest) -> Vec<String> {
    request
        .headers()
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .split(',')
        .map(|range| {
            range
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|range| !range.is_empty())
        .collect()
}

/// 406 when the client asks for anything but JSON (XML included): through `_format`,
/// or through an Accept header none of whose ranges allows JSON.
pub fn negotiate(request: &HttpRequest, binary_read: bool) -> Result<(), ApiError> {
    let format = form_urlencoded::parse(request.query_string().as_bytes())
        .find(|(key, _)| key == "_format")
        .map(|(_, value)| value.to_ascii_lowercase());
    if let Some(format) = format {
        let media_type = format.split(';').next().unwrap_or("").trim().to_owned();
        if !is_json_media(&media_type) {
            return Err(not_acceptable(format!(
                "_format={format} is not served: this server speaks JSON only"
            )));
        }
        return Ok(());
    }
    let Some(accept) = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
    else {
        return Ok(());
    };
    let ranges = accept_ranges(request);
    if ranges.is_empty() || ranges.iter().any(|range| is_json_media(range)) {
        return Ok(());
    }
    // A Binary may be fetched in its own media type (a CDA as application/xml,
    // R-MHD-6); FHIR's own XML is never served.
    if binary_read && !ranges.iter().any(|range| range.contains("fhir+xml")) {
        return Ok(());
    }
    Err(not_acceptable(format!(
        "Accept: {accept} is not served: this server speaks application/fhir+json only"
    )))
}

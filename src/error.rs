//! One error type for the whole server, mapped to an HTTP status and an
//! OperationOutcome in one place.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::{Value, json};

use crate::http::FHIR_JSON;

/// FHIR `IssueType` codes used by this server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueCode {
    Invalid,
    Structure,
    Required,
    Value,
    Invariant,
    Security,
    Login,
    Forbidden,
    NotSupported,
    NotFound,
    Deleted,
    TooLong,
    TooCostly,
    Timeout,
    Transient,
    Conflict,
    Duplicate,
    Processing,
    Exception,
    Throttled,
    Expired,
    BusinessRule,
}

impl IssueCode {
    pub fn as_str(self) -> &'static str {
        match self {
            IssueCode::Invalid => "invalid",
            IssueCode::Structure => "structure",
            IssueCode::Required => "required",
            IssueCode::Value => "value",
            IssueCode::Invariant => "invariant",
            IssueCode::Security => "security",
            IssueCode::Login => "login",
            IssueCode::Forbidden => "forbidden",
            IssueCode::NotSupported => "not-supported",
            IssueCode::NotFound => "not-found",
            IssueCode::Deleted => "deleted",
            IssueCode::TooLong => "too-long",
            IssueCode::TooCostly => "too-costly",
            IssueCode::Timeout => "timeout",
            IssueCode::Transient => "transient",
            IssueCode::Conflict => "conflict",
            IssueCode::Duplicate => "duplicate",
            IssueCode::Processing => "processing",
            IssueCode::Exception => "exception",
            IssueCode::Throttled => "throttled",
            IssueCode::Expired => "expired",
            IssueCode::BusinessRule => "business-rule",
        }
    }
}

/// A failed request: the status, the issue code, a message for the client and, where
/// known, the element path (`expression`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: IssueCode,
    pub message: String,
    pub expression: Option<String>,
    /// Rule id (`R-…`) that decided a refusal, reported in `diagnostics`.
    pub rule: Option<&'static str>,
    /// A resource hidden by a rule: the answer is the same as for one that does not
    /// exist, its rule recorded in the trace only (existence does not leak).
    pub concealed: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, code: IssueCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            expression: None,
            rule: None,
            concealed: false,
        }
    }

    /// Answers as "not known", whatever the rule that hid it (see `concealed`).
    pub fn conceal(mut self) -> Self {
        self.concealed = true;
        self
    }

    /// Attaches the element path the problem was found at.
    pub fn at(mut self, expression: impl Into<String>) -> Self {
        self.expression = Some(expression.into());
        self
    }

    /// Names the rule that refused.
    pub fn by_rule(mut self, rule: &'static str) -> Self {
        self.rule = Some(rule);
        self
    }

    /// 400: the request itself is malformed.
    pub fn bad_request(code: IssueCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 422: a well-formed resource that breaks a rule of its profile.
    pub fn unprocessable(code: IssueCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, IssueCode::Login, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, IssueCode::Forbidden, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, IssueCode::NotFound, message)
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GONE, IssueCode::Deleted, message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            IssueCode::NotSupported,
            message,
        )
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, IssueCode::Conflict, message)
    }

    pub fn precondition_failed(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            IssueCode::Conflict,
            message,
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            IssueCode::Exception,
            message,
        )
    }

    /// The OperationOutcome describing this error.
    pub fn outcome(&self) -> Value {
        // A message may quote what the caller sent: no control character leaves in
        // it (FHIR strings hold none but tab and line breaks).
        let text: String = self
            .message
            .chars()
            .map(|c| {
                if c < '\u{20}' && !matches!(c, '\t' | '\n' | '\r') {
                    '\u{FFFD}'
                } else {
                    c
                }
            })
            .collect();
        let mut issue = json!({
            "severity": if self.status.is_server_error() { "fatal" } else { "error" },
            "code": self.code.as_str(),
            "details": { "text": text },
        });
        if let Some(expression) = &self.expression {
            issue["expression"] = json!([expression]);
        }
        if let Some(rule) = self.rule
            && !self.concealed
        {
            issue["diagnostics"] = json!(format!("rule {rule}"));
        }
        json!({ "resourceType": "OperationOutcome", "issue": [issue] })
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        response.content_type(FHIR_JSON);
        if self.status == StatusCode::UNAUTHORIZED {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        response.body(self.outcome().to_string())
    }
}

/// An informational OperationOutcome (e.g. the body of a successful delete).
pub fn information_outcome(message: &str) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{ "severity": "information", "code": "informational", "details": { "text": message } }]
    })
}

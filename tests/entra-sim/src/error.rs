//! Errors: the library's own ([`Error`], [`TenantError`]) and the two wire shapes the simulated
//! tenant answers with, Graph's (`{"error":{"code","message","innerError"}}`) and the token endpoint's
//! (`{"error","error_description":"AADSTS…","error_codes":[…]}`).

use std::borrow::Cow;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::clock::wall_clock_now;
use crate::records::current_request_ids;

/// Why the simulated tenant could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("could not generate the TLS certificates: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("could not configure TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid option: {0}")]
    InvalidOption(String),
    #[error("could not make {0}")]
    Crypto(String),
}

/// A [`crate::TenantHandle`] mutation that could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    #[error("no application with object id {0}")]
    ApplicationNotFound(Uuid),
    #[error("no service principal with object id {0}")]
    ServicePrincipalNotFound(Uuid),
}

/// A Graph error response. Every Graph failure the sim produces goes through this type, so every one
/// carries the shape real Graph uses, including `innerError` with the request id.
#[derive(Debug, Clone)]
pub(crate) struct GraphError {
    status: StatusCode,
    code: Cow<'static, str>,
    message: String,
    details: Option<Value>,
    retry_after_secs: Option<u64>,
    /// Graph answers 401 with a `WWW-Authenticate` challenge.
    challenge: bool,
}

impl GraphError {
    pub(crate) fn new(status: StatusCode, code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            details: None,
            retry_after_secs: None,
            challenge: false,
        }
    }

    /// `400 Request_BadRequest`, Graph's generic refusal of a malformed request.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Request_BadRequest", message)
    }

    /// `404 Request_ResourceNotFound` with the message Graph uses for a missing directory object.
    pub(crate) fn object_not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            format!("Resource '{id}' does not exist or one of its queried reference-property objects are not present."),
        )
    }

    /// `401 InvalidAuthenticationToken`, with the challenge header.
    pub(crate) fn unauthenticated(message: impl Into<String>) -> Self {
        let mut error = Self::new(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", message);
        error.challenge = true;
        error
    }

    /// `403 Authorization_RequestDenied`.
    pub(crate) fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        )
    }

    pub(crate) fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub(crate) fn with_retry_after(mut self, secs: Option<u64>) -> Self {
        self.retry_after_secs = secs;
        self
    }

    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for GraphError {
    fn into_response(self) -> Response {
        let ids = current_request_ids();
        // Graph writes the date without offset or fraction, e.g. "2024-05-01T10:00:00".
        let date = wall_clock_now()
            .replace_nanosecond(0)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .map(|s| s.trim_end_matches('Z').to_owned())
            .unwrap_or_default();
        let mut error = json!({
            "code": self.code,
            "message": self.message,
            "innerError": {
                "date": date,
                "request-id": ids.request_id.to_string(),
                "client-request-id": ids.client_request_id,
            }
        });
        if let (Some(details), Some(object)) = (self.details, error.as_object_mut()) {
            object.insert("details".to_owned(), details);
        }
        let mut response = (self.status, axum::Json(json!({ "error": error }))).into_response();
        if let Some(secs) = self.retry_after_secs {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(
                    "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"",
                ),
            );
        }
        response
    }
}

/// A token endpoint (Entra STS) error: OAuth 2.0 `error` plus Entra's `AADSTS` code and description.
#[derive(Debug, Clone)]
pub(crate) struct TokenError {
    status: StatusCode,
    error: &'static str,
    aadsts: u32,
    description: String,
    retry_after_secs: Option<u64>,
}

impl TokenError {
    /// `description` must not contain characters JSON would escape (quotes, backslashes, control
    /// characters): azure_identity 1.x borrows `error_description` as `&str` from the body, and a
    /// borrowed string cannot hold an unescaped value, so such a body fails to parse on its side.
    pub(crate) fn new(status: StatusCode, error: &'static str, aadsts: u32, description: impl Into<String>) -> Self {
        Self { status, error, aadsts, description: description.into(), retry_after_secs: None }
    }

    pub(crate) fn with_retry_after(mut self, secs: Option<u64>) -> Self {
        self.retry_after_secs = secs;
        self
    }

    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// `AADSTS{code}: {description}`, without the trace ids of the wire form.
    pub(crate) fn summary(&self) -> String {
        format!("AADSTS{}: {}", self.aadsts, self.description)
    }
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        let ids = current_request_ids();
        let timestamp = sts_timestamp();
        let correlation_id = Uuid::new_v4();
        let description = format!(
            "AADSTS{}: {} Trace ID: {} Correlation ID: {} Timestamp: {}",
            self.aadsts, self.description, ids.request_id, correlation_id, timestamp
        );
        let body = json!({
            "error": self.error,
            "error_description": description,
            "error_codes": [self.aadsts],
            "timestamp": timestamp,
            "trace_id": ids.request_id.to_string(),
            "correlation_id": correlation_id.to_string(),
            "error_uri": format!("https://login.microsoftonline.com/error?code={}", self.aadsts),
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// The STS writes timestamps as `2024-05-01 10:00:00Z`.
fn sts_timestamp() -> String {
    let now = wall_clock_now();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

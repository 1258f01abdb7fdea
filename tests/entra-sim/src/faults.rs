//! Faults switched on per test: throttling, concurrency errors, server errors, slowness, refusals.
//!
//! A fault is queued with [`Faults::push`]. Each request looks for the first queued fault whose
//! [`Match`] fits it; that fault is applied before any normal handling (before authentication, as a
//! front door would) and used up once; after `times` uses it is gone. Faults that match nothing stay
//! queued, so a fault for `addPassword` waits for the first `addPassword`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::error::{GraphError, TokenError};
use crate::lock;
use crate::records::Endpoint;

/// Which requests a fault applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// The request path (without query string) must contain this. Empty matches every path.
    pub path_contains: String,
    /// When set, the method must be this one (case-insensitive).
    pub method: Option<String>,
}

impl Match {
    /// Requests whose path contains `fragment`, any method.
    pub fn path(fragment: impl Into<String>) -> Self {
        Self { path_contains: fragment.into(), method: None }
    }

    /// Every request.
    pub fn any() -> Self {
        Self::path("")
    }

    /// Only requests with this method.
    pub fn method(mut self, method: impl Into<String>) -> Self {
        self.method = Some(method.into());
        self
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        path.contains(&self.path_contains) && self.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method))
    }
}

/// What a fault does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// `429 TooManyRequests`; `Retry-After` in whole seconds (rounded up) only when `Some`, because
    /// Graph does not always send it.
    TooManyRequests { retry_after: Option<Duration> },
    /// `409 Directory_ConcurrencyViolation`: another write to the same object was in flight.
    Concurrency,
    /// The same concurrency refusal as `400 Request_BadRequest`; Graph sometimes reports it that way,
    /// so a client has to recognise it by its message, not only by its status.
    ConcurrencyAs400,
    /// A server error with this status (500, 502, 503, 504, …), no `Retry-After`.
    ServerError(u16),
    /// Answer normally, but only after this long.
    Slow(Duration),
    /// Wait this long, then answer as `then` does: a refusal that comes late, leaving the client
    /// time to change something while its request is in flight.
    Late { by: Duration, then: Box<FaultKind> },
    /// `403 Authorization_RequestDenied`.
    Forbidden,
    /// A refusal Graph publishes for `addPassword` that trying again cannot change: `400` with this
    /// code and message (for example `CredentialInvalidLifetimeAsPerAppPolicy`, when a tenant's
    /// app management policy caps secret lifetimes, or `TooManyAppPasswords`).
    Refused { code: String, message: String },
    /// Answer exactly this, whatever the endpoint: the status, these headers (in order; a header that
    /// cannot be sent is skipped) and this body. For feeding a published example response through
    /// real HTTPS unchanged.
    Answer { status: u16, headers: Vec<(String, String)>, body: String },
}

impl FaultKind {
    /// An AWS STS error in its XML shape (`Sender` for a 4xx, `Receiver` for a 5xx), as STS answers
    /// `code` — `AccessDenied`, `Throttling`, `ServiceUnavailable` — with `message`.
    pub fn sts_error(status: u16, code: &str, message: &str) -> Self {
        Self::Answer {
            status,
            headers: vec![("content-type".into(), "text/xml".into())],
            body: crate::federation::sts_error_body(if status >= 500 { "Receiver" } else { "Sender" }, code, message),
        }
    }

    /// `400 CredentialInvalidLifetimeAsPerAppPolicy`, as Graph answers `addPassword` when the
    /// requested end date is beyond what the tenant's app management policy allows.
    pub fn lifetime_policy() -> Self {
        Self::Refused {
            code: "CredentialInvalidLifetimeAsPerAppPolicy".into(),
            message: "Credential lifetime exceeds the max value allowed as per assigned policy.".into(),
        }
    }
}

/// One queued fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub matcher: Match,
    pub kind: FaultKind,
    /// How many matching requests it applies to.
    pub times: u32,
}

impl Fault {
    /// A fault that applies once.
    pub fn new(matcher: Match, kind: FaultKind) -> Self {
        Self { matcher, kind, times: 1 }
    }

    /// Apply to this many matching requests.
    pub fn times(mut self, times: u32) -> Self {
        self.times = times;
        self
    }
}

/// The fault queue. Cheap to clone; every clone shares the same queue.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    queue: Arc<Mutex<VecDeque<Fault>>>,
}

impl Faults {
    /// Queue a fault behind those already queued.
    pub fn push(&self, fault: Fault) {
        if fault.times > 0 {
            lock(&self.queue).push_back(fault);
        }
    }

    /// Drop every queued fault.
    pub fn clear(&self) {
        lock(&self.queue).clear();
    }

    /// How many applications of faults are still queued (the sum of the remaining `times`).
    pub fn pending(&self) -> u32 {
        lock(&self.queue).iter().map(|f| f.times).sum()
    }

    /// Use up one application of the first fault matching this request, if any.
    pub(crate) fn take(&self, method: &str, path: &str) -> Option<FaultKind> {
        let mut queue = lock(&self.queue);
        let index = queue.iter().position(|f| f.matcher.matches(method, path))?;
        let fault = queue.get_mut(index)?;
        fault.times = fault.times.saturating_sub(1);
        let kind = fault.kind.clone();
        if fault.times == 0 {
            queue.remove(index);
        }
        Some(kind)
    }
}

/// The message Graph uses when two writes to one object overlap. It names "concurrent requests",
/// which is what clients match on when the status alone (409 or 400) is not enough.
pub(crate) const CONCURRENCY_MESSAGE: &str = "Another concurrent request is updating this object. \
     Please retry after a short delay and avoid sending concurrent requests that update the same object.";

pub(crate) fn concurrency_violation(status: StatusCode) -> GraphError {
    let code = if status == StatusCode::CONFLICT { "Directory_ConcurrencyViolation" } else { "Request_BadRequest" };
    GraphError::new(status, code, CONCURRENCY_MESSAGE)
}

/// Whole seconds, rounded up, as `Retry-After` carries them.
fn retry_after_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The response a fault produces instead of the normal answer to a request for `path`; `None` for
/// [`FaultKind::Slow`], which only delays the normal answer. Graph and the token endpoint answer in
/// their own shapes; a rollout target answers with the status alone, in Spring Boot's error shape,
/// since it stands for a customer application that knows nothing of Graph's error codes.
pub(crate) fn fault_response(kind: &FaultKind, endpoint: Endpoint, path: &str) -> Option<Response> {
    let graph = match kind {
        FaultKind::Slow(_) => return None,
        FaultKind::Late { then, .. } => return fault_response(then, endpoint, path),
        FaultKind::Answer { status, headers, body } => return Some(answer(*status, headers, body)),
        FaultKind::TooManyRequests { retry_after } => {
            GraphError::new(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", "Please retry again later.")
                .with_retry_after(retry_after.map(retry_after_secs))
        }
        FaultKind::Concurrency => concurrency_violation(StatusCode::CONFLICT),
        FaultKind::ConcurrencyAs400 => concurrency_violation(StatusCode::BAD_REQUEST),
        FaultKind::ServerError(status) => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let code = match status.as_u16() {
                500 => "generalException",
                502 => "badGateway",
                503 => "serviceNotAvailable",
                504 => "gatewayTimeout",
                _ => "UnknownError",
            };
            GraphError::new(status, code, "The service encountered an error processing the request.")
        }
        FaultKind::Forbidden => GraphError::forbidden(),
        FaultKind::Refused { code, message } => GraphError::new(StatusCode::BAD_REQUEST, code.clone(), message.clone()),
    };
    let status = graph.status();
    let retry_after = match kind {
        FaultKind::TooManyRequests { retry_after } => retry_after.map(retry_after_secs),
        _ => None,
    };
    match endpoint {
        Endpoint::Token => {}
        Endpoint::Kubernetes => return Some(crate::kubernetes::fault_status(status.as_u16())),
        Endpoint::Target => return Some(crate::targets::error_response(status.as_u16(), path, retry_after)),
        Endpoint::Graph | Endpoint::Other => return Some(graph.into_response()),
        Endpoint::KeyVault => return Some(crate::keyvault::fault_response(status, retry_after)),
        Endpoint::ResourceManager => return Some(crate::arm::fault_response(status, retry_after)),
    }
    // The token endpoint answers in its own (OAuth) shape.
    let token = match status.as_u16() {
        429 => TokenError::new(status, "temporarily_unavailable", 50196, "The server is throttling requests."),
        403 => TokenError::new(status, "unauthorized_client", 7000112, "Application is disabled."),
        400 | 409 => {
            TokenError::new(status, "invalid_request", 90033, "A transient error has occurred. Please try again.")
        }
        _ => TokenError::new(
            status,
            "temporarily_unavailable",
            90033,
            "A transient error has occurred. Please try again.",
        ),
    };
    Some(token.with_retry_after(retry_after).into_response())
}

/// [`FaultKind::Answer`]: exactly what was asked for.
fn answer(status: u16, headers: &[(String, String)], body: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, body.to_owned()).into_response();
    // The body's own type comes from the headers given, not from the sim.
    response.headers_mut().remove(axum::http::header::CONTENT_TYPE);
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) =
            (axum::http::HeaderName::from_bytes(name.as_bytes()), axum::http::HeaderValue::from_str(value))
        {
            response.headers_mut().append(name, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_apply_to_the_first_matching_entry_and_are_used_up_after_their_times() {
        let faults = Faults::default();
        faults.push(Fault::new(Match::path("addPassword").method("POST"), FaultKind::Concurrency).times(2));
        faults.push(Fault::new(Match::any(), FaultKind::Forbidden));
        assert_eq!(faults.take("POST", "/v1.0/applications/x/addPassword"), Some(FaultKind::Concurrency));
        assert_eq!(faults.take("get", "/v1.0/applications"), Some(FaultKind::Forbidden));
        assert_eq!(faults.take("GET", "/v1.0/applications"), None);
        assert_eq!(faults.take("GET", "/v1.0/applications/x/addPassword"), None);
        assert_eq!(faults.take("post", "/v1.0/applications/x/addPassword"), Some(FaultKind::Concurrency));
        assert_eq!(faults.pending(), 0);
    }

    #[test]
    fn retry_after_is_rounded_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
        assert_eq!(retry_after_secs(Duration::ZERO), 0);
    }
}

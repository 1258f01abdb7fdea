//! Rollout targets: the customer's applications a rotation reaches after the new secret exists,
//! served on the sim's own HTTPS server so a test trusts one CA and talks to one address.
//!
//! - **Spring Actuator** — `POST /apps/{name}/actuator/refresh` answers, as Spring Cloud does, a JSON
//!   array of the property names it refreshed ([`SPRING_REFRESHED_KEYS`]); `GET
//!   /apps/{name}/actuator/health` answers `{"status":"UP"}`.
//! - **Health check** — `GET /apps/{name}/health` answers `200 {"status":"ok"}`, or what a
//!   [`HealthScript`] says (the actuator health follows the same script: one application, one health).
//! - **Webhook receiver** — `POST /hooks/{name}` keeps every delivery and checks its Standard Webhooks
//!   signature against the key set for that name ([`Targets::set_webhook_key`]), or the key set for
//!   every name ([`Targets::set_default_webhook_key`]).
//!
//! Any `{name}` works without registering it. No bearer token is asked for: these stand for the
//! customer's own applications, not Graph. They go through the request log (as
//! [`crate::Endpoint::Target`]) and the fault queue like every other path; a fault is applied before
//! the target sees the request, so a faulted request is neither counted here nor uses up a script.
//!
//! Failures (scripted or faults) answer in Spring Boot's error shape (`timestamp`, `status`, `error`,
//! `path`): the targets stand for customer applications, and Spring's is the shape they most often use.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use aws_lc_rs::hmac;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::clock::wall_clock_now;
use crate::lock;
use crate::odata::format_time;
use crate::server::{AppState, Shared};

/// What `POST /apps/{name}/actuator/refresh` answers it refreshed. Spring Cloud answers the names of
/// the properties whose values changed; the sim cannot see the application's environment, so it
/// always names the client secret, which is what a rotation changes.
pub const SPRING_REFRESHED_KEYS: &[&str] = &["azure.activedirectory.client-secret"];

/// Spring Boot's own actuator media type, which it answers unless the client asks for plain JSON.
const ACTUATOR_V3_JSON: &str = "application/vnd.spring-boot.actuator.v3+json";

/// The most deliveries kept per hook name; beyond it the oldest half is dropped, so a sim left
/// running (the demo) does not grow without bound.
const MAX_WEBHOOKS_PER_HOOK: usize = 10_000;

/// How a target answers: `status` for the next `failures` requests, then normally.
///
/// Used for the health check ([`Targets::set_health`]) and, through [`Targets::set_webhook_failures`]
/// and [`Targets::set_spring_failures`], for the other targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthScript {
    /// How many requests get `status`; [`HealthScript::ALWAYS`] never runs out.
    pub failures: u32,
    /// The status those requests get (an invalid code answers 500).
    pub status: u16,
}

impl HealthScript {
    /// A `failures` count that never runs out.
    pub const ALWAYS: u32 = u32::MAX;

    /// `status` for the next `failures` requests, then healthy.
    pub fn failing(failures: u32, status: u16) -> Self {
        Self { failures, status }
    }

    /// `status` for every request from now on.
    pub fn always(status: u16) -> Self {
        Self { failures: Self::ALWAYS, status }
    }

    /// Healthy from now on (the default).
    pub fn healthy() -> Self {
        Self { failures: 0, status: 200 }
    }

    /// The status the next request gets instead of the normal answer, using up one failure.
    fn next_failure(&mut self) -> Option<u16> {
        if self.failures == 0 {
            return None;
        }
        if self.failures != Self::ALWAYS {
            self.failures -= 1;
        }
        Some(self.status)
    }
}

fn next_failure(script: &mut Option<HealthScript>) -> Option<u16> {
    script.as_mut().and_then(HealthScript::next_failure)
}

/// One delivery to `POST /hooks/{name}`, kept whatever the answer was.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedWebhook {
    /// The `webhook-id` header, if sent.
    pub id: Option<String>,
    /// The `webhook-timestamp` header (Unix seconds, as sent), if sent.
    pub timestamp: Option<String>,
    /// The `webhook-signature` header (`v1,<base64>`, possibly several separated by spaces), if sent.
    pub signature: Option<String>,
    /// The body as JSON; `Null` when it was not JSON (the receiver then answered 400).
    pub body: Value,
    /// The body as received (lossily decoded as UTF-8), for asserting that something never appears.
    pub raw_body: String,
    /// Whether a signature verified against the key for this name; `None` when no key is set. A
    /// delivery without the three headers does not verify. The timestamp's age is not checked: the
    /// product may sign on a test clock far from the wall.
    pub verified: Option<bool>,
    /// The status the receiver answered.
    pub status: u16,
    /// When it arrived (sim clock).
    pub received_at: OffsetDateTime,
}

/// A webhook key, never shown by `Debug`.
#[derive(Clone)]
struct WebhookKey(String);

impl fmt::Debug for WebhookKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookKey(…)")
    }
}

#[derive(Debug, Default)]
struct App {
    /// Successful refreshes (sim clock).
    refreshes: Vec<OffsetDateTime>,
    /// Every refresh request that reached the application, failed ones included.
    refresh_requests: usize,
    /// Requests to either health endpoint.
    health_requests: usize,
    spring_script: Option<HealthScript>,
    health_script: Option<HealthScript>,
}

#[derive(Debug, Default)]
struct Hook {
    received: Vec<ReceivedWebhook>,
    key: Option<WebhookKey>,
    script: Option<HealthScript>,
}

/// What the targets received and how they are scripted to answer; lives in [`Shared`].
#[derive(Debug, Default)]
pub(crate) struct TargetState {
    apps: BTreeMap<String, App>,
    hooks: BTreeMap<String, Hook>,
    default_webhook_key: Option<WebhookKey>,
}

/// A handle on the rollout targets: what they received, and how they answer. Cheap to clone; every
/// clone sees the same targets.
#[derive(Clone)]
pub struct Targets {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for Targets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Targets").finish_non_exhaustive()
    }
}

impl Targets {
    fn read<R>(&self, f: impl FnOnce(&TargetState) -> R) -> R {
        f(&lock(&self.shared.targets))
    }

    fn write<R>(&self, f: impl FnOnce(&mut TargetState) -> R) -> R {
        f(&mut lock(&self.shared.targets))
    }

    /// How many refreshes of application `name` succeeded (answered 200).
    pub fn spring_refreshes(&self, name: &str) -> usize {
        self.read(|t| t.apps.get(name).map_or(0, |a| a.refreshes.len()))
    }

    /// When each successful refresh of application `name` happened (sim clock), oldest first.
    pub fn spring_refresh_times(&self, name: &str) -> Vec<OffsetDateTime> {
        self.read(|t| t.apps.get(name).map(|a| a.refreshes.clone()).unwrap_or_default())
    }

    /// How many refresh requests reached application `name`, scripted failures included.
    pub fn spring_requests(&self, name: &str) -> usize {
        self.read(|t| t.apps.get(name).map_or(0, |a| a.refresh_requests))
    }

    /// How many requests reached application `name`'s health endpoints (`/health` and
    /// `/actuator/health`), scripted failures included.
    pub fn health_requests(&self, name: &str) -> usize {
        self.read(|t| t.apps.get(name).map_or(0, |a| a.health_requests))
    }

    /// Every delivery to `/hooks/{name}`, oldest first.
    pub fn webhooks(&self, name: &str) -> Vec<ReceivedWebhook> {
        self.read(|t| t.hooks.get(name).map(|h| h.received.clone()).unwrap_or_default())
    }

    /// Every delivery to every hook, by hook name, oldest first within each.
    pub fn all_webhooks(&self) -> BTreeMap<String, Vec<ReceivedWebhook>> {
        self.read(|t| t.hooks.iter().map(|(name, h)| (name.clone(), h.received.clone())).collect())
    }

    /// How application `name`'s health endpoints answer from now on (replaces any earlier script).
    pub fn set_health(&self, name: &str, script: HealthScript) {
        self.write(|t| t.apps.entry(name.to_owned()).or_default().health_script = Some(script));
    }

    /// Verify deliveries to `/hooks/{name}` against `key`: `whsec_<base64>` is used base64-decoded,
    /// anything else as its raw bytes. Takes precedence over the default key.
    pub fn set_webhook_key(&self, name: &str, key: &str) {
        self.write(|t| t.hooks.entry(name.to_owned()).or_default().key = Some(WebhookKey(key.to_owned())));
    }

    /// Verify deliveries to every hook name without a key of its own against `key`.
    pub fn set_default_webhook_key(&self, key: &str) {
        self.write(|t| t.default_webhook_key = Some(WebhookKey(key.to_owned())));
    }

    /// Answer the next `failures` deliveries to `/hooks/{name}` with `status` (they are still kept).
    /// [`HealthScript::ALWAYS`] never runs out.
    pub fn set_webhook_failures(&self, name: &str, failures: u32, status: u16) {
        let script = HealthScript::failing(failures, status);
        self.write(|t| t.hooks.entry(name.to_owned()).or_default().script = Some(script));
    }

    /// Answer the next `failures` refreshes of application `name` with `status` (counted by
    /// [`Targets::spring_requests`], not by [`Targets::spring_refreshes`]). [`HealthScript::ALWAYS`]
    /// never runs out.
    pub fn set_spring_failures(&self, name: &str, failures: u32, status: u16) {
        let script = HealthScript::failing(failures, status);
        self.write(|t| t.apps.entry(name.to_owned()).or_default().spring_script = Some(script));
    }

    /// Forget what was received (refreshes, health requests, deliveries); scripts and keys stay.
    pub fn clear_received(&self) {
        self.write(|t| {
            for app in t.apps.values_mut() {
                app.refreshes.clear();
                app.refresh_requests = 0;
                app.health_requests = 0;
            }
            for hook in t.hooks.values_mut() {
                hook.received.clear();
            }
        });
    }

    /// Counts and deliveries as the control API shows them (`GET /_sim/targets`).
    pub(crate) fn summary_json(&self) -> Value {
        self.read(|t| {
            let apps: serde_json::Map<String, Value> = t
                .apps
                .iter()
                .map(|(name, a)| {
                    let summary = json!({
                        "spring_refreshes": a.refreshes.len(),
                        "spring_requests": a.refresh_requests,
                        "health_requests": a.health_requests,
                    });
                    (name.clone(), summary)
                })
                .collect();
            let hooks: serde_json::Map<String, Value> = t
                .hooks
                .iter()
                .map(|(name, h)| {
                    let deliveries: Vec<Value> = h.received.iter().map(webhook_json).collect();
                    let summary = json!({
                        "received": h.received.len(),
                        "verified": h.received.iter().filter(|w| w.verified == Some(true)).count(),
                        "deliveries": deliveries,
                    });
                    (name.clone(), summary)
                })
                .collect();
            json!({ "apps": apps, "hooks": hooks })
        })
    }
}

fn webhook_json(w: &ReceivedWebhook) -> Value {
    json!({
        "id": w.id,
        "timestamp": w.timestamp,
        "signature": w.signature,
        "verified": w.verified,
        "status": w.status,
        "received_at": format_time(w.received_at),
        "body": w.body,
    })
}

/// The key's bytes: `whsec_<base64>` decoded, as the Standard Webhooks libraries do; otherwise (or
/// when the part after `whsec_` is not base64) the raw bytes of the whole key.
fn key_bytes(key: &str) -> Vec<u8> {
    key.strip_prefix("whsec_").and_then(|b| STANDARD.decode(b).ok()).unwrap_or_else(|| key.as_bytes().to_vec())
}

fn signed_content(id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut content = format!("{id}.{timestamp}.").into_bytes();
    content.extend_from_slice(body);
    content
}

/// The Standard Webhooks signature of a delivery: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`
/// keyed with `key` (see [`Targets::set_webhook_key`] for how the key is read).
pub fn webhook_signature(key: &str, id: &str, timestamp: &str, body: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, &key_bytes(key));
    let tag = hmac::sign(&key, &signed_content(id, timestamp, body.as_bytes()));
    format!("v1,{}", STANDARD.encode(tag.as_ref()))
}

/// Whether any `v1` signature in the header (space-separated, as the specification allows during key
/// rotation) matches. Compared in constant time, as a receiver should.
fn verify(key: &str, id: &str, timestamp: &str, body: &[u8], header: &str) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, &key_bytes(key));
    let content = signed_content(id, timestamp, body);
    header
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|s| STANDARD.decode(s).ok())
        .any(|tag| hmac::verify(&key, &content, &tag).is_ok())
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/apps/{name}/actuator/refresh", post(spring_refresh))
        .route("/apps/{name}/actuator/health", get(actuator_health))
        .route("/apps/{name}/health", get(health))
        .route("/hooks/{name}", post(webhook))
}

/// A target's failure in Spring Boot's error shape; `Retry-After` in whole seconds when given.
pub(crate) fn error_response(status: u16, path: &str, retry_after_secs: Option<u64>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({
        "timestamp": wall_clock_now().format(&Rfc3339).unwrap_or_default(),
        "status": status.as_u16(),
        "error": status.canonical_reason().unwrap_or("Unknown"),
        "path": path,
    });
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(secs) = retry_after_secs {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// A JSON answer with Spring Boot's actuator media type, unless the client asked for plain JSON (as
/// Spring's content negotiation does: `*/*` or no `Accept` gets the actuator type).
fn actuator_json(headers: &HeaderMap, status: StatusCode, body: &Value) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let content_type = if accept.contains("application/json") && !accept.contains(ACTUATOR_V3_JSON) {
        "application/json"
    } else {
        ACTUATOR_V3_JSON
    };
    (status, [(header::CONTENT_TYPE, content_type)], body.to_string()).into_response()
}

async fn spring_refresh(State(s): State<AppState>, Path(name): Path<String>, uri: Uri, headers: HeaderMap) -> Response {
    let now = s.clock.now();
    let failure = {
        let mut targets = lock(&s.targets);
        let app = targets.apps.entry(name).or_default();
        app.refresh_requests += 1;
        let failure = next_failure(&mut app.spring_script);
        if failure.is_none() {
            app.refreshes.push(now);
        }
        failure
    };
    match failure {
        Some(status) => error_response(status, uri.path(), None),
        None => actuator_json(&headers, StatusCode::OK, &json!(SPRING_REFRESHED_KEYS)),
    }
}

/// The status the application's health endpoints answer now, counting the request.
fn health_failure(s: &Shared, name: String) -> Option<u16> {
    let mut targets = lock(&s.targets);
    let app = targets.apps.entry(name).or_default();
    app.health_requests += 1;
    next_failure(&mut app.health_script)
}

fn status_or_500(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

async fn actuator_health(State(s): State<AppState>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    match health_failure(&s, name) {
        Some(status) => actuator_json(&headers, status_or_500(status), &json!({ "status": "DOWN" })),
        None => actuator_json(&headers, StatusCode::OK, &json!({ "status": "UP" })),
    }
}

async fn health(State(s): State<AppState>, Path(name): Path<String>) -> Response {
    match health_failure(&s, name) {
        Some(status) => (status_or_500(status), axum::Json(json!({ "status": "unavailable" }))).into_response(),
        None => axum::Json(json!({ "status": "ok" })).into_response(),
    }
}

async fn webhook(
    State(s): State<AppState>,
    Path(name): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header_value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let id = header_value("webhook-id");
    let timestamp = header_value("webhook-timestamp");
    let signature = header_value("webhook-signature");
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();

    let key = {
        let targets = lock(&s.targets);
        targets.hooks.get(&name).and_then(|h| h.key.clone()).or_else(|| targets.default_webhook_key.clone())
    };
    // Verified outside the lock; a missing header means the delivery cannot verify.
    let verified = key.map(|WebhookKey(key)| match (&id, &timestamp, &signature) {
        (Some(id), Some(timestamp), Some(signature)) => verify(&key, id, timestamp, &body, signature),
        _ => false,
    });

    let status = {
        let mut targets = lock(&s.targets);
        let hook = targets.hooks.entry(name).or_default();
        // A scripted failure stands for a receiver that is down: it answers before looking at the body.
        let status = match next_failure(&mut hook.script) {
            Some(status) => status_or_500(status),
            None if parsed.is_none() => StatusCode::BAD_REQUEST,
            None => StatusCode::OK,
        };
        if hook.received.len() >= MAX_WEBHOOKS_PER_HOOK {
            hook.received.drain(..MAX_WEBHOOKS_PER_HOOK / 2);
        }
        hook.received.push(ReceivedWebhook {
            id,
            timestamp,
            signature,
            body: parsed.unwrap_or(Value::Null),
            raw_body: String::from_utf8_lossy(&body).into_owned(),
            verified,
            status: status.as_u16(),
            received_at: s.clock.now(),
        });
        status
    };
    if status == StatusCode::OK {
        axum::Json(json!({ "status": "received" })).into_response()
    } else {
        error_response(status.as_u16(), uri.path(), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example the Standard Webhooks reference libraries test with.
    const SPEC_KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TIMESTAMP: &str = "1614265330";
    const SPEC_BODY: &str = r#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signatures_follow_the_standard_webhooks_example() {
        assert_eq!(webhook_signature(SPEC_KEY, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY), SPEC_SIGNATURE);
        assert!(verify(SPEC_KEY, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY.as_bytes(), SPEC_SIGNATURE));
    }

    #[test]
    fn any_of_several_signatures_may_verify_and_nothing_else_does() {
        let body = SPEC_BODY.as_bytes();
        let both = format!("v1,bm90LWl0 {SPEC_SIGNATURE}");
        assert!(verify(SPEC_KEY, SPEC_ID, SPEC_TIMESTAMP, body, &both));
        assert!(!verify(SPEC_KEY, SPEC_ID, "1614265331", body, SPEC_SIGNATURE));
        assert!(!verify("whsec_b3RoZXI=", SPEC_ID, SPEC_TIMESTAMP, body, SPEC_SIGNATURE));
        assert!(!verify(SPEC_KEY, SPEC_ID, SPEC_TIMESTAMP, body, SPEC_SIGNATURE.trim_start_matches("v1,")));
        assert!(!verify(SPEC_KEY, SPEC_ID, SPEC_TIMESTAMP, body, "v1,not base64!"));
    }

    #[test]
    fn keys_without_the_whsec_prefix_are_used_as_raw_bytes() {
        assert_eq!(key_bytes("plain-key"), b"plain-key".to_vec());
        assert_eq!(key_bytes("whsec_aGk="), b"hi".to_vec());
        assert_eq!(key_bytes("whsec_not base64"), b"whsec_not base64".to_vec());
        let signature = webhook_signature("plain-key", "id", "1", "{}");
        assert!(verify("plain-key", "id", "1", b"{}", &signature));
    }

    #[test]
    fn scripts_fail_the_given_number_of_times_or_always() {
        let mut script = Some(HealthScript::failing(2, 503));
        let seen: Vec<Option<u16>> = (0..3).map(|_| next_failure(&mut script)).collect();
        assert_eq!(seen, vec![Some(503), Some(503), None]);
        let mut always = Some(HealthScript::always(500));
        assert!((0..5).all(|_| next_failure(&mut always) == Some(500)));
        assert_eq!(next_failure(&mut Some(HealthScript::healthy())), None);
        assert_eq!(next_failure(&mut None), None);
    }
}

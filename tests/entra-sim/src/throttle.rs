//! Graph's pace, switched on per sim ([`crate::SimOptions::graph_limits`], [`crate::Sim::set_graph_limits`]
//! or `POST /_sim/graph-limits`): a latency on every request the product makes (Graph, the token
//! endpoint, Key Vault, ARM, Kubernetes and the rollout targets), Graph's write budgets, and the
//! refusal of overlapping writes to one application, counted so tests and the bench can read what
//! the product provoked ([`crate::Sim::graph_pace`], `GET /_sim/graph-pace`).
//!
//! The budgets are those Microsoft documents for the identity and access service ("Microsoft Graph
//! service-specific throttling limits", identity and access service limits, write quota): 3,000
//! writes per 2 minutes 30 seconds per application+tenant pair (the calling application, known here
//! by its access token), and 18,000 writes per 5 minutes per tenant for all applications. A write
//! over either budget is answered `429 TooManyRequests` with `Retry-After` (whole seconds: until the
//! oldest write counted leaves its window) and Graph's error body; it does not use up budget. Both
//! budgets count over a sliding window of real time, which is what a client waiting out
//! `Retry-After` lives by. Smaller budgets can be set to make a short test or bench meet them.
//!
//! A write is any `POST`, `PATCH`, `PUT` or `DELETE` under `/v1.0/applications/{id}` (`addPassword`,
//! `removePassword`, an application PATCH). A write that arrives while another write to the same
//! application is in flight is refused with `409 Directory_ConcurrencyViolation` when
//! [`GraphLimits::refuse_concurrent_writes`] is on, as Graph does; either way it is counted, and
//! [`GraphPace::max_concurrent_writers`] is the most writes ever in flight on one application at once.
//! That counter is what "one writer per application at a time" is asserted from.
//!
//! Off by default: without limits the middleware hook passes every request straight through.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use crate::error::GraphError;
use crate::faults::concurrency_violation;
use crate::lock;
use crate::records::Endpoint;
use crate::server::{AppState, Shared, bearer, issued_token};

/// How many writes a window allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteBudget {
    pub writes: u32,
    #[serde(with = "millis")]
    pub window: Duration,
}

impl WriteBudget {
    pub const fn new(writes: u32, window: Duration) -> Self {
        Self { writes, window }
    }
}

/// Graph's pace, as the sim imposes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphLimits {
    /// How long every request takes before it is handled (a realistic round trip is 30 ms): Graph,
    /// the token endpoint, Key Vault, ARM, Kubernetes and the rollout targets alike; the sim's
    /// control API answers at once.
    #[serde(with = "millis")]
    pub latency: Duration,
    /// Writes per calling application and tenant. Documented: 3,000 per 150 s.
    pub app_tenant_writes: WriteBudget,
    /// Writes per tenant, for all calling applications. Documented: 18,000 per 300 s.
    pub tenant_writes: WriteBudget,
    /// Refuse a write to an application that another write is still in flight on (409).
    pub refuse_concurrent_writes: bool,
}

impl GraphLimits {
    /// The documented budgets, a 30 ms latency, and overlapping writes refused.
    pub const fn documented() -> Self {
        Self {
            latency: Duration::from_millis(30),
            app_tenant_writes: WriteBudget::new(3_000, Duration::from_secs(150)),
            tenant_writes: WriteBudget::new(18_000, Duration::from_secs(300)),
            refuse_concurrent_writes: true,
        }
    }

    /// The same limits with another latency.
    pub const fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// The same limits with another budget per calling application and tenant (a scaled-down
    /// budget makes a short run meet it).
    pub const fn with_app_tenant_writes(mut self, budget: WriteBudget) -> Self {
        self.app_tenant_writes = budget;
        self
    }
}

impl Default for GraphLimits {
    fn default() -> Self {
        Self::documented()
    }
}

/// What the limits met, since they were last set (or [`crate::Sim::reset_graph_pace`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GraphPace {
    /// Graph requests seen while limits were on.
    pub requests: u64,
    /// Writes admitted (within budget, not refused for overlapping).
    pub writes: u64,
    /// Writes answered 429 for being over a budget.
    pub throttled: u64,
    /// Writes answered 409 because another write to the same application was in flight.
    pub concurrency_refusals: u64,
    /// The most writes in flight on one application at one moment (refused ones included).
    pub max_concurrent_writers: u32,
}

#[derive(Debug, Default)]
struct PaceState {
    limits: Option<GraphLimits>,
    pace: GraphPace,
    /// Admitted writes per calling application (its client id), oldest first.
    by_client: HashMap<String, VecDeque<Instant>>,
    /// Admitted writes of the whole tenant, oldest first.
    tenant: VecDeque<Instant>,
    /// Writes in flight per application object.
    in_flight: HashMap<String, u32>,
}

/// The sim's pace keeper: the limits in force and what they met.
#[derive(Debug, Default)]
pub(crate) struct Pace {
    state: Mutex<PaceState>,
}

impl Pace {
    pub(crate) fn new(limits: Option<GraphLimits>) -> Self {
        Self { state: Mutex::new(PaceState { limits, ..PaceState::default() }) }
    }

    /// Set (or, with `None`, switch off) the limits; the counters and windows start afresh.
    pub(crate) fn set(&self, limits: Option<GraphLimits>) {
        let mut state = lock(&self.state);
        let in_flight = std::mem::take(&mut state.in_flight);
        *state = PaceState { limits, in_flight, ..PaceState::default() };
    }

    pub(crate) fn limits(&self) -> Option<GraphLimits> {
        lock(&self.state).limits
    }

    pub(crate) fn snapshot(&self) -> GraphPace {
        lock(&self.state).pace
    }

    pub(crate) fn reset_counters(&self) {
        lock(&self.state).pace = GraphPace::default();
    }

    fn begin_write(&self, object: &str) -> WriterGuard<'_> {
        let mut state = lock(&self.state);
        let count = state.in_flight.entry(object.to_owned()).or_insert(0);
        *count += 1;
        let now = *count;
        state.pace.max_concurrent_writers = state.pace.max_concurrent_writers.max(now);
        WriterGuard { pace: self, object: object.to_owned(), overlapped: now > 1 }
    }

    /// Admit a write of `client` (charging both budgets), or say how long until one would fit.
    fn admit(&self, client: &str, limits: &GraphLimits, at: Instant) -> Result<(), Duration> {
        let mut state = lock(&self.state);
        let state = &mut *state;
        let client_log = state.by_client.entry(client.to_owned()).or_default();
        let wait_client = wait_for(client_log, limits.app_tenant_writes, at);
        let wait_tenant = wait_for(&mut state.tenant, limits.tenant_writes, at);
        match wait_client.max(wait_tenant) {
            Some(wait) => {
                state.pace.throttled += 1;
                Err(wait)
            }
            None => {
                client_log.push_back(at);
                state.tenant.push_back(at);
                state.pace.writes += 1;
                Ok(())
            }
        }
    }

    fn count(&self, update: impl FnOnce(&mut GraphPace)) {
        update(&mut lock(&self.state).pace);
    }
}

/// Drops the writes that have left `budget`'s window; `Some(wait)` when the window is full, the
/// time until its oldest write leaves it.
fn wait_for(log: &mut VecDeque<Instant>, budget: WriteBudget, at: Instant) -> Option<Duration> {
    while log.front().is_some_and(|t| at.saturating_duration_since(*t) >= budget.window) {
        log.pop_front();
    }
    if log.len() < budget.writes as usize {
        return None;
    }
    let oldest = log.front().copied().unwrap_or(at);
    Some(budget.window.saturating_sub(at.saturating_duration_since(oldest)))
}

/// One write in flight on one application, for as long as it lives.
struct WriterGuard<'a> {
    pace: &'a Pace,
    object: String,
    overlapped: bool,
}

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        let mut state = lock(&self.pace.state);
        if let Some(count) = state.in_flight.get_mut(&self.object) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                state.in_flight.remove(&self.object);
            }
        }
    }
}

/// The application object a write request is for: `/v1.0/applications/{id}…` with a writing method.
fn written_object<'p>(method: &str, path: &'p str) -> Option<&'p str> {
    if !["POST", "PATCH", "PUT", "DELETE"].iter().any(|m| m.eq_ignore_ascii_case(method)) {
        return None;
    }
    let rest = path.strip_prefix("/v1.0/applications/")?;
    let id = rest.split('/').next().filter(|id| !id.is_empty())?;
    // `delta` is a listing, never a write target.
    (id != "delta" && id != "microsoft.graph.delta").then_some(id)
}

/// Whole seconds, rounded up and at least one, as Graph's `Retry-After` carries them.
fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// The middleware hook: `handle` is the normal answer. Without limits, or for anything but Graph,
/// it is awaited as is.
pub(crate) async fn pace<F>(shared: &Shared, method: &str, path: &str, headers: &HeaderMap, handle: F) -> Response
where
    F: Future<Output = Response>,
{
    let Some(limits) = shared.pace.limits() else {
        return handle.await;
    };
    match Endpoint::of_path(path) {
        Endpoint::Graph => {}
        // The sim's own health and control API answer at once.
        Endpoint::Other => return handle.await,
        // The token endpoint, Key Vault, ARM, Kubernetes and the rollout targets are remote too:
        // the same round trip, no write budget.
        _ => {
            tokio::time::sleep(limits.latency).await;
            return handle.await;
        }
    }
    shared.pace.count(|p| p.requests += 1);
    let Some(object) = written_object(method, path) else {
        tokio::time::sleep(limits.latency).await;
        return handle.await;
    };
    let writer = shared.pace.begin_write(object);
    tokio::time::sleep(limits.latency).await;
    // The calling application is known by its token; a request without a live one is left to the
    // handler, which refuses it (and charges nothing).
    let Some(client) = bearer(headers).and_then(|t| issued_token(shared, t)).map(|t| t.client_id.to_string()) else {
        return handle.await;
    };
    if limits.refuse_concurrent_writes && writer.overlapped {
        shared.pace.count(|p| p.concurrency_refusals += 1);
        drop(writer);
        return concurrency_violation(StatusCode::CONFLICT).into_response();
    }
    if let Err(wait) = shared.pace.admit(&client, &limits, Instant::now()) {
        drop(writer);
        return GraphError::new(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", "Please retry again later.")
            .with_retry_after(Some(retry_after_secs(wait)))
            .into_response();
    }
    let response = handle.await;
    drop(writer);
    response
}

/// `POST /_sim/graph-limits` (a [`GraphLimits`] in JSON, durations in milliseconds, or `{}` for
/// the documented ones; `null` switches them off) and `GET /_sim/graph-pace` ([`GraphPace`]).
pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/_sim/graph-limits", post(set_limits)).route("/_sim/graph-pace", get(read_pace))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsBody {
    latency_ms: Option<u64>,
    app_tenant_writes: Option<u32>,
    app_tenant_window_ms: Option<u64>,
    tenant_writes: Option<u32>,
    tenant_window_ms: Option<u64>,
    refuse_concurrent_writes: Option<bool>,
}

async fn set_limits(State(s): State<AppState>, body: axum::body::Bytes) -> Response {
    let body = String::from_utf8_lossy(&body);
    if body.trim() == "null" {
        s.pace.set(None);
        return StatusCode::NO_CONTENT.into_response();
    }
    let parsed: LimitsBody = if body.trim().is_empty() {
        LimitsBody::default()
    } else {
        match serde_json::from_str(&body) {
            Ok(b) => b,
            Err(e) => return GraphError::bad_request(format!("graph limits: {e}")).into_response(),
        }
    };
    let d = GraphLimits::documented();
    let limits = GraphLimits {
        latency: parsed.latency_ms.map_or(d.latency, Duration::from_millis),
        app_tenant_writes: WriteBudget::new(
            parsed.app_tenant_writes.unwrap_or(d.app_tenant_writes.writes),
            parsed.app_tenant_window_ms.map_or(d.app_tenant_writes.window, Duration::from_millis),
        ),
        tenant_writes: WriteBudget::new(
            parsed.tenant_writes.unwrap_or(d.tenant_writes.writes),
            parsed.tenant_window_ms.map_or(d.tenant_writes.window, Duration::from_millis),
        ),
        refuse_concurrent_writes: parsed.refuse_concurrent_writes.unwrap_or(d.refuse_concurrent_writes),
    };
    s.pace.set(Some(limits));
    (StatusCode::OK, axum::Json(limits)).into_response()
}

async fn read_pace(State(s): State<AppState>) -> Response {
    (StatusCode::OK, axum::Json(s.pace.snapshot())).into_response()
}

/// Durations as whole milliseconds in JSON.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_window_says_how_long_until_its_oldest_write_leaves() {
        let budget = WriteBudget::new(2, Duration::from_secs(10));
        let start = Instant::now();
        let mut log = VecDeque::new();
        assert_eq!(wait_for(&mut log, budget, start), None);
        log.push_back(start);
        log.push_back(start + Duration::from_secs(4));
        assert_eq!(wait_for(&mut log, budget, start + Duration::from_secs(6)), Some(Duration::from_secs(4)));
        assert_eq!(wait_for(&mut log, budget, start + Duration::from_secs(10)), None, "the oldest has left");
        assert_eq!(log.len(), 1);
    }

    #[test]
    fn only_writes_to_an_application_are_writes() {
        let id = "11111111-1111-1111-1111-111111111111";
        assert_eq!(written_object("POST", &format!("/v1.0/applications/{id}/addPassword")), Some(id));
        assert_eq!(written_object("patch", &format!("/v1.0/applications/{id}")), Some(id));
        assert_eq!(written_object("GET", &format!("/v1.0/applications/{id}")), None);
        assert_eq!(written_object("POST", "/v1.0/applications/delta"), None);
        assert_eq!(written_object("POST", "/v1.0/servicePrincipals"), None);
    }

    #[test]
    fn admitted_writes_use_up_the_budget_and_refused_ones_do_not() {
        let pace = Pace::new(None);
        let limits = GraphLimits::documented().with_app_tenant_writes(WriteBudget::new(2, Duration::from_secs(60)));
        let at = Instant::now();
        assert!(pace.admit("a", &limits, at).is_ok());
        assert!(pace.admit("a", &limits, at).is_ok());
        assert_eq!(pace.admit("a", &limits, at), Err(Duration::from_secs(60)));
        assert!(pace.admit("b", &limits, at).is_ok(), "another calling application has a budget of its own");
        let p = pace.snapshot();
        assert_eq!((p.writes, p.throttled), (3, 1));
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
    }

    #[test]
    fn writers_in_flight_on_one_application_are_counted_at_their_peak() {
        let pace = Pace::new(None);
        let first = pace.begin_write("x");
        let second = pace.begin_write("x");
        let other = pace.begin_write("y");
        assert!(!first.overlapped && second.overlapped && !other.overlapped);
        drop((first, second, other));
        assert!(!pace.begin_write("x").overlapped, "all finished");
        assert_eq!(pace.snapshot().max_concurrent_writers, 2);
    }
}

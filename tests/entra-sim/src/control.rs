//! The control API: what [`crate::TenantHandle`] and [`crate::Faults`] offer in-process, over HTTP, for
//! a sim running as a separate process (`entra-sim --control`, scripts, `make demo`).
//!
//! Served under `/_sim/` only when [`crate::SimOptions::control_api`] is on. It has no authentication:
//! it is a test tool's back door, listening on loopback by default; never switch it on for a sim that
//! others can reach.
//!
//! - `POST /_sim/touch?count=N` — rename N applications, spread over the tenant
//! - `POST /_sim/add?count=N` — add N applications
//! - `POST /_sim/remove?count=N` — delete N applications, spread over the tenant
//! - `POST /_sim/advance?seconds=N` — move the sim clock forward
//! - `POST /_sim/faults` — queue a fault: `{"path_contains": "addPassword", "method": "POST",
//!   "kind": "too_many_requests" | "concurrency" | "concurrency_as_400" | "server_error" | "slow" |
//!   "forbidden", "retry_after_secs": 2, "status": 503, "delay_ms": 500, "times": 1}`
//! - `GET /_sim/truth` — the tenant's counts now (sim clock)
//! - `GET /_sim/targets` — what the rollout targets received: per application `spring_refreshes`,
//!   `spring_requests`, `health_requests`; per hook `received`, `verified` and every delivery (`id`,
//!   `timestamp`, `signature`, `verified`, `status`, `received_at`, `body`)
//! - `POST /_sim/health?name=orders&failures=K&status=N` — application `orders`' health check answers
//!   N (default 503) for the next K requests, then 200; without `failures`, N from now on
//! - `POST /_sim/webhook-failures?name=…&failures=K&status=N`, `POST /_sim/spring-failures?…` — the
//!   same for a webhook receiver and an actuator refresh
//! - `GET /_sim/kubernetes/workload?namespace=orders&name=orders-api` — a simulated workload's
//!   restarts and, per pod, its template generation, readiness and whether its secret signs in.
//! - `GET /_sim/azure/site?name=app-store-portal[&slot=staging]` — a simulated web app as the platform
//!   sees it: `state`, `starts`, `restarts`, `refreshes`, `resolved_version` (the platform's cache),
//!   `reference_status`, `process_version` (what the running process started with); 404 if unknown
//! - `GET /_sim/azure/secret?vault=portal-kv&name=AzureAdClientSecret` — a secret's versions, oldest
//!   first, without their values (`version`, `enabled`, `created`, `tags`)
//! - `POST /_sim/graph-limits` — Graph's latency and write budgets on (`{"latency_ms": 30,
//!   "app_tenant_writes": 3000, "app_tenant_window_ms": 150000, "tenant_writes": 18000,
//!   "tenant_window_ms": 300000, "refuse_concurrent_writes": true}`, each optional, `{}` the
//!   documented ones) or off (`null`); `GET /_sim/graph-pace` — what they met (`requests`, `writes`,
//!   `throttled`, `concurrency_refusals`, `max_concurrent_writers`)
//! - the fault kind `"answer"` with `status`, `headers` (`[["name","value"],…]`) and `body` answers
//!   exactly that

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use crate::azure::AzureHandle;
use crate::error::GraphError;
use crate::server::AppState;
use crate::targets::{HealthScript, Targets};
use crate::tenant::{NewApp, TenantHandle};
use crate::{Fault, FaultKind, Match, lock, truth};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/_sim/touch", post(touch))
        .route("/_sim/add", post(add))
        .route("/_sim/remove", post(remove))
        .route("/_sim/advance", post(advance))
        .route("/_sim/faults", post(push_fault))
        .route("/_sim/truth", get(current_truth))
        .route("/_sim/targets", get(targets_summary))
        .route("/_sim/health", post(script_health))
        .route("/_sim/webhook-failures", post(script_webhook))
        .route("/_sim/spring-failures", post(script_spring))
        .route("/_sim/azure/site", get(azure_site))
        .route("/_sim/azure/secret", get(azure_secret))
        .route("/_sim/kubernetes/workload", get(kubernetes_workload))
        .merge(crate::throttle::routes())
}

#[derive(Debug, Deserialize)]
struct Count {
    count: usize,
}

/// `count` application ids spread evenly over the tenant (deterministic, so runs repeat).
fn spread(tenant: &TenantHandle, count: usize) -> Vec<uuid::Uuid> {
    let ids = tenant.app_object_ids();
    if count == 0 || ids.is_empty() {
        return Vec::new();
    }
    let step = (ids.len() / count.min(ids.len())).max(1);
    ids.into_iter().step_by(step).take(count).collect()
}

async fn touch(State(shared): State<AppState>, Query(q): Query<Count>) -> Response {
    let tenant = TenantHandle { shared };
    let touched = spread(&tenant, q.count).into_iter().filter(|id| tenant.touch_app(*id).is_ok()).count();
    axum::Json(json!({ "touched": touched })).into_response()
}

async fn remove(State(shared): State<AppState>, Query(q): Query<Count>) -> Response {
    let tenant = TenantHandle { shared };
    let removed = spread(&tenant, q.count).into_iter().filter(|id| tenant.remove_app(*id).is_ok()).count();
    axum::Json(json!({ "removed": removed })).into_response()
}

async fn add(State(shared): State<AppState>, Query(q): Query<Count>) -> Response {
    let tenant = TenantHandle { shared };
    let added: Vec<String> = (0..q.count)
        .map(|i| tenant.add_app(NewApp::named(format!("Added through control {}", i + 1))).object_id.to_string())
        .collect();
    axum::Json(json!({ "added": added })).into_response()
}

#[derive(Debug, Deserialize)]
struct Seconds {
    seconds: u64,
}

async fn advance(State(shared): State<AppState>, Query(q): Query<Seconds>) -> Response {
    shared.clock.advance(Duration::from_secs(q.seconds));
    axum::Json(json!({ "now": crate::odata::format_time(shared.clock.now()) })).into_response()
}

async fn current_truth(State(shared): State<AppState>) -> Response {
    let t = truth::compute(&lock(&shared.directory), shared.clock.now());
    axum::Json(json!({
        "applications": t.applications,
        "service_principals": t.service_principals,
        "password_credentials": t.password_credentials,
        "certificates": t.certificates,
        "expired": t.expired,
        "expiring_within_7_days": t.expiring_within_7_days,
        "expiring_within_30_days": t.expiring_within_30_days,
        "expiring_within_90_days": t.expiring_within_90_days,
    }))
    .into_response()
}

#[derive(Debug, Deserialize)]
struct FaultRequest {
    #[serde(default)]
    path_contains: String,
    method: Option<String>,
    kind: String,
    retry_after_secs: Option<u64>,
    status: Option<u16>,
    delay_ms: Option<u64>,
    #[serde(default = "one")]
    times: u32,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    body: String,
}

fn one() -> u32 {
    1
}

async fn push_fault(State(shared): State<AppState>, body: Bytes) -> Response {
    let request: FaultRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => return GraphError::bad_request(format!("Invalid fault: {e}")).into_response(),
    };
    let kind = match request.kind.as_str() {
        "too_many_requests" => {
            FaultKind::TooManyRequests { retry_after: request.retry_after_secs.map(Duration::from_secs) }
        }
        "concurrency" => FaultKind::Concurrency,
        "concurrency_as_400" => FaultKind::ConcurrencyAs400,
        "server_error" => FaultKind::ServerError(request.status.unwrap_or(503)),
        "slow" => FaultKind::Slow(Duration::from_millis(request.delay_ms.unwrap_or(1000))),
        "forbidden" => FaultKind::Forbidden,
        "answer" => FaultKind::Answer {
            status: request.status.unwrap_or(200),
            headers: request.headers.clone(),
            body: request.body.clone(),
        },
        other => return GraphError::bad_request(format!("Unknown fault kind '{other}'.")).into_response(),
    };
    let mut matcher = Match::path(request.path_contains);
    matcher.method = request.method;
    shared.faults.push(Fault::new(matcher, kind).times(request.times));
    (StatusCode::CREATED, axum::Json(json!({ "pending": shared.faults.pending() }))).into_response()
}

async fn targets_summary(State(shared): State<AppState>) -> Response {
    axum::Json(Targets { shared }.summary_json()).into_response()
}

#[derive(Debug, Deserialize)]
struct ScriptRequest {
    name: String,
    /// Absent: fail from now on.
    failures: Option<u32>,
    #[serde(default = "service_unavailable")]
    status: u16,
}

fn service_unavailable() -> u16 {
    503
}

impl ScriptRequest {
    fn script(&self) -> HealthScript {
        match self.failures {
            Some(failures) => HealthScript::failing(failures, self.status),
            None => HealthScript::always(self.status),
        }
    }

    fn answer(&self) -> Response {
        let failures = match self.failures {
            Some(failures) => json!(failures),
            None => json!("always"),
        };
        axum::Json(json!({ "name": self.name, "failures": failures, "status": self.status })).into_response()
    }
}

async fn script_health(State(shared): State<AppState>, Query(q): Query<ScriptRequest>) -> Response {
    Targets { shared }.set_health(&q.name, q.script());
    q.answer()
}

async fn script_webhook(State(shared): State<AppState>, Query(q): Query<ScriptRequest>) -> Response {
    let script = q.script();
    Targets { shared }.set_webhook_failures(&q.name, script.failures, script.status);
    q.answer()
}

async fn script_spring(State(shared): State<AppState>, Query(q): Query<ScriptRequest>) -> Response {
    let script = q.script();
    Targets { shared }.set_spring_failures(&q.name, script.failures, script.status);
    q.answer()
}

#[derive(Debug, Deserialize)]
struct SiteQuery {
    name: String,
    slot: Option<String>,
}

async fn azure_site(State(shared): State<AppState>, Query(q): Query<SiteQuery>) -> Response {
    match (AzureHandle { shared }).site_json(&q.name, q.slot.as_deref()) {
        Some(view) => axum::Json(view).into_response(),
        None => GraphError::new(StatusCode::NOT_FOUND, "NotFound", format!("No site '{}'.", q.name)).into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct WorkloadQuery {
    namespace: String,
    name: String,
}

async fn kubernetes_workload(State(shared): State<AppState>, Query(q): Query<WorkloadQuery>) -> Response {
    match (crate::Kubernetes { shared }).workload_view(&q.namespace, &q.name) {
        Some(view) => axum::Json(view).into_response(),
        None => {
            GraphError::new(StatusCode::NOT_FOUND, "NotFound", format!("No workload '{}/{}'.", q.namespace, q.name))
                .into_response()
        }
    }
}

#[derive(Debug, Deserialize)]
struct SecretQuery {
    vault: String,
    name: String,
}

async fn azure_secret(State(shared): State<AppState>, Query(q): Query<SecretQuery>) -> Response {
    let versions: Vec<serde_json::Value> = (AzureHandle { shared })
        .secret_versions(&q.vault, &q.name)
        .into_iter()
        .map(|v| {
            json!({
                "version": v.version,
                "enabled": v.enabled,
                "created": crate::odata::format_time(v.created),
                "tags": v.tags,
            })
        })
        .collect();
    axum::Json(json!({ "vault": q.vault, "name": q.name, "versions": versions })).into_response()
}

//! The HTTP API: the trigger for manual rotations and the read side (executions, history,
//! dashboard). `rotator serve` serves this router; the Lambda will serve it unchanged.
//!
//! On one machine callers present `Authorization: Bearer <token>`; the configuration holds only the
//! SHA-256 of each token with its roles (`entra:read`, `entra:write`, `entra:rotate`). Behind API
//! Gateway the JWT authorizer has already verified an Entra-issued token, and the Lambda glue hands
//! the router a [`VerifiedCaller`] with the token's app roles instead. Without a known caller: 401;
//! without the route's role: 403. No response ever carries a secret or the token.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Error;
use crate::config::{ApiToken, Role};
use crate::domain::execution::{Execution, StepOutcome, StepRecord, Trigger};
use crate::domain::ids::AgentId;
use crate::domain::ids::{CredentialId, ExecutionId};
use crate::inbound::health::WorkerHealth;
use crate::messages::queues;
use crate::ports::{AuditQuery, DeadLetter, MessageId, QueueName};
use crate::usecases::agents;
use crate::usecases::app::App;
use crate::usecases::dashboard::dashboard;
use crate::usecases::dead_letters;
use crate::usecases::intervention::{cancel, confirm_cleanup, reveal};
use crate::usecases::rotation::{RotationAccepted, request_rotation};
use rotator_agent_protocol::wire::{EnrollRequest, Heartbeat};

/// What the router needs.
#[derive(Clone)]
pub struct ApiState {
    pub services: App,
    pub auth: ApiAuth,
    /// The embedded runtime's workers, for `/healthz`; `None` where the queues' consumers are not
    /// in this process (Lambda, where a panic fails the invocation and SQS retries it).
    pub workers: Option<WorkerHealth>,
}

impl ApiState {
    /// Callers authenticate with configured bearer tokens (`rotator serve`).
    pub fn with_tokens(services: App, tokens: Vec<ApiToken>) -> Self {
        Self { services, auth: ApiAuth::Tokens(Arc::new(tokens)), workers: None }
    }

    /// `/healthz` reports these workers, and is not ok while one is down.
    pub fn with_workers(mut self, workers: WorkerHealth) -> Self {
        self.workers = Some(workers);
        self
    }
}

/// How callers are known.
#[derive(Clone)]
pub enum ApiAuth {
    /// By a bearer token whose SHA-256 is configured.
    Tokens(Arc<Vec<ApiToken>>),
    /// By a [`VerifiedCaller`] request extension that the front door (API Gateway's JWT authorizer,
    /// through the Lambda glue) put there; any `Authorization` header is then ignored.
    Verified,
}

/// A caller whose identity something in front of the router has already verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCaller {
    /// Recorded as who asked, e.g. the token's `preferred_username` or client id.
    pub name: String,
    pub roles: Vec<Role>,
}

/// What a request presents to identify its caller.
pub struct Presented {
    headers: HeaderMap,
    verified: Option<VerifiedCaller>,
}

impl<S: Send + Sync> FromRequestParts<S> for Presented {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self { headers: parts.headers.clone(), verified: parts.extensions.get::<VerifiedCaller>().cloned() })
    }
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(health))
        .route("/v1/dashboard", get(get_dashboard))
        .route("/v1/executions/{id}", get(get_execution))
        .route("/v1/executions/{id}/confirm", post(confirm))
        .route("/v1/executions/{id}/cancel", post(cancel_execution))
        .route("/v1/executions/{id}/reveal", post(reveal_secret))
        // The credential id holds slashes: accepted URL-encoded in one segment, or as it is.
        .route("/v1/credentials/{*rest}", get(credential_get).post(credential_post))
        // The on-call view: what failed and why, and sending it back once fixed.
        .route("/v1/dead-letters", get(list_dead_letters))
        .route("/v1/dead-letters/redrive", post(redrive_dead_letters))
        .route("/v1/dead-letters/{id}", get(get_dead_letter))
        // Operators manage agents with their roles; agents themselves call `/agent/v1/…`, known
        // by their signatures (or, to enroll, the one-time code), never by a bearer token or JWT.
        .route("/v1/agents", get(list_agents))
        .route("/v1/agents/enrollments", post(issue_enrollment))
        .route("/v1/agents/{id}/revoke", post(revoke_agent))
        .route("/agent/v1/enroll", post(agent_enroll))
        .route("/agent/v1/heartbeat", post(agent_heartbeat))
        .fallback(unknown_route)
        .layer(DefaultBodyLimit::max(64 * 1024))
        // Outermost first: who is calling is known before a body is read (a 413 says nothing to
        // a stranger), and every error leaves in the JSON error shape.
        .layer(axum::middleware::from_fn_with_state(state.clone(), authenticate_before_body))
        .layer(axum::middleware::map_response(json_errors))
        .with_state(state)
}

async fn unknown_route() -> ApiError {
    ApiError(StatusCode::NOT_FOUND, "not_found", "no such route".into())
}

/// A request with a body (every POST) is refused with 401 before its body is read when its caller
/// is not known; the route's role is checked by the handler as before.
async fn authenticate_before_body(
    State(state): State<ApiState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let reads_body = !matches!(*request.method(), axum::http::Method::GET | axum::http::Method::HEAD);
    if reads_body && request.uri().path().starts_with("/v1/") {
        let known = match &state.auth {
            ApiAuth::Tokens(tokens) => token_caller(tokens, request.headers()).map(|_| ()),
            ApiAuth::Verified => request.extensions().get::<VerifiedCaller>().map(|_| ()).ok_or_else(|| {
                ApiError(StatusCode::UNAUTHORIZED, "unauthorized", "no verified caller came with the request".into())
            }),
        };
        if let Err(refused) = known {
            return refused.into_response();
        }
    }
    next.run(request).await
}

/// Errors that axum answers itself (413 body too large, 400 for a query string, 405) come as
/// plain text: rewritten into `{"error": {"code", "message"}}` with words of our own (axum's may
/// quote the request).
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (code, message) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the request body is larger than 64 KiB"),
        StatusCode::BAD_REQUEST => ("invalid", "the request is not valid (query string or body)"),
        StatusCode::NOT_FOUND => ("not_found", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "this route does not take that method"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", "send the body as application/json"),
        s if s.is_server_error() => ("internal", "internal error"),
        _ => ("invalid", "the request was refused"),
    };
    let mut rewritten = ApiError(status, code, message.into()).into_response();
    if let Some(allow) = response.headers().get(header::ALLOW) {
        rewritten.headers_mut().insert(header::ALLOW, allow.clone());
    }
    rewritten
}

/// An error answer: `{"error": {"code", "message"}}`.
struct ApiError(StatusCode, &'static str, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.0, Json(json!({ "error": { "code": self.1, "message": self.2 } }))).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match &e {
            Error::Invalid { .. } => ApiError(StatusCode::BAD_REQUEST, "invalid", e.to_string()),
            Error::NotFound { .. } => ApiError(StatusCode::NOT_FOUND, "not_found", e.to_string()),
            Error::Conflict { .. } => ApiError(StatusCode::CONFLICT, "conflict", e.to_string()),
            Error::Refused(reason) => ApiError(StatusCode::UNAUTHORIZED, "unauthorized", reason.clone()),
            _ if e.is_transient() => {
                tracing::warn!(error = %e.chain(), "request failed, worth retrying");
                ApiError(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "try again shortly".into())
            }
            _ => {
                tracing::error!(error = %e.chain(), "request failed");
                ApiError(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error".into())
            }
        }
    }
}

type ApiResult<T = Response> = Result<T, ApiError>;

/// The caller, if it is known and holds `role`.
fn authorize(state: &ApiState, presented: &Presented, role: Role) -> ApiResult<String> {
    let (name, roles) = match &state.auth {
        ApiAuth::Tokens(tokens) => {
            let token = token_caller(tokens, &presented.headers)?;
            (token.name.clone(), token.roles.clone())
        }
        ApiAuth::Verified => {
            let caller = presented.verified.as_ref().ok_or_else(|| {
                ApiError(StatusCode::UNAUTHORIZED, "unauthorized", "no verified caller came with the request".into())
            })?;
            (caller.name.clone(), caller.roles.clone())
        }
    };
    if !roles.contains(&role) {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this route needs the role {}", role.as_str()),
        ));
    }
    Ok(name)
}

/// The configured token whose hash matches the bearer token presented.
fn token_caller<'a>(tokens: &'a [ApiToken], headers: &HeaderMap) -> ApiResult<&'a ApiToken> {
    // The scheme is case-insensitive (RFC 7235 §2.1): `bearer` and `BEARER` are `Bearer`.
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim_start().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, "unauthorized", "a bearer token is required".into()))?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, presented.as_bytes());
    // Every configured hash is compared, in constant time, so timing says nothing of which is close.
    let mut found = None;
    for t in tokens {
        if aws_lc_rs::constant_time::verify_slices_are_equal(&t.sha256, digest.as_ref()).is_ok() {
            found = Some(t);
        }
    }
    found.ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, "unauthorized", "the bearer token is not known".into()))
}

/// 200 `ok` with the queues' depths (and the workers, in the embedded runtime); 503 `degraded`
/// naming the workers that are down, so a supervisor or load balancer sees a dead worker.
async fn health(State(state): State<ApiState>) -> Response {
    let mut depths = serde_json::Map::new();
    for q in queues::ALL {
        if let Ok(d) = state.services.queue.depth(&QueueName::new(q)).await {
            depths.insert(q.to_string(), serde_json::to_value(d).unwrap_or_default());
        }
    }
    let Some(workers) = &state.workers else {
        return Json(json!({ "status": "ok", "queues": depths })).into_response();
    };
    let down = workers.down_workers();
    let (code, status) =
        if down.is_empty() { (StatusCode::OK, "ok") } else { (StatusCode::SERVICE_UNAVAILABLE, "degraded") };
    let body = json!({ "status": status, "queues": depths, "workers": workers.snapshot(), "down": down });
    (code, Json(body)).into_response()
}

async fn get_dashboard(State(state): State<ApiState>, presented: Presented) -> ApiResult {
    authorize(&state, &presented, Role::Read)?;
    let s = &state.services;
    let now = s.clock.now();
    Ok(Json(dashboard(s.store.as_ref(), now, s.policies.expiring_soon_days(), 10).await?).into_response())
}

/// An execution as the API shows it: the record and each planned step with its status.
async fn execution_view(state: &ApiState, e: &Execution) -> ApiResult<Value> {
    let records = state.services.store.list_step_records(&e.id).await?;
    let steps: Vec<Value> = e
        .plan
        .iter()
        .enumerate()
        .map(|(i, planned)| {
            let r: Option<&StepRecord> = records.iter().find(|r| r.index as usize == i);
            json!({
                "index": i,
                "name": planned.name,
                "kind": planned.kind,
                "on_failure": planned.on_failure,
                "outcome": r.map(|r| r.outcome).unwrap_or(StepOutcome::Pending),
                "attempts": r.map(|r| r.attempts).unwrap_or(0),
                "started_at": r.and_then(|r| r.started_at).map(rfc3339),
                "ended_at": r.and_then(|r| r.ended_at).map(rfc3339),
                "error": r.and_then(|r| r.error.clone()),
            })
        })
        .collect();
    Ok(json!({
        "id": e.id,
        "credential": e.credential,
        "app": e.app,
        "policy": e.policy,
        "status": e.status,
        "trigger": e.trigger,
        "new_key_id": e.new_key_id,
        "created_at": rfc3339(e.created_at),
        "finished_at": e.finished_at.map(rfc3339),
        "duration_seconds": e.duration().map(|d| d.whole_seconds()),
        "grace_until": e.grace_until.map(rfc3339),
        "cleanup": e.cleanup,
        "needs_attention": e.needs_attention,
        "summary": e.summary,
        "error": e.error,
        "steps": steps,
    }))
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

fn execution_id(raw: &str) -> ApiResult<ExecutionId> {
    ExecutionId::parse(raw).map_err(|e| ApiError(StatusCode::BAD_REQUEST, "invalid", e.to_string()))
}

async fn get_execution(State(state): State<ApiState>, presented: Presented, Path(id): Path<String>) -> ApiResult {
    authorize(&state, &presented, Role::Read)?;
    let id = execution_id(&id)?;
    let e = state.services.store.get_execution(&id).await?.ok_or_else(|| Error::not_found("execution", id))?;
    Ok(Json(execution_view(&state, &e).await?).into_response())
}

async fn confirm(State(state): State<ApiState>, presented: Presented, Path(id): Path<String>) -> ApiResult {
    let caller = authorize(&state, &presented, Role::Write)?;
    let id = execution_id(&id)?;
    let e = confirm_cleanup(&state.services, id, &format!("http:{caller}")).await?;
    Ok(Json(execution_view(&state, &e).await?).into_response())
}

async fn cancel_execution(State(state): State<ApiState>, presented: Presented, Path(id): Path<String>) -> ApiResult {
    let caller = authorize(&state, &presented, Role::Write)?;
    let id = execution_id(&id)?;
    let e = cancel(&state.services, id, &format!("http:{caller}")).await?;
    Ok(Json(execution_view(&state, &e).await?).into_response())
}

/// The one reading of a manually delivered secret. The only response that carries a secret, by
/// design (DESIGN §4.8): for `entra:write`, audited, shown once, never cached, never logged.
async fn reveal_secret(State(state): State<ApiState>, presented: Presented, Path(id): Path<String>) -> ApiResult {
    let caller = authorize(&state, &presented, Role::Write)?;
    let id = execution_id(&id)?;
    let secret = reveal(&state.services, id, &format!("http:{caller}")).await?;
    let body = json!({ "execution": id, "secret": secret.expose(), "shown_once": true });
    Ok(([(axum::http::header::CACHE_CONTROL, "no-store")], Json(body)).into_response())
}

/// Splits `<credential id>/<action>` from the rest of the path.
fn credential_and_action(rest: &str) -> ApiResult<(CredentialId, &str)> {
    let (id, action) = rest.rsplit_once('/').ok_or_else(|| {
        ApiError(StatusCode::NOT_FOUND, "not_found", "expected /v1/credentials/{id}/rotate or /history".into())
    })?;
    let id = CredentialId::parse(id).map_err(|e| ApiError(StatusCode::BAD_REQUEST, "invalid", e.to_string()))?;
    Ok((id, action))
}

async fn credential_get(State(state): State<ApiState>, presented: Presented, Path(rest): Path<String>) -> ApiResult {
    authorize(&state, &presented, Role::Read)?;
    let (credential, action) = credential_and_action(&rest)?;
    if action != "history" {
        return Err(ApiError(StatusCode::NOT_FOUND, "not_found", format!("no GET route for {action}")));
    }
    let s = &state.services;
    let mut executions = Vec::new();
    for e in s.store.list_executions(&credential).await? {
        executions.push(execution_view(&state, &e).await?);
    }
    let audit = s
        .store
        .list_audit(&AuditQuery { credential: Some(credential.clone()), limit: 200, ..Default::default() })
        .await?;
    // A credential removed from the inventory keeps its history; one never seen has none.
    if executions.is_empty() && audit.is_empty() && s.store.get_credential(&credential).await?.is_none() {
        return Err(ApiError(StatusCode::NOT_FOUND, "not_found", format!("no credential {credential}")));
    }
    Ok(Json(json!({ "credential": credential, "executions": executions, "audit": audit })).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    reason: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

async fn credential_post(
    State(state): State<ApiState>,
    presented: Presented,
    Path(rest): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let caller = authorize(&state, &presented, Role::Rotate)?;
    let (credential, action) = credential_and_action(&rest)?;
    if action != "rotate" {
        return Err(ApiError(StatusCode::NOT_FOUND, "not_found", format!("no POST route for {action}")));
    }
    let body: RotateBody = if body.is_empty() {
        RotateBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError(StatusCode::BAD_REQUEST, "invalid", format!("body: {e}")))?
    };
    let trigger = Trigger::Manual { by: format!("http:{caller}"), reason: body.reason };
    Ok(match request_rotation(&state.services, &credential, trigger, body.dry_run).await? {
        RotationAccepted::Started { execution } => (
            StatusCode::ACCEPTED,
            Json(json!({ "execution_id": execution.id, "status": execution.status, "already_running": false })),
        )
            .into_response(),
        RotationAccepted::AlreadyRunning { execution } => (
            StatusCode::ACCEPTED,
            Json(json!({ "execution_id": execution.id, "status": execution.status, "already_running": true })),
        )
            .into_response(),
        RotationAccepted::DryRun { report } => (StatusCode::OK, Json(json!({ "dry_run": report }))).into_response(),
    })
}

/// A dead letter as the API shows it: the record, and its message parsed (identifiers only).
fn dead_letter_view(d: &DeadLetter) -> Value {
    let message: Value = serde_json::from_str(&d.body).unwrap_or(Value::Null);
    json!({
        "id": d.id,
        "queue": d.source_queue,
        "group": d.group,
        "receive_count": d.receive_count,
        "sent_at": rfc3339(d.sent_at),
        "dead_at": rfc3339(d.dead_at),
        "last_error": d.last_error,
        "message": message,
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueFilter {
    queue: Option<String>,
}

async fn list_dead_letters(
    State(state): State<ApiState>,
    presented: Presented,
    axum::extract::Query(filter): axum::extract::Query<QueueFilter>,
) -> ApiResult {
    authorize(&state, &presented, Role::Read)?;
    let all: Vec<Value> = dead_letters::list(state.services.queue.as_ref(), filter.queue.as_deref())
        .await?
        .iter()
        .map(dead_letter_view)
        .collect();
    Ok(Json(json!({ "dead_letters": all })).into_response())
}

async fn get_dead_letter(State(state): State<ApiState>, presented: Presented, Path(id): Path<String>) -> ApiResult {
    authorize(&state, &presented, Role::Read)?;
    let id = MessageId(id);
    let d = state.services.queue.dead_letter(&id).await?.ok_or_else(|| Error::not_found("dead letter", &id))?;
    Ok(Json(dead_letter_view(&d)).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedriveBody {
    queue: Option<String>,
    #[serde(default)]
    ids: Vec<String>,
}

/// Sends dead letters back to their queue: all (of one queue, or of every queue), or those named.
/// The chain resumes at the step that failed. Recorded in the audit trail with who asked.
async fn redrive_dead_letters(
    State(state): State<ApiState>,
    presented: Presented,
    body: axum::body::Bytes,
) -> ApiResult {
    let caller = authorize(&state, &presented, Role::Write)?;
    let body: RedriveBody = if body.is_empty() {
        RedriveBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError(StatusCode::BAD_REQUEST, "invalid", format!("body: {e}")))?
    };
    let request = dead_letters::Redrive { queue: body.queue, ids: body.ids.into_iter().map(MessageId).collect() };
    let s = &state.services;
    let moved = dead_letters::redrive(
        s.queue.as_ref(),
        s.store.as_ref(),
        s.clock.as_ref(),
        &request,
        &format!("http:{caller}"),
    )
    .await?;
    Ok(Json(json!({ "redriven": moved })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrollmentBody {
    name: String,
    /// How long the code is good for (`30m`, `2h`); an hour when not given.
    valid_for: Option<String>,
}

async fn list_agents(State(state): State<ApiState>, presented: Presented) -> ApiResult {
    authorize(&state, &presented, Role::Read)?;
    let agents = agents::list(&state.services).await?;
    Ok(Json(json!({ "agents": agents })).into_response())
}

async fn issue_enrollment(
    State(state): State<ApiState>,
    presented: Presented,
    Json(body): Json<EnrollmentBody>,
) -> ApiResult {
    let by = authorize(&state, &presented, Role::Write)?;
    let valid_for = match body.valid_for.as_deref() {
        None => crate::domain::agent::ENROLLMENT_VALID_FOR,
        Some(text) => {
            let span: crate::domain::Span =
                text.parse().map_err(|e| ApiError(StatusCode::BAD_REQUEST, "invalid", format!("valid_for: {e}")))?;
            time::Duration::try_from(span.as_duration())
                .map_err(|_| ApiError(StatusCode::BAD_REQUEST, "invalid", "valid_for is too long".into()))?
        }
    };
    let (agent, code) = agents::issue_enrollment(&state.services, &body.name, &format!("http:{by}"), valid_for).await?;
    let expires_at = agent.enrollment.as_ref().map(|e| rfc3339(e.expires_at));
    // The one response that carries the code: it is the operator's to hand to the host.
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "agent_id": agent.id.to_string(),
            "name": agent.name,
            "code": code.grouped().as_str(),
            "expires_at": expires_at,
        })),
    )
        .into_response())
}

async fn revoke_agent(State(state): State<ApiState>, presented: Presented, Path(id): Path<String>) -> ApiResult {
    let by = authorize(&state, &presented, Role::Write)?;
    let id = AgentId::parse(&id).map_err(|e| ApiError(StatusCode::BAD_REQUEST, "invalid", e.to_string()))?;
    let agent = agents::revoke(&state.services, id, &format!("http:{by}")).await?;
    Ok(Json(json!({ "agent_id": agent.id.to_string(), "name": agent.name, "state": "revoked" })).into_response())
}

async fn agent_enroll(State(state): State<ApiState>, body: axum::body::Bytes) -> ApiResult {
    let request: EnrollRequest = serde_json::from_slice(&body)
        .map_err(|_| ApiError(StatusCode::BAD_REQUEST, "invalid", "expected an enrollment request".into()))?;
    let enrolled = agents::enroll(&state.services, &request).await?;
    Ok(Json(enrolled).into_response())
}

/// The agent that signed this request (`Rotator-*` headers over method, path, query and body).
async fn signed_agent(
    state: &ApiState,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
    method: &axum::http::Method,
    body: &[u8],
) -> ApiResult<crate::ports::AgentRecord> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    Ok(agents::authenticate(&state.services, header, method.as_str(), path, body).await?)
}

async fn agent_heartbeat(
    State(state): State<ApiState>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    let agent = signed_agent(&state, &headers, &uri, &method, &body).await?;
    let beat: Heartbeat = serde_json::from_slice(&body)
        .map_err(|_| ApiError(StatusCode::BAD_REQUEST, "invalid", "expected a heartbeat".into()))?;
    Ok(Json(agents::heartbeat(&state.services, agent, &beat).await?).into_response())
}

//! The HTTP API over a real socket: authentication and roles on every route, the rotation trigger,
//! executions, history and the dashboard.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use entra_rotator::adapters::sqlite::{SqliteQueue, SqliteStore};
use entra_rotator::config::{ApiToken, Role};
use entra_rotator::domain::ids::{AppObjectId, ClientId, CredentialId, IntegrationId, KeyId};
use entra_rotator::domain::inventory::{Credential, CredentialKind};
use entra_rotator::inbound::api::{ApiState, router};
use entra_rotator::inbound::health::WorkerHealth;
use entra_rotator::messages::{default_queue_specs, queues};
use entra_rotator::ports::{Queue, QueueName, Store};
use entra_rotator::testing::fakes::ManualClock;
use entra_rotator::usecases::app::App;
use reqwest::StatusCode;
use serde_json::Value;
use time::macros::datetime;
use uuid::Uuid;

const READER: &str = "reader-token-Zq8";
const ROTATOR: &str = "rotator-token-Xy7";
const WRITER: &str = "writer-token-Wv6";

fn token(name: &str, secret: &str, roles: Vec<Role>) -> ApiToken {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes());
    ApiToken { name: name.into(), sha256: digest.as_ref().try_into().unwrap(), roles }
}

struct Api {
    base: String,
    http: reqwest::Client,
    store: Arc<SqliteStore>,
    queue: Arc<SqliteQueue>,
    credential: CredentialId,
}

impl Api {
    async fn start() -> Self {
        Self::start_with(None).await
    }

    /// As [`Api::start`], `/healthz` reporting `workers` as `rotator serve` does.
    async fn start_with(workers: Option<WorkerHealth>) -> Self {
        let clock = ManualClock::new(datetime!(2026-11-22 12:00 UTC));
        let store = Arc::new(SqliteStore::in_memory(Arc::new(clock.clone())).unwrap());
        let queue = Arc::new(SqliteQueue::in_memory(default_queue_specs(), Arc::new(clock.clone())).unwrap());
        let integration = IntegrationId::parse("contoso").unwrap();
        let app = AppObjectId::from_uuid(Uuid::new_v4());
        let credential = Credential {
            id: CredentialId::for_application(integration, app, KeyId::from_uuid(Uuid::new_v4())),
            kind: CredentialKind::Password,
            app: Some(app),
            client_id: ClientId::from_uuid(Uuid::new_v4()),
            display_name: Some("prod".into()),
            hint: Some("abc".into()),
            start: Some(datetime!(2026-06-01 00:00 UTC)),
            end: Some(datetime!(2026-12-01 00:00 UTC)),
            thumbprint: None,
            removed_at: None,
        };
        store.put_credential(&credential).await.unwrap();
        let services = App::test_at(clock).with_store(store.clone()).with_queue(queue.clone());
        let tokens = vec![
            token("reader", READER, vec![Role::Read]),
            token("rotator", ROTATOR, vec![Role::Rotate, Role::Read]),
            token("writer", WRITER, vec![Role::Write]),
        ];
        let mut state = ApiState::with_tokens(services, tokens);
        if let Some(workers) = workers {
            state = state.with_workers(workers);
        }
        let app = router(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base, http: reqwest::Client::new(), store, queue, credential: credential.id }
    }

    fn encoded(&self) -> String {
        self.credential.to_string().replace('/', "%2F")
    }

    async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> (StatusCode, String) {
        let mut req = self.http.request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_owned());
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        (status, res.text().await.unwrap())
    }

    async fn json(&self, method: &str, path: &str, token: &str, body: Option<&str>) -> (StatusCode, Value) {
        let (status, text) = self.call(method, path, Some(token), body).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn every_route_refuses_a_missing_or_unknown_token_and_a_token_without_its_role() {
    let api = Api::start().await;
    let e = "exe-11111111-1111-1111-1111-111111111111";
    let c = api.encoded();
    let routes: Vec<(&str, String, &str)> = vec![
        ("POST", format!("/v1/credentials/{c}/rotate"), WRITER),
        ("GET", format!("/v1/executions/{e}"), WRITER),
        ("POST", format!("/v1/executions/{e}/confirm"), READER),
        ("POST", format!("/v1/executions/{e}/cancel"), READER),
        ("POST", format!("/v1/executions/{e}/reveal"), ROTATOR),
        ("GET", format!("/v1/credentials/{c}/history"), WRITER),
        ("GET", "/v1/dashboard".to_owned(), WRITER),
        ("GET", "/v1/dead-letters".to_owned(), WRITER),
        ("GET", "/v1/dead-letters/some-id".to_owned(), WRITER),
        ("POST", "/v1/dead-letters/redrive".to_owned(), READER),
    ];
    for (method, path, lacking_role) in &routes {
        let (status, body) = api.call(method, path, None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} without a token: {body}");
        let (status, _) = api.call(method, path, Some("not-a-known-token"), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} with an unknown token");
        let (status, body) = api.call(method, path, Some(lacking_role), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path} without its role: {body}");
        assert!(body.contains("entra:"), "names the role needed: {body}");
        assert!(!body.contains(lacking_role), "never echoes the token");
    }
    let (status, _) = api.call("GET", "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_rotation_request_answers_202_with_an_execution_that_can_be_followed() {
    let api = Api::start().await;
    let path = format!("/v1/credentials/{}/rotate", api.encoded());
    let (status, body) = api.json("POST", &path, ROTATOR, Some(r#"{"reason":"expiring"}"#)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["already_running"], false);
    let id = body["execution_id"].as_str().unwrap().to_owned();
    let rotate = api.queue.receive(&QueueName::new(queues::ROTATE), 10, None).await.unwrap();
    assert_eq!(rotate.len(), 1, "a RotateRequested is queued");
    assert!(rotate[0].body.contains(&id));

    let (status, execution) = api.json("GET", &format!("/v1/executions/{id}"), ROTATOR, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(execution["status"], "pending");
    assert_eq!(execution["trigger"]["by"], "http:rotator");
    assert_eq!(execution["trigger"]["reason"], "expiring");
    let steps = execution["steps"].as_array().unwrap();
    assert_eq!(steps.first().unwrap()["kind"], "verify");
    assert_eq!(steps.last().unwrap()["kind"], "finalize");

    // The raw form of the id works as well, and a second request gets the running execution.
    let raw = format!("/v1/credentials/{}/rotate", api.credential);
    let (status, again) = api.json("POST", &raw, ROTATOR, None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(again["already_running"], true);
    assert_eq!(again["execution_id"], id.as_str());

    let (_, history) = api.json("GET", &format!("/v1/credentials/{}/history", api.encoded()), READER, None).await;
    assert_eq!(history["executions"][0]["id"], id.as_str());
    assert!(history["audit"].as_array().unwrap().iter().any(|a| a["action"] == "rotation.requested"));
    let (_, dash) = api.json("GET", "/v1/dashboard", READER, None).await;
    assert_eq!(dash["counts"]["rotating"], 1);
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_change_nothing() {
    let api = Api::start().await;
    let unknown = format!(
        "/v1/credentials/{}/rotate",
        format!("contoso/app/{}/{}", Uuid::new_v4(), Uuid::new_v4()).replace('/', "%2F")
    );
    let (status, body) = api.json("POST", &unknown, ROTATOR, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = api.json("POST", "/v1/credentials/not-an-id/rotate", ROTATOR, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let path = format!("/v1/credentials/{}/rotate", api.encoded());
    let (status, body) = api.json("POST", &path, ROTATOR, Some(r#"{"reason":"x","force":true}"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("force"));
    let (status, _) = api.json("GET", "/v1/executions/garbage", READER, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(api.store.list_executions(&api.credential).await.unwrap().is_empty(), "nothing recorded");
    assert_eq!(api.queue.depth(&QueueName::new(queues::ROTATE)).await.unwrap().visible, 0);
}

#[tokio::test]
async fn confirming_an_execution_that_has_not_finished_is_a_conflict() {
    let api = Api::start().await;
    let path = format!("/v1/credentials/{}/rotate", api.encoded());
    let (_, body) = api.json("POST", &path, ROTATOR, None).await;
    let id = body["execution_id"].as_str().unwrap();
    let (status, body) = api.json("POST", &format!("/v1/executions/{id}/confirm"), WRITER, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}

#[tokio::test]
async fn an_operator_cancels_a_stuck_execution_and_a_secret_that_steps_deliver_is_never_revealed() {
    let api = Api::start().await;
    let path = format!("/v1/credentials/{}/rotate", api.encoded());
    let (_, body) = api.json("POST", &path, ROTATOR, None).await;
    let id = body["execution_id"].as_str().unwrap().to_owned();
    let (status, body) = api.json("POST", &format!("/v1/executions/{id}/reveal"), WRITER, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "its policy delivers by steps: {body}");
    assert!(body.get("secret").is_none());
    let (status, body) = api.json("POST", &format!("/v1/executions/{id}/cancel"), WRITER, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "cancelled");
    let audit = api.store.list_audit(&Default::default()).await.unwrap();
    assert!(audit.iter().any(|a| a.action == "rotation.cancelled" && a.actor == "http:writer"), "{audit:?}");
    // The credential is free: a new request starts a new rotation.
    let (status, again) = api.json("POST", &path, ROTATOR, None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(again["already_running"], false, "{again}");
}

#[tokio::test]
async fn dead_letters_are_listed_shown_and_redriven_by_an_operator() {
    let api = Api::start().await;
    let step = QueueName::new(queues::STEP);
    let message = entra_rotator::messages::Message::ScanRequested { integration: None }.envelope("poison");
    let id = api.queue.send(&step, message.to_outgoing(std::time::Duration::ZERO).unwrap()).await.unwrap();
    // Received and failed until the queue gives up on it.
    while let Some(m) = api.queue.receive(&step, 1, None).await.unwrap().pop() {
        api.queue.record_failure(&step, &m.receipt, "run-step: the webhook answered 503").await.unwrap();
        api.queue.change_visibility(&step, &m.receipt, std::time::Duration::ZERO).await.unwrap();
    }

    let (status, list) = api.json("GET", "/v1/dead-letters?queue=run-step", READER, None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let dead = list["dead_letters"].as_array().unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["id"], id.to_string());
    assert_eq!(dead[0]["queue"], "run-step");
    assert_eq!(dead[0]["last_error"], "run-step: the webhook answered 503");
    assert_eq!(dead[0]["message"]["type"], "ScanRequested");
    let (status, one) = api.json("GET", &format!("/v1/dead-letters/{id}"), READER, None).await;
    assert_eq!((status, one["id"].clone()), (StatusCode::OK, dead[0]["id"].clone()));
    let (status, _) = api.json("GET", "/v1/dead-letters?queue=nope", READER, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = api.json("GET", "/v1/dead-letters/no-such-id", READER, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api.json("POST", "/v1/dead-letters/redrive", WRITER, Some(r#"{"ids":["no-such-id"]}"#)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "an unknown id moves nothing");

    let body = format!(r#"{{"queue":"run-step","ids":["{id}"]}}"#);
    let (status, moved) = api.json("POST", "/v1/dead-letters/redrive", WRITER, Some(&body)).await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    assert_eq!(moved["redriven"], 1);
    assert_eq!(api.queue.depth(&step).await.unwrap().visible, 1, "back on its queue");
    let (_, list) = api.json("GET", "/v1/dead-letters", READER, None).await;
    assert!(list["dead_letters"].as_array().unwrap().is_empty());
    let audit = api.store.list_audit(&Default::default()).await.unwrap();
    assert!(audit.iter().any(|a| a.action == "dead_letters.redriven" && a.actor == "http:writer"), "{audit:?}");
}

#[tokio::test]
async fn healthz_is_not_ok_while_a_worker_is_down_and_says_which_and_how_often_it_restarted() {
    let workers = WorkerHealth::new();
    workers.started("run-step", false);
    workers.started("rotate", false);
    let api = Api::start_with(Some(workers.clone())).await;
    let (status, body) = api.call("GET", "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    workers.down("run-step", "the worker panicked");
    let (status, body) = api.call("GET", "/healthz", None, None).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(v["status"], "degraded");
    assert_eq!(v["down"], serde_json::json!(["run-step"]));
    assert_eq!(v["workers"]["run-step"]["last_exit"], "the worker panicked");

    workers.started("run-step", true);
    let (status, body) = api.call("GET", "/healthz", None, None).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(v["workers"]["run-step"]["restarts"], 1);
    assert_eq!(v["workers"]["run-step"]["running"], true);
}

/// Every error is `{"error": {"code", "message"}}`, whoever answers it.
fn assert_error_shape(status: StatusCode, body: &str, expected: StatusCode, code: &str) {
    assert_eq!(status, expected, "{body}");
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body:?}"));
    assert_eq!(v["error"]["code"], code, "{body}");
    assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

#[tokio::test]
async fn every_error_answers_in_the_json_error_shape() {
    let api = Api::start().await;
    let rotate = format!("/v1/credentials/{}/rotate", api.encoded());
    let big = format!("{{\"reason\": \"{}\"}}", "x".repeat(100 * 1024));
    let (status, body) = api.call("POST", &rotate, Some(ROTATOR), Some(&big)).await;
    assert_error_shape(status, &body, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let (status, body) = api.call("GET", "/v1/dead-letters?queue=a&queue=b", Some(READER), None).await;
    assert_error_shape(status, &body, StatusCode::BAD_REQUEST, "invalid");
    let (status, body) = api.call("GET", "/v1/no-such-route", Some(READER), None).await;
    assert_error_shape(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = api.call("DELETE", "/v1/dashboard", Some(READER), None).await;
    assert_error_shape(status, &body, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}

#[tokio::test]
async fn a_stranger_is_refused_before_the_body_is_read() {
    let api = Api::start().await;
    let rotate = format!("/v1/credentials/{}/rotate", api.encoded());
    let big = format!("{{\"reason\": \"{}\"}}", "x".repeat(100 * 1024));
    let (status, body) = api.call("POST", &rotate, None, Some(&big)).await;
    assert_error_shape(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, body) = api.call("POST", &rotate, Some("not-a-known-token"), Some(&big)).await;
    assert_error_shape(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let api = Api::start().await;
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let res = api
            .http
            .get(format!("{}/v1/dashboard", api.base))
            .header("authorization", format!("{scheme} {READER}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{scheme}");
    }
    let res = api
        .http
        .get(format!("{}/v1/dashboard", api.base))
        .header("authorization", format!("Basic {READER}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_history_of_an_unknown_credential_is_not_found() {
    let api = Api::start().await;
    let unknown = CredentialId::for_application(
        IntegrationId::parse("contoso").unwrap(),
        AppObjectId::from_uuid(Uuid::new_v4()),
        KeyId::from_uuid(Uuid::new_v4()),
    );
    let path = format!("/v1/credentials/{}/history", unknown.to_string().replace('/', "%2F"));
    let (status, body) = api.call("GET", &path, Some(READER), None).await;
    assert_error_shape(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, _) = api.call("GET", &format!("/v1/credentials/{}/history", api.encoded()), Some(READER), None).await;
    assert_eq!(status, StatusCode::OK, "a known credential without executions has a history");
}

//! Host agents over the HTTP API, on a real socket (issue 14, item 1): an operator issues a one-time
//! code, an agent enrolls with its own public keys and heartbeats with signed requests; a used or
//! expired code, a replayed or tampered request and a revoked agent are refused; the server keeps
//! only the code's hash and the agent's public keys.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use entra_rotator::adapters::sqlite::SqliteStore;
use entra_rotator::config::{ApiToken, Role};
use entra_rotator::inbound::api::{ApiState, router};
use entra_rotator::ports::{AuditQuery, Clock, Store};
use entra_rotator::testing::fakes::ManualClock;
use entra_rotator::usecases::app::App;
use reqwest::StatusCode;
use rotator_agent_protocol::AgentKeys;
use rotator_agent_protocol::auth::sign;
use rotator_agent_protocol::wire::{Capabilities, EnrollRequest, Heartbeat};
use serde_json::{Value, json};
use time::macros::datetime;

const READER: &str = "reader-token-Zq8";
const WRITER: &str = "writer-token-Wv6";

fn token(name: &str, secret: &str, roles: Vec<Role>) -> ApiToken {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes());
    ApiToken { name: name.into(), sha256: digest.as_ref().try_into().unwrap(), roles }
}

struct Server {
    base: String,
    http: reqwest::Client,
    clock: ManualClock,
    store: Arc<SqliteStore>,
}

/// What an agent sends, and how: signed with `keys` as agent `id`, or not.
struct Call<'a> {
    path: &'a str,
    body: String,
    signed_as: Option<(&'a AgentKeys, &'a str)>,
}

impl Server {
    async fn start() -> Self {
        let clock = ManualClock::new(datetime!(2026-12-02 14:00 UTC));
        let store = Arc::new(SqliteStore::in_memory(Arc::new(clock.clone())).unwrap());
        let services = App::test_at(clock.clone()).with_store(store.clone());
        let tokens = vec![token("reader", READER, vec![Role::Read]), token("writer", WRITER, vec![Role::Write])];
        let app = router(ApiState::with_tokens(services, tokens));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base, http: reqwest::Client::new(), clock, store }
    }

    async fn operator(&self, method: &str, path: &str, bearer: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.http.request(method.parse().unwrap(), format!("{}{path}", self.base)).bearer_auth(bearer);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// The request as the agent would sign it now, ready to send (or to send twice).
    fn agent_request(&self, call: &Call<'_>) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .post(format!("{}{}", self.base, call.path))
            .header("content-type", "application/json")
            .body(call.body.clone());
        if let Some((keys, id)) = call.signed_as {
            let now = self.clock.now().unix_timestamp();
            for (name, value) in sign(keys, id, "POST", call.path, call.body.as_bytes(), now).unwrap().headers {
                req = req.header(name, value);
            }
        }
        req
    }

    async fn send(req: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let res = req.send().await.unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn issue(&self, name: &str, valid_for: Option<&str>) -> (String, String) {
        let (status, body) = self
            .operator("POST", "/v1/agents/enrollments", WRITER, Some(json!({"name": name, "valid_for": valid_for})))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (body["agent_id"].as_str().unwrap().to_owned(), body["code"].as_str().unwrap().to_owned())
    }

    async fn enroll(&self, code: &str, keys: &AgentKeys) -> (StatusCode, Value) {
        let request = EnrollRequest {
            code: code.to_owned(),
            public_keys: keys.public().clone(),
            hostname: "web-01.contoso.local".into(),
            os: "linux".into(),
            version: "0.1.0".into(),
        };
        let call = Call { path: "/agent/v1/enroll", body: serde_json::to_string(&request).unwrap(), signed_as: None };
        Self::send(self.agent_request(&call)).await
    }

    fn heartbeat_call<'a>(keys: &'a AgentKeys, id: &'a str) -> Call<'a> {
        let beat = Heartbeat {
            version: "0.1.0".into(),
            os: "linux".into(),
            hostname: "web-01.contoso.local".into(),
            capabilities: Capabilities { file_formats: vec!["json".into(), "env".into()], iis: false },
            allowed_roots: vec!["/srv/app".into()],
        };
        Call { path: "/agent/v1/heartbeat", body: serde_json::to_string(&beat).unwrap(), signed_as: Some((keys, id)) }
    }
}

#[tokio::test]
async fn an_agent_enrolls_once_with_its_code_heartbeats_signed_and_is_listed() {
    let s = Server::start().await;
    let (id, code) = s.issue("web-01", None).await;
    assert_eq!(code.len(), 23, "five groups people can type: {code}");
    let (_, listed) = s.operator("GET", "/v1/agents", READER, None).await;
    assert_eq!(listed["agents"][0]["state"], "awaiting enrollment", "{listed}");

    let keys = AgentKeys::generate().unwrap();
    let (status, enrolled) = s.enroll(&code.to_lowercase().replace('-', " "), &keys).await;
    assert_eq!(status, StatusCode::OK, "a code is accepted as people type it: {enrolled}");
    assert_eq!(enrolled["agent_id"], id.as_str());
    assert_eq!(enrolled["name"], "web-01");

    // A used code is refused, even to another agent's keys.
    let thief = AgentKeys::generate().unwrap();
    let (status, refused) = s.enroll(&code, &thief).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{refused}");
    assert!(refused.to_string().contains("not valid"), "{refused}");

    let (status, answer) = Server::send(s.agent_request(&Server::heartbeat_call(&keys, &id))).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["interval_secs"], 30);
    let (_, listed) = s.operator("GET", "/v1/agents", READER, None).await;
    let agent = &listed["agents"][0];
    assert_eq!(agent["state"], "online", "{listed}");
    assert_eq!(agent["capabilities"]["file_formats"], json!(["json", "env"]));
    assert_eq!(agent["allowed_roots"], json!(["/srv/app"]));
    assert_eq!(agent["fingerprint"], keys.public().fingerprint().as_str());

    // Silent for longer than three heartbeats: offline.
    s.clock.advance(Duration::from_secs(120));
    let (_, listed) = s.operator("GET", "/v1/agents", READER, None).await;
    assert_eq!(listed["agents"][0]["state"], "offline");

    // Only the code's hash was kept; and the audit trail says who did what.
    let stored = s.store.contents_as_text().await.unwrap();
    assert!(!stored.contains(&code) && !stored.contains(&code.replace('-', "")), "the code is not stored");
    let audit = s.store.list_audit(&AuditQuery::default()).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    assert!(actions.contains(&"agent.enrollment_issued") && actions.contains(&"agent.enrolled"), "{actions:?}");
    assert!(audit.iter().any(|a| a.action == "agent.enrollment_issued" && a.actor == "http:writer"));
}

#[tokio::test]
async fn an_expired_code_an_unknown_one_and_an_operator_without_write_are_refused() {
    let s = Server::start().await;
    let (_, code) = s.issue("web-02", Some("10m")).await;
    s.clock.advance(Duration::from_secs(11 * 60));
    let keys = AgentKeys::generate().unwrap();
    let (status, refused) = s.enroll(&code, &keys).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(refused.to_string().contains("expired"), "{refused}");
    let (status, _) = s.enroll("AAAAA-AAAAA-AAAAA-AAAAA", &keys).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, _) = s.operator("POST", "/v1/agents/enrollments", READER, Some(json!({"name": "web-03"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "issuing a code needs entra:write");
    let (status, body) = s.operator("POST", "/v1/agents/enrollments", WRITER, Some(json!({"name": "web-02"}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "the name is taken until that agent is revoked: {body}");
}

#[tokio::test]
async fn a_replayed_a_tampered_an_unsigned_and_a_revoked_agents_request_get_nothing() {
    let s = Server::start().await;
    let (id, code) = s.issue("web-04", None).await;
    let keys = AgentKeys::generate().unwrap();
    assert_eq!(s.enroll(&code, &keys).await.0, StatusCode::OK);

    let call = Server::heartbeat_call(&keys, &id);
    let first = s.agent_request(&call).build().unwrap();
    let again = first.try_clone().unwrap();
    assert_eq!(s.http.execute(first).await.unwrap().status(), StatusCode::OK);
    let replayed = s.http.execute(again).await.unwrap();
    assert_eq!(replayed.status(), StatusCode::UNAUTHORIZED);
    assert!(replayed.text().await.unwrap().contains("replayed"));

    // Signed, then the body changed on the way.
    let mut tampered = s.agent_request(&call).build().unwrap();
    *tampered.body_mut() = Some(call.body.replace("/srv/app", "/").into());
    assert_eq!(s.http.execute(tampered).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    // Signed by other keys under this agent's id.
    let other = AgentKeys::generate().unwrap();
    let (status, _) = Server::send(s.agent_request(&Server::heartbeat_call(&other, &id))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Not signed at all, or with an operator's bearer token.
    let unsigned = Call { signed_as: None, ..Server::heartbeat_call(&keys, &id) };
    assert_eq!(Server::send(s.agent_request(&unsigned)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(Server::send(s.agent_request(&unsigned).bearer_auth(WRITER)).await.0, StatusCode::UNAUTHORIZED);
    // Signed ten minutes ago (a captured request sent late).
    let late = s.agent_request(&call);
    s.clock.advance(Duration::from_secs(600));
    assert_eq!(Server::send(late).await.0, StatusCode::UNAUTHORIZED);

    // Revoked: nothing more, whatever it signs.
    let (status, _) = s.operator("POST", &format!("/v1/agents/{id}/revoke"), READER, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "revoking needs entra:write");
    let (status, body) = s.operator("POST", &format!("/v1/agents/{id}/revoke"), WRITER, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, refused) = Server::send(s.agent_request(&call)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(refused.to_string().contains("revoked"), "{refused}");
    let (_, listed) = s.operator("GET", "/v1/agents", READER, None).await;
    assert_eq!(listed["agents"][0]["state"], "revoked");
}

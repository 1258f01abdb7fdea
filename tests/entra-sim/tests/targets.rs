//! The rollout targets: a Spring Actuator, a health check and a webhook receiver, on the sim's server.

mod common;

use std::time::{Duration, Instant};

use common::*;
use entra_sim::{
    Endpoint, Fault, FaultKind, HealthScript, Match, SPRING_REFRESHED_KEYS, SimOptions, webhook_signature,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The example the Standard Webhooks reference libraries test with.
const SPEC_KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const SPEC_TIMESTAMP: &str = "1614265330";
const SPEC_BODY: &str = r#"{"test": 2432232314}"#;
const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

/// POST a webhook delivery with the given headers (each `None` is left out); returns the status.
async fn deliver(
    http: &reqwest::Client,
    url: reqwest::Url,
    id: &str,
    timestamp: &str,
    signature: Option<&str>,
    body: &str,
) -> StatusCode {
    let mut request = http
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp);
    if let Some(signature) = signature {
        request = request.header("webhook-signature", signature);
    }
    request.body(body.to_owned()).send().await.expect("the receiver answers").status()
}

#[tokio::test]
async fn a_spring_refresh_is_recorded_and_answers_the_refreshed_property_names_as_spring_cloud_does() {
    let sim = start(SimOptions { apps: 1, ..Default::default() }).await;
    let http = http(&sim);
    let url = sim.target_url("/apps/orders/actuator/refresh");
    assert_eq!(url.as_str(), format!("{}apps/orders/actuator/refresh", sim.base_url()));

    // No bearer token: the target stands for the customer's application, not Graph.
    let response = http.post(url.clone()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/vnd.spring-boot.actuator.v3+json");
    let refreshed: Value = response.json().await.unwrap();
    assert_eq!(refreshed, json!(SPRING_REFRESHED_KEYS));
    assert_eq!(refreshed, json!(["azure.activedirectory.client-secret"]));

    let response = http.post(url.clone()).header("accept", "application/json").send().await.unwrap();
    assert_eq!(response.headers()["content-type"], "application/json", "plain JSON when asked for");

    let targets = sim.targets();
    assert_eq!(targets.spring_refreshes("orders"), 2);
    assert_eq!(targets.spring_refreshes("billing"), 0);
    let times = targets.spring_refresh_times("orders");
    assert_eq!(times.len(), 2);
    assert!(times[0] <= times[1] && times[1] <= sim.now());

    targets.set_spring_failures("orders", 1, 503);
    let response = http.post(url.clone()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["status"], 503);
    assert_eq!(error["error"], "Service Unavailable");
    assert_eq!(error["path"], "/apps/orders/actuator/refresh");
    assert_eq!(http.post(url).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(targets.spring_refreshes("orders"), 3, "a failed refresh is not a refresh");
    assert_eq!(targets.spring_requests("orders"), 4);

    let health: Value =
        http.get(sim.target_url("apps/orders/actuator/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health, json!({ "status": "UP" }));

    let records = sim.requests();
    assert_eq!(records.len(), 5);
    assert!(records.iter().all(|r| r.endpoint == Endpoint::Target && r.is_target()));
    assert_eq!(records.iter().map(|r| r.status).collect::<Vec<_>>(), vec![200, 200, 503, 200, 200]);
}

#[tokio::test]
async fn a_health_script_answers_its_failures_then_200() {
    let sim = start(SimOptions { apps: 1, ..Default::default() }).await;
    let http = http(&sim);
    let url = sim.target_url("/apps/orders/health");
    let targets = sim.targets();

    let response = http.get(url.clone()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({ "status": "ok" }));

    targets.set_health("orders", HealthScript { failures: 2, status: 503 });
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(http.get(url.clone()).send().await.unwrap().status().as_u16());
    }
    assert_eq!(seen, vec![503, 503, 200, 200]);
    assert_eq!(targets.health_requests("orders"), 5);
    assert_eq!(targets.health_requests("billing"), 0);

    // Another application is not affected by this one's script.
    assert_eq!(http.get(sim.target_url("/apps/billing/health")).send().await.unwrap().status(), StatusCode::OK);

    targets.set_health("orders", HealthScript::always(500));
    for _ in 0..3 {
        assert_eq!(http.get(url.clone()).send().await.unwrap().status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
    // The actuator health follows the same script, in Spring's words.
    let response = http.get(sim.target_url("/apps/orders/actuator/health")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({ "status": "DOWN" }));

    targets.set_health("orders", HealthScript::healthy());
    assert_eq!(http.get(url).send().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn a_correctly_signed_webhook_is_verified_and_a_tampered_body_or_a_wrong_key_is_not() {
    let sim = start(SimOptions { apps: 1, ..Default::default() }).await;
    let http = http(&sim);
    let targets = sim.targets();
    let url = sim.target_url("/hooks/rotations");
    targets.set_webhook_key("rotations", SPEC_KEY);

    // Signed as the specification's example is: verified.
    assert_eq!(
        deliver(&http, url.clone(), SPEC_ID, SPEC_TIMESTAMP, Some(SPEC_SIGNATURE), SPEC_BODY).await,
        StatusCode::OK
    );
    // The same signature over a different body, or a different timestamp: not verified (still 200).
    let tampered = r#"{"test": 2432232315}"#;
    assert_eq!(
        deliver(&http, url.clone(), SPEC_ID, SPEC_TIMESTAMP, Some(SPEC_SIGNATURE), tampered).await,
        StatusCode::OK
    );
    deliver(&http, url.clone(), SPEC_ID, "1614265331", Some(SPEC_SIGNATURE), SPEC_BODY).await;
    // Unsigned: cannot verify.
    deliver(&http, url.clone(), SPEC_ID, SPEC_TIMESTAMP, None, SPEC_BODY).await;
    // Signed with another key.
    let wrong = webhook_signature("whsec_b3RoZXIta2V5", SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY);
    deliver(&http, url.clone(), SPEC_ID, SPEC_TIMESTAMP, Some(&wrong), SPEC_BODY).await;

    let received = targets.webhooks("rotations");
    let verified: Vec<Option<bool>> = received.iter().map(|w| w.verified).collect();
    assert_eq!(verified, vec![Some(true), Some(false), Some(false), Some(false), Some(false)]);
    let first = &received[0];
    assert_eq!(first.id.as_deref(), Some(SPEC_ID));
    assert_eq!(first.timestamp.as_deref(), Some(SPEC_TIMESTAMP));
    assert_eq!(first.signature.as_deref(), Some(SPEC_SIGNATURE));
    assert_eq!(first.body, json!({ "test": 2432232314_u64 }));
    assert_eq!(first.raw_body, SPEC_BODY);
    assert_eq!(first.status, 200);
    assert_eq!(received[1].raw_body, tampered);
    assert_eq!(received[3].signature, None);

    // A key without the whsec_ prefix is used as its raw bytes.
    targets.set_webhook_key("raw", "plain-shared-key");
    let body = json!({ "type": "entra-rotator.secret.rotated", "new_key_id": "k1" }).to_string();
    let signature = webhook_signature("plain-shared-key", "evt-1", "1700000000", &body);
    deliver(&http, sim.target_url("/hooks/raw"), "evt-1", "1700000000", Some(&signature), &body).await;
    assert_eq!(targets.webhooks("raw")[0].verified, Some(true));

    // No key for a name: kept, but not verified either way.
    deliver(&http, sim.target_url("/hooks/unkeyed"), "evt-2", "1700000000", Some(&signature), &body).await;
    assert_eq!(targets.webhooks("unkeyed")[0].verified, None);

    // The bodies are kept, so a test can assert a secret never travelled in one.
    let all = targets.all_webhooks();
    assert_eq!(all.values().map(Vec::len).sum::<usize>(), 7);
    assert!(all.values().flatten().all(|w| !w.raw_body.contains("the-new-secret-text")));

    // A body that is not JSON is kept and refused.
    assert_eq!(deliver(&http, url, "evt-3", "1", None, "not json").await, StatusCode::BAD_REQUEST);
    let last = targets.webhooks("rotations").pop().unwrap();
    assert_eq!((last.body, last.raw_body.as_str(), last.status), (Value::Null, "not json", 400));
}

#[tokio::test]
async fn a_default_webhook_key_applies_to_every_hook_without_its_own() {
    let sim = start(SimOptions { apps: 1, ..Default::default() }).await;
    let http = http(&sim);
    let targets = sim.targets();
    targets.set_default_webhook_key(SPEC_KEY);
    targets.set_webhook_key("own", "whsec_b3RoZXIta2V5");
    deliver(&http, sim.target_url("/hooks/any"), SPEC_ID, SPEC_TIMESTAMP, Some(SPEC_SIGNATURE), SPEC_BODY).await;
    deliver(&http, sim.target_url("/hooks/own"), SPEC_ID, SPEC_TIMESTAMP, Some(SPEC_SIGNATURE), SPEC_BODY).await;
    assert_eq!(targets.webhooks("any")[0].verified, Some(true));
    assert_eq!(targets.webhooks("own")[0].verified, Some(false), "a hook's own key takes precedence");
}

#[tokio::test]
async fn scripted_webhook_failures_answer_their_status_and_the_deliveries_are_still_kept() {
    let sim = start(SimOptions { apps: 1, ..Default::default() }).await;
    let http = http(&sim);
    let targets = sim.targets();
    targets.set_webhook_key("rotations", SPEC_KEY);
    targets.set_webhook_failures("rotations", 2, 502);
    let url = sim.target_url("/hooks/rotations");

    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(deliver(&http, url.clone(), SPEC_ID, SPEC_TIMESTAMP, Some(SPEC_SIGNATURE), SPEC_BODY).await.as_u16());
    }
    assert_eq!(seen, vec![502, 502, 200]);
    let received = targets.webhooks("rotations");
    assert_eq!(received.iter().map(|w| w.status).collect::<Vec<_>>(), vec![502, 502, 200]);
    assert!(received.iter().all(|w| w.verified == Some(true)), "a refused delivery was still signed correctly");

    targets.set_webhook_failures("rotations", HealthScript::ALWAYS, 500);
    for _ in 0..3 {
        let status = deliver(&http, url.clone(), SPEC_ID, SPEC_TIMESTAMP, Some(SPEC_SIGNATURE), SPEC_BODY).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    }

    targets.clear_received();
    assert!(targets.webhooks("rotations").is_empty());
    let status = deliver(&http, url, SPEC_ID, SPEC_TIMESTAMP, Some(SPEC_SIGNATURE), SPEC_BODY).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "clearing what was received keeps the script");
}

#[tokio::test]
async fn a_fault_on_a_target_path_applies_before_the_target_sees_the_request() {
    let sim = start(SimOptions { apps: 1, ..Default::default() }).await;
    let http = http(&sim);
    let targets = sim.targets();
    let faults = sim.faults();
    faults.push(Fault::new(Match::path("/hooks/rotations").method("POST"), FaultKind::ServerError(503)));
    faults.push(Fault::new(
        Match::path("/actuator/refresh"),
        FaultKind::TooManyRequests { retry_after: Some(Duration::from_secs(2)) },
    ));
    faults.push(Fault::new(Match::path("/apps/orders/health"), FaultKind::Slow(Duration::from_millis(300))));

    let url = sim.target_url("/hooks/rotations");
    let response = http.post(url.clone()).body(SPEC_BODY).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["path"], "/hooks/rotations", "a target's error, not Graph's: {error}");
    assert!(error.get("error").is_some_and(Value::is_string));
    assert!(targets.webhooks("rotations").is_empty(), "the receiver never saw it");
    assert_eq!(http.post(url).body(SPEC_BODY).send().await.unwrap().status(), StatusCode::OK);

    let response = http.post(sim.target_url("/apps/orders/actuator/refresh")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "2");
    assert_eq!(targets.spring_requests("orders"), 0);

    let started = Instant::now();
    let response = http.get(sim.target_url("/apps/orders/health")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(faults.pending(), 0);

    let statuses: Vec<u16> = sim.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![503, 200, 429, 200], "faulted requests are recorded too");
}

#[tokio::test]
async fn the_control_api_shows_what_the_targets_received_and_scripts_the_health_check() {
    let sim = start(SimOptions { apps: 1, control_api: true, ..Default::default() }).await;
    let http = http(&sim);
    let control = sim.control_url().unwrap();
    sim.targets().set_webhook_key("rotations", SPEC_KEY);

    let response = http.post(format!("{control}/health?name=orders&failures=1&status=502")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let health = sim.target_url("/apps/orders/health");
    assert_eq!(http.get(health.clone()).send().await.unwrap().status(), StatusCode::BAD_GATEWAY);
    assert_eq!(http.get(health.clone()).send().await.unwrap().status(), StatusCode::OK);
    // Without `failures`, the status stays.
    http.post(format!("{control}/health?name=down&status=503")).send().await.unwrap();
    for _ in 0..2 {
        let status = http.get(sim.target_url("/apps/down/health")).send().await.unwrap().status();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }

    http.post(sim.target_url("/apps/orders/actuator/refresh")).send().await.unwrap();
    deliver(&http, sim.target_url("/hooks/rotations"), SPEC_ID, SPEC_TIMESTAMP, Some(SPEC_SIGNATURE), SPEC_BODY).await;
    http.post(format!("{control}/webhook-failures?name=rotations&failures=1&status=500")).send().await.unwrap();
    deliver(&http, sim.target_url("/hooks/rotations"), "msg_2", SPEC_TIMESTAMP, Some("v1,bm8="), SPEC_BODY).await;

    let summary: Value = http.get(format!("{control}/targets")).send().await.unwrap().json().await.unwrap();
    assert_eq!(summary["apps"]["orders"]["spring_refreshes"], 1);
    assert_eq!(summary["apps"]["orders"]["health_requests"], 2);
    assert_eq!(summary["apps"]["down"]["health_requests"], 2);
    let hook = &summary["hooks"]["rotations"];
    assert_eq!(hook["received"], 2);
    assert_eq!(hook["verified"], 1);
    let first = &hook["deliveries"][0];
    assert_eq!(first["id"], SPEC_ID);
    assert_eq!(first["verified"], true);
    assert_eq!(first["status"], 200);
    assert_eq!(first["body"], json!({ "test": 2432232314_u64 }));
    assert_eq!(hook["deliveries"][1]["verified"], false);
    assert_eq!(hook["deliveries"][1]["status"], 500);

    // Faults meant for the targets never block the control API.
    sim.faults().push(Fault::new(Match::any(), FaultKind::Forbidden));
    assert_eq!(http.get(format!("{control}/targets")).send().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn the_targets_control_routes_are_off_unless_the_control_api_is_on() {
    let sim = start(SimOptions { apps: 1, ..Default::default() }).await;
    let response = http(&sim).get(format!("{}_sim/targets", sim.base_url())).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

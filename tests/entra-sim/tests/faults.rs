//! Faults switched on per test, each kind, and how they are used up.

mod common;

use std::time::{Duration, Instant};

use common::*;
use entra_sim::{Fault, FaultKind, Match, SimOptions};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn too_many_requests_carries_retry_after_only_when_asked_to() {
    let sim = start(SimOptions { apps: 3, ..Default::default() }).await;
    let http = http(&sim);
    let token = management_token(&http, &sim).await;
    let faults = sim.faults();
    faults.push(Fault::new(
        Match::path("/v1.0/applications").method("GET"),
        FaultKind::TooManyRequests { retry_after: Some(Duration::from_millis(2500)) },
    ));
    faults.push(Fault::new(Match::path("/v1.0/applications"), FaultKind::TooManyRequests { retry_after: None }));

    let response = http.get(graph(&sim, "applications")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "3", "whole seconds, rounded up");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "TooManyRequests");

    let response = http.get(graph(&sim, "applications")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().get("retry-after").is_none());

    let (status, _) = get(&http, &token, &graph(&sim, "applications")).await;
    assert_eq!(status, StatusCode::OK, "both faults are used up");
    assert_eq!(faults.pending(), 0);
}

#[tokio::test]
async fn concurrency_faults_answer_409_or_400_with_the_same_message() {
    let sim = start(SimOptions { apps: 1, ..Default::default() }).await;
    let http = http(&sim);
    let token = management_token(&http, &sim).await;
    let id = sim.tenant().app_object_ids()[0];
    let url = graph(&sim, &format!("applications/{id}/addPassword"));
    sim.faults().push(Fault::new(Match::path("addPassword").method("POST"), FaultKind::Concurrency));
    sim.faults().push(Fault::new(Match::path("addPassword"), FaultKind::ConcurrencyAs400));

    let (status, conflict) = post(&http, &token, &url, &json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error_code(&conflict), "Directory_ConcurrencyViolation");
    let (status, bad_request) = post(&http, &token, &url, &json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(conflict["error"]["message"], bad_request["error"]["message"]);
    assert!(conflict["error"]["message"].as_str().unwrap().contains("concurrent requests"));
    assert_eq!(sim.tenant().app(id).unwrap().passwords, sim.tenant().app_passwords(id).unwrap().len());
    let before = sim.tenant().app_passwords(id).unwrap().len();
    assert_eq!(post(&http, &token, &url, &json!({})).await.0, StatusCode::OK);
    assert_eq!(sim.tenant().app_passwords(id).unwrap().len(), before + 1, "faulted requests changed nothing");
}

#[tokio::test]
async fn server_errors_forbidden_and_times_apply_as_queued() {
    let sim = start(SimOptions { apps: 1, ..Default::default() }).await;
    let http = http(&sim);
    let token = management_token(&http, &sim).await;
    let faults = sim.faults();
    faults.push(Fault::new(Match::path("servicePrincipals"), FaultKind::ServerError(503)).times(2));
    faults.push(Fault::new(Match::path("servicePrincipals"), FaultKind::ServerError(500)));
    faults.push(Fault::new(Match::path("servicePrincipals"), FaultKind::Forbidden));
    let url = graph(&sim, "servicePrincipals");

    let mut seen = Vec::new();
    for _ in 0..5 {
        let (status, body) = get(&http, &token, &url).await;
        seen.push((status.as_u16(), error_code(&body).to_owned()));
    }
    assert_eq!(
        seen,
        vec![
            (503, "serviceNotAvailable".to_owned()),
            (503, "serviceNotAvailable".to_owned()),
            (500, "generalException".to_owned()),
            (403, "Authorization_RequestDenied".to_owned()),
            (200, String::new()),
        ]
    );
}

#[tokio::test]
async fn a_slow_fault_delays_the_normal_answer() {
    let sim = start(SimOptions { apps: 1, ..Default::default() }).await;
    let http = http(&sim);
    let token = management_token(&http, &sim).await;
    sim.faults().push(Fault::new(Match::any(), FaultKind::Slow(Duration::from_millis(300))));
    let started = Instant::now();
    let (status, _) = get(&http, &token, &graph(&sim, "applications")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn faults_on_the_token_endpoint_answer_in_the_token_endpoints_shape() {
    let sim = start(SimOptions { apps: 1, ..Default::default() }).await;
    let http = http(&sim);
    sim.faults().push(Fault::new(
        Match::path("/oauth2/v2.0/token"),
        FaultKind::TooManyRequests { retry_after: Some(Duration::from_secs(1)) },
    ));
    let (status, body) = sign_in(&http, &sim, &sim.management_client_id(), &sim.management_secret()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(body["error_description"].as_str().unwrap().starts_with("AADSTS"));
    assert!(body["error_codes"].is_array());
    let (status, _) = sign_in(&http, &sim, &sim.management_client_id(), &sim.management_secret()).await;
    assert_eq!(status, StatusCode::OK);
    let statuses: Vec<u16> = sim.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![429, 200], "faulted requests are recorded too");
}

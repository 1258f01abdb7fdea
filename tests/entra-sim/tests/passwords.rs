//! addPassword and removePassword: the secret shown once, replication, the personal-account limit,
//! removal twice, and overlapping writes.

mod common;

use std::time::Duration;

use common::*;
use entra_sim::{NewApp, SimOptions};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn add_password_returns_the_secret_once_and_it_signs_in_only_after_the_replication_delay() {
    let sim = start(SimOptions { apps: 3, replication_delay: Duration::from_secs(30), ..Default::default() }).await;
    let http = http(&sim);
    let token = management_token(&http, &sim).await;
    let app = sim.tenant().apps()[0].clone();
    let url = graph(&sim, &format!("applications/{}/addPassword", app.object_id));
    let request =
        json!({ "passwordCredential": { "displayName": "rotated-1", "endDateTime": "2099-01-01T00:00:00Z" } });

    let (status, created) = post(&http, &token, &url, &request).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let secret = created["secretText"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 40);
    assert_eq!(&secret[4..6], "Q~");
    assert_eq!(created["hint"], &secret[..3]);
    assert_eq!(created["displayName"], "rotated-1");
    assert_eq!(created["endDateTime"], "2099-01-01T00:00:00Z");
    assert!(created["customKeyIdentifier"].is_null());
    let key_id = created["keyId"].as_str().unwrap().to_owned();

    // Not idempotent: the same request makes another password.
    let (_, again) = post(&http, &token, &url, &request).await;
    assert_ne!(again["keyId"], key_id.as_str());
    assert_ne!(again["secretText"], secret.as_str());

    // Listed afterwards without its text.
    let (_, listed) = get(&http, &token, &graph(&sim, &format!("applications/{}", app.object_id))).await;
    let listed = listed["passwordCredentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["keyId"] == key_id.as_str())
        .unwrap()
        .clone();
    assert!(listed["secretText"].is_null());
    assert_eq!(listed["hint"], &secret[..3]);

    // Signs in only once replicated (sim clock).
    let client_id = app.app_id.to_string();
    let (status, body) = sign_in(&http, &sim, &client_id, &secret).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error_codes"], json!([7000215]));
    sim.advance_clock(Duration::from_secs(31));
    let (status, body) = sign_in(&http, &sim, &client_id, &secret).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // And no longer once removed.
    let (status, _) = post(
        &http,
        &token,
        &graph(&sim, &format!("applications/{}/removePassword", app.object_id)),
        &json!({ "keyId": key_id }),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = sign_in(&http, &sim, &client_id, &secret).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_expired_secret_is_refused_with_aadsts7000222() {
    let sim = start(SimOptions { apps: 1, ..Default::default() }).await;
    let http = http(&sim);
    let app = sim.tenant().add_app(NewApp::named("Short-lived"));
    let added = sim.tenant().add_password_to(app.object_id, sim.now() + time::Duration::days(2)).unwrap();
    assert_eq!(sign_in(&http, &sim, &app.app_id.to_string(), &added.secret_text).await.0, StatusCode::OK);
    sim.advance_clock(Duration::from_secs(3 * 24 * 3600));
    let (status, body) = sign_in(&http, &sim, &app.app_id.to_string(), &added.secret_text).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error_codes"], json!([7000222]));
    assert!(!format!("{added:?}").contains(&added.secret_text), "the secret never prints");
}

#[tokio::test]
async fn personal_account_applications_hold_at_most_two_passwords() {
    let sim = start(SimOptions { apps: 1, ..Default::default() }).await;
    let http = http(&sim);
    let token = management_token(&http, &sim).await;
    let app =
        sim.tenant().add_app(NewApp::named("Consumer app").sign_in_audience("AzureADandPersonalMicrosoftAccount"));
    let url = graph(&sim, &format!("applications/{}/addPassword", app.object_id));
    for _ in 0..2 {
        let (status, body) = post(&http, &token, &url, &json!({ "passwordCredential": {} })).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = post(&http, &token, &url, &json!({ "passwordCredential": {} })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "TooManyAppPasswords");
    assert_eq!(body["error"]["message"], "Not allowed to add 3 passwords. You can only add a maximum of 2 passwords.");
    assert_eq!(sim.tenant().app(app.object_id).unwrap().passwords, 2);

    // A single-tenant app has no such limit.
    let app = sim.tenant().add_app(NewApp::named("Work app"));
    let url = graph(&sim, &format!("applications/{}/addPassword", app.object_id));
    for _ in 0..3 {
        assert_eq!(post(&http, &token, &url, &json!({})).await.0, StatusCode::OK);
    }
}

#[tokio::test]
async fn remove_password_answers_204_then_404_for_the_same_key_and_404_for_a_missing_app() {
    let sim = start(SimOptions { apps: 1, ..Default::default() }).await;
    let http = http(&sim);
    let token = management_token(&http, &sim).await;
    let app = sim.tenant().add_app(NewApp::named("Rotating"));
    let added = sim.tenant().add_password_to(app.object_id, sim.now() + time::Duration::days(90)).unwrap();
    let url = graph(&sim, &format!("applications/{}/removePassword", app.object_id));
    let body = json!({ "keyId": added.key_id });

    let response = http.post(&url).bearer_auth(&token).json(&body).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.bytes().await.unwrap().is_empty());
    assert!(sim.tenant().app_passwords(app.object_id).unwrap().is_empty());

    let (status, error) = post(&http, &token, &url, &body).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&error), "Request_ResourceNotFound");
    assert!(error["error"]["message"].as_str().unwrap().contains("No password credential found with keyId"));

    let missing = graph(&sim, &format!("applications/{}/removePassword", uuid::Uuid::new_v4()));
    let (status, error) = post(&http, &token, &missing, &body).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error["error"]["message"].as_str().unwrap().starts_with("Resource '"));

    let (status, _) = post(&http, &token, &url, &json!({ "keyId": "not-a-guid" })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn concurrent_add_password_on_one_application_gives_the_later_one_409() {
    let sim = start(SimOptions { apps: 2, write_latency: Duration::from_millis(400), ..Default::default() }).await;
    let http = http(&sim);
    let token = management_token(&http, &sim).await;
    let ids = sim.tenant().app_object_ids();
    let url = graph(&sim, &format!("applications/{}/addPassword", ids[0]));
    let body = json!({ "passwordCredential": { "displayName": "race" } });

    let first = post(&http, &token, &url, &body);
    let second = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        post(&http, &token, &url, &body).await
    };
    // A write to another application is not affected.
    let other = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        post(&http, &token, &graph(&sim, &format!("applications/{}/addPassword", ids[1])), &body).await
    };
    let ((s1, _), (s2, b2), (s3, _)) = tokio::join!(first, second, other);
    assert_eq!(s1, StatusCode::OK);
    assert_eq!(s2, StatusCode::CONFLICT);
    assert_eq!(error_code(&b2), "Directory_ConcurrencyViolation");
    assert!(b2["error"]["message"].as_str().unwrap().contains("concurrent requests"));
    assert_eq!(s3, StatusCode::OK);

    // Once the first is done, the application takes writes again.
    assert_eq!(post(&http, &token, &url, &body).await.0, StatusCode::OK);
}

#[tokio::test]
async fn add_password_to_a_missing_application_is_404_and_a_bad_end_date_is_400() {
    let sim = start(SimOptions { apps: 1, ..Default::default() }).await;
    let http = http(&sim);
    let token = management_token(&http, &sim).await;
    let missing = graph(&sim, &format!("applications/{}/addPassword", uuid::Uuid::new_v4()));
    let (status, body) = post(&http, &token, &missing, &json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "Request_ResourceNotFound");

    let id = sim.tenant().app_object_ids()[0];
    let url = graph(&sim, &format!("applications/{id}/addPassword"));
    let (status, _) =
        post(&http, &token, &url, &json!({ "passwordCredential": { "endDateTime": "2001-01-01T00:00:00Z" } })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = post(&http, &token, &url, &json!({ "passwordCredential": { "endDateTime": "next year" } })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let response = http.post(&url).bearer_auth(&token).body("{not json").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

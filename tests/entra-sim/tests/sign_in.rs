//! The token endpoint and Graph's authentication.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use entra_sim::SimOptions;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn the_management_secret_gets_a_bearer_token_in_the_shape_entra_answers() {
    let sim = start(SimOptions { apps: 1, ..Default::default() }).await;
    let http = http(&sim);
    let (status, body) = sign_in(&http, &sim, &sim.management_client_id(), &sim.management_secret()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["ext_expires_in"], 3599);
    assert!(body["access_token"].as_str().unwrap().len() > 20);
}

#[tokio::test]
async fn a_wrong_secret_is_refused_with_aadsts7000215() {
    let sim = start(SimOptions { apps: 1, ..Default::default() }).await;
    let http = http(&sim);
    let (status, body) = sign_in(&http, &sim, &sim.management_client_id(), "not-the-secret").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");
    assert_eq!(body["error_codes"], json!([7000215]));
    let description = body["error_description"].as_str().unwrap();
    assert!(description.starts_with("AADSTS7000215: Invalid client secret provided."), "{description}");
    // azure_identity borrows error_description from the body: it must need no JSON escaping.
    assert!(!description.contains(['"', '\\', '\n', '\r']));
}

#[tokio::test]
async fn an_unknown_client_is_refused_as_unauthorized_client_and_an_unknown_tenant_as_not_found() {
    let sim = start(SimOptions { apps: 1, ..Default::default() }).await;
    let http = http(&sim);
    let (status, body) = sign_in(&http, &sim, &uuid::Uuid::new_v4().to_string(), "whatever").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "unauthorized_client");
    assert_eq!(body["error_codes"], json!([700016]));

    let other_tenant = format!("{}{}/oauth2/v2.0/token", sim.authority_host(), uuid::Uuid::new_v4());
    let response = http
        .post(other_tenant)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "x"),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error_codes"], json!([90002]));
}

#[tokio::test]
async fn a_scope_without_default_is_refused_for_client_credentials() {
    let sim = start(SimOptions { apps: 1, ..Default::default() }).await;
    let http = http(&sim);
    let response = http
        .post(token_url(&sim))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &sim.management_client_id()),
            ("client_secret", &sim.management_secret()),
            ("scope", "https://graph.microsoft.com/Application.ReadWrite.All"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_scope");
}

fn assertion(client_id: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT","x5t":"abc"}"#);
    let claims =
        json!({ "iss": client_id, "sub": client_id, "aud": "https://login.microsoftonline.com/t/oauth2/v2.0/token" });
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.bm90LWEtcmVhbC1zaWduYXR1cmU")
}

#[tokio::test]
async fn a_client_assertion_naming_the_client_signs_in_and_one_naming_another_does_not() {
    let sim = start(SimOptions { apps: 1, ..Default::default() }).await;
    let http = http(&sim);
    let client_id = sim.management_client_id();
    let ask = |jwt: String| {
        let http = http.clone();
        let url = token_url(&sim);
        let client_id = client_id.clone();
        async move {
            http.post(url)
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id.as_str()),
                    ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                    ("client_assertion", jwt.as_str()),
                    ("scope", "https://graph.microsoft.com/.default"),
                ])
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(ask(assertion(&client_id)).await, StatusCode::OK);
    assert_eq!(ask(assertion(&uuid::Uuid::new_v4().to_string())).await, StatusCode::UNAUTHORIZED);
    assert_eq!(ask("garbage".to_owned()).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn graph_without_a_token_or_with_an_unknown_one_is_401_invalid_authentication_token() {
    let sim = start(SimOptions { apps: 1, ..Default::default() }).await;
    let http = http(&sim);
    let response = http.get(graph(&sim, "applications")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().contains_key("www-authenticate"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "InvalidAuthenticationToken");
    assert!(body["error"]["innerError"]["request-id"].is_string());

    let (status, body) = get(&http, "made-up-token", &graph(&sim, "applications")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&body), "InvalidAuthenticationToken");
}

#[tokio::test]
async fn a_token_of_an_application_without_graph_permissions_is_403() {
    let sim = start(SimOptions { apps: 1, ..Default::default() }).await;
    let http = http(&sim);
    let app = sim.tenant().add_app(entra_sim::NewApp::named("Plain app"));
    let added = sim.tenant().add_password_to(app.object_id, sim.now() + time::Duration::days(30)).unwrap();
    let (status, body) = sign_in(&http, &sim, &app.app_id.to_string(), &added.secret_text).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["access_token"].as_str().unwrap();
    let (status, body) = get(&http, token, &graph(&sim, "applications")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(error_code(&body), "Authorization_RequestDenied");
}

#[tokio::test]
async fn the_health_check_answers_get_and_head_and_requests_are_recorded_without_secrets() {
    let sim = start(SimOptions { apps: 1, ..Default::default() }).await;
    let http = http(&sim);
    assert_eq!(http.get(sim.base_url()).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(http.head(sim.base_url()).send().await.unwrap().status(), StatusCode::OK);
    let token = management_token(&http, &sim).await;
    get(&http, &token, &graph(&sim, "applications?$top=5")).await;

    let records = sim.requests();
    assert_eq!(records.len(), 4);
    let token_request = records.iter().find(|r| r.is_token()).unwrap();
    assert_eq!(token_request.method, "POST");
    assert_eq!(token_request.query, None);
    let graph_request = records.iter().find(|r| r.is_graph()).unwrap();
    assert_eq!(graph_request.path, "/v1.0/applications");
    assert_eq!(graph_request.query.as_deref(), Some("$top=5"));
    assert_eq!(graph_request.status, 200);
    let debug = format!("{records:?}");
    assert!(!debug.contains(&sim.management_secret()) && !debug.contains(&token));
    sim.clear_requests();
    assert!(sim.requests().is_empty());
}

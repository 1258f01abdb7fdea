//! Alert webhooks against a real local HTTP receiver: the generic JSON, Slack and Teams shapes, and
//! failures that say what happened without quoting the (token-bearing) URL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use entra_rotator::adapters::alerts::webhook::{self, WebhookAlertSink};
use entra_rotator::config::{Config, WebhookFormat, WebhookSink};
use entra_rotator::domain::address::AddressPolicy;
use entra_rotator::domain::ids::{ClientId, CredentialId};
use entra_rotator::domain::inventory::CredentialKind;
use entra_rotator::domain::lifecycle::AlertThreshold;
use entra_rotator::domain::secret::SecretValue;
use entra_rotator::ports::alerts::{Alert, AlertSink};
use time::macros::datetime;

type Seen = Arc<Mutex<Vec<serde_json::Value>>>;

async fn receiver(status: StatusCode) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route(
            "/hooks/{token}",
            post(|State((seen, status)): State<(Seen, StatusCode)>, body: axum::Json<serde_json::Value>| async move {
                seen.lock().unwrap().push(body.0);
                status
            }),
        )
        .with_state((seen.clone(), status));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hooks/T0KEN-in-the-path"), seen)
}

/// A sink as wiring builds it, with the one exception these tests need: the receivers are on loopback.
fn sink(url: &str, format: WebhookFormat) -> WebhookAlertSink {
    sink_with(url, format, AddressPolicy::allowing_loopback())
}

fn sink_with(url: &str, format: WebhookFormat, policy: AddressPolicy) -> WebhookAlertSink {
    let config = WebhookSink { name: "ops".into(), url: SecretValue::new(url), host: "127.0.0.1".into(), format };
    let policy = Arc::new(policy);
    WebhookAlertSink::new(&config, webhook::client(reqwest::Client::builder(), policy.clone()).unwrap(), policy)
}

/// A local server answering every request with a 307 to `location`.
async fn redirector(location: String) -> String {
    let app = Router::new().fallback(move || {
        let location = location.clone();
        async move { (StatusCode::TEMPORARY_REDIRECT, [(axum::http::header::LOCATION, location)]) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/hooks/T0KEN-in-the-path")
}

fn alert(threshold: AlertThreshold, days_left: i64) -> Alert {
    Alert {
        credential: CredentialId::parse(
            "contoso/app/11111111-1111-1111-1111-111111111111/22222222-2222-2222-2222-222222222222",
        )
        .unwrap(),
        application: Some("Payroll API".into()),
        client_id: ClientId::parse("33333333-3333-3333-3333-333333333333").unwrap(),
        kind: CredentialKind::Password,
        credential_name: Some("prod".into()),
        threshold: Some(threshold),
        end: Some(datetime!(2026-11-28 00:00 UTC)),
        days_left: Some(days_left),
        problem: None,
    }
}

#[tokio::test]
async fn each_format_posts_its_own_shape() {
    let (url, seen) = receiver(StatusCode::OK).await;
    let alerts = [alert(AlertThreshold::DaysBefore(7), 6), alert(AlertThreshold::Expired, -1)];
    for format in [WebhookFormat::Json, WebhookFormat::Slack, WebhookFormat::Teams] {
        sink(&url, format).send(&alerts).await.unwrap();
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0]["type"], "entra-rotator.expiry-alerts");
    assert_eq!(seen[0]["alerts"][0]["credential"], alerts[0].credential.to_string());
    assert_eq!(seen[0]["alerts"][1]["threshold"]["kind"], "expired");
    let slack = seen[1]["text"].as_str().unwrap();
    assert!(slack.contains("Client secret 'prod' of Payroll API expires in 6 days"), "{slack}");
    assert_eq!(seen[1]["blocks"][0]["type"], "header");
    assert_eq!(seen[2]["@type"], "MessageCard");
    assert!(seen[2]["text"].as_str().unwrap().contains("has expired"));
}

#[tokio::test]
async fn a_refusing_webhook_is_an_error_worth_retrying_that_does_not_quote_the_url() {
    let (url, _) = receiver(StatusCode::SERVICE_UNAVAILABLE).await;
    let err = sink(&url, WebhookFormat::Slack).send(&[alert(AlertThreshold::DaysBefore(30), 20)]).await.unwrap_err();
    assert!(err.is_transient());
    let text = format!("{err} {err:?}");
    assert!(text.contains("503"), "{text}");
    assert!(!text.contains("T0KEN"), "{text}");

    let (url, _) = receiver(StatusCode::NOT_FOUND).await;
    let err = sink(&url, WebhookFormat::Json).send(&[alert(AlertThreshold::DaysBefore(30), 20)]).await.unwrap_err();
    assert!(!err.is_transient());
}

#[tokio::test]
async fn an_unreachable_webhook_does_not_quote_the_url_either() {
    let err = sink("http://127.0.0.1:9/hooks/T0KEN-in-the-path", WebhookFormat::Json)
        .send(&[alert(AlertThreshold::DaysBefore(30), 20)])
        .await
        .unwrap_err();
    assert!(err.is_transient());
    assert!(!format!("{err} {err:?}").contains("T0KEN"));
}

#[tokio::test]
async fn a_redirect_is_not_followed_and_is_a_clear_failure() {
    let (target, seen) = receiver(StatusCode::OK).await;
    let url = redirector(target).await;
    let err = sink(&url, WebhookFormat::Json).send(&[alert(AlertThreshold::DaysBefore(30), 20)]).await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(text.contains("307") && text.contains("redirects are not followed"), "{text}");
    assert!(!text.contains("T0KEN"), "{text}");
    assert!(!err.is_transient(), "a redirect does not go away by retrying");
    assert!(seen.lock().unwrap().is_empty(), "the redirect was followed");
}

#[tokio::test]
async fn a_sink_at_a_forbidden_address_is_refused_before_connecting() {
    let (url, seen) = receiver(StatusCode::OK).await;
    let err = sink_with(&url, WebhookFormat::Json, AddressPolicy::default())
        .send(&[alert(AlertThreshold::DaysBefore(30), 20)])
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(text.contains("loopback") && !text.contains("T0KEN"), "{text}");
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_sink_behind_the_configured_private_ca_is_reached() {
    let sim = entra_sim::Sim::start(entra_sim::SimOptions { apps: 1, seed: 3, ..Default::default() }).await.unwrap();
    let text = format!(
        "ca_certificate = \"{}\"\n[outbound]\nallow = [\"127.0.0.1\"]\n[[alerts.webhooks]]\nurl = \"{}\"\n",
        sim.ca_path().display(),
        sim.target_url("hooks/alerts"),
    );
    let config =
        Config::parse(&text, std::path::Path::new("/tmp/rotator.toml"), &std::collections::BTreeMap::new()).unwrap();
    let sinks = entra_rotator::wiring::alert_sinks(&config).unwrap();
    sinks[1].send(&[alert(AlertThreshold::DaysBefore(30), 20)]).await.unwrap();
}

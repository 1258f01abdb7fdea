//! Graph's pace over HTTPS: write budgets answered 429 with `Retry-After` and Graph's error body,
//! overlapping writes to one application refused and counted, and all of it off unless asked for.

mod common;

use std::time::Duration;

use common::*;
use entra_sim::{GraphLimits, SimOptions, WriteBudget};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn add_password_body() -> Value {
    json!({ "passwordCredential": { "displayName": "paced", "endDateTime": "2099-01-01T00:00:00Z" } })
}

#[tokio::test]
async fn writes_over_the_budget_get_429_with_retry_after_and_graphs_error_body() {
    let limits = GraphLimits::documented()
        .with_latency(Duration::from_millis(5))
        .with_app_tenant_writes(WriteBudget::new(2, Duration::from_secs(60)));
    let sim = start(SimOptions { apps: 3, graph_limits: Some(limits), ..Default::default() }).await;
    let http = http(&sim);
    let token = management_token(&http, &sim).await;
    let apps = sim.tenant().apps();
    let url = |i: usize| graph(&sim, &format!("applications/{}/addPassword", apps[i].object_id));

    for i in 0..2 {
        let (status, body) = post(&http, &token, &url(i), &add_password_body()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let response =
        http.post(url(2)).bearer_auth(&token).json(&add_password_body()).send().await.expect("Graph answers");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in whole seconds");
    assert!((1..=60).contains(&retry_after), "until the oldest write leaves the window: {retry_after}");
    let body: Value = response.json().await.expect("a JSON body");
    assert_eq!(error_code(&body), "TooManyRequests");
    assert_eq!(body["error"]["message"], "Please retry again later.", "{body}");

    // Reads are not writes: they pass, only slower.
    let (status, _) = get(&http, &token, &graph(&sim, "applications")).await;
    assert_eq!(status, StatusCode::OK);
    let pace = sim.graph_pace();
    assert_eq!((pace.writes, pace.throttled, pace.concurrency_refusals), (2, 1, 0), "{pace:?}");
    assert_eq!(sim.tenant().apps()[2].passwords, apps[2].passwords, "a refused write changed nothing");
}

#[tokio::test]
async fn overlapping_writes_to_one_application_are_refused_and_counted() {
    let sim = start(SimOptions {
        apps: 2,
        graph_limits: Some(GraphLimits::documented().with_latency(Duration::from_millis(200))),
        ..Default::default()
    })
    .await;
    let http = http(&sim);
    let token = management_token(&http, &sim).await;
    let apps = sim.tenant().apps();
    let same = graph(&sim, &format!("applications/{}/addPassword", apps[0].object_id));
    let other = graph(&sim, &format!("applications/{}/addPassword", apps[1].object_id));
    let body = add_password_body();
    let ((a, _), (b, _), (c, _)) = tokio::join!(
        post(&http, &token, &same, &body),
        post(&http, &token, &same, &body),
        post(&http, &token, &other, &body)
    );
    let mut on_same = [a, b];
    on_same.sort();
    assert_eq!(on_same, [StatusCode::OK, StatusCode::CONFLICT], "one of two overlapping writes goes through");
    assert_eq!(c, StatusCode::OK, "another application is written at the same time");
    let pace = sim.graph_pace();
    assert_eq!((pace.max_concurrent_writers, pace.concurrency_refusals, pace.writes), (2, 1, 2), "{pace:?}");
}

#[tokio::test]
async fn without_limits_nothing_is_paced_and_the_control_api_switches_them_on() {
    let sim = start(SimOptions { apps: 1, control_api: true, ..Default::default() }).await;
    let http = http(&sim);
    let token = management_token(&http, &sim).await;
    let url = graph(&sim, &format!("applications/{}/addPassword", sim.tenant().apps()[0].object_id));
    for _ in 0..3 {
        assert_eq!(post(&http, &token, &url, &add_password_body()).await.0, StatusCode::OK);
    }
    assert_eq!(sim.graph_pace().requests, 0, "off by default");

    let control = sim.control_url().expect("control API on");
    let set = http
        .post(format!("{control}/graph-limits"))
        .json(&json!({ "latency_ms": 1, "app_tenant_writes": 1, "app_tenant_window_ms": 60000 }))
        .send()
        .await
        .expect("control answers");
    assert_eq!(set.status(), StatusCode::OK);
    assert_eq!(post(&http, &token, &url, &add_password_body()).await.0, StatusCode::OK);
    assert_eq!(post(&http, &token, &url, &add_password_body()).await.0, StatusCode::TOO_MANY_REQUESTS);
    let pace: Value =
        http.get(format!("{control}/graph-pace")).send().await.expect("control answers").json().await.expect("JSON");
    assert_eq!((pace["writes"].as_u64(), pace["throttled"].as_u64()), (Some(1), Some(1)), "{pace}");
    let off = http.post(format!("{control}/graph-limits")).body("null").send().await.expect("control answers");
    assert_eq!(off.status(), StatusCode::NO_CONTENT);
    assert_eq!(post(&http, &token, &url, &add_password_body()).await.0, StatusCode::OK, "off again");
}

#[tokio::test]
async fn the_latency_holds_for_every_remote_the_product_calls_and_only_graph_is_counted() {
    let latency = Duration::from_millis(150);
    let sim = start(SimOptions {
        apps: 1,
        graph_limits: Some(GraphLimits::documented().with_latency(latency)),
        ..Default::default()
    })
    .await;
    let http = http(&sim);
    // A sleep is never shorter than asked: these bounds are from below only.
    let started = std::time::Instant::now();
    let token = management_token(&http, &sim).await;
    assert!(started.elapsed() >= latency, "the token endpoint takes the round trip too");
    let started = std::time::Instant::now();
    let health = http.get(sim.target_url("/apps/payroll/health")).send().await.expect("the target answers");
    assert!(health.status().is_success(), "{}", health.status());
    assert!(started.elapsed() >= latency, "so does a rollout target");
    let started = std::time::Instant::now();
    assert_eq!(get(&http, &token, &graph(&sim, "applications")).await.0, StatusCode::OK);
    assert!(started.elapsed() >= latency);
    assert_eq!(sim.graph_pace().requests, 1, "only Graph's requests are Graph's pace");
}

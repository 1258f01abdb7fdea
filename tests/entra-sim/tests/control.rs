//! The control API, for a sim running as a separate process.

mod common;

use common::*;
use entra_sim::SimOptions;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn the_control_api_is_off_unless_asked_for() {
    let sim = start(SimOptions { apps: 3, ..Default::default() }).await;
    assert!(sim.control_url().is_none());
    let response = http(&sim).post(format!("{}_sim/touch?count=1", sim.base_url())).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_control_api_changes_the_tenant_advances_the_clock_and_queues_faults() {
    let sim = start(SimOptions { apps: 100, control_api: true, ..Default::default() }).await;
    let http = http(&sim);
    let control = sim.control_url().unwrap();
    let call = |path: &str| http.post(format!("{control}/{path}")).send();

    let token = management_token(&http, &sim).await;
    let (_, page) = get(&http, &token, &graph(&sim, "applications/delta?$deltatoken=latest")).await;
    let delta_link = page["@odata.deltaLink"].as_str().unwrap().to_owned();

    let touched: Value = call("touch?count=5").await.unwrap().json().await.unwrap();
    assert_eq!(touched["touched"], 5);
    let added: Value = call("add?count=2").await.unwrap().json().await.unwrap();
    assert_eq!(added["added"].as_array().unwrap().len(), 2);
    let removed: Value = call("remove?count=3").await.unwrap().json().await.unwrap();
    assert_eq!(removed["removed"], 3);
    let (_, changes) = get(&http, &token, &delta_link).await;
    assert!((8..=10).contains(&changes["value"].as_array().unwrap().len()), "{changes}");

    let truth: Value = http.get(format!("{control}/truth")).send().await.unwrap().json().await.unwrap();
    assert_eq!(truth["applications"], 99);

    let before = sim.now();
    call("advance?seconds=86400").await.unwrap();
    assert!(sim.now() - before >= time::Duration::days(1));

    let fault =
        json!({ "path_contains": "/v1.0/servicePrincipals", "kind": "server_error", "status": 503, "times": 2 });
    let response = http.post(format!("{control}/faults")).json(&fault).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(sim.faults().pending(), 2);
    assert_eq!(get(&http, &token, &graph(&sim, "servicePrincipals")).await.0, StatusCode::SERVICE_UNAVAILABLE);
    // Faults never block the control API itself.
    sim.faults().push(entra_sim::Fault::new(entra_sim::Match::any(), entra_sim::FaultKind::Forbidden));
    assert_eq!(http.get(format!("{control}/truth")).send().await.unwrap().status(), StatusCode::OK);
}

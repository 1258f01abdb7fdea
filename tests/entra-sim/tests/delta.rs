//! Delta queries: the first round, then only what changed; `latest`; expiry after seven days.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::*;
use entra_sim::{NewApp, SimOptions};
use reqwest::StatusCode;
use serde_json::Value;

const DAY: Duration = Duration::from_secs(24 * 3600);

/// Follow a delta round to its end; returns the items and the delta link.
async fn round(http: &reqwest::Client, token: &str, first: &str) -> (Vec<Value>, String, usize) {
    let (items, last, pages) = collect_pages(http, token, first).await;
    let delta_link = last["@odata.deltaLink"].as_str().expect("the last page carries a delta link").to_owned();
    (items, delta_link, pages)
}

#[tokio::test]
async fn a_first_round_enumerates_everything_then_the_delta_link_reports_only_the_changes() {
    let sim = start(SimOptions { apps: 120, page_size: 50, ..Default::default() }).await;
    let http = http(&sim);
    let token = management_token(&http, &sim).await;

    let (items, delta_link, pages) =
        round(&http, &token, &graph(&sim, "applications/delta?$select=displayName,passwordCredentials")).await;
    assert_eq!(items.len(), 120);
    assert_eq!(pages, 3, "pages of page_size");
    assert!(delta_link.contains("$deltatoken="));
    let keys: HashSet<&str> = items[0].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, HashSet::from(["id", "displayName", "passwordCredentials"]));

    // Nothing changed: an empty round, and a new delta link.
    let (items, delta_link, _) = round(&http, &token, &delta_link).await;
    assert!(items.is_empty());

    let tenant = sim.tenant();
    let ids = tenant.app_object_ids();
    let added = tenant.add_app(NewApp::named("Brand new"));
    let new_name = tenant.touch_app(ids[3]).unwrap();
    tenant.remove_app(ids[7]).unwrap();

    let (items, _, _) = round(&http, &token, &delta_link).await;
    let by_id: HashMap<&str, &Value> = items.iter().map(|i| (i["id"].as_str().unwrap(), i)).collect();
    assert_eq!(by_id.len(), 3, "{items:?}");
    let added_item = by_id[added.object_id.to_string().as_str()];
    assert_eq!(added_item["displayName"], "Brand new");
    assert!(added_item["passwordCredentials"].is_array(), "changed objects carry their selected properties in full");
    assert_eq!(by_id[ids[3].to_string().as_str()]["displayName"], new_name.as_str());
    let removed = by_id[ids[7].to_string().as_str()];
    assert_eq!(removed["@removed"]["reason"], "deleted");
    assert_eq!(removed.as_object().unwrap().len(), 2, "a removed object is reported by id only");
}

#[tokio::test]
async fn password_writes_through_graph_are_reported_by_the_next_delta_round() {
    let sim = start(SimOptions { apps: 10, ..Default::default() }).await;
    let http = http(&sim);
    let token = management_token(&http, &sim).await;
    let (_, delta_link, _) = round(&http, &token, &graph(&sim, "applications/delta?$select=passwordCredentials")).await;
    let id = sim.tenant().app_object_ids()[0];
    let body = serde_json::json!({ "passwordCredential": { "displayName": "rotated" } });
    let (status, _) = post(&http, &token, &graph(&sim, &format!("applications/{id}/addPassword")), &body).await;
    assert_eq!(status, StatusCode::OK);
    let (items, _, _) = round(&http, &token, &delta_link).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], id.to_string());
    assert!(items[0]["passwordCredentials"].as_array().unwrap().iter().any(|p| p["displayName"] == "rotated"));
}

#[tokio::test]
async fn service_principals_have_their_own_delta_and_go_when_their_application_goes() {
    let sim = start(SimOptions { apps: 5, ..Default::default() }).await;
    let http = http(&sim);
    let token = management_token(&http, &sim).await;
    let app = sim.tenant().add_app(NewApp::named("With SP").with_service_principal());
    let (items, delta_link, _) = round(&http, &token, &graph(&sim, "servicePrincipals/delta")).await;
    assert!(items.iter().any(|i| i["appId"] == app.app_id.to_string()));
    assert!(items.iter().all(|i| i["servicePrincipalType"] == "Application"));
    sim.tenant().remove_app(app.object_id).unwrap();
    let (items, _, _) = round(&http, &token, &delta_link).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], app.service_principal_id.unwrap().to_string());
    assert!(items[0]["@removed"].is_object());
}

#[tokio::test]
async fn deltatoken_latest_returns_no_objects_and_a_delta_link_for_now() {
    let sim = start(SimOptions { apps: 40, ..Default::default() }).await;
    let http = http(&sim);
    let token = management_token(&http, &sim).await;
    let (status, page) =
        get(&http, &token, &graph(&sim, "applications/delta?$deltatoken=latest&$select=displayName")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["value"].as_array().unwrap().len(), 0);
    assert!(page.get("@odata.nextLink").is_none());
    let delta_link = page["@odata.deltaLink"].as_str().unwrap().to_owned();

    let app = sim.tenant().add_app(NewApp::named("After latest"));
    let (items, _, _) = round(&http, &token, &delta_link).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], app.object_id.to_string());
    assert!(items[0].get("appId").is_none(), "the select of the latest request is kept");
}

#[tokio::test]
async fn a_delta_link_older_than_seven_days_is_refused_with_sync_state_not_found() {
    let sim = start(SimOptions { apps: 5, ..Default::default() }).await;
    let http = http(&sim);
    let token = management_token(&http, &sim).await;
    let (_, delta_link, _) = round(&http, &token, &graph(&sim, "applications/delta")).await;

    sim.advance_clock(6 * DAY);
    let (status, page) = get(&http, &token, &delta_link).await;
    assert_eq!(status, StatusCode::OK, "six days old still works");
    let fresh_link = page["@odata.deltaLink"].as_str().unwrap().to_owned();

    sim.advance_clock(DAY + Duration::from_secs(3600));
    let (status, body) = get(&http, &token, &delta_link).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "syncStateNotFound");
    assert!(body["error"]["message"].as_str().unwrap().contains("expired"));
    let (status, _) = get(&http, &token, &fresh_link).await;
    assert_eq!(status, StatusCode::OK, "the link issued a day later is still valid");

    let (status, body) = get(&http, &token, &graph(&sim, "applications/delta?$deltatoken=made-up")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "syncStateNotFound");
    // A service principal delta link does not work for applications.
    let (_, page) = get(&http, &token, &graph(&sim, "servicePrincipals/delta?$deltatoken=latest")).await;
    let sp_link = page["@odata.deltaLink"].as_str().unwrap();
    let token_part = sp_link.split("$deltatoken=").nth(1).unwrap();
    let (status, _) = get(&http, &token, &graph(&sim, &format!("applications/delta?$deltatoken={token_part}"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn changes_made_while_a_round_is_paged_are_reported_by_the_next_round() {
    let sim = start(SimOptions { apps: 60, page_size: 20, ..Default::default() }).await;
    let http = http(&sim);
    let token = management_token(&http, &sim).await;
    let (status, first) = get(&http, &token, &graph(&sim, "applications/delta?$select=displayName")).await;
    assert_eq!(status, StatusCode::OK);
    // Rename an app the round has already passed.
    let seen = first["value"][0]["id"].as_str().unwrap().parse().unwrap();
    sim.tenant().rename_app(seen, "Renamed mid-round").unwrap();
    let (_, delta_link, _) = round(&http, &token, first["@odata.nextLink"].as_str().unwrap()).await;
    let (items, _, _) = round(&http, &token, &delta_link).await;
    assert!(items.iter().any(|i| i["displayName"] == "Renamed mid-round"));
}

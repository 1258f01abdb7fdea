//! Listings: paging, $select, $top, $filter, single objects, and the tenant's truth.

mod common;

use std::collections::{HashMap, HashSet};

use common::*;
use entra_sim::{NewApp, SimOptions};
use reqwest::StatusCode;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;

#[tokio::test]
async fn paging_with_top_returns_every_app_exactly_once_following_next_links_verbatim() {
    let sim = start(SimOptions { apps: 250, seed: 5, ..Default::default() }).await;
    let http = http(&sim);
    let token = management_token(&http, &sim).await;
    sim.clear_requests();

    let (items, last, pages) =
        collect_pages(&http, &token, &graph(&sim, "applications?$select=id,displayName&$top=40")).await;
    assert_eq!(pages, 7);
    assert!(last.get("@odata.nextLink").is_none());
    let ids: Vec<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), 250);
    assert_eq!(unique.len(), 250);
    let expected: HashSet<String> = sim.tenant().app_object_ids().iter().map(|id| id.to_string()).collect();
    assert_eq!(unique, expected.iter().map(String::as_str).collect());

    // Every next link kept the request's options and added an opaque skip token.
    let records = sim.requests();
    assert_eq!(records.len(), 7);
    for record in &records[1..] {
        let query = record.query.as_deref().unwrap();
        assert!(query.contains("$select=") && query.contains("$top=40") && query.contains("$skiptoken="), "{query}");
    }
}

#[tokio::test]
async fn the_default_page_is_100_and_the_sim_page_size_caps_it() {
    let sim = start(SimOptions { apps: 150, page_size: 30, ..Default::default() }).await;
    let http = http(&sim);
    let token = management_token(&http, &sim).await;
    let (status, page) = get(&http, &token, &graph(&sim, "applications")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["value"].as_array().unwrap().len(), 30);

    let sim = start(SimOptions { apps: 150, ..Default::default() }).await;
    let http = common::http(&sim);
    let token = management_token(&http, &sim).await;
    let (_, page) = get(&http, &token, &graph(&sim, "applications")).await;
    assert_eq!(page["value"].as_array().unwrap().len(), 100);
    assert!(page["@odata.nextLink"].is_string());
}

#[tokio::test]
async fn top_above_999_or_below_1_is_refused() {
    let sim = start(SimOptions { apps: 3, ..Default::default() }).await;
    let http = http(&sim);
    let token = management_token(&http, &sim).await;
    for top in ["1000", "0", "many"] {
        let (status, body) = get(&http, &token, &graph(&sim, &format!("applications?$top={top}"))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "$top={top}");
        assert_eq!(error_code(&body), "Request_BadRequest");
    }
    let (status, _) = get(&http, &token, &graph(&sim, "servicePrincipals?$top=999")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn select_trims_the_properties_to_those_named_plus_id() {
    let sim = start(SimOptions { apps: 20, ..Default::default() }).await;
    let http = http(&sim);
    let token = management_token(&http, &sim).await;
    let (_, page) = get(&http, &token, &graph(&sim, "applications?$select=appId,passwordCredentials")).await;
    for item in page["value"].as_array().unwrap() {
        let keys: HashSet<&str> = item.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, HashSet::from(["id", "appId", "passwordCredentials"]));
        for password in item["passwordCredentials"].as_array().expect("passwordCredentials") {
            assert!(password["secretText"].is_null(), "listings never carry secret text");
            assert_eq!(password["hint"].as_str().unwrap().len(), 3);
            assert!(password["customKeyIdentifier"].is_null());
            OffsetDateTime::parse(password["endDateTime"].as_str().unwrap(), &Rfc3339).unwrap();
        }
    }

    let (_, page) = get(&http, &token, &graph(&sim, "servicePrincipals")).await;
    for item in page["value"].as_array().unwrap() {
        let keys: HashSet<&str> = item.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            HashSet::from([
                "id",
                "appId",
                "displayName",
                "servicePrincipalType",
                "passwordCredentials",
                "keyCredentials"
            ])
        );
    }

    let (status, body) = get(&http, &token, &graph(&sim, "applications?$select=nonsense")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"].as_str().unwrap().contains("nonsense"));
}

#[tokio::test]
async fn certificates_appear_as_sign_and_verify_pairs_sharing_a_thumbprint() {
    let sim = start(SimOptions { apps: 200, seed: 9, ..Default::default() }).await;
    let http = http(&sim);
    let token = management_token(&http, &sim).await;
    let (items, _, _) =
        collect_pages(&http, &token, &graph(&sim, "applications?$select=keyCredentials&$top=999")).await;
    let mut pairs = 0;
    for item in &items {
        let keys = item["keyCredentials"].as_array().unwrap();
        if keys.len() == 2 {
            pairs += 1;
            assert_eq!(keys[0]["customKeyIdentifier"], keys[1]["customKeyIdentifier"]);
            assert_ne!(keys[0]["keyId"], keys[1]["keyId"]);
            let usages: HashSet<&str> = keys.iter().map(|k| k["usage"].as_str().unwrap()).collect();
            assert_eq!(usages, HashSet::from(["Sign", "Verify"]));
            assert!(keys.iter().all(|k| k["type"] == "AsymmetricX509Cert" && k["key"].is_null()));
        }
    }
    assert!(pairs > 10, "{pairs} certificate pairs");
}

#[tokio::test]
async fn one_application_is_read_by_object_id_and_a_missing_one_is_404() {
    let sim = start(SimOptions { apps: 5, ..Default::default() }).await;
    let http = http(&sim);
    let token = management_token(&http, &sim).await;
    let id = sim.tenant().app_object_ids()[2];
    let (status, body) = get(&http, &token, &graph(&sim, &format!("applications/{id}?$select=displayName"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["id"], id.to_string());
    assert!(body["displayName"].is_string());
    assert!(body.get("appId").is_none());

    let missing = uuid::Uuid::new_v4();
    let (status, body) = get(&http, &token, &graph(&sim, &format!("applications/{missing}"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "Request_ResourceNotFound");
    let (status, _) = get(&http, &token, &graph(&sim, "applications/not-a-guid")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn named(sim: &entra_sim::Sim, token: &str, literal_escaped: &str) -> (StatusCode, Vec<String>) {
    let http = http(sim);
    let mut url = sim.graph_base_url();
    url.set_path(&format!("{}/applications", url.path()));
    url.query_pairs_mut().append_pair("$filter", &format!("displayName eq {literal_escaped}"));
    let (status, body) = get(&http, token, url.as_str()).await;
    let names = body["value"]
        .as_array()
        .map(|v| v.iter().map(|i| i["displayName"].as_str().expect("a display name").to_owned()).collect())
        .unwrap_or_default();
    (status, names)
}

#[tokio::test]
async fn hostile_filter_literals_are_matched_as_literals_or_refused_never_widening_the_result() {
    let sim = start(SimOptions { apps: 30, ..Default::default() }).await;
    let http = http(&sim);
    let token = management_token(&http, &sim).await;
    sim.tenant().add_app(NewApp::named("O'Brien"));
    sim.tenant().add_app(NewApp::named("x' or 1 eq 1"));
    sim.tenant().add_app(NewApp::named("Payroll"));

    // Escaped as OData asks: exact matches.
    assert_eq!(named(&sim, &token, "'O''Brien'").await, (StatusCode::OK, vec!["O'Brien".to_owned()]));
    assert_eq!(named(&sim, &token, "'x'' or 1 eq 1'").await, (StatusCode::OK, vec!["x' or 1 eq 1".to_owned()]));
    assert_eq!(named(&sim, &token, "'payroll'").await, (StatusCode::OK, vec!["Payroll".to_owned()]));
    assert_eq!(named(&sim, &token, "'nobody'").await, (StatusCode::OK, vec![]));

    // Not escaped: refused, never read as more syntax.
    for hostile in ["'O'Brien'", "'x' or 1 eq 1", "'x' or displayName eq 'Payroll'", "'unterminated", "Payroll"] {
        let (status, names) = named(&sim, &token, hostile).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{hostile}");
        assert!(names.is_empty());
    }
}

/// What a full listing shows, counted the way the product's dashboard must count it.
#[derive(Default)]
struct Tally {
    passwords: usize,
    thumbprints: HashMap<String, OffsetDateTime>,
    expired: usize,
    within_7: usize,
    within_30: usize,
    within_90: usize,
}

impl Tally {
    fn credential(&mut self, end: OffsetDateTime, now: OffsetDateTime) {
        let left = end - now;
        if end <= now {
            self.expired += 1;
        } else {
            self.within_7 += usize::from(left <= time::Duration::days(7));
            self.within_30 += usize::from(left <= time::Duration::days(30));
            self.within_90 += usize::from(left <= time::Duration::days(90));
        }
    }

    fn listing(&mut self, items: &[Value], now: OffsetDateTime) {
        let end = |v: &Value| {
            OffsetDateTime::parse(v["endDateTime"].as_str().expect("an end date"), &Rfc3339).expect("an RFC 3339 date")
        };
        for item in items {
            for password in item["passwordCredentials"].as_array().expect("passwordCredentials") {
                self.passwords += 1;
                self.credential(end(password), now);
            }
            for key in item["keyCredentials"].as_array().expect("keyCredentials") {
                // Certificates are listed twice (Sign and Verify): count them once, by thumbprint.
                let thumbprint = key["customKeyIdentifier"].as_str().expect("a thumbprint").to_owned();
                self.thumbprints.insert(thumbprint, end(key));
            }
        }
    }
}

#[tokio::test]
async fn truth_counts_match_what_a_full_listing_shows() {
    let now = datetime!(2031-03-10 08:30 UTC);
    let sim = start(SimOptions { apps: 1500, seed: 21, now: Some(now), ..Default::default() }).await;
    let http = http(&sim);
    let token = management_token(&http, &sim).await;
    let select = "$select=passwordCredentials,keyCredentials&$top=999";
    let (apps, _, _) = collect_pages(&http, &token, &graph(&sim, &format!("applications?{select}"))).await;
    let (sps, _, _) = collect_pages(&http, &token, &graph(&sim, &format!("servicePrincipals?{select}"))).await;

    let mut tally = Tally::default();
    tally.listing(&apps, now);
    tally.listing(&sps, now);
    let certificate_ends: Vec<OffsetDateTime> = tally.thumbprints.values().copied().collect();
    for end in certificate_ends {
        tally.credential(end, now);
    }

    let truth = sim.truth(now);
    assert_eq!(truth.applications, apps.len());
    assert_eq!(truth.service_principals, sps.len());
    assert_eq!(truth.password_credentials, tally.passwords);
    assert_eq!(truth.certificates, tally.thumbprints.len());
    assert_eq!(truth.expired, tally.expired);
    assert_eq!(truth.expiring_within_7_days, tally.within_7);
    assert_eq!(truth.expiring_within_30_days, tally.within_30);
    assert_eq!(truth.expiring_within_90_days, tally.within_90);
    // The generated mix spreads over every bucket.
    assert!(truth.expired > 0 && truth.expiring_within_7_days > 0);
    assert!(truth.expiring_within_7_days < truth.expiring_within_30_days);
    assert!(truth.expiring_within_30_days < truth.expiring_within_90_days);
    // Counts taken a few minutes later are the same: no generated date is near a boundary.
    assert_eq!(sim.truth(now + time::Duration::minutes(10)), truth);
}

#[tokio::test]
async fn unknown_query_options_and_paths_are_refused_not_ignored() {
    let sim = start(SimOptions { apps: 3, ..Default::default() }).await;
    let http = http(&sim);
    let token = management_token(&http, &sim).await;
    let (status, _) = get(&http, &token, &graph(&sim, "applications?$orderby=displayName")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = get(&http, &token, &graph(&sim, "groups")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "BadRequest");
}

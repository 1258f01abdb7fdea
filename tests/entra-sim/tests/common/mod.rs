//! Helpers shared by the integration tests: a reqwest client that trusts the sim's CA (and nothing
//! else), sign-in, and Graph calls.

#![allow(dead_code)]

use entra_sim::{Sim, SimOptions};
use reqwest::{Certificate, Client, StatusCode};
use serde_json::Value;

pub async fn start(options: SimOptions) -> Sim {
    Sim::start(options).await.expect("the simulated tenant starts")
}

/// A client that trusts only the sim's CA, as the product's client is configured to in tests.
pub fn http(sim: &Sim) -> Client {
    let ca = Certificate::from_pem(sim.ca_pem().as_bytes()).expect("the CA is valid PEM");
    Client::builder().tls_certs_only([ca]).build().expect("the client builds")
}

pub fn token_url(sim: &Sim) -> String {
    format!("{}{}/oauth2/v2.0/token", sim.authority_host(), sim.tenant_id())
}

/// Ask for a Graph token with a client secret; returns the status and the JSON body.
pub async fn sign_in(http: &Client, sim: &Sim, client_id: &str, secret: &str) -> (StatusCode, Value) {
    let response = http
        .post(token_url(sim))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .expect("the token request is answered");
    let status = response.status();
    (status, response.json().await.expect("the token endpoint answers JSON"))
}

/// A Graph token for the management application.
pub async fn management_token(http: &Client, sim: &Sim) -> String {
    let (status, body) = sign_in(http, sim, &sim.management_client_id(), &sim.management_secret()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().expect("an access token").to_owned()
}

pub async fn get(http: &Client, token: &str, url: &str) -> (StatusCode, Value) {
    let response = http.get(url).bearer_auth(token).send().await.expect("Graph answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub async fn post(http: &Client, token: &str, url: &str, body: &Value) -> (StatusCode, Value) {
    let response = http.post(url).bearer_auth(token).json(body).send().await.expect("Graph answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub fn graph(sim: &Sim, path_and_query: &str) -> String {
    format!("{}/{path_and_query}", sim.graph_base_url())
}

/// Follow `@odata.nextLink` verbatim until the last page; returns every item and the last page.
pub async fn collect_pages(http: &Client, token: &str, first: &str) -> (Vec<Value>, Value, usize) {
    let mut items = Vec::new();
    let mut url = first.to_owned();
    let mut pages = 0;
    loop {
        let (status, page) = get(http, token, &url).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        items.extend(page["value"].as_array().expect("a value array").iter().cloned());
        match page["@odata.nextLink"].as_str() {
            Some(next) => url = next.to_owned(),
            None => return (items, page, pages),
        }
    }
}

/// The Graph error code of an error body.
pub fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

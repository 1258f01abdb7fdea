//! The official Rust credential (azure_identity 1.x) signs in against the sim exactly as against
//! Entra: the authority host is the sim's, the transport a reqwest client trusting the sim's CA.

mod common;

use std::sync::Arc;

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::{ClientOptions, Transport};
use azure_identity::{ClientSecretCredential, ClientSecretCredentialOptions};
use common::*;
use entra_sim::{Sim, SimOptions};
use reqwest::StatusCode;

fn credential(sim: &Sim, secret: &str) -> Arc<ClientSecretCredential> {
    let mut cloud = CustomConfiguration::default();
    cloud.authority_host = sim.authority_host().to_string();
    let client_options = ClientOptions {
        transport: Some(Transport::new(Arc::new(http(sim)))),
        cloud: Some(Arc::new(CloudConfiguration::from(cloud))),
        ..ClientOptions::default()
    };
    ClientSecretCredential::new(
        &sim.tenant_id(),
        sim.management_client_id(),
        Secret::new(secret.to_owned()),
        Some(ClientSecretCredentialOptions { client_options }),
    )
    .expect("the credential is configured")
}

#[tokio::test]
async fn azure_identity_gets_a_token_that_graph_accepts_and_reports_a_wrong_secret_with_its_aadsts_code() {
    let sim = start(SimOptions { apps: 4, ..Default::default() }).await;
    let token = credential(&sim, &sim.management_secret())
        .get_token(&["https://graph.microsoft.com/.default"], None)
        .await
        .expect("azure_identity signs in");
    let (status, page) = get(&http(&sim), token.token.secret(), &graph(&sim, "applications")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["value"].as_array().unwrap().len(), 4);

    let error = credential(&sim, "wrong")
        .get_token(&["https://graph.microsoft.com/.default"], None)
        .await
        .expect_err("a wrong secret is refused");
    let message = format!("{error:?}");
    assert!(message.contains("7000215"), "{message}");
}

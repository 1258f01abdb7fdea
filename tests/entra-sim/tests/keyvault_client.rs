//! The official Key Vault secrets client (azure_security_keyvault_secrets 1.x), with azure_identity's
//! credential, works against the simulated vault as against Key Vault: it reads the bearer
//! challenge, gets a token for the resource it names, sets and gets secrets, and follows
//! `nextLink` through a version listing longer than one page.
//!
//! One known difference: the client's `ResourceExt::resource_id()` expects an id whose path starts
//! with `/secrets/` (the vault is the host), while the sim's vault is a path (`/vaults/{name}`) on
//! one host, so `resource_id()` fails on the sim's ids. Read the name and version from the id's
//! last two path segments instead.

mod common;

use std::sync::Arc;

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::Secret;
use azure_core::http::{ClientOptions, Transport};
use azure_identity::{ClientSecretCredential, ClientSecretCredentialOptions};
use azure_security_keyvault_secrets::models::{SecretClientGetSecretOptions, SetSecretParameters};
use azure_security_keyvault_secrets::{ResourceExt, SecretClient, SecretClientOptions};
use common::*;
use entra_sim::{Endpoint, Sim, SimOptions, VaultRole};
use futures::TryStreamExt;

fn client_options(sim: &Sim) -> ClientOptions {
    let mut cloud = CustomConfiguration::default();
    cloud.authority_host = sim.authority_host().to_string();
    ClientOptions {
        transport: Some(Transport::new(Arc::new(http(sim)))),
        cloud: Some(Arc::new(CloudConfiguration::from(cloud))),
        ..ClientOptions::default()
    }
}

fn secret_client(sim: &Sim) -> SecretClient {
    let credential = ClientSecretCredential::new(
        &sim.tenant_id(),
        sim.management_client_id(),
        Secret::new(sim.management_secret()),
        Some(ClientSecretCredentialOptions { client_options: client_options(sim) }),
    )
    .expect("the credential is configured");
    let options = SecretClientOptions {
        client_options: client_options(sim),
        // The challenge names vault.azure.net, which is not the sim's host.
        verify_challenge_resource: Some(false),
        ..SecretClientOptions::default()
    };
    SecretClient::new(sim.key_vault_url("portal-kv").as_str(), credential, Some(options)).expect("the client builds")
}

#[tokio::test]
async fn the_official_client_sets_gets_and_pages_through_versions() {
    let sim = start(SimOptions { apps: 1, ..Default::default() }).await;
    sim.azure().create_vault("portal-kv");
    sim.azure().grant_vault("portal-kv", &sim.management_client_id(), VaultRole::SecretsOfficer);
    for i in 0..29 {
        sim.azure().set_secret("portal-kv", "AzureAdClientSecret", &format!("seed-{i}"));
    }
    let client = secret_client(&sim);

    let parameters = SetSecretParameters { value: Some("the-new-one".into()), ..Default::default() };
    let set = client
        .set_secret("AzureAdClientSecret", parameters.try_into().expect("JSON"), None)
        .await
        .expect("the vault accepts the secret")
        .into_model()
        .expect("a SecretBundle");
    assert!(set.resource_id().is_err(), "the vault is a path on the sim, not a host (see the module docs)");
    let id = set.id.clone().expect("an id");
    let prefix = format!("{}/secrets/AzureAdClientSecret/", sim.key_vault_url("portal-kv"));
    let version = id.strip_prefix(&prefix).expect("the id is under the vault URL");
    assert_eq!(version.len(), 32);

    let got = client.get_secret("AzureAdClientSecret", None).await.expect("get").into_model().expect("a bundle");
    assert_eq!(got.value.as_deref(), Some("the-new-one"));
    let options = SecretClientGetSecretOptions {
        secret_version: Some(sim.azure().secret_versions("portal-kv", "AzureAdClientSecret")[0].version.clone()),
        ..Default::default()
    };
    let oldest =
        client.get_secret("AzureAdClientSecret", Some(options)).await.expect("get").into_model().expect("a bundle");
    assert_eq!(oldest.value.as_deref(), Some("seed-0"));

    let mut pager = client.list_secret_properties_versions("AzureAdClientSecret", None).expect("a pager");
    let mut versions = 0;
    while let Some(item) = pager.try_next().await.expect("a page") {
        assert!(item.id.as_deref().is_some_and(|id| id.contains("/secrets/AzureAdClientSecret/")));
        assert!(item.attributes.is_some());
        versions += 1;
    }
    assert_eq!(versions, 30, "two pages of at most 25");

    let challenges = sim.requests().iter().filter(|r| r.endpoint == Endpoint::KeyVault && r.status == 401).count();
    assert!(challenges >= 1, "the client read the challenge first");
}

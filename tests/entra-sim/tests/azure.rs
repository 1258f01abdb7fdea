//! The simulated Key Vault, Resource Manager and web apps, over real HTTPS: Key Vault's challenge,
//! secrets and paging, RBAC; ARM's site operations, long-running operations, roles; and when a web
//! app's process picks up a new secret. The sim's answers are compared, key by key and type by type,
//! with Microsoft's published examples (`fixtures/azure/`).

mod common;

use std::time::Duration;

use common::*;
use entra_sim::{ArmRole, Endpoint, Fault, FaultKind, Match, NewApp, Sim, SimOptions, SiteSpec, VaultRole};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

const VAULT_SCOPE: &str = "https://vault.azure.net/.default";
const ARM_SCOPE: &str = "https://management.azure.com/.default";
const SUB: &str = "6a5b4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d";
const RG: &str = "app-store-rg";
const API: &str = "2023-12-01";
const KV_API: &str = "2025-07-01";

async fn token_for(http: &Client, sim: &Sim, client_id: &str, secret: &str, scope: &str) -> (StatusCode, Value) {
    let response = http
        .post(token_url(sim))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
            ("scope", scope),
        ])
        .send()
        .await
        .expect("the token endpoint answers");
    let status = response.status();
    (status, response.json().await.expect("JSON"))
}

async fn management(http: &Client, sim: &Sim, scope: &str) -> String {
    let (status, body) = token_for(http, sim, &sim.management_client_id(), &sim.management_secret(), scope).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().expect("a token").to_owned()
}

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
    text: String,
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("answered");
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer { status, headers, body, text }
}

fn secrets_url(sim: &Sim, vault: &str, rest: &str) -> String {
    format!("{}/secrets{rest}", sim.key_vault_url(vault))
}

fn with_api(url: &str, api: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}api-version={api}")
}

fn site_id(name: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Web/sites/{name}")
}

fn arm_url(sim: &Sim, path: &str) -> String {
    with_api(&format!("{}{}", sim.resource_manager_url(), path.trim_start_matches('/')), API)
}

/// Every key of `example` is in `actual`, with the same JSON type (a number is a number, integer or
/// not), recursively; arrays are compared by their first element. `nullable` lists pointers where the
/// sim may answer `null` for a string the example shows.
fn assert_same_shape(example: &Value, actual: &Value, at: &str, nullable: &[&str]) {
    match (example, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (key, value) in e {
                let here = format!("{at}/{key}");
                let other = a.get(key).unwrap_or_else(|| panic!("{here} is missing from {actual}"));
                assert_same_shape(value, other, &here, nullable);
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            if let (Some(e), Some(a)) = (e.first(), a.first()) {
                assert_same_shape(e, a, &format!("{at}/0"), nullable);
            }
        }
        (Value::String(_), Value::Null) if nullable.contains(&at) => {}
        (Value::String(_), Value::Null) if at.ends_with("nextLink") => {}
        (e, a) => {
            let kind = |v: &Value| match v {
                Value::Null => "null",
                Value::Bool(_) => "bool",
                Value::Number(_) => "number",
                Value::String(_) => "string",
                Value::Array(_) => "array",
                Value::Object(_) => "object",
            };
            assert_eq!(kind(e), kind(a), "{at}: example {e}, sim {a}");
        }
    }
}

fn example(name: &str) -> Value {
    let path = format!("{}/fixtures/azure/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("the fixture exists");
    serde_json::from_str::<Value>(&text).expect("the fixture is JSON")["responses"]["200"]["body"].clone()
}

/// A tenant app with one secret, its value in the vault, a site referencing it (versionless), the
/// site's identity a Secrets User and the management app a Secrets Officer and Contributor.
struct World {
    sim: Sim,
    http: Client,
    app_object_id: uuid::Uuid,
    app_client_id: String,
    first_key: uuid::Uuid,
    first_version: String,
    identity: String,
}

async fn world(site: &str, configure: impl FnOnce(SiteSpec) -> SiteSpec) -> World {
    let sim = start(SimOptions { apps: 2, ..Default::default() }).await;
    let http = http(&sim);
    let app = sim.tenant().add_app(NewApp::named("App Store for Intune - API"));
    let end = sim.now() + time::Duration::days(90);
    let first = sim.tenant().add_password_to(app.object_id, end).expect("the app exists");
    let azure = sim.azure();
    azure.create_vault("portal-kv");
    let first_version = azure.set_secret("portal-kv", "AzureAdClientSecret", &first.secret_text);
    let identity = uuid::Uuid::new_v4().to_string();
    azure.grant_vault("portal-kv", &identity, VaultRole::SecretsUser);
    azure.grant_vault("portal-kv", &sim.management_client_id(), VaultRole::SecretsOfficer);
    azure.grant_arm(
        &sim.management_client_id(),
        &format!("/subscriptions/{SUB}/resourceGroups/{RG}"),
        ArmRole::Contributor,
    );
    let uri = format!("{}/secrets/AzureAdClientSecret/", sim.key_vault_url("portal-kv"));
    azure.create_site(configure(SiteSpec::new(SUB, RG, site, app.app_id.to_string(), uri, identity.clone())));
    World {
        http,
        app_object_id: app.object_id,
        app_client_id: app.app_id.to_string(),
        first_key: first.key_id,
        first_version,
        identity,
        sim,
    }
}

impl World {
    async fn health(&self, site: &str) -> Answer {
        send(self.http.get(self.sim.site_health_url(site, None))).await
    }

    async fn arm_post(&self, token: &str, path: &str) -> Answer {
        send(self.http.post(arm_url(&self.sim, path)).bearer_auth(token)).await
    }

    async fn arm_get(&self, token: &str, path: &str) -> Answer {
        send(self.http.get(arm_url(&self.sim, path)).bearer_auth(token)).await
    }

    /// Rotate behind the site's back: a new password, its value as a new vault version, the old
    /// password removed. Returns the new version.
    fn rotate(&self) -> String {
        let end = self.sim.now() + time::Duration::days(90);
        let next = self.sim.tenant().add_password_to(self.app_object_id, end).expect("the app exists");
        let version = self.sim.azure().set_secret("portal-kv", "AzureAdClientSecret", &next.secret_text);
        assert!(self.sim.tenant().remove_password_from(self.app_object_id, self.first_key).expect("the app exists"));
        version
    }
}

#[tokio::test]
async fn key_vault_challenges_a_request_without_a_token_and_refuses_other_audiences() {
    let sim = start(SimOptions { apps: 1, ..Default::default() }).await;
    let http = http(&sim);
    sim.azure().create_vault("portal-kv");
    let url = with_api(&secrets_url(&sim, "portal-kv", "/anything"), KV_API);

    let answer = send(http.get(&url)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let challenge = answer.headers["www-authenticate"].to_str().unwrap();
    assert_eq!(
        challenge,
        format!(
            "Bearer authorization=\"{}{}\", resource=\"https://vault.azure.net\"",
            sim.authority_host(),
            sim.tenant_id()
        )
    );
    assert_eq!(
        answer.body,
        json!({"error":{"code":"Unauthorized","message":"AKV10000: Request is missing a Bearer or PoP token."}})
    );

    let graph_token = management(&http, &sim, "https://graph.microsoft.com/.default").await;
    let answer = send(http.get(&url).bearer_auth(&graph_token)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.text);
    let vault_token = management(&http, &sim, VAULT_SCOPE).await;
    let (status, _) = get(&http, &vault_token, &graph(&sim, "applications")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "Graph refuses a Key Vault token");

    let answer = send(http.get(secrets_url(&sim, "portal-kv", "/anything")).bearer_auth(&vault_token)).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.body["error"]["code"], "BadParameter");

    let answer = send(http.get(with_api(&secrets_url(&sim, "no-such-kv", ""), KV_API)).bearer_auth(&vault_token)).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.body["error"]["code"], "VaultNotFound");

    let (status, body) = token_for(
        &http,
        &sim,
        &sim.management_client_id(),
        &sim.management_secret(),
        &format!("{VAULT_SCOPE} {ARM_SCOPE}"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "one token is for one resource: {body}");
    assert!(sim.requests().iter().any(|r| r.endpoint == Endpoint::KeyVault && r.is_key_vault()));
}

#[tokio::test]
async fn secrets_are_versioned_tagged_and_listed_in_pages_without_values() {
    let sim = start(SimOptions { apps: 1, ..Default::default() }).await;
    let http = http(&sim);
    let azure = sim.azure();
    azure.create_vault("portal-kv");
    azure.grant_vault("portal-kv", &sim.management_client_id(), VaultRole::SecretsOfficer);
    let token = management(&http, &sim, VAULT_SCOPE).await;
    let put = |value: &str, tags: Value| {
        let body = json!({ "value": value, "contentType": "text/plain", "tags": tags, "attributes": { "exp": 4_102_444_800_i64 } });
        send(
            http.put(with_api(&secrets_url(&sim, "portal-kv", "/AzureAdClientSecret"), KV_API))
                .bearer_auth(&token)
                .json(&body),
        )
    };
    let mut ids = Vec::new();
    for i in 0..3 {
        let answer = put(&format!("value-{i}"), json!({ "rotation": i.to_string() })).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        assert_eq!(answer.body["value"], format!("value-{i}"));
        assert_eq!(answer.body["tags"]["rotation"], i.to_string());
        assert_eq!(answer.body["attributes"]["recoveryLevel"], "Recoverable+Purgeable");
        assert_eq!(answer.body["attributes"]["recoverableDays"], 90);
        assert_eq!(answer.body["attributes"]["exp"], 4_102_444_800_i64);
        let id = answer.body["id"].as_str().unwrap().to_owned();
        let version = id.rsplit('/').next().unwrap();
        assert_eq!(version.len(), 32);
        assert!(id.starts_with(&format!("{}/secrets/AzureAdClientSecret/", sim.key_vault_url("portal-kv"))));
        ids.push(id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 3, "every PUT is a new version");

    let latest =
        send(http.get(with_api(&secrets_url(&sim, "portal-kv", "/azureadclientsecret"), KV_API)).bearer_auth(&token))
            .await;
    assert_eq!(latest.body["value"], "value-2", "names are case-insensitive, the newest version wins");
    let first = send(http.get(with_api(&ids[0], KV_API)).bearer_auth(&token)).await;
    assert_eq!(first.body["value"], "value-0");

    let mut url = with_api(&secrets_url(&sim, "portal-kv", "/AzureAdClientSecret/versions?maxresults=2"), KV_API);
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = send(http.get(&url).bearer_auth(&token)).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        pages += 1;
        for item in page.body["value"].as_array().unwrap() {
            assert!(item.get("value").is_none(), "no values in a listing");
            assert_eq!(item["contentType"], "text/plain");
            seen.push(item["id"].as_str().unwrap().to_owned());
        }
        match page.body["nextLink"].as_str() {
            Some(next) => {
                assert!(next.contains("$skiptoken=") && next.contains(&format!("api-version={KV_API}")), "{next}");
                url = next.to_owned();
            }
            None => break,
        }
    }
    assert_eq!(pages, 2);
    let mut by_version = ids.clone();
    by_version.sort_by_key(|id| id.rsplit('/').next().unwrap().to_owned());
    assert_eq!(seen, by_version, "listed in the order of the version ids, not of creation");
    assert_eq!(azure.secret_versions("portal-kv", "AzureAdClientSecret").len(), 3);
    assert_eq!(azure.secret_versions("portal-kv", "AzureAdClientSecret")[2].tags["rotation"], "2");

    let listing = send(http.get(with_api(&secrets_url(&sim, "portal-kv", ""), KV_API)).bearer_auth(&token)).await;
    assert_eq!(
        listing.body["value"][0]["id"],
        format!("{}/secrets/AzureAdClientSecret", sim.key_vault_url("portal-kv"))
    );
    assert!(listing.body["value"][0].get("value").is_none());

    let unknown =
        send(http.get(with_api(&secrets_url(&sim, "portal-kv", "/nope/versions"), KV_API)).bearer_auth(&token)).await;
    assert_eq!((unknown.status, unknown.body.clone()), (StatusCode::OK, json!({ "value": [], "nextLink": null })));
    let missing = send(http.get(with_api(&secrets_url(&sim, "portal-kv", "/nope"), KV_API)).bearer_auth(&token)).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.body["error"]["code"], "SecretNotFound");
    assert!(
        missing.body["error"]["message"].as_str().unwrap().starts_with("A secret with (name/id) nope was not found")
    );

    let bad_name = send(
        http.put(with_api(&secrets_url(&sim, "portal-kv", "/bad_name"), KV_API))
            .bearer_auth(&token)
            .json(&json!({"value":"x"})),
    )
    .await;
    assert_eq!(
        (bad_name.status, bad_name.body["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("BadParameter"))
    );
    let tags: serde_json::Map<String, Value> = (0..16).map(|i| (format!("t{i}"), json!("v"))).collect();
    let too_many = put("x", Value::Object(tags)).await;
    assert_eq!(too_many.status, StatusCode::BAD_REQUEST);
    let no_value =
        send(http.put(with_api(&secrets_url(&sim, "portal-kv", "/x"), KV_API)).bearer_auth(&token).json(&json!({})))
            .await;
    assert_eq!(no_value.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn vault_rights_decide_what_a_client_may_do_and_a_refusal_names_the_action() {
    let sim = start(SimOptions { apps: 1, ..Default::default() }).await;
    let http = http(&sim);
    let azure = sim.azure();
    azure.set_secret("portal-kv", "s", "v");
    let me = sim.management_client_id();
    let token = management(&http, &sim, VAULT_SCOPE).await;
    let set = || {
        send(
            http.put(with_api(&secrets_url(&sim, "portal-kv", "/s"), KV_API))
                .bearer_auth(&token)
                .json(&json!({"value":"w"})),
        )
    };
    let read = || send(http.get(with_api(&secrets_url(&sim, "portal-kv", "/s"), KV_API)).bearer_auth(&token));
    let list = || send(http.get(with_api(&secrets_url(&sim, "portal-kv", "/s/versions"), KV_API)).bearer_auth(&token));

    let refused = set().await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.body["error"]["code"], "Forbidden");
    assert_eq!(refused.body["error"]["innererror"]["code"], "ForbiddenByRbac");
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("Caller is not authorized to perform action on resource.\r\n"), "{message}");
    assert!(message.contains(&format!("Caller: appid={me};oid=")), "{message}");
    assert!(message.contains("Action: 'Microsoft.KeyVault/vaults/secrets/setSecret/action'"), "{message}");
    assert!(message.contains("Assignment: (not found)\r\nVault: portal-kv;location=westeurope\r\n"), "{message}");

    azure.grant_vault("portal-kv", &me, VaultRole::Reader);
    assert_eq!(list().await.status, StatusCode::OK);
    assert_eq!(read().await.status, StatusCode::FORBIDDEN);
    azure.grant_vault("portal-kv", &me, VaultRole::SecretsUser);
    assert_eq!(read().await.status, StatusCode::OK);
    assert_eq!(set().await.status, StatusCode::FORBIDDEN);
    azure.grant_vault("portal-kv", &me, VaultRole::SecretsOfficer);
    assert_eq!(set().await.status, StatusCode::OK);
    azure.revoke_vault("portal-kv", &me);
    assert_eq!(list().await.status, StatusCode::FORBIDDEN);
    assert_eq!(azure.vault_requests("portal-kv"), 7);
}

#[tokio::test]
async fn throttling_and_server_errors_come_from_the_fault_queue_in_each_services_shape() {
    let w = world("app-store-portal", |s| s).await;
    let (sim, http) = (&w.sim, &w.http);
    let kv = management(http, sim, VAULT_SCOPE).await;
    let arm = management(http, sim, ARM_SCOPE).await;
    sim.faults().push(Fault::new(
        Match::path("/vaults/"),
        FaultKind::TooManyRequests { retry_after: Some(Duration::from_secs(3)) },
    ));
    sim.faults().push(Fault::new(Match::path("/vaults/"), FaultKind::TooManyRequests { retry_after: None }));
    sim.faults().push(Fault::new(
        Match::path("/restart"),
        FaultKind::TooManyRequests { retry_after: Some(Duration::from_secs(7)) },
    ));
    sim.faults().push(Fault::new(Match::path("/vaults/"), FaultKind::ServerError(503)));
    let url = with_api(&secrets_url(sim, "portal-kv", "/AzureAdClientSecret"), KV_API);

    let first = send(http.get(&url).bearer_auth(&kv)).await;
    assert_eq!(first.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(first.headers["retry-after"], "3");
    assert_eq!(first.body["error"]["code"], "Throttled");
    let second = send(http.get(&url)).await;
    assert_eq!(second.status, StatusCode::TOO_MANY_REQUESTS, "before authentication, like a front door");
    assert!(second.headers.get("retry-after").is_none());
    let restart = w.arm_post(&arm, &format!("{}/restart", site_id("app-store-portal"))).await;
    assert_eq!(restart.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(restart.headers["retry-after"], "7");
    assert_eq!(restart.body["error"]["code"], "TooManyRequests");
    let unavailable = send(http.get(&url).bearer_auth(&kv)).await;
    assert_eq!(unavailable.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(unavailable.body["error"]["code"].is_string());
    assert_eq!(send(http.get(&url).bearer_auth(&kv)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_answer_fault_feeds_a_published_example_through_unchanged() {
    let sim = start(SimOptions { apps: 1, ..Default::default() }).await;
    let http = http(&sim);
    let body = example("GetWebApp.json").to_string();
    sim.faults().push(Fault::new(
        Match::path("/sites/sitef6141").method("GET"),
        FaultKind::Answer {
            status: 200,
            headers: vec![
                ("Content-Type".into(), "application/json; charset=utf-8".into()),
                ("x-ms-request-id".into(), "abc".into()),
            ],
            body: body.clone(),
        },
    ));
    let answer = send(http.get(arm_url(&sim, &site_id("sitef6141")))).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.text, body);
    assert_eq!(answer.headers["content-type"], "application/json; charset=utf-8");
    assert_eq!(answer.headers["x-ms-request-id"], "abc");
}

#[tokio::test]
async fn resource_manager_restarts_stops_and_starts_a_site_for_a_contributor_only() {
    let w = world("app-store-portal", |s| s).await;
    let (sim, http) = (&w.sim, &w.http);
    let arm = management(http, sim, ARM_SCOPE).await;
    let id = site_id("app-store-portal");

    let site = w.arm_get(&arm, &id.to_uppercase().replace("/SUBSCRIPTIONS/", "/subscriptions/")).await;
    assert_eq!(site.status, StatusCode::OK, "ids match case-insensitively: {}", site.text);
    assert_eq!(site.body["properties"]["state"], "Running");
    assert_eq!(site.body["properties"]["defaultHostName"], "app-store-portal.azurewebsites.net");
    assert_eq!(site.body["identity"]["type"], "SystemAssigned");
    assert_eq!(site.body["type"], "Microsoft.Web/sites");

    let restart = send(
        http.post(with_api(
            &format!(
                "{}{}/restart?softRestart=false&synchronous=true",
                sim.resource_manager_url(),
                id.trim_start_matches('/')
            ),
            API,
        ))
        .bearer_auth(&arm),
    )
    .await;
    assert_eq!(restart.status, StatusCode::OK, "{}", restart.text);
    assert_eq!(sim.azure().site("app-store-portal", None).unwrap().restarts, 1);

    assert_eq!(w.arm_post(&arm, &format!("{id}/stop")).await.status, StatusCode::OK);
    assert_eq!(sim.azure().site("app-store-portal", None).unwrap().state, "Stopped");
    let lagging = w.arm_get(&arm, &id).await;
    assert_eq!(lagging.body["properties"]["state"], "Running", "the first read after a stop lags");
    assert_eq!(w.arm_get(&arm, &id).await.body["properties"]["state"], "Stopped");
    let stopped = w.health("app-store-portal").await;
    assert_eq!(stopped.status, StatusCode::FORBIDDEN);
    assert!(stopped.text.contains("Error 403 - This web app is stopped."));

    assert_eq!(w.arm_post(&arm, &format!("{id}/start")).await.status, StatusCode::OK);
    let view = sim.azure().site("app-store-portal", None).unwrap();
    assert_eq!((view.state.as_str(), view.starts), ("Running", 1));
    assert_eq!(w.health("app-store-portal").await.status, StatusCode::OK);

    // Errors: no api-version, wrong audience, no role, a Reader writing, an unknown site.
    let no_version =
        send(http.get(format!("{}{}", sim.resource_manager_url(), id.trim_start_matches('/'))).bearer_auth(&arm)).await;
    assert_eq!(
        (no_version.status, no_version.body["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("MissingApiVersionParameter"))
    );
    let vault_token = management(http, sim, VAULT_SCOPE).await;
    let wrong = w.arm_get(&vault_token, &id).await;
    assert_eq!(
        (wrong.status, wrong.body["error"]["code"].clone()),
        (StatusCode::UNAUTHORIZED, json!("InvalidAuthenticationToken"))
    );
    assert!(wrong.headers["www-authenticate"].to_str().unwrap().contains("error=\"invalid_token\""));

    let end = sim.now() + time::Duration::days(30);
    let other = sim.tenant().add_app(NewApp::named("someone else"));
    let secret = sim.tenant().add_password_to(other.object_id, end).unwrap().secret_text;
    let (_, body) = token_for(http, sim, &other.app_id.to_string(), &secret, ARM_SCOPE).await;
    let theirs = body["access_token"].as_str().unwrap().to_owned();
    let refused = w.arm_post(&theirs, &format!("{id}/restart")).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.body["error"]["code"], "AuthorizationFailed");
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with(&format!("The client '{}' with object id '", other.app_id)), "{message}");
    assert!(
        message.contains(&format!("perform action 'Microsoft.Web/sites/restart/action' over scope '{id}'")),
        "{message}"
    );
    sim.azure().grant_arm(&other.app_id.to_string(), &format!("/subscriptions/{SUB}"), ArmRole::Reader);
    assert_eq!(w.arm_get(&theirs, &id).await.status, StatusCode::OK);
    assert_eq!(w.arm_post(&theirs, &format!("{id}/restart")).await.status, StatusCode::FORBIDDEN);

    let unknown = w.arm_get(&arm, &site_id("nope")).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.body["error"]["code"], "ResourceNotFound");
    assert!(
        unknown.body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("The Resource 'Microsoft.Web/sites/nope' under resource group '{RG}' was not found"))
    );
    assert!(sim.requests().iter().any(|r| r.is_resource_manager()));
}

#[tokio::test]
async fn long_running_operations_complete_through_azure_async_operation_or_location() {
    let w = world("app-store-portal", |s| s.async_operations(true)).await;
    let (sim, http) = (&w.sim, &w.http);
    let arm = management(http, sim, ARM_SCOPE).await;
    let id = site_id("app-store-portal");

    let stop = w.arm_post(&arm, &format!("{id}/stop")).await;
    assert_eq!(stop.status, StatusCode::ACCEPTED);
    assert_eq!(stop.headers["retry-after"], "1");
    let operation = stop.headers["azure-asyncoperation"].to_str().unwrap().to_owned();
    assert!(operation.starts_with(sim.base_url().as_str()), "{operation}");
    assert!(stop.headers["location"].to_str().unwrap().starts_with(sim.base_url().as_str()));
    assert_eq!(sim.azure().site("app-store-portal", None).unwrap().state, "Running", "not done before it is polled");

    let first = send(http.get(&operation).bearer_auth(&arm)).await;
    assert_eq!(first.body["status"], "InProgress", "{}", first.text);
    let second = send(http.get(&operation).bearer_auth(&arm)).await;
    assert_eq!(second.body["status"], "Succeeded");
    assert_eq!(sim.azure().site("app-store-portal", None).unwrap().state, "Stopped");
    assert_eq!(send(http.get(&operation).bearer_auth(&arm)).await.body["status"], "Succeeded");

    let start = w.arm_post(&arm, &format!("{id}/start")).await;
    let location = start.headers["location"].to_str().unwrap().to_owned();
    assert_eq!(send(http.get(&location).bearer_auth(&arm)).await.status, StatusCode::ACCEPTED);
    assert_eq!(send(http.get(&location).bearer_auth(&arm)).await.status, StatusCode::OK);
    assert_eq!(sim.azure().site("app-store-portal", None).unwrap().starts, 1);
    assert_eq!(w.health("app-store-portal").await.status, StatusCode::OK);
}

#[tokio::test]
async fn refresh_resolves_references_again_and_their_status_is_readable() {
    let w = world("app-store-portal", |s| s).await;
    let (sim, http) = (&w.sim, &w.http);
    let arm = management(http, sim, ARM_SCOPE).await;
    let id = site_id("app-store-portal");
    let references = format!("{id}/config/configreferences/appsettings");

    let one = w.arm_get(&arm, &format!("{references}/AzureAdClientSecret")).await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.text);
    let p = &one.body["properties"];
    assert_eq!(p["status"], "Resolved");
    assert_eq!(p["vaultName"], "portal-kv");
    assert_eq!(p["secretName"], "AzureAdClientSecret");
    assert_eq!(p["secretVersion"], Value::Null, "a versionless reference");
    assert_eq!(p["activeVersion"], w.first_version.as_str());
    assert_eq!(p["identityType"], "SystemAssigned");
    assert_eq!(p["source"], "KeyVault");
    assert!(p["reference"].as_str().unwrap().starts_with("@Microsoft.KeyVault(SecretUri="));
    assert_eq!(w.arm_get(&arm, &format!("{references}/NoSuchSetting")).await.status, StatusCode::NOT_FOUND);

    let version = w.rotate();
    let refreshed = w.arm_post(&arm, &format!("{references}/refresh")).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text);
    assert_eq!(refreshed.body["value"][0]["properties"]["activeVersion"], version.as_str());
    let view = sim.azure().site("app-store-portal", None).unwrap();
    assert_eq!((view.refreshes, view.resolved_version.as_deref()), (1, Some(version.as_str())));
    assert_eq!(
        view.process_version.as_deref(),
        Some(w.first_version.as_str()),
        "the process keeps what it started with"
    );
    let health = w.health("app-store-portal").await;
    assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE, "the old secret was removed: {}", health.text);

    sim.azure().revoke_vault("portal-kv", &w.identity);
    w.arm_post(&arm, &format!("{references}/refresh")).await;
    let all = w.arm_get(&arm, &references).await;
    assert_eq!(all.body["value"][0]["properties"]["status"], "AccessToKeyVaultDenied");
}

#[tokio::test]
async fn a_running_process_keeps_its_secret_until_it_restarts() {
    let w = world("app-store-portal", |s| s).await;
    let arm = management(&w.http, &w.sim, ARM_SCOPE).await;
    assert_eq!(w.health("app-store-portal").await.body, json!({ "status": "Healthy" }));

    // A new password and a new vault version, the old password still there: still healthy, on it.
    let end = w.sim.now() + time::Duration::days(90);
    let next = w.sim.tenant().add_password_to(w.app_object_id, end).unwrap();
    let version = w.sim.azure().set_secret("portal-kv", "AzureAdClientSecret", &next.secret_text);
    assert_eq!(w.health("app-store-portal").await.status, StatusCode::OK);
    assert_eq!(
        w.sim.azure().site("app-store-portal", None).unwrap().process_version.as_deref(),
        Some(w.first_version.as_str())
    );

    w.sim.tenant().remove_password_from(w.app_object_id, w.first_key).unwrap();
    let broken = w.health("app-store-portal").await;
    assert_eq!(broken.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(broken.body["status"], "Unhealthy");
    let reason = broken.body["reason"].as_str().unwrap();
    assert!(reason.contains("AADSTS7000215"), "{reason}");
    assert!(!broken.text.contains(&next.secret_text));

    assert_eq!(w.arm_post(&arm, &format!("{}/restart", site_id("app-store-portal"))).await.status, StatusCode::OK);
    assert_eq!(w.health("app-store-portal").await.status, StatusCode::OK);
    assert_eq!(w.sim.azure().site("app-store-portal", None).unwrap().process_version, Some(version));
}

#[tokio::test]
async fn a_restart_that_keeps_references_keeps_the_stale_secret_and_stop_start_picks_up_the_new_one() {
    let w = world("app-store-portal", |s| s.restart_keeps_references(true)).await;
    let arm = management(&w.http, &w.sim, ARM_SCOPE).await;
    let id = site_id("app-store-portal");
    let version = w.rotate();
    assert_eq!(w.arm_post(&arm, &format!("{id}/restart")).await.status, StatusCode::OK);
    let view = w.sim.azure().site("app-store-portal", None).unwrap();
    assert_eq!((view.restarts, view.process_version.as_deref()), (1, Some(w.first_version.as_str())));
    assert_eq!(w.health("app-store-portal").await.status, StatusCode::SERVICE_UNAVAILABLE);

    w.arm_post(&arm, &format!("{id}/stop")).await;
    w.arm_post(&arm, &format!("{id}/start")).await;
    let view = w.sim.azure().site("app-store-portal", None).unwrap();
    assert_eq!(view.process_version, Some(version));
    assert_eq!(w.health("app-store-portal").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_site_whose_identity_cannot_read_the_vault_starts_without_a_secret() {
    let w = world("app-store-portal", |s| s).await;
    let arm = management(&w.http, &w.sim, ARM_SCOPE).await;
    w.sim.azure().revoke_vault("portal-kv", &w.identity);
    w.arm_post(&arm, &format!("{}/restart", site_id("app-store-portal"))).await;
    let view = w.sim.azure().site("app-store-portal", None).unwrap();
    assert_eq!(view.reference_status, "AccessToKeyVaultDenied");
    let health = w.health("app-store-portal").await;
    assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(health.body["reason"], "no client secret resolved (AccessToKeyVaultDenied)");

    // A slot of another site, pointing at a vault that does not exist.
    let uri = format!("{}/secrets/AzureAdClientSecret/", w.sim.key_vault_url("gone-kv"));
    w.sim.azure().create_site(
        SiteSpec::new(SUB, RG, "app-store-portal", w.app_client_id.clone(), uri, w.identity.clone()).slot("staging"),
    );
    assert_eq!(w.sim.azure().site("app-store-portal", Some("staging")).unwrap().reference_status, "VaultNotFound");
    let slot = send(w.http.get(w.sim.site_health_url("app-store-portal", Some("staging")))).await;
    assert_eq!(slot.status, StatusCode::SERVICE_UNAVAILABLE);
    let slot_site = w.arm_get(&arm, &format!("{}/slots/staging", site_id("app-store-portal"))).await;
    assert_eq!(slot_site.body["type"], "Microsoft.Web/sites/slots");
    assert_eq!(slot_site.body["name"], "app-store-portal/staging");
}

#[tokio::test]
async fn the_sims_answers_have_the_shape_of_the_published_examples() {
    let w = world("app-store-portal", |s| s).await;
    let (sim, http) = (&w.sim, &w.http);
    let kv = management(http, sim, VAULT_SCOPE).await;
    let arm = management(http, sim, ARM_SCOPE).await;
    w.sim.azure().set_secret("portal-kv", "AzureAdClientSecret", "second");

    let set = send(
        http.put(with_api(&secrets_url(sim, "portal-kv", "/crpsecret"), KV_API))
            .bearer_auth(&kv)
            .json(&json!({"value":"mysecretvalue"})),
    )
    .await;
    assert_same_shape(&example("SetSecret-example.json"), &set.body, "", &[]);
    let get = send(http.get(with_api(set.body["id"].as_str().unwrap(), KV_API)).bearer_auth(&kv)).await;
    assert_same_shape(&example("GetSecret-example.json"), &get.body, "", &[]);
    let versions = send(
        http.get(with_api(&secrets_url(sim, "portal-kv", "/AzureAdClientSecret/versions?maxresults=1"), KV_API))
            .bearer_auth(&kv),
    )
    .await;
    assert!(versions.body["nextLink"].is_string());
    assert_same_shape(&example("GetSecretVersions-example.json"), &versions.body, "", &[]);
    // The listing example's item has a content type; give one to the secret listed first.
    send(
        http.put(with_api(&secrets_url(sim, "portal-kv", "/AzureAdClientSecret"), KV_API))
            .bearer_auth(&kv)
            .json(&json!({"value":"third","contentType":"plainText"})),
    )
    .await;
    let secrets =
        send(http.get(with_api(&secrets_url(sim, "portal-kv", "?maxresults=1"), KV_API)).bearer_auth(&kv)).await;
    assert_same_shape(&example("GetSecrets-example.json"), &secrets.body, "", &[]);

    let id = site_id("app-store-portal");
    let site = w.arm_get(&arm, &id).await;
    assert_same_shape(&example("GetWebApp.json"), &site.body, "", &[]);
    let nullable = ["/properties/secretVersion", "/value/0/properties/secretVersion"];
    let one = w.arm_get(&arm, &format!("{id}/config/configreferences/appsettings/AzureAdClientSecret")).await;
    assert_same_shape(&example("GetKeyVaultReferencesForAppSetting.json"), &one.body, "", &nullable);
    let all = w.arm_get(&arm, &format!("{id}/config/configreferences/appsettings")).await;
    assert_same_shape(&example("GetKeyVaultReferencesForAppSettings.json"), &all.body, "", &nullable);
}

#[tokio::test]
async fn a_version_can_be_disabled_and_retagged_and_a_disabled_version_is_not_read() {
    let sim = start(SimOptions { apps: 1, ..Default::default() }).await;
    let http = http(&sim);
    let azure = sim.azure();
    let old = azure.set_secret("portal-kv", "AzureAdClientSecret", "old");
    let new = azure.set_secret("portal-kv", "AzureAdClientSecret", "new");
    azure.grant_vault("portal-kv", &sim.management_client_id(), VaultRole::SecretsOfficer);
    let token = management(&http, &sim, VAULT_SCOPE).await;
    let url = |rest: &str| with_api(&secrets_url(&sim, "portal-kv", rest), KV_API);

    let patched = send(
        http.patch(url(&format!("/AzureAdClientSecret/{new}")))
            .bearer_auth(&token)
            .json(&json!({ "attributes": { "enabled": false }, "tags": { "state": "retired" } })),
    )
    .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    assert!(patched.body.get("value").is_none());
    assert_eq!(patched.body["attributes"]["enabled"], false);
    assert_eq!(patched.body["tags"]["state"], "retired");

    let latest = send(http.get(url("/AzureAdClientSecret")).bearer_auth(&token)).await;
    assert_eq!(latest.body["value"], "old", "the newest enabled version");
    assert!(latest.body["id"].as_str().unwrap().ends_with(&old));
    let disabled = send(http.get(url(&format!("/AzureAdClientSecret/{new}"))).bearer_auth(&token)).await;
    assert_eq!(disabled.status, StatusCode::FORBIDDEN);
    assert_eq!(disabled.body["error"]["innererror"]["code"], "SecretDisabled");
    let versions = azure.secret_versions("portal-kv", "AzureAdClientSecret");
    assert_eq!((versions[0].enabled, versions[1].enabled), (true, false));

    // A site built from named fields and defaults resolves the newest enabled version.
    let spec = SiteSpec {
        subscription_id: SUB.into(),
        resource_group: RG.into(),
        name: "defaults".into(),
        app_client_id: uuid::Uuid::new_v4().to_string(),
        secret_uri: format!("{}/secrets/AzureAdClientSecret", sim.key_vault_url("portal-kv")),
        site_identity: sim.management_client_id(),
        ..Default::default()
    };
    assert_eq!(spec.setting_key, "AzureAdClientSecret");
    sim.azure().create_site(spec);
    assert_eq!(sim.azure().site("defaults", None).unwrap().resolved_version, Some(old));
}

#[tokio::test]
async fn an_expired_secret_makes_the_web_app_unhealthy_with_entras_reason() {
    let sim = start(SimOptions { apps: 1, ..Default::default() }).await;
    let http = http(&sim);
    let app = sim.tenant().add_app(NewApp::named("short-lived"));
    let password = sim.tenant().add_password_to(app.object_id, sim.now() + time::Duration::hours(1)).unwrap();
    sim.azure().set_secret("portal-kv", "AzureAdClientSecret", &password.secret_text);
    let identity = uuid::Uuid::new_v4().to_string();
    sim.azure().grant_vault("portal-kv", &identity, VaultRole::SecretsUser);
    let uri = format!("{}/secrets/AzureAdClientSecret/", sim.key_vault_url("portal-kv"));
    sim.azure().create_site(SiteSpec::new(SUB, RG, "short", app.app_id.to_string(), uri, identity));
    assert_eq!(send(http.get(sim.site_health_url("short", None))).await.status, StatusCode::OK);

    sim.advance_clock(Duration::from_secs(2 * 3600));
    let expired = send(http.get(sim.site_health_url("short", None))).await;
    assert_eq!(expired.status, StatusCode::SERVICE_UNAVAILABLE);
    let reason = expired.body["reason"].as_str().unwrap();
    assert!(reason.starts_with("Entra refused the client secret (AADSTS7000222"), "{reason}");
    assert!(!expired.text.contains(&password.secret_text));
    assert_eq!(send(http.get(sim.site_health_url("unknown", None))).await.status, StatusCode::NOT_FOUND);
}

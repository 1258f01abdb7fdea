//! The `entra-sim` binary: one JSON line on stdout, then it serves.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Kills the sim when the test ends, passed or failed.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_binary_prints_one_json_line_with_everything_needed_to_reach_it() {
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_entra-sim"))
            .args(["--apps", "12", "--seed", "4", "--replication-delay", "5s", "--listen", "127.0.0.1:0", "--control"])
            .env("ENTRA_SIM_CLIENT_SECRET", "from-the-environment")
            .env("ENTRA_SIM_WEBHOOK_KEY", "webhook-key-from-the-environment")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the binary starts"),
    );
    let stdout = child.0.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .unwrap()
    .unwrap();

    {
        let info: serde_json::Value = serde_json::from_str(line.trim()).expect("one JSON line");
        assert!(!line.contains("from-the-environment"), "the secrets are not printed");
        let base_url = info["base_url"].as_str().unwrap();
        assert!(base_url.starts_with("https://127.0.0.1:"));
        assert_eq!(info["authority_host"], base_url);
        assert_eq!(info["graph_base_url"].as_str().unwrap(), format!("{base_url}v1.0"));
        let ca = std::fs::read(info["ca_cert"].as_str().unwrap()).expect("the CA file exists");

        // It serves, with the secret from the environment.
        let http =
            reqwest::Client::builder().tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()]).build().unwrap();
        let token_url = format!("{base_url}{}/oauth2/v2.0/token", info["tenant_id"].as_str().unwrap());
        let response = http
            .post(token_url)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", info["client_id"].as_str().unwrap()),
                ("client_secret", "from-the-environment"),
                ("scope", "https://graph.microsoft.com/.default"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        let token: serde_json::Value = response.json().await.unwrap();
        let page: serde_json::Value = http
            .get(format!("{}/applications?$select=id", info["graph_base_url"].as_str().unwrap()))
            .bearer_auth(token["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(page["value"].as_array().unwrap().len(), 12);

        // With --control, the control API changes the tenant from outside.
        let control = info["control_url"].as_str().expect("a control URL with --control");
        let response = http.post(format!("{control}/remove?count=2")).send().await.unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        let truth: serde_json::Value = http.get(format!("{control}/truth")).send().await.unwrap().json().await.unwrap();
        assert_eq!(truth["applications"], 10);

        // The rollout targets, with every hook verifying against the key from the environment.
        let targets = info["targets_base"].as_str().expect("a targets base");
        assert_eq!(targets, base_url);
        let refreshed: serde_json::Value =
            http.post(format!("{targets}apps/orders/actuator/refresh")).send().await.unwrap().json().await.unwrap();
        assert!(refreshed.is_array());
        let body = r#"{"type":"entra-rotator.secret.rotated"}"#;
        let signature = entra_sim::webhook_signature("webhook-key-from-the-environment", "evt-1", "1700000000", body);
        let response = http
            .post(format!("{targets}hooks/anything"))
            .header("webhook-id", "evt-1")
            .header("webhook-timestamp", "1700000000")
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        let seen: serde_json::Value =
            http.get(format!("{control}/targets")).send().await.unwrap().json().await.unwrap();
        assert_eq!(seen["apps"]["orders"]["spring_refreshes"], 1);
        assert_eq!(seen["hooks"]["anything"]["deliveries"][0]["verified"], true);
    }
}

/// Starts the binary with `args` (and the management secret `secret`), and reads its JSON line.
async fn start_with(args: &[&str], secret: &str) -> (KillOnDrop, String, serde_json::Value) {
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_entra-sim"))
            .args(args)
            .env("ENTRA_SIM_CLIENT_SECRET", secret)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the binary starts"),
    );
    let stdout = child.0.stdout.take().expect("its stdout is piped");
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .expect("the reader ran")
    .expect("a line was read");
    let info: serde_json::Value = serde_json::from_str(line.trim()).expect("one JSON line");
    (child, line, info)
}

#[tokio::test]
async fn with_azure_demo_the_binary_sets_up_the_runbook_scenario_and_prints_where_it_is() {
    let (_child, line, info) =
        start_with(&["--apps", "3", "--listen", "127.0.0.1:0", "--control", "--azure-demo"], "demo-management-secret")
            .await;
    let azure = &info["azure"];
    let base_url = info["base_url"].as_str().unwrap();
    assert_eq!(azure["key_vault_url"].as_str().unwrap(), format!("{base_url}vaults/portal-kv"));
    assert_eq!(azure["resource_manager_url"], base_url);
    assert_eq!(azure["resource_group"], "app-store-rg");
    assert_eq!(azure["site"], "app-store-portal");
    assert_eq!(azure["setting_key"], "AzureAdClientSecret");
    for key in ["subscription_id", "app_client_id", "app_object_id", "key_id", "secret_version"] {
        assert!(azure[key].as_str().is_some_and(|v| !v.is_empty()), "{key}: {azure}");
    }
    assert!(!line.contains("Q~"), "no secret value is printed");

    let ca = std::fs::read(info["ca_cert"].as_str().unwrap()).expect("the CA file exists");
    let http =
        reqwest::Client::builder().tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()]).build().unwrap();
    let health = http.get(azure["health_url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(health.status(), reqwest::StatusCode::OK);

    // The management application can read the secret and restart the site.
    let token = |scope: &'static str| {
        let http = http.clone();
        let url = format!("{base_url}{}/oauth2/v2.0/token", info["tenant_id"].as_str().unwrap());
        let client_id = info["client_id"].as_str().unwrap().to_owned();
        async move {
            let body: serde_json::Value = http
                .post(url)
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id.as_str()),
                    ("client_secret", "demo-management-secret"),
                    ("scope", scope),
                ])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            body["access_token"].as_str().unwrap().to_owned()
        }
    };
    let kv = token("https://vault.azure.net/.default").await;
    let secret = http
        .get(format!("{}/secrets/AzureAdClientSecret?api-version=2025-07-01", azure["key_vault_url"].as_str().unwrap()))
        .bearer_auth(kv)
        .send()
        .await
        .unwrap();
    assert_eq!(secret.status(), reqwest::StatusCode::OK);
    let arm = token("https://management.azure.com/.default").await;
    let restart = http
        .post(format!(
            "{base_url}subscriptions/{}/resourceGroups/app-store-rg/providers/Microsoft.Web/sites/app-store-portal/restart?api-version=2023-12-01",
            azure["subscription_id"].as_str().unwrap()
        ))
        .bearer_auth(arm)
        .send()
        .await
        .unwrap();
    assert_eq!(restart.status(), reqwest::StatusCode::OK);

    let control = info["control_url"].as_str().unwrap();
    let site: serde_json::Value =
        http.get(format!("{control}/azure/site?name=app-store-portal")).send().await.unwrap().json().await.unwrap();
    assert_eq!(site["restarts"], 1);
    assert_eq!(site["state"], "Running");
    assert_eq!(site["process_version"], azure["secret_version"]);
    let versions: serde_json::Value = http
        .get(format!("{control}/azure/secret?vault=portal-kv&name=AzureAdClientSecret"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(versions["versions"][0]["version"], azure["secret_version"]);
    assert!(versions["versions"][0].get("value").is_none());
}

#[tokio::test]
async fn with_kubernetes_demo_the_binary_sets_up_a_cluster_whose_pods_read_the_secret() {
    let (_child, line, info) = start_with(
        &["--apps", "3", "--listen", "127.0.0.1:0", "--control", "--kubernetes-demo"],
        "demo-management-secret",
    )
    .await;
    assert!(!line.contains("Q~"), "no client secret is printed");
    let k8s = &info["kubernetes"];
    assert_eq!(k8s["namespace"], "orders");
    assert_eq!(k8s["secret_name"], "orders-api-entra");
    assert_eq!(k8s["workload"], "orders-api");
    for key in ["app_client_id", "app_object_id", "key_id"] {
        assert!(k8s[key].as_str().is_some_and(|v| !v.is_empty()), "{key}: {k8s}");
    }

    // The kubeconfig names this server, its CA and a token the API server accepts.
    let kubeconfig: serde_json::Value = serde_json::from_str(k8s["kubeconfig"].as_str().unwrap()).unwrap();
    let server = kubeconfig["clusters"][0]["cluster"]["server"].as_str().unwrap().to_owned();
    let token = kubeconfig["users"][0]["user"]["token"].as_str().unwrap().to_owned();
    let ca = std::fs::read(info["ca_cert"].as_str().unwrap()).expect("the CA file exists");
    let http =
        reqwest::Client::builder().tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()]).build().unwrap();
    let secret: serde_json::Value = http
        .get(format!("{server}/api/v1/namespaces/orders/secrets/orders-api-entra"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(secret["data"]["AZURE_CLIENT_SECRET"].is_string(), "{secret}");
    let health = http.get(k8s["health_url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(health.status(), reqwest::StatusCode::OK, "the pods sign in with the current secret");

    let control = info["control_url"].as_str().unwrap().trim_end_matches('/');
    let view: serde_json::Value = http
        .get(format!("{control}/kubernetes/workload?namespace=orders&name=orders-api"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["kind"], "Deployment");
    assert_eq!(view["restarts"], 0);
    assert_eq!(view["pods"].as_array().unwrap().len(), 3);
    assert!(view["pods"].as_array().unwrap().iter().all(|p| p["signs_in"] == true), "{view}");
}

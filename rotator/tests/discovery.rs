//! Discovery as a user runs it: `entra-sim` holds a tenant, a config points at it, `rotator sync`
//! reads it over HTTPS with the real clients, `rotator status` shows what the simulator generated,
//! and a second sync reads only what changed.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// The rotator process reads the wall clock; the expected counts must be taken at the same time.
#![allow(clippy::disallowed_methods)]

use std::path::Path;
use std::process::{Command, Output};

use entra_sim::{Sim, SimOptions};

const SECRET_ENV: &str = "ROTATOR_CONTOSO_CLIENT_SECRET";

fn rotator(config: &Path, secret: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rotator"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env(SECRET_ENV, secret)
        .output()
        .expect("rotator runs")
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

fn write_config(dir: &Path, sim: &Sim) -> std::path::PathBuf {
    let path = dir.join("rotator.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[integrations.contoso]
tenant_id = "{}"
client_id = "{}"
auth = "client_secret"
authority_host = "{}"
graph_base_url = "{}"
resource_manager_url = "{}"
ca_certificate = "{}"

[outbound]
allow = ["127.0.0.1"]
"#,
            sim.tenant_id(),
            sim.management_client_id(),
            sim.authority_host(),
            sim.graph_base_url(),
            sim.resource_manager_url(),
            sim.ca_path().display()
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_then_status_show_what_the_tenant_holds_and_a_second_sync_reads_only_the_changes() {
    let sim = Sim::start(SimOptions { apps: 2000, seed: 11, ..Default::default() }).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sim);
    let secret = sim.management_secret();

    let synced = json(&rotator(&config, &secret, &["--json", "sync"]));
    let first = &synced["syncs"][0];
    assert_eq!(first["kind"], "full");
    assert_eq!(first["applications_seen"], 2000);
    let now = time::OffsetDateTime::now_utc();
    let truth = sim.truth(now);
    assert_eq!(first["service_principals_seen"], truth.service_principals as u64);
    assert_eq!(
        first["pages"].as_u64().unwrap() as usize,
        2000usize.div_ceil(999) + truth.service_principals.div_ceil(999)
    );

    let status = json(&rotator(&config, &secret, &["--json", "status"]));
    let counts = &status["dashboard"]["counts"];
    assert_eq!(counts["total"].as_u64().unwrap() as usize, truth.password_credentials + truth.certificates);
    assert_eq!(counts["expired"].as_u64().unwrap() as usize, truth.expired);
    assert_eq!(counts["expiring_within_7_days"].as_u64().unwrap() as usize, truth.expiring_within_7_days);
    assert_eq!(counts["expiring_within_30_days"].as_u64().unwrap() as usize, truth.expiring_within_30_days);
    assert_eq!(counts["expiring_within_90_days"].as_u64().unwrap() as usize, truth.expiring_within_90_days);

    // 1% of the tenant changes; one application goes away.
    let tenant = sim.tenant();
    let ids = tenant.app_object_ids();
    for id in ids.iter().take(20) {
        tenant.touch_app(*id).unwrap();
    }
    tenant.remove_app(ids[100]).unwrap();
    sim.clear_requests();
    let again = json(&rotator(&config, &secret, &["--json", "sync"]));
    let second = &again["syncs"][0];
    assert_eq!(second["kind"], "delta");
    assert_eq!(second["applications_seen"], 21, "20 changed and 1 removed, nothing else read");
    assert_eq!(second["owners_removed"], 1);
    let listing: Vec<_> = sim.requests().into_iter().filter(|r| r.is_graph()).collect();
    assert!(listing.iter().all(|r| r.path.ends_with("/delta")), "only delta requests: {listing:?}");

    let status = json(&rotator(&config, &secret, &["--json", "status"]));
    let truth = sim.truth(time::OffsetDateTime::now_utc());
    assert_eq!(
        status["dashboard"]["counts"]["total"].as_u64().unwrap() as usize,
        truth.password_credentials + truth.certificates,
        "the removed application's credentials left the inventory"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_fails_with_a_clear_error_and_never_prints_it() {
    let sim = Sim::start(SimOptions { apps: 10, seed: 3, ..Default::default() }).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sim);
    let out = rotator(&config, "Wr0ng~not-the-secret", &["sync"]);
    assert!(!out.status.success());
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("contoso"), "{text}");
    assert!(!text.contains("Wr0ng~not-the-secret"), "{text}");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_syncs_and_scans_on_its_own_timers() {
    let sim = Sim::start(SimOptions { apps: 200, seed: 21, ..Default::default() }).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sim);
    let secret = sim.management_secret();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(env!("CARGO_BIN_EXE_rotator"))
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env(SECRET_ENV, &secret)
        .env("ROTATOR_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let truth = sim.truth(time::OffsetDateTime::now_utc());
    let want = (truth.password_credentials + truth.certificates) as u64;
    let mut total = 0;
    for _ in 0..150 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let out = rotator(&config, &secret, &["--json", "status"]);
        if out.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            total = v["dashboard"]["counts"]["total"].as_u64().unwrap_or(0);
            let scanned = v["queues"]["expiry-scan"]["visible"].as_u64() == Some(0)
                && v["queues"]["expiry-scan"]["in_flight"].as_u64() == Some(0);
            if total == want && scanned {
                break;
            }
        }
    }
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert_eq!(total, want, "{log}");
    assert!(log.contains("full sync done") && log.contains("expiry scan done"), "{log}");
    assert!(out.status.success(), "{log}");
    assert!(!log.contains(&secret), "the integration's secret reached the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_dry_run_warns_of_a_reload_before_its_publish_and_changes_nothing() {
    let sim = Sim::start(SimOptions { apps: 30, seed: 4, ..Default::default() }).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sim);
    let mut text = std::fs::read_to_string(&config).unwrap();
    sim.azure().create_vault("kv-orders");
    sim.azure().grant_vault("kv-orders", &sim.management_client_id(), entra_sim::VaultRole::SecretsOfficer);
    text.push_str(&format!(
        r#"
[policies.default]
[[policies.default.steps]]
type = "spring_actuator_refresh"
order = 10
on_failure = "continue"
config = {{ url = "https://orders.example.com/actuator/refresh" }}
[[policies.default.steps]]
type = "azure_key_vault"
order = 20
on_failure = "abort"
config = {{ vault_url = "{}", secret_name = "ClientSecret" }}
"#,
        sim.key_vault_url("kv-orders")
    ));
    std::fs::write(&config, text).unwrap();
    let secret = sim.management_secret();
    json(&rotator(&config, &secret, &["--json", "sync"]));
    let status = json(&rotator(&config, &secret, &["--json", "status"]));
    let credential = status["dashboard"]["most_urgent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["credential"].as_str().unwrap().to_owned())
        .find(|c| c.contains("/app/"))
        .expect("an application secret");
    let before: Vec<_> = sim.tenant().apps().iter().map(|a| a.passwords).collect();

    let out = rotator(&config, &secret, &["rotate", &credential, "--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("reloads before"), "{text}");
    assert!(text.contains("warning"), "{text}");
    assert!(text.contains("nothing was changed"), "{text}");
    let after: Vec<_> = sim.tenant().apps().iter().map(|a| a.passwords).collect();
    assert_eq!(before, after, "no secret was created");
    let history = json(&rotator(&config, &secret, &["--json", "history", &credential]));
    assert!(history["executions"].as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_dry_run_on_a_policy_whose_vault_denies_access_fails_naming_the_vault_and_the_right() {
    let sim = Sim::start(SimOptions { apps: 5, seed: 8, ..Default::default() }).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sim);
    // The vault exists, but nobody granted the integration's identity anything on it.
    sim.azure().create_vault("kv-payroll");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        r#"
[policies.default]
[[policies.default.steps]]
type = "azure_key_vault"
order = 10
on_failure = "abort"
config = {{ vault_url = "{}", secret_name = "AzureAdClientSecret" }}
"#,
        sim.key_vault_url("kv-payroll")
    ));
    std::fs::write(&config, text).unwrap();
    let secret = sim.management_secret();
    let app = sim.tenant().add_app(entra_sim::NewApp::named("Payroll API"));
    let added = sim.tenant().add_password_to(app.object_id, sim.now() + time::Duration::days(20)).unwrap();
    json(&rotator(&config, &secret, &["--json", "sync"]));
    let credential = format!("contoso/app/{}/{}", app.object_id, added.key_id);

    let out = rotator(&config, &secret, &["rotate", &credential, "--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success(), "a failed preflight is a failed command: {text}");
    let line = text.lines().find(|l| l.contains("vault kv-payroll")).unwrap_or_else(|| panic!("{text}"));
    assert!(line.to_lowercase().contains("failed") && line.contains("403"), "{line}");
    assert!(text.contains("Key Vault Secrets Officer"), "names the right: {text}");
    assert!(text.contains(&sim.management_client_id()), "names the identity: {text}");
    let json_out = rotator(&config, &secret, &["--json", "rotate", &credential, "--dry-run"]);
    let report: serde_json::Value = serde_json::from_slice(&json_out.stdout).unwrap();
    let vault = report["report"]["checks"]
        .as_array()
        .or_else(|| report["checks"].as_array())
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str().unwrap().contains("vault kv-payroll"))
        .cloned()
        .unwrap();
    assert_eq!(vault["outcome"], "failed", "{vault}");
    assert!(sim.azure().secret_versions("kv-payroll", "AzureAdClientSecret").is_empty(), "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_dry_run_on_a_kubernetes_plan_asks_the_cluster_and_changes_nothing() {
    let sim = Sim::start(SimOptions { apps: 5, seed: 8, ..Default::default() }).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sim);
    let app = sim.tenant().add_app(entra_sim::NewApp::named("Orders API"));
    let added = sim.tenant().add_password_to(app.object_id, sim.now() + time::Duration::days(20)).unwrap();
    // The example's cluster: a Secret, a Deployment reading it through envFrom, and one that does not.
    let k8s = sim.kubernetes();
    k8s.add_identity("rotator-token", "system:serviceaccount:rotator:entra-rotator", None);
    k8s.put_secret("orders", "orders-api-entra", &[("AZURE_CLIENT_SECRET", "the-current-secret")]);
    for (name, uses) in
        [("orders-api", entra_sim::SecretUse::EnvFrom), ("orders-worker", entra_sim::SecretUse::NotReferenced)]
    {
        k8s.add_workload(entra_sim::NewWorkload {
            kind: entra_sim::WorkloadKind::Deployment,
            namespace: "orders".into(),
            name: name.into(),
            replicas: 2,
            secret_name: "orders-api-entra".into(),
            key: "AZURE_CLIENT_SECRET".into(),
            uses,
            client_id: app.app_id,
        });
    }
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, sim.kubeconfig("orders-cluster", Some("rotator-token"))).unwrap();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        r#"
[policies.default]
[[policies.default.steps]]
type = "kubernetes_secret"
order = 10
on_failure = "abort"
config = {{ kubeconfig = {:?}, namespace = "orders", secret_name = "orders-api-entra", key = "AZURE_CLIENT_SECRET", restart = [{{ kind = "Deployment", name = "orders-api" }}, {{ kind = "Deployment", name = "orders-worker" }}] }}
"#,
        kubeconfig.display().to_string()
    ));
    std::fs::write(&config, text).unwrap();
    let secret = sim.management_secret();
    json(&rotator(&config, &secret, &["--json", "sync"]));
    let credential = format!("contoso/app/{}/{}", app.object_id, added.key_id);

    let out = rotator(&config, &secret, &["rotate", &credential, "--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Kubernetes Secret orders/orders-api-entra"), "{text}");
    assert!(text.contains("may get secrets, update secrets"), "the identity's rights were reviewed: {text}");
    let worker = text
        .lines()
        .find(|l| l.contains("Kubernetes Deployment orders/orders-worker"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(worker.to_lowercase().contains("warning") && worker.contains("none of its containers"), "{worker}");
    assert!(text.contains("nothing was changed"), "{text}");
    assert!(k8s.access_reviews() > 0);
    assert_eq!(k8s.secret_writes("orders", "orders-api-entra"), 0, "nothing was written");
    assert_eq!(k8s.restarts(entra_sim::WorkloadKind::Deployment, "orders", "orders-api"), 0, "nothing restarted");
    assert_eq!(sim.tenant().app_passwords(app.object_id).unwrap().len(), 1, "no secret was created");
}

/// The verdict of each probe of the first integration in `rotator --json integrations check`.
fn verdicts(out: &Output) -> std::collections::BTreeMap<String, (String, String)> {
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    v["integrations"][0]["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let said = format!("{} {}", p["detail"].as_str().unwrap(), p["fix"].as_str().unwrap_or(""));
            (p["check"].as_str().unwrap().to_owned(), (p["verdict"].as_str().unwrap().to_owned(), said))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrations_check_names_the_missing_permission_until_the_identity_may_rotate() {
    use entra_sim::{GraphRole, NewApp};
    let sim = Sim::start(SimOptions { apps: 6, seed: 5, ..Default::default() }).await.unwrap();
    let tenant = sim.tenant();
    // The rotator's own app registration: a new one, holding no Graph permission yet.
    let identity = tenant.add_app(NewApp::named("entra-rotator-prod").with_service_principal());
    let end = sim.now() + time::Duration::days(180);
    let secret = tenant.add_password_to(identity.object_id, end).unwrap().secret_text;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sim);
    let text =
        std::fs::read_to_string(&config).unwrap().replace(&sim.management_client_id(), &identity.app_id.to_string());
    std::fs::write(&config, format!("{text}\n[policies.default]\ndelivery = \"manual\"\n")).unwrap();
    let check = || rotator(&config, &secret, &["--json", "integrations", "check", "contoso"]);

    // Signed in, but Graph refuses to list: the fix names Application.Read.All.
    let out = check();
    assert!(!out.status.success(), "a failed check exits non-zero");
    let v = verdicts(&out);
    assert_eq!(v["sign-in"].0, "ok", "{v:?}");
    assert_eq!(v["list applications"].0, "failed", "{v:?}");
    assert!(v["list applications"].1.contains("Application.Read.All"), "{v:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&secret), "the secret is never printed");

    // Reading is granted: writing is what is missing now.
    let permissions = sim.permissions();
    permissions.grant(identity.app_id, &[GraphRole::ApplicationReadAll]);
    let v = verdicts(&check());
    assert_eq!((v["list applications"].0.as_str(), v["read credentials"].0.as_str()), ("ok", "ok"), "{v:?}");
    assert_eq!(v["add passwords"].0, "failed", "{v:?}");
    assert!(v["add passwords"].1.contains("Application.ReadWrite.All"), "{v:?}");
    assert!(v["add passwords"].1.contains("Application.Read.All"), "it says what it holds: {v:?}");

    // OwnedBy, owner of one application the default policy rotates: the others are named.
    permissions.grant(identity.app_id, &[GraphRole::ApplicationReadWriteOwnedBy]);
    json(&rotator(&config, &secret, &["--json", "sync"]));
    let with_secrets: Vec<_> =
        tenant.apps().into_iter().filter(|a| a.passwords > 0 && a.object_id != identity.object_id).collect();
    assert!(with_secrets.len() >= 2, "the generated tenant has applications with secrets");
    permissions.add_owner(with_secrets[0].object_id, identity.app_id);
    let v = verdicts(&check());
    assert_eq!(v["add passwords"].0, "warning", "{v:?}");
    let rotated = with_secrets.len() + 1; // and its own
    let counted = format!("but not an owner of {} of the {rotated} application(s)", rotated - 1);
    assert!(v["add passwords"].1.contains(&counted), "{v:?}");
    assert!(v["add passwords"].1.contains("az ad app owner add"), "{v:?}");
    assert!(!v["add passwords"].1.contains(&with_secrets[0].display_name), "not the owned one: {v:?}");

    // Preflight asks the same question per rotation: an application it does not own fails it.
    let not_owned = &with_secrets[1];
    let key = tenant.app_passwords(not_owned.object_id).unwrap()[0].key_id;
    let credential = format!("contoso/app/{}/{key}", not_owned.object_id);
    let out = rotator(&config, &secret, &["--json", "rotate", &credential, "--dry-run"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let checks = report.to_string();
    assert!(checks.contains("write permission"), "{checks}");
    assert!(checks.contains("not an owner of this application"), "{checks}");

    // Application.ReadWrite.All: every check passes.
    permissions.grant(identity.app_id, &[GraphRole::ApplicationReadWriteAll]);
    let out = check();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(verdicts(&out).values().all(|(verdict, _)| verdict == "ok"), "{:?}", verdicts(&out));
    // And for a person, a table naming each check.
    let out = rotator(&config, &secret, &["integrations", "check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("contoso: ok") && text.contains("add passwords"), "{text}");
}

/// `rotator --json integrations check` with only `envs` added to the environment (no client secret).
fn check_with_env(config: &Path, envs: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rotator"));
    command.arg("--config").arg(config).args(["--json", "integrations", "check"]);
    for var in ["IDENTITY_ENDPOINT", "IDENTITY_HEADER", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"] {
        command.env_remove(var);
    }
    command.envs(envs.iter().copied()).output().expect("rotator runs")
}

fn managed_identity_config(dir: &Path, sim: &Sim, client_id: uuid::Uuid, user_assigned: bool) -> std::path::PathBuf {
    let config = write_config(dir, sim);
    let method = if user_assigned {
        format!("auth = \"managed_identity\"\nmanaged_identity_client_id = \"{client_id}\"")
    } else {
        "auth = \"managed_identity\"".to_owned()
    };
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(&sim.management_client_id(), &client_id.to_string())
        .replace("auth = \"client_secret\"", &method);
    std::fs::write(&config, text).unwrap();
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_assigned_managed_identity_signs_in_through_the_app_service_endpoint() {
    let sim = Sim::start(SimOptions { apps: 3, seed: 6, ..Default::default() }).await.unwrap();
    let identities = sim.managed_identities();
    let identity = identities.assign_user_assigned();
    sim.permissions().grant(identity, &[entra_sim::GraphRole::ApplicationReadWriteAll]);
    let dir = tempfile::tempdir().unwrap();
    let config = managed_identity_config(dir.path(), &sim, identity, true);
    let endpoint = identities.app_service_endpoint().to_string();
    let header = identities.app_service_header();

    let out = check_with_env(&config, &[("IDENTITY_ENDPOINT", &endpoint), ("IDENTITY_HEADER", &header)]);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let v = verdicts(&out);
    assert!(v["sign-in"].1.contains("managed identity"), "{v:?}");
    assert!(v.values().all(|(verdict, _)| verdict == "ok"), "{v:?}");
    assert!(identities.requests() >= 1, "the token came from the App Service endpoint");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&header), "the identity header is never printed");

    // Another host's header is refused, and the sign-in fails with it.
    let out = check_with_env(&config, &[("IDENTITY_ENDPOINT", &endpoint), ("IDENTITY_HEADER", "not-this-hosts")]);
    assert!(!out.status.success());
    assert_eq!(verdicts(&out)["sign-in"].0, "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_system_assigned_managed_identity_signs_in_through_imds_at_its_real_address() {
    let sim = Sim::start(SimOptions { apps: 3, seed: 7, ..Default::default() }).await.unwrap();
    let identities = sim.managed_identities();
    let identity = identities.enable_system_assigned();
    let dir = tempfile::tempdir().unwrap();
    let config = managed_identity_config(dir.path(), &sim, identity, false);
    // 169.254.169.254 is reached through an HTTP proxy that answers as IMDS does.
    let proxy = identities.imds_proxy_url().to_string();

    // The identity holds no Graph permission yet: signed in, refused the listing.
    let out = check_with_env(&config, &[("HTTP_PROXY", &proxy)]);
    let v = verdicts(&out);
    assert_eq!(v["sign-in"].0, "ok", "{v:?}");
    assert_eq!(v["list applications"].0, "failed", "{v:?}");
    assert!(identities.requests() >= 1, "the token came from IMDS, through the proxy");

    sim.permissions().grant(identity, &[entra_sim::GraphRole::ApplicationReadWriteAll]);
    let out = check_with_env(&config, &[("HTTP_PROXY", &proxy)]);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(verdicts(&out).values().all(|(verdict, _)| verdict == "ok"), "{:?}", verdicts(&out));

    // A host without a managed identity: IMDS says so and the sign-in fails.
    let stranger = managed_identity_config(dir.path(), &sim, uuid::Uuid::new_v4(), true);
    let out = check_with_env(&stranger, &[("HTTP_PROXY", &proxy)]);
    assert!(!out.status.success());
    assert_eq!(verdicts(&out)["sign-in"].0, "failed");
}

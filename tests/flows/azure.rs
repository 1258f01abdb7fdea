//! The product notes' runbook — new client secret → new Key Vault version → refresh and restart
//! the App Service → `/health` → delete the old secret — as scenarios run on both worlds (see
//! `chain.rs`), against the simulated Key Vault, Resource Manager and web app.
//!
//! The simulated web app resolves its `@Microsoft.KeyVault(SecretUri=…)` app setting only when it
//! (re)starts, and its `/health` answers 200 only when the secret it resolved signs in to the
//! simulated tenant. Each scenario starts with a vault whose secret holds a value that does not
//! sign in (the runbook's "you pasted the wrong value"), so the app is unhealthy until a rollout
//! really brings it the new secret: a rollout that forgot the restart, wrote another vault, or
//! restarted before writing, fails its health check as the real one would.
//!
//! Not a crate: each test file includes it with `#[path = "../../tests/flows/azure.rs"] mod azure;`
//! next to `chain`.

use std::sync::Arc;

use entra_rotator::adapters::graph::TokenSource;
use entra_rotator::adapters::steps::{AwsSigning, AzureSignIn, Rollout};
use entra_rotator::domain::address::AddressPolicy;
use entra_rotator::domain::execution::{Execution, ExecutionStatus, Trigger};
use entra_rotator::domain::ids::{ClientId, IntegrationId, TenantId};
use entra_rotator::domain::secret::SecretValue;
use entra_rotator::domain::steps::{StepDefinition, parse_steps_with};
use entra_rotator::messages::queues;
use entra_rotator::ports::QueueName;
use entra_rotator::ports::key_ring::SealContext;
use entra_rotator::usecases::intervention::cancel;
use entra_rotator::usecases::preflight::CheckOutcome;
use entra_rotator::usecases::rotation::{RotationAccepted, request_rotation};
use entra_sim::{ArmRole, Fault, FaultKind, Match, SiteSpec, VaultRole};

use crate::chain::World;

pub const SUBSCRIPTION: &str = "33333333-3333-3333-3333-333333333333";
pub const RESOURCE_GROUP: &str = "rg-payroll";
pub const SITE: &str = "payroll-api";
pub const VAULT: &str = "kv-payroll";
pub const SECOND_VAULT: &str = "kv-payroll-dr";
pub const SECRET: &str = "AzureAdClientSecret";
/// What the vault holds before the first rotation: a value Entra refuses.
const STALE: &str = "not-the-client-secret";

/// Expands to one `#[tokio::test]` per scenario, as `chain_scenarios!` does.
macro_rules! azure_scenarios {
    ($make:expr) => {
        $crate::azure::azure_scenarios!(@each $make;
            the_runbook_runs_by_itself_key_vault_version_restart_health_then_the_old_secret_goes,
            a_redelivered_key_vault_step_writes_one_version,
            a_crash_after_the_vault_write_before_it_was_recorded_writes_no_second_version,
            a_vault_that_refuses_the_write_stops_the_abort_step_in_the_dead_letter_queue_and_a_redrive_after_the_fix_completes,
            a_vault_that_refuses_the_identity_fails_preflight_naming_vault_and_right,
            a_restart_that_leaves_the_reference_unresolved_fails_in_words,
            a_restart_that_keeps_the_cached_reference_fails_its_health_check,
            stop_start_brings_the_new_secret_where_a_restart_keeps_the_cached_reference,
            a_plan_without_the_restart_fails_its_health_check,
            the_secondary_vault_gets_the_same_version,
            a_secondary_vault_that_refuses_leaves_the_primary_version_and_a_cancel_keeps_the_new_secret,
            throttling_with_and_without_retry_after_is_waited_out,
            the_new_secret_is_in_the_vault_only_as_the_value,
        );
    };
    (@each $make:expr; $( $name:ident ),* $(,)?) => {
        /// The runbook's scenarios (`tests/flows/azure.rs`).
        mod runbook {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let mut world = ($make)(::std::time::Duration::ZERO).await;
                    $crate::azure::$name(&mut world).await;
                }
            )*
        }
    };
}
pub(crate) use azure_scenarios;

/// How the App Service of a scenario behaves and is restarted.
#[derive(Debug, Clone, Copy)]
struct Setup {
    restart_keeps_references: bool,
    /// Grant the site's identity read access to the vault (else its reference is denied).
    site_may_read: bool,
    /// The product's identity on the vault.
    writer: Option<VaultRole>,
    secondary: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            restart_keeps_references: false,
            site_may_read: true,
            writer: Some(VaultRole::SecretsOfficer),
            secondary: false,
        }
    }
}

/// The vault(s) and the site, as the deploy template of the runbook left them.
async fn provision<W: World>(w: &W, setup: Setup) {
    let azure = w.sim().azure();
    let client_id = w.app().store.get_credential(w.credential()).await.unwrap().unwrap().client_id;
    let me = w.sim().management_client_id();
    let site_identity = uuid::Uuid::new_v4().to_string();
    for vault in [VAULT, SECOND_VAULT] {
        azure.create_vault(vault);
        azure.set_secret(vault, SECRET, STALE);
        if let Some(role) = setup.writer {
            azure.grant_vault(vault, &me, role);
        }
    }
    if setup.site_may_read {
        azure.grant_vault(VAULT, &site_identity, VaultRole::SecretsUser);
    }
    azure.grant_arm(
        &me,
        &format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}"),
        ArmRole::Contributor,
    );
    azure.create_site(SiteSpec {
        subscription_id: SUBSCRIPTION.to_owned(),
        resource_group: RESOURCE_GROUP.to_owned(),
        name: SITE.to_owned(),
        slot: None,
        app_client_id: client_id.to_string(),
        setting_key: SECRET.to_owned(),
        secret_uri: format!("{}/secrets/{SECRET}/", w.sim().key_vault_url(VAULT)),
        site_identity,
        restart_keeps_references: setup.restart_keeps_references,
        async_operations: true,
    });
}

/// The runbook as steps: Key Vault, App Service restart (`mode`, refresh or not), `/health`.
fn runbook<W: World>(w: &W, setup: Setup, mode: &str, refresh: bool, with_restart: bool) -> Vec<StepDefinition> {
    let sim = w.sim();
    let secondary = if setup.secondary {
        format!(r#","secondary_vault_url":"{}""#, sim.key_vault_url(SECOND_VAULT))
    } else {
        String::new()
    };
    let restart = format!(
        r#"{{"type":"azure_app_service_restart","order":20,"on_failure":"abort","retries":0,
             "config":{{"subscription_id":"{SUBSCRIPTION}","resource_group":"{RESOURCE_GROUP}","app_name":"{SITE}",
                        "mode":"{mode}","refresh_key_vault_references":{refresh},"app_setting":"{SECRET}","timeout":"1m"}}}},"#
    );
    let json = format!(
        r#"[{{"type":"azure_key_vault","order":10,"on_failure":"abort","retries":1,"retry_delay":"1s",
              "config":{{"vault_url":"{}","secret_name":"{SECRET}","tags":{{"owner":"payroll"}}{secondary}}}}},
            {}
            {{"type":"http_health_check","order":30,"on_failure":"abort","retries":0,
              "config":{{"url":"{}","timeout":"3s","interval":"1s"}}}}]"#,
        sim.key_vault_url(VAULT),
        if with_restart { restart.as_str() } else { "" },
        sim.site_health_url(SITE, None),
    );
    parse_steps_with(&json, &AddressPolicy::allowing_loopback()).unwrap().steps
}

async fn with_runbook<W: World>(w: &mut W, setup: Setup) {
    provision(w, setup).await;
    let steps = runbook(w, setup, "restart", true, true);
    w.set_plan(steps, false).await;
}

/// Runs the chain until a step message is dead-lettered, and gives the error it carries.
async fn dead_letter_error<W: World>(w: &W) -> String {
    let step_q = QueueName::new(queues::STEP);
    let queue = w.app().queue.clone();
    w.run_until(async || !queue.dead_letters(&step_q, 10).await.unwrap().is_empty()).await;
    let dead = queue.dead_letters(&step_q, 10).await.unwrap();
    dead[0].last_error.clone().unwrap_or_default()
}

/// The new secret of a finished execution, unsealed.
async fn new_secret<W: World>(w: &W, e: &Execution) -> String {
    let sealed = w.app().store.get_sealed(&e.secret_record()).await.unwrap().unwrap();
    let context = SealContext::new(e.secret_record(), "new_client_secret");
    w.app().keys.unseal(&sealed.sealed, &context).await.unwrap().expose().to_owned()
}

/// The versions of the vault's secret this execution wrote.
fn written_by(w: &impl World, vault: &str, e: &Execution) -> Vec<entra_sim::SecretVersionView> {
    w.sim()
        .azure()
        .secret_versions(vault, SECRET)
        .into_iter()
        .filter(|v| v.tags.get("entra-rotator-execution").is_some_and(|x| *x == e.id.to_string()))
        .collect()
}

pub async fn the_runbook_runs_by_itself_key_vault_version_restart_health_then_the_old_secret_goes<W: World>(w: &mut W) {
    with_runbook(w, Setup::default()).await;
    let before = w.sim().azure().site(SITE, None).unwrap();
    let e = w.request().await;
    let done = w.run_until_status(&e, ExecutionStatus::Completed).await;
    let secret = new_secret(w, &done).await;

    let versions = written_by(w, VAULT, &done);
    assert_eq!(versions.len(), 1, "one new version");
    let v = &versions[0];
    assert_eq!(v.value, secret, "the vault holds the new secret");
    assert_eq!(v.tags["entra-rotator-key-id"], done.new_key_id.unwrap().to_string());
    assert_eq!(v.tags["entra-rotator-managed"], "true");
    assert_eq!(v.tags["owner"], "payroll", "the operator's tags too");
    assert_eq!(v.content_type.as_deref(), Some("text/plain"));
    let end = done.new_secret_end.unwrap();
    assert_eq!(v.exp.map(|t| t.unix_timestamp()), Some(end.unix_timestamp()), "exp = the credential's end date");

    let site = w.sim().azure().site(SITE, None).unwrap();
    assert!(site.restarts + site.starts > before.restarts + before.starts, "restarted");
    assert!(site.refreshes > before.refreshes, "its references refreshed first");
    assert_eq!(site.reference_status, "Resolved");
    assert_eq!(site.resolved_version.as_deref(), Some(v.version.as_str()), "the app runs on that version");

    // Grace, then the old secret goes, as the runbook's last step.
    w.pass_grace().await;
    w.cleanup().await;
    assert_eq!(w.key_ids(), vec![done.new_key_id.unwrap().as_uuid()], "the old secret was removed");
    let health = reqwest_client(w).get(w.sim().site_health_url(SITE, None)).send().await.unwrap();
    assert_eq!(health.status(), 200, "still healthy on the new secret alone");
}

pub async fn a_redelivered_key_vault_step_writes_one_version<W: World>(w: &mut W) {
    with_runbook(w, Setup::default()).await;
    let e = w.request().await;
    let done = w.run_delivering_every_message_twice(&e).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{done:?}");
    assert_eq!(written_by(w, VAULT, &done).len(), 1, "the second delivery found its version by its tag");
    assert_eq!(w.sim().azure().secret_versions(VAULT, SECRET).len(), 2, "the stale value and one new version");
}

pub async fn a_crash_after_the_vault_write_before_it_was_recorded_writes_no_second_version<W: World>(w: &mut W) {
    with_runbook(w, Setup::default()).await;
    let flaky = w.use_flaky_store().await;
    flaky.fail("put_step_record", 1, |r| r.contains("kind: \"azure_key_vault\"") && r.contains("outcome: Succeeded"));
    let e = w.request().await;
    let done = w.run_until_status(&e, ExecutionStatus::Completed).await;
    assert_eq!(written_by(w, VAULT, &done).len(), 1, "the step ran again and found what it had written");
    let puts = w
        .sim()
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.path.contains(&format!("/vaults/{VAULT}/secrets/")))
        .count();
    assert_eq!(puts, 1, "one write reached the vault");
}

pub async fn a_vault_that_refuses_the_write_stops_the_abort_step_in_the_dead_letter_queue_and_a_redrive_after_the_fix_completes<
    W: World,
>(
    w: &mut W,
) {
    // The identity may list (preflight passes) but not set: a Reader, not a Secrets Officer.
    with_runbook(w, Setup { writer: Some(VaultRole::Reader), ..Setup::default() }).await;
    let e = w.request().await;
    let error = dead_letter_error(w).await;
    let failed = w.execution(&e).await;
    assert_eq!(failed.status, ExecutionStatus::Failed, "{failed:?}");
    assert!(error.contains(VAULT) && error.contains("Key Vault Secrets Officer") && error.contains("403"), "{error}");
    let me = w.sim().management_client_id();
    assert!(error.contains(&me), "names the identity: {error}");
    let pushes = w.sim().requests().iter().filter(|r| r.method == "PUT" && r.path.contains("/secrets/")).count();
    assert_eq!(pushes, 1, "a refusal is not retried");
    assert!(w.key_ids().contains(&w.credential().key_id.as_uuid()), "the old secret stays valid");

    // The right is granted; the operator redrives; the chain goes on from that step.
    w.sim().azure().grant_vault(VAULT, &me, VaultRole::SecretsOfficer);
    assert_eq!(w.app().queue.redrive(&QueueName::new(queues::STEP), None).await.unwrap(), 1);
    let done = w.run_until_status(&e, ExecutionStatus::Completed).await;
    assert_eq!(written_by(w, VAULT, &done).len(), 1);
}

pub async fn a_vault_that_refuses_the_identity_fails_preflight_naming_vault_and_right<W: World>(w: &mut W) {
    with_runbook(w, Setup { writer: None, ..Setup::default() }).await;
    let trigger = Trigger::Manual { by: "alice".into(), reason: None };
    let RotationAccepted::DryRun { report } = request_rotation(w.app(), w.credential(), trigger, true).await.unwrap()
    else {
        panic!("not a dry run")
    };
    let vault = report.checks.iter().find(|c| c.name.contains("Key Vault kv-payroll")).expect("the vault was probed");
    assert_eq!(vault.outcome, CheckOutcome::Failed, "{report:?}");
    assert!(vault.reason.contains("Key Vault Secrets Officer") && vault.reason.contains(VAULT), "{}", vault.reason);
    let site = report.checks.iter().find(|c| c.name.contains("App Service payroll-api")).expect("the site was probed");
    assert_eq!(site.outcome, CheckOutcome::Ok, "{report:?}");
    assert!(!report.ok);
    assert!(w.marked().is_empty(), "a dry run creates nothing");

    // A real request is refused by the same checks before any secret exists.
    let e = w.request().await;
    let failed = w.run_until_status(&e, ExecutionStatus::Failed).await;
    let why = failed.error.unwrap_or_default();
    assert!(why.contains("preflight failed") && why.contains(VAULT), "{why}");
    assert!(w.marked().is_empty(), "no secret was created");
}

pub async fn a_restart_that_leaves_the_reference_unresolved_fails_in_words<W: World>(w: &mut W) {
    with_runbook(w, Setup { site_may_read: false, ..Setup::default() }).await;
    let e = w.request().await;
    let error = dead_letter_error(w).await;
    assert!(error.contains("AccessToKeyVaultDenied") && error.contains("Key Vault Secrets User"), "{error}");
    assert_eq!(w.execution(&e).await.status, ExecutionStatus::Failed);
    assert!(w.key_ids().contains(&w.credential().key_id.as_uuid()), "the old secret stays");
}

pub async fn a_restart_that_keeps_the_cached_reference_fails_its_health_check<W: World>(w: &mut W) {
    let setup = Setup { restart_keeps_references: true, ..Setup::default() };
    provision(w, setup).await;
    // A plain restart without a refresh keeps the cached (stale) value.
    w.set_plan(runbook(w, setup, "restart", false, true), false).await;
    let e = w.request().await;
    let error = dead_letter_error(w).await;
    assert!(error.contains("not healthy"), "the stale app is caught by its health check: {error}");
    assert_eq!(w.execution(&e).await.status, ExecutionStatus::Failed);
}

pub async fn stop_start_brings_the_new_secret_where_a_restart_keeps_the_cached_reference<W: World>(w: &mut W) {
    let setup = Setup { restart_keeps_references: true, ..Setup::default() };
    provision(w, setup).await;
    // Stop, wait for Stopped, start, wait for Running: the start resolves the reference again.
    w.set_plan(runbook(w, setup, "stop_start", false, true), false).await;
    let e = w.request().await;
    let done = w.run_until_status(&e, ExecutionStatus::Completed).await;
    let site = w.sim().azure().site(SITE, None).unwrap();
    assert_eq!(site.state, "Running");
    assert!(site.starts >= 1 && site.restarts == 0, "started again, not restarted: {site:?}");
    let stops = w
        .sim()
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with(&format!("/sites/{SITE}/stop")))
        .count();
    assert_eq!(stops, 1, "stopped first");
    let version = written_by(w, VAULT, &done).pop().unwrap().version;
    assert_eq!(site.resolved_version.as_deref(), Some(version.as_str()));
}

pub async fn a_plan_without_the_restart_fails_its_health_check<W: World>(w: &mut W) {
    let setup = Setup::default();
    provision(w, setup).await;
    w.set_plan(runbook(w, setup, "restart", true, false), false).await;
    let e = w.request().await;
    let error = dead_letter_error(w).await;
    let failed = w.execution(&e).await;
    assert_eq!(failed.status, ExecutionStatus::Failed, "{failed:?}");
    assert_eq!(written_by(w, VAULT, &failed).len(), 1, "the vault has the new version");
    assert!(error.contains("not healthy"), "but the app never re-read it: {error}");
}

pub async fn the_secondary_vault_gets_the_same_version<W: World>(w: &mut W) {
    let setup = Setup { secondary: true, ..Setup::default() };
    provision(w, setup).await;
    w.set_plan(runbook(w, setup, "restart", true, true), false).await;
    let e = w.request().await;
    let done = w.run_until_status(&e, ExecutionStatus::Completed).await;
    let secret = new_secret(w, &done).await;
    for vault in [VAULT, SECOND_VAULT] {
        let versions = written_by(w, vault, &done);
        assert_eq!(versions.len(), 1, "{vault}");
        assert_eq!(versions[0].value, secret, "{vault}");
    }
}

/// The primary vault holds the new version when the secondary refuses: its readers may have
/// taken it, so the failed step says so and a cancel does not remove the new secret from Entra.
pub async fn a_secondary_vault_that_refuses_leaves_the_primary_version_and_a_cancel_keeps_the_new_secret<W: World>(
    w: &mut W,
) {
    let setup = Setup { secondary: true, ..Setup::default() };
    provision(w, setup).await;
    w.set_plan(runbook(w, setup, "restart", true, true), false).await;
    let secondary = Match::path(format!("vaults/{SECOND_VAULT}/secrets/")).method("PUT");
    w.sim().faults().push(Fault::new(secondary, FaultKind::Forbidden).times(10));
    let e = w.request().await;
    let error = dead_letter_error(w).await;
    let failed = w.execution(&e).await;
    assert_eq!(failed.status, ExecutionStatus::Failed, "{failed:?}");
    assert!(error.contains(SECOND_VAULT) && error.contains(&format!("vault {VAULT} holds the new version")), "{error}");
    assert_eq!(written_by(w, VAULT, &failed).len(), 1);
    assert!(written_by(w, SECOND_VAULT, &failed).is_empty());

    let refused = cancel(w.app(), failed.id, "alice").await.unwrap_err().to_string();
    assert!(refused.contains("failed but left it in place"), "{refused}");
    assert!(w.key_ids().contains(&failed.new_key_id.unwrap().as_uuid()), "the new secret stays in Entra");
    assert!(w.key_ids().contains(&w.credential().key_id.as_uuid()), "and so does the old one");
}

pub async fn throttling_with_and_without_retry_after_is_waited_out<W: World>(w: &mut W) {
    with_runbook(w, Setup::default()).await;
    let faults = w.sim().faults();
    let vault_puts = Match::path(format!("/vaults/{VAULT}/secrets/{SECRET}")).method("PUT");
    faults.push(Fault::new(
        vault_puts.clone(),
        FaultKind::TooManyRequests { retry_after: Some(std::time::Duration::from_secs(1)) },
    ));
    faults.push(Fault::new(vault_puts, FaultKind::TooManyRequests { retry_after: None }));
    let restarts = Match::path(format!("/sites/{SITE}/restart")).method("POST");
    faults.push(Fault::new(
        restarts.clone(),
        FaultKind::TooManyRequests { retry_after: Some(std::time::Duration::from_secs(1)) },
    ));
    faults.push(Fault::new(restarts, FaultKind::TooManyRequests { retry_after: None }));
    let e = w.request().await;
    let done = w.run_until_status(&e, ExecutionStatus::Completed).await;
    assert_eq!(written_by(w, VAULT, &done).len(), 1, "one version despite the throttled writes");
    let throttled = w.sim().requests().iter().filter(|r| r.status == 429).count();
    assert_eq!(throttled, 4, "each throttled request was answered 429 and retried");
}

pub async fn the_new_secret_is_in_the_vault_only_as_the_value<W: World>(w: &mut W) {
    // Everything logged, down to the Azure SDK's and the HTTP client's trace lines.
    let logs = crate::chain::LogBuffer::default();
    let writer = logs.clone();
    let subscriber =
        tracing_subscriber::fmt().with_max_level(tracing::Level::TRACE).with_writer(move || writer.clone()).finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    with_runbook(w, Setup::default()).await;
    // A throttled write on the way, so the SDK's retry and its log lines are searched too.
    let put = Match::path(format!("/vaults/{VAULT}/secrets/{SECRET}")).method("PUT");
    w.sim().faults().push(Fault::new(put, FaultKind::TooManyRequests { retry_after: None }));
    let e = w.request().await;
    let done = w.run_until_status(&e, ExecutionStatus::Completed).await;
    let secret = new_secret(w, &done).await;
    for v in w.sim().azure().secret_versions(VAULT, SECRET) {
        assert!(!format!("{:?}{:?}", v.tags, v.content_type).contains(&secret), "not in a tag or the content type");
    }
    let mut haystacks = vec![w.store_text().await];
    haystacks.extend(w.delivered());
    for q in queues::ALL {
        for d in w.app().queue.dead_letters(&QueueName::new(q), 100).await.unwrap() {
            haystacks.push(format!("{d:?}"));
        }
    }
    haystacks.push(serde_json::to_string(&done).unwrap());
    for a in w.app().store.list_audit(&Default::default()).await.unwrap() {
        haystacks.push(format!("{a:?}"));
    }
    let logged = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    // (Which lines reach a thread's subscriber depends on what other tests of the process already
    // registered, so only that something was logged is asserted.)
    assert!(!logged.is_empty(), "the logs were searched");
    haystacks.push(logged);
    for text in haystacks {
        assert!(!text.contains(&secret), "the new secret appeared outside the vault");
    }
}

/// The run-step function's own AWS role, as its credentials reach it (an access key, a secret and a
/// session token), for the EKS tokens the rollout signs.
pub struct AwsRole {
    pub access_key_id: &'static str,
    pub secret_access_key: &'static str,
    pub session_token: &'static str,
    pub arn: &'static str,
}

pub const RUN_STEP_ROLE: AwsRole = AwsRole {
    access_key_id: "ASIASIMULATEDRUNSTEP",
    secret_access_key: "simulated/run-step+secret-access-key",
    session_token: "IQoJb3JpZ2luX2VjE//simulated+session==",
    arn: "arn:aws:sts::123456789012:assumed-role/entra-rotator-run-step/run-step",
};

/// The rollout of a world: every runner over one client trusting the sim, the Azure steps
/// signing in as the world's integration (the sim's management app), Resource Manager at the sim,
/// and EKS tokens signed with [`RUN_STEP_ROLE`] in eu-west-1.
pub fn rollout(sim: &entra_sim::Sim, integration: &IntegrationId) -> Rollout {
    let http = reqwest::Client::builder()
        .tls_certs_merge(reqwest::Certificate::from_pem_bundle(sim.ca_pem().as_bytes()).unwrap());
    let sign_in = AzureSignIn {
        tenant: TenantId::parse(&sim.tenant_id()).unwrap(),
        authority_host: sim.authority_host(),
        source: TokenSource::ClientSecret {
            client_id: ClientId::parse(&sim.management_client_id()).unwrap(),
            secret: SecretValue::new(sim.management_secret()),
        },
        resource_manager_url: sim.resource_manager_url(),
    };
    Rollout::new(http, Default::default(), Arc::new(AddressPolicy::allowing_loopback()))
        .unwrap()
        .with_identity(integration.clone(), sign_in)
        .unwrap()
        .with_aws_credentials(AwsSigning::from_keys(
            RUN_STEP_ROLE.access_key_id,
            RUN_STEP_ROLE.secret_access_key,
            Some(RUN_STEP_ROLE.session_token),
            Some("eu-west-1"),
        ))
}

/// A client that trusts the sim, for looking at the web app as its users would.
fn reqwest_client<W: World>(w: &W) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_merge(reqwest::Certificate::from_pem_bundle(w.sim().ca_pem().as_bytes()).unwrap())
        .build()
        .unwrap()
}

//! The StepRunner contract on every runner this build ships, each against its simulated endpoint
//! in the simulated tenant (real HTTPS, the sim's CA): success, a passing failure, a refusal for
//! good, nothing listening, and no secret or URL in any failure's words.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use async_trait::async_trait;
use entra_rotator::adapters::graph::TokenSource;
use entra_rotator::adapters::steps::{AzureSignIn, Rollout};
use entra_rotator::domain::address::AddressPolicy;
use entra_rotator::domain::ids::{ClientId, IntegrationId, TenantId};
use entra_rotator::domain::secret::SecretValue;
use entra_rotator::domain::steps::{StepDefinition, parse_steps_with};
use entra_rotator::ports::step_runner::StepRunner;
use entra_rotator::testing::contract::step_runner::{Answer, StepRunnerFixture};
use entra_sim::{ArmRole, Fault, FaultKind, HealthScript, Match, Sim, SimOptions, SiteSpec, VaultRole};

/// The sim, a runner trusting its CA, and a port nothing listens on.
struct Targets {
    sim: Sim,
    runner: Arc<dyn StepRunner>,
    closed_port: u16,
}

impl Targets {
    async fn start() -> Self {
        let sim = Sim::start(SimOptions { apps: 1, seed: 5, ..Default::default() }).await.unwrap();
        let http = reqwest::Client::builder()
            .tls_certs_merge(reqwest::Certificate::from_pem_bundle(sim.ca_pem().as_bytes()).unwrap());
        let closed_port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let loopback = Arc::new(AddressPolicy::allowing_loopback());
        // The Azure steps sign in as the contract's integration: the sim's management app.
        let sign_in = |resource_manager_url| AzureSignIn {
            tenant: TenantId::parse(&sim.tenant_id()).unwrap(),
            authority_host: sim.authority_host(),
            source: TokenSource::ClientSecret {
                client_id: ClientId::parse(&sim.management_client_id()).unwrap(),
                secret: SecretValue::new(sim.management_secret()),
            },
            resource_manager_url,
        };
        // And as "unreachable", whose Resource Manager is where nothing listens.
        let nowhere = url::Url::parse(&format!("https://127.0.0.1:{closed_port}/")).unwrap();
        let runner = Rollout::new(http, Default::default(), loopback)
            .unwrap()
            .with_identity(IntegrationId::parse("contoso").unwrap(), sign_in(sim.resource_manager_url()))
            .unwrap()
            .with_identity(IntegrationId::parse("unreachable").unwrap(), sign_in(nowhere))
            .unwrap();
        Self { sim, runner: Arc::new(runner), closed_port }
    }

    /// The target's URL for `path`, or an address where nothing listens.
    fn url(&self, path: &str, answer: Answer) -> String {
        match answer {
            Answer::Unreachable => format!("https://127.0.0.1:{}{path}", self.closed_port),
            _ => self.sim.target_url(path).to_string(),
        }
    }

    fn status(answer: Answer) -> Option<u16> {
        match answer {
            Answer::Unavailable => Some(503),
            Answer::Refused => Some(403),
            Answer::Healthy | Answer::Unreachable => None,
        }
    }
}

fn one_step(json: String) -> StepDefinition {
    // The sim is on loopback: the one exception these tests name.
    parse_steps_with(&json, &AddressPolicy::allowing_loopback()).unwrap().steps.remove(0)
}

/// How one step type meets its simulated endpoint.
struct Binding {
    /// The step, against an endpoint scripted to answer as asked.
    step: fn(&Targets, Answer) -> StepDefinition,
    /// What must not appear in a failure's words.
    private_words: &'static [&'static str],
    refusal_is_final: bool,
}

struct Fixture {
    targets: Targets,
    binding: Binding,
}

impl Fixture {
    async fn start(binding: Binding) -> Self {
        Self { targets: Targets::start().await, binding }
    }
}

#[async_trait]
impl StepRunnerFixture for Fixture {
    fn runner(&self) -> Arc<dyn StepRunner> {
        self.targets.runner.clone()
    }
    async fn step(&self, answer: Answer) -> StepDefinition {
        (self.binding.step)(&self.targets, answer)
    }
    fn private_words(&self) -> Vec<String> {
        self.binding.private_words.iter().map(|w| (*w).to_owned()).collect()
    }
    fn refusal_is_final(&self) -> bool {
        self.binding.refusal_is_final
    }
}

mod webhook {
    use super::*;

    const BINDING: Binding = Binding {
        step: |t, answer| {
            if let Some(status) = Targets::status(answer) {
                t.sim.targets().set_webhook_failures("contract", u32::MAX, status);
            }
            let url = t.url("/hooks/contract?token=hook-token-123", answer);
            one_step(format!(r#"[{{"type":"webhook","order":10,"config":{{"url":"{url}"}}}}]"#))
        },
        private_words: &["hook-token-123", "/hooks/contract"],
        refusal_is_final: true,
    };

    entra_rotator::step_runner_contract_tests!(Fixture::start(BINDING));
}

mod spring_refresh {
    use super::*;

    const BINDING: Binding = Binding {
        step: |t, answer| {
            if let Some(status) = Targets::status(answer) {
                t.sim.targets().set_spring_failures("orders", u32::MAX, status);
            }
            let url = t.url("/apps/orders/actuator/refresh", answer);
            one_step(format!(
                r#"[{{"type":"spring_actuator_refresh","order":10,"config":{{"url":"{url}","timeout":"5s"}}}}]"#
            ))
        },
        private_words: &["/apps/orders"],
        refusal_is_final: true,
    };

    entra_rotator::step_runner_contract_tests!(Fixture::start(BINDING));
}

mod health_check {
    use super::*;

    const BINDING: Binding = Binding {
        step: |t, answer| {
            if let Some(status) = Targets::status(answer) {
                t.sim.targets().set_health("orders", HealthScript::always(status));
            }
            let url = t.url("/apps/orders/health", answer);
            one_step(format!(
                r#"[{{"type":"http_health_check","order":10,"config":{{"url":"{url}","timeout":"1s","interval":"200ms"}}}}]"#
            ))
        },
        private_words: &["/apps/orders"],
        // A health check waits for health: a 403 may still turn into a 200 before its timeout, and
        // the step's retries decide how long to keep waiting.
        refusal_is_final: false,
    };

    entra_rotator::step_runner_contract_tests!(Fixture::start(BINDING));
}

mod kubernetes {
    use super::*;

    const BINDING: Binding = Binding {
        step: |t, answer| {
            let k8s = t.sim.kubernetes();
            k8s.put_secret("orders", "orders-entra", &[("AZURE_CLIENT_SECRET", "old-secret-value-xyz")]);
            let token = match answer {
                Answer::Refused => "contract-token-no-rights",
                _ => "contract-token-123",
            };
            k8s.add_identity("contract-token-123", "contract", None);
            k8s.add_identity("contract-token-no-rights", "contract", Some(&[]));
            if answer == Answer::Unavailable {
                t.sim.faults().push(Fault::new(Match::path("/secrets/"), FaultKind::ServerError(503)).times(1000));
            }
            let mut kubeconfig = t.sim.kubeconfig("contract", Some(token));
            if answer == Answer::Unreachable {
                kubeconfig =
                    kubeconfig.replace(&t.sim.base_url().port().unwrap().to_string(), &t.closed_port.to_string());
            }
            let path = std::env::temp_dir().join(format!("entra-rotator-contract-{}.yaml", uuid::Uuid::new_v4()));
            std::fs::write(&path, kubeconfig).unwrap();
            let path = serde_json::to_string(&path.display().to_string()).unwrap();
            one_step(format!(
                r#"[{{"type":"kubernetes_secret","order":10,"config":{{"namespace":"orders","secret_name":"orders-entra",
                     "key":"AZURE_CLIENT_SECRET","kubeconfig":{path}}}}}]"#
            ))
        },
        private_words: &["contract-token-123", "contract-token-no-rights", "old-secret-value-xyz"],
        refusal_is_final: true,
    };

    entra_rotator::step_runner_contract_tests!(Fixture::start(BINDING));
}

/// Kubernetes API objects as the documentation publishes them (`tests/entra-sim/fixtures/kubernetes/`),
/// served unchanged over HTTPS to the product's `kube` client: a Secret, a 409 `Status`, a
/// Deployment mid-rollout and complete.
mod kubernetes_published_examples {
    use entra_rotator::domain::ids::{AppObjectId, CredentialId, ExecutionId, KeyId};
    use entra_rotator::ports::step_runner::StepContext;

    use super::*;

    fn example(name: &str) -> String {
        let path = format!("{}/../tests/entra-sim/fixtures/kubernetes/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(path).unwrap()
    }

    fn answer(path: &str, method: &str, status: u16, body: String, times: u32) -> Fault {
        let headers = vec![("content-type".to_owned(), "application/json".to_owned())];
        Fault::new(Match::path(path).method(method), FaultKind::Answer { status, headers, body }).times(times)
    }

    #[tokio::test]
    async fn the_kube_client_updates_a_published_secret_through_a_published_conflict_and_waits_out_a_published_rollout()
    {
        let t = Targets::start().await;
        let secret = "/api/v1/namespaces/default/secrets/db-user-pass";
        let deployment = "/apis/apps/v1/namespaces/default/deployments/nginx-deployment";
        let faults = t.sim.faults();
        faults.push(answer(secret, "GET", 200, example("secret.json"), 2));
        faults.push(answer(secret, "PUT", 409, example("status-409.json"), 1));
        faults.push(answer(secret, "PUT", 200, example("secret.json"), 1));
        // Read for its template, then for its status: mid-rollout, then complete.
        faults.push(answer(deployment, "GET", 200, example("deployment-mid-rollout.json"), 2));
        faults.push(answer(deployment, "PATCH", 200, example("deployment-mid-rollout.json"), 1));
        faults.push(answer(deployment, "GET", 200, example("deployment-complete.json"), 1));
        let path = std::env::temp_dir().join(format!("entra-rotator-published-{}.yaml", uuid::Uuid::new_v4()));
        std::fs::write(&path, t.sim.kubeconfig("docs", Some("docs-token"))).unwrap();
        let path_json = serde_json::to_string(&path.display().to_string()).unwrap();
        let step = one_step(format!(
            r#"[{{"type":"kubernetes_secret","order":10,"config":{{"namespace":"default","secret_name":"db-user-pass",
                "key":"password","kubeconfig":{path_json},"restart":[{{"kind":"Deployment","name":"nginx-deployment"}}],
                "rollout_timeout":"10s"}}}}]"#
        ));
        let credential = CredentialId::parse(
            "contoso/app/11111111-1111-1111-1111-111111111111/22222222-2222-2222-2222-222222222222",
        )
        .unwrap();
        let value = SecretValue::new("the-new-secret-value");
        let ctx = StepContext {
            execution: ExecutionId::new(),
            step_index: 1,
            credential: &credential,
            app: AppObjectId::parse("11111111-1111-1111-1111-111111111111").unwrap(),
            client_id: ClientId::parse("33333333-3333-3333-3333-333333333333").unwrap(),
            new_key_id: KeyId::parse("44444444-4444-4444-4444-444444444444").unwrap(),
            new_secret_end: None,
            secret: &value,
            now: time::OffsetDateTime::UNIX_EPOCH,
            attempt: 1,
        };
        let result = t.runner.run(&step, &ctx).await;
        let _ = std::fs::remove_file(&path);
        result.unwrap();
        let requests: Vec<(String, u16)> = t
            .sim
            .requests()
            .into_iter()
            .filter(|r| r.path == secret || r.path == deployment)
            .map(|r| (r.method, r.status))
            .collect();
        let expected: Vec<(String, u16)> = [
            ("GET", 200),
            ("PUT", 409),
            ("GET", 200),
            ("PUT", 200),
            ("GET", 200),
            ("PATCH", 200),
            ("GET", 200),
            ("GET", 200),
        ]
        .into_iter()
        .map(|(m, s)| (m.to_owned(), s))
        .collect();
        assert_eq!(requests, expected, "read, conflict, read again, write, restart, mid-rollout, complete");
    }
}

mod key_vault {
    use super::*;

    const BINDING: Binding = Binding {
        step: |t, answer| {
            let azure = t.sim.azure();
            azure.create_vault("kv-contract");
            if answer != Answer::Refused {
                azure.grant_vault("kv-contract", &t.sim.management_client_id(), VaultRole::SecretsOfficer);
            }
            if answer == Answer::Unavailable {
                t.sim
                    .faults()
                    .push(Fault::new(Match::path("/vaults/kv-contract"), FaultKind::ServerError(503)).times(u32::MAX));
            }
            let url = match answer {
                Answer::Unreachable => format!("https://127.0.0.1:{}/vaults/kv-contract", t.closed_port),
                _ => t.sim.key_vault_url("kv-contract").to_string(),
            };
            one_step(format!(
                r#"[{{"type":"azure_key_vault","order":10,"config":{{"vault_url":"{url}","secret_name":"ContractSecret"}}}}]"#
            ))
        },
        private_words: &["/secrets/ContractSecret"],
        refusal_is_final: true,
    };

    entra_rotator::step_runner_contract_tests!(Fixture::start(BINDING));
}

mod app_service {
    use super::*;

    const SUBSCRIPTION: &str = "33333333-3333-3333-3333-333333333333";

    const BINDING: Binding = Binding {
        step: |t, answer| {
            let azure = t.sim.azure();
            azure.create_vault("kv-site");
            let identity = uuid::Uuid::new_v4().to_string();
            azure.grant_vault("kv-site", &identity, VaultRole::SecretsUser);
            azure.set_secret("kv-site", "ClientSecret", "value");
            let secret_uri = format!("{}/secrets/ClientSecret/", t.sim.key_vault_url("kv-site"));
            let app = "33333333-3333-3333-3333-333333333333".to_owned();
            azure.create_site(SiteSpec::new(SUBSCRIPTION, "rg-contract", "site-contract", app, secret_uri, identity));
            if answer != Answer::Refused {
                let scope = format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-contract");
                azure.grant_arm(&t.sim.management_client_id(), &scope, ArmRole::Contributor);
            }
            if answer == Answer::Unavailable {
                t.sim
                    .faults()
                    .push(Fault::new(Match::path("/sites/site-contract"), FaultKind::ServerError(503)).times(u32::MAX));
            }
            // Resource Manager is the signing-in identity's: unreachable for the "unreachable" one.
            let identity = if answer == Answer::Unreachable { "unreachable" } else { "contoso" };
            one_step(format!(
                r#"[{{"type":"azure_app_service_restart","order":10,"config":{{"subscription_id":"{SUBSCRIPTION}",
                    "resource_group":"rg-contract","app_name":"site-contract","app_setting":"AzureAdClientSecret",
                    "identity":"{identity}","timeout":"8s"}}}}]"#
            ))
        },
        private_words: &["/subscriptions/"],
        refusal_is_final: true,
    };

    entra_rotator::step_runner_contract_tests!(Fixture::start(BINDING));
}

/// Microsoft's published example responses (`tests/entra-sim/fixtures/azure/`, copied unchanged
/// from the REST API specifications) fed through real HTTPS to the product's clients as they are.
mod published_examples {
    use entra_rotator::domain::ids::CredentialId;
    use entra_rotator::ports::step_runner::StepFailure;

    use super::*;

    fn example(name: &str) -> String {
        let path = format!("{}/../tests/entra-sim/fixtures/azure/{name}", env!("CARGO_MANIFEST_DIR"));
        let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        doc["responses"]["200"]["body"].to_string()
    }

    fn answer(path: &str, method: &str, body: String) -> Fault {
        let headers = vec![("content-type".to_owned(), "application/json; charset=utf-8".to_owned())];
        Fault::new(Match::path(path).method(method), FaultKind::Answer { status: 200, headers, body })
    }

    async fn run(t: &Targets, step: &StepDefinition) -> Result<(), StepFailure> {
        super::addresses::run(&*t.runner, step).await
    }

    fn vault_step(t: &Targets) -> StepDefinition {
        let url = t.sim.key_vault_url("myvault");
        one_step(format!(
            r#"[{{"type":"azure_key_vault","order":10,"config":{{"vault_url":"{url}","secret_name":"crpsecret"}}}}]"#
        ))
    }

    #[tokio::test]
    async fn the_key_vault_client_reads_the_published_set_secret_answer() {
        let t = Targets::start().await;
        t.sim.azure().create_vault("myvault");
        t.sim.azure().grant_vault("myvault", &t.sim.management_client_id(), VaultRole::SecretsOfficer);
        // The secret has no version yet (the sim's own answer); the write is answered with the
        // published SetSecret example.
        t.sim.faults().push(answer("/vaults/myvault/secrets/crpsecret", "PUT", example("SetSecret-example.json")));
        run(&t, &vault_step(&t)).await.expect("the published answer is understood");
        let puts = t.sim.requests().into_iter().filter(|r| r.method == "PUT" && r.status == 200).count();
        assert_eq!(puts, 1, "the write was sent once and answered with the example");
    }

    #[tokio::test]
    async fn the_key_vault_client_reads_the_published_versions_answer_and_follows_its_next_link() {
        let t = Targets::start().await;
        t.sim.azure().create_vault("myvault");
        t.sim.azure().grant_vault("myvault", &t.sim.management_client_id(), VaultRole::SecretsOfficer);
        t.sim.faults().push(answer(
            "/vaults/myvault/secrets/crpsecret/versions",
            "GET",
            example("GetSecretVersions-example.json"),
        ));
        let failure = run(&t, &vault_step(&t)).await.expect_err("the example's next page is at its own vault");
        // Its first page was read (no version of this execution there), and its nextLink followed,
        // as published, to https://myvault.vault.azure.net, which this machine cannot reach: a
        // passing failure, and no write before every version was seen.
        assert_eq!(failure, StepFailure::retryable("could not reach Key Vault myvault"));
        let requests = t.sim.requests();
        assert!(requests.iter().any(|r| r.path.ends_with("/crpsecret/versions") && r.status == 200), "{requests:?}");
        assert!(!requests.iter().any(|r| r.method == "PUT"), "nothing written before the listing was complete");
    }

    #[tokio::test]
    async fn the_resource_manager_client_reads_the_published_site_and_reference_answers() {
        let t = Targets::start().await;
        let sub = "34adfa4f-cedf-4dc0-ba29-b6d1a69ab345";
        let site = format!("/subscriptions/{sub}/resourceGroups/testrg123/providers/Microsoft.Web/sites/testc6282");
        t.sim.faults().push(answer(
            &format!("{site}/config/configreferences/appsettings/refresh"),
            "POST",
            "{}".into(),
        ));
        t.sim.faults().push(answer(&format!("{site}/restart"), "POST", String::new()));
        t.sim.faults().push(answer(
            &format!("{site}/config/configreferences/appsettings/setting"),
            "GET",
            example("GetKeyVaultReferencesForAppSetting.json"),
        ));
        let step = one_step(format!(
            r#"[{{"type":"azure_app_service_restart","order":10,"config":{{"subscription_id":"{sub}",
                "resource_group":"testrg123","app_name":"testc6282","app_setting":"setting","timeout":"5s"}}}}]"#
        ));
        let failure = run(&t, &step).await.expect_err("the published reference reports no status");
        // The example names the secret but no status: never taken as resolved, and said in words.
        assert!(failure.message.contains("setting") && failure.message.contains("not reported"), "{failure:?}");
        assert!(!failure.retryable, "{failure:?}");

        // The collection's example, and the published site, are read too.
        let t = Targets::start().await;
        t.sim.faults().push(answer(&site, "GET", example("GetWebApp.json")));
        t.sim.faults().push(answer(
            &format!("{site}/config/configreferences/appsettings"),
            "GET",
            example("GetKeyVaultReferencesForAppSettings.json"),
        ));
        let step = one_step(format!(
            r#"[{{"type":"azure_app_service_restart","order":10,"config":{{"subscription_id":"{sub}",
                "resource_group":"testrg123","app_name":"testc6282"}}}}]"#
        ));
        let credential = CredentialId::parse(
            "contoso/app/11111111-1111-1111-1111-111111111111/22222222-2222-2222-2222-222222222222",
        )
        .unwrap();
        let probes =
            t.runner.probe(&step, &entra_rotator::ports::step_runner::ProbeContext { credential: &credential }).await;
        let site_probe = probes.iter().find(|p| p.target == "site").unwrap();
        assert_eq!(site_probe.outcome, entra_rotator::ports::step_runner::ProbeOutcome::Ok, "{probes:?}");
        let refs = probes.iter().find(|p| p.target == "Key Vault reference").unwrap();
        assert!(refs.reason.contains("secretName") && refs.reason.contains("secretName2"), "{probes:?}");
    }
}

/// Preflight's questions to Resource Manager: the site, the identity's permissions on it (ARM's
/// own list), the app setting's reference. Nothing changes.
mod app_service_probe {
    use entra_rotator::domain::ids::CredentialId;
    use entra_rotator::ports::step_runner::{ProbeContext, ProbeOutcome};

    use super::*;

    async fn probes(role: Option<ArmRole>) -> Vec<entra_rotator::ports::step_runner::Probe> {
        let t = Targets::start().await;
        let azure = t.sim.azure();
        azure.create_vault("kv-probe");
        let identity = uuid::Uuid::new_v4().to_string();
        azure.grant_vault("kv-probe", &identity, VaultRole::SecretsUser);
        azure.set_secret("kv-probe", "ClientSecret", "value");
        let uri = format!("{}/secrets/ClientSecret/", t.sim.key_vault_url("kv-probe"));
        let sub = "33333333-3333-3333-3333-333333333333";
        azure.create_site(SiteSpec::new(sub, "rg-probe", "site-probe", sub.to_owned(), uri, identity));
        if let Some(role) = role {
            azure.grant_arm(
                &t.sim.management_client_id(),
                &format!("/subscriptions/{sub}/resourceGroups/rg-probe"),
                role,
            );
        }
        let step = one_step(format!(
            r#"[{{"type":"azure_app_service_restart","order":10,"config":{{"subscription_id":"{sub}",
                "resource_group":"rg-probe","app_name":"site-probe","app_setting":"AzureAdClientSecret"}}}}]"#
        ));
        let credential = CredentialId::parse(
            "contoso/app/11111111-1111-1111-1111-111111111111/22222222-2222-2222-2222-222222222222",
        )
        .unwrap();
        let before = t.sim.azure().site("site-probe", None).unwrap();
        let probes = t.runner.probe(&step, &ProbeContext { credential: &credential }).await;
        let after = t.sim.azure().site("site-probe", None).unwrap();
        assert_eq!((before.restarts, before.refreshes), (after.restarts, after.refreshes), "a probe changes nothing");
        probes
    }

    fn outcome(probes: &[entra_rotator::ports::step_runner::Probe], target: &str) -> (ProbeOutcome, String) {
        let p = probes.iter().find(|p| p.target == target).unwrap_or_else(|| panic!("no {target} probe: {probes:?}"));
        (p.outcome, p.reason.clone())
    }

    #[tokio::test]
    async fn a_contributor_may_restart_and_the_reference_is_reported() {
        let probes = probes(Some(ArmRole::Contributor)).await;
        assert_eq!(outcome(&probes, "site").0, ProbeOutcome::Ok, "{probes:?}");
        assert_eq!(outcome(&probes, "restart").0, ProbeOutcome::Ok, "{probes:?}");
        let (ok, reason) = outcome(&probes, "Key Vault reference");
        assert_eq!(ok, ProbeOutcome::Ok);
        assert!(reason.contains("AzureAdClientSecret (Resolved)"), "{reason}");
    }

    #[tokio::test]
    async fn a_reader_may_look_but_not_restart_and_is_told_the_role() {
        let probes = probes(Some(ArmRole::Reader)).await;
        assert_eq!(outcome(&probes, "site").0, ProbeOutcome::Ok, "{probes:?}");
        let (failed, reason) = outcome(&probes, "restart");
        assert_eq!(failed, ProbeOutcome::Failed, "{probes:?}");
        assert!(reason.contains("Website Contributor"), "{reason}");
    }

    #[tokio::test]
    async fn an_identity_without_a_role_is_refused_at_the_site_naming_it() {
        let probes = probes(None).await;
        let (failed, reason) = outcome(&probes, "site");
        assert_eq!(failed, ProbeOutcome::Failed, "{probes:?}");
        assert!(
            reason.contains("403") && reason.contains("site-probe") && reason.contains("Website Contributor"),
            "{reason}"
        );
    }
}

/// The outbound address policy at run time: no redirect followed, no forbidden address reached,
/// whatever the definition said when it was read. Every server here is on loopback.
mod addresses {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::http::{StatusCode, header};
    use entra_rotator::domain::ids::{AppObjectId, ClientId, CredentialId, ExecutionId, KeyId};
    use entra_rotator::domain::secret::SecretValue;
    use entra_rotator::ports::step_runner::{StepContext, StepFailure};

    use super::*;

    /// A local server counting what reaches it, and its address.
    async fn receiver() -> (String, Arc<AtomicUsize>) {
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        let app = Router::new().fallback(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async { StatusCode::OK }
        });
        (serve(app).await, hits)
    }

    /// A local server answering 307 to `location`, and its address.
    async fn redirector(location: String) -> String {
        let app = Router::new().fallback(move || {
            let location = location.clone();
            async move { (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, location)]) }
        });
        serve(app).await
    }

    async fn serve(app: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    /// Runs `step` as the contract's execution would, with a made-up secret.
    pub(super) async fn run(runner: &dyn StepRunner, step: &StepDefinition) -> Result<(), StepFailure> {
        let credential = CredentialId::parse(
            "contoso/app/11111111-1111-1111-1111-111111111111/22222222-2222-2222-2222-222222222222",
        )
        .unwrap();
        let secret = SecretValue::new("the-new-secret-value");
        let ctx = StepContext {
            execution: ExecutionId::new(),
            step_index: 1,
            credential: &credential,
            app: AppObjectId::parse("11111111-1111-1111-1111-111111111111").unwrap(),
            client_id: ClientId::parse("33333333-3333-3333-3333-333333333333").unwrap(),
            new_key_id: KeyId::parse("44444444-4444-4444-4444-444444444444").unwrap(),
            new_secret_end: None,
            secret: &secret,
            now: time::OffsetDateTime::UNIX_EPOCH,
            attempt: 1,
        };
        runner.run(step, &ctx).await
    }

    fn steps_at(base: &str) -> Vec<StepDefinition> {
        [
            format!(r#"[{{"type":"webhook","order":10,"config":{{"url":"{base}/hooks/x?token=hook-token-123"}}}}]"#),
            format!(r#"[{{"type":"spring_actuator_refresh","order":10,"config":{{"url":"{base}/actuator/refresh"}}}}]"#),
            format!(
                r#"[{{"type":"http_health_check","order":10,"config":{{"url":"{base}/health","timeout":"2s","interval":"200ms"}}}}]"#
            ),
        ]
        .into_iter()
        .map(one_step)
        .collect()
    }

    fn runner(policy: AddressPolicy) -> Rollout {
        Rollout::new(reqwest::Client::builder(), Default::default(), Arc::new(policy)).unwrap()
    }

    #[tokio::test]
    async fn a_redirect_to_another_address_is_not_followed_by_any_step() {
        let (target, hits) = receiver().await;
        let base = redirector(format!("{target}/elsewhere")).await;
        let runner = runner(AddressPolicy::allowing_loopback());
        for step in steps_at(&base) {
            let failure = run(&runner, &step).await.expect_err("a redirect is a failure");
            assert!(failure.message.contains("redirects are not followed"), "{}: {failure:?}", step.kind());
            assert!(!failure.retryable, "{failure:?}");
            assert!(!failure.message.contains("hook-token-123"), "{failure:?}");
        }
        assert_eq!(hits.load(Ordering::SeqCst), 0, "a redirect was followed");
    }

    #[tokio::test]
    async fn a_step_at_a_forbidden_address_is_refused_when_it_runs_too() {
        let (target, hits) = receiver().await;
        let runner = runner(AddressPolicy::default());
        for step in steps_at(&target) {
            let failure = run(&runner, &step).await.expect_err("loopback is refused");
            assert!(failure.message.contains("outbound address policy"), "{}: {failure:?}", step.kind());
            assert!(!failure.retryable, "{failure:?}");
        }
        let by_name = one_step(format!(
            r#"[{{"type":"webhook","order":10,"config":{{"url":"{}"}}}}]"#,
            target.replace("127.0.0.1", "localhost")
        ));
        let failure = run(&runner, &by_name).await.expect_err("localhost is refused");
        assert!(failure.message.contains("loopback"), "{failure:?}");
        assert_eq!(hits.load(Ordering::SeqCst), 0, "a forbidden address was reached");
    }
}

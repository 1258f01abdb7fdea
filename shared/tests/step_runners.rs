//! The StepRunner contract on every runner this build ships, each against its simulated endpoint
//! in the simulated tenant (real HTTPS, the sim's CA): success, a passing failure, a refusal for
//! good, nothing listening, and no secret or URL in any failure's words.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use async_trait::async_trait;
use entra_rotator::adapters::steps::Rollout;
use entra_rotator::domain::address::AddressPolicy;
use entra_rotator::domain::steps::{StepDefinition, parse_steps_with};
use entra_rotator::ports::step_runner::StepRunner;
use entra_rotator::testing::contract::step_runner::{Answer, StepRunnerFixture};
use entra_sim::{HealthScript, Sim, SimOptions};

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
        Self { sim, runner: Arc::new(Rollout::new(http, Default::default(), loopback).unwrap()), closed_port }
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
                t.sim.faults().push(
                    entra_sim::Fault::new(entra_sim::Match::path("/secrets/"), entra_sim::FaultKind::ServerError(503))
                        .times(1000),
                );
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

    async fn run(runner: &Rollout, step: &StepDefinition) -> Result<(), StepFailure> {
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

//! The StepRunner contract on every runner this build ships, each against its simulated endpoint
//! in the simulated tenant (real HTTPS, the sim's CA): success, a passing failure, a refusal for
//! good, nothing listening, and no secret or URL in any failure's words.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use async_trait::async_trait;
use entra_rotator::adapters::steps::Rollout;
use entra_rotator::domain::steps::{StepDefinition, parse_steps};
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
            .tls_certs_merge(reqwest::Certificate::from_pem_bundle(sim.ca_pem().as_bytes()).unwrap())
            .build()
            .unwrap();
        let closed_port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        Self { sim, runner: Arc::new(Rollout::new(http, Default::default())), closed_port }
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
    parse_steps(&json).unwrap().steps.remove(0)
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

//! The step runners: each step type of DESIGN §5 that runs has one file here, behind the one
//! [`StepRunner`] the use cases see. This build runs `webhook` (signed in the Standard Webhooks
//! manner), `spring_actuator_refresh` and `http_health_check`; the other types are known to the
//! planner and refused by preflight (through [`StepRunner::supports`]) until their runners arrive.
//!
//! Adding a runner: write `<type>.rs` with a `run` function taking the type's config (from
//! `domain::steps::<type>`) and the [`StepContext`]; add the kind to [`RUNS`] and its arm to the
//! dispatch below (the registry); bind it to its simulated endpoint in `tests/step_runners.rs`,
//! where the StepRunner contract runs on it. A runner answers every failure in words without the
//! secret or the URL, retryable unless the other side refused for good.

mod health_check;
mod http;
mod spring_refresh;
mod webhook;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

pub use self::http::Http;
pub use self::webhook::standard_webhook_signature;
use crate::domain::address::AddressPolicy;
use crate::domain::secret::SecretValue;
use crate::domain::steps::{StepConfig, StepDefinition, StepKind};
use crate::ports::step_runner::{StepContext, StepFailure, StepRunner};

/// The step types this build runs.
pub const RUNS: &[StepKind] = &[StepKind::Webhook, StepKind::SpringActuatorRefresh, StepKind::HttpHealthCheck];

/// Runs the step types this build supports, over one HTTP client.
pub struct Rollout {
    http: Http,
}

impl Rollout {
    /// Runners over the client of `builder`, which never follows a redirect and reaches only what
    /// `policy` allows (checked on each step's URL and on every address a name resolves to).
    ///
    /// # Errors
    ///
    /// When reqwest cannot build the client.
    pub fn new(
        builder: reqwest::ClientBuilder,
        env_secrets: BTreeMap<String, SecretValue>,
        policy: Arc<AddressPolicy>,
    ) -> reqwest::Result<Self> {
        Ok(Self { http: Http::new(builder, env_secrets, policy)? })
    }

    /// As [`Rollout::new`], the client built when the first step runs (see [`Http::deferred`]).
    pub fn deferred(
        builder: reqwest::ClientBuilder,
        env_secrets: BTreeMap<String, SecretValue>,
        policy: Arc<AddressPolicy>,
    ) -> Self {
        Self { http: Http::deferred(builder, env_secrets, policy) }
    }
}

#[async_trait]
impl StepRunner for Rollout {
    fn supports(&self, kind: StepKind) -> bool {
        RUNS.contains(&kind)
    }

    async fn run(&self, step: &StepDefinition, ctx: &StepContext<'_>) -> Result<(), StepFailure> {
        match &step.config {
            StepConfig::Webhook(cfg) => webhook::run(&self.http, cfg, ctx).await,
            StepConfig::SpringActuatorRefresh(cfg) => spring_refresh::run(&self.http, cfg).await,
            StepConfig::HttpHealthCheck(cfg) => health_check::run(&self.http, cfg).await,
            _ => Err(StepFailure::permanent(format!(
                "{} steps are not supported by this build yet",
                step.kind().as_str()
            ))),
        }
    }
}

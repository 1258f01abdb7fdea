//! The step runners: each step type of DESIGN §5 that runs has one file here, behind the one
//! [`StepRunner`] the use cases see. This build runs `azure_key_vault` and
//! `azure_app_service_restart` (signing in as an integration's Entra identity, see `azure`),
//! `webhook` (signed in the Standard Webhooks manner), `spring_actuator_refresh`,
//! `http_health_check`, `kubernetes_secret` (with the `kube` client) and `rotator_own_secret` (the
//! stored-secret fallback rotating the rotator's own secret); the other types are known to the planner and refused by preflight
//! (through [`StepRunner::supports`]) until their runners arrive.
//!
//! Adding a runner: write `<type>.rs` with a `run` function taking the type's config (from
//! `domain::steps::<type>`) and the [`StepContext`]; add the kind to [`RUNS`] and its arm to the
//! dispatch below (the registry); bind it to its simulated endpoint in `tests/step_runners.rs`,
//! where the StepRunner contract runs on it. A runner answers every failure in words without the
//! secret or the URL, retryable unless the other side refused for good.

mod app_service;
mod azure;
mod health_check;
mod http;
mod key_vault;
mod kubernetes;
mod rotator_own_secret;
mod spring_refresh;
mod webhook;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

pub use self::app_service::API_VERSION as APP_SERVICE_API_VERSION;
pub use self::azure::AzureSignIn;
pub use self::http::Http;
pub use self::kubernetes::{
    AKS_SERVER_SCOPE, AwsSigning, EKS_CLUSTER_HEADER, EKS_TOKEN_PREFIX, RolloutState, judge_rollout,
};
pub use self::rotator_own_secret::OwnSecret;
pub use self::webhook::standard_webhook_signature;
use crate::domain::address::AddressPolicy;
use crate::domain::ids::IntegrationId;
use crate::domain::secret::SecretValue;
use crate::domain::steps::{StepConfig, StepDefinition, StepKind};
use crate::ports::step_runner::{Probe, ProbeContext, StepContext, StepFailure, StepRunner};

/// The step types this build runs.
pub const RUNS: &[StepKind] = &[
    StepKind::AzureKeyVault,
    StepKind::AzureAppServiceRestart,
    StepKind::Webhook,
    StepKind::SpringActuatorRefresh,
    StepKind::HttpHealthCheck,
    StepKind::KubernetesSecret,
    StepKind::RotatorOwnSecret,
];

/// Runs the step types this build supports, over one HTTP client.
pub struct Rollout {
    http: Arc<Http>,
    azure: Azure,
}

/// What the Azure runners share: the client, the identities, and one Key Vault client per vault
/// and identity (each remembers the scope its vault's challenge named).
struct Azure {
    http: Arc<Http>,
    identities: azure::AzureIdentities,
    vault_clients: Mutex<HashMap<(String, IntegrationId), Arc<azure_security_keyvault_secrets::SecretClient>>>,
    /// The rotator's own AWS credentials, for EKS tokens.
    aws: crate::adapters::aws_identity::AwsCredentialsSource,
    /// Where each integration with a stored secret keeps it, for `rotator_own_secret`.
    own_secrets: HashMap<IntegrationId, OwnSecret>,
}

impl Azure {
    fn new(http: Arc<Http>) -> Self {
        Self {
            http,
            identities: Default::default(),
            vault_clients: Mutex::new(HashMap::new()),
            aws: Default::default(),
            own_secrets: HashMap::new(),
        }
    }

    /// The client for `vault_url` signing in as `identity`, once the address policy allows it.
    fn secret_client(
        &self,
        vault_url: &url::Url,
        identity: &azure::AzureIdentity,
    ) -> Result<Arc<azure_security_keyvault_secrets::SecretClient>, StepFailure> {
        self.http.client_for(vault_url)?;
        let key = (vault_url.to_string(), identity.integration.clone());
        let mut clients = self.vault_clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let client = Arc::new(key_vault::new_client(&self.http, vault_url, identity)?);
        clients.insert(key, client.clone());
        Ok(client)
    }
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
        let http = Arc::new(Http::new(builder, env_secrets, policy)?);
        Ok(Self { azure: Azure::new(http.clone()), http })
    }

    /// As [`Rollout::new`], the client built when the first step runs (see [`Http::deferred`]).
    pub fn deferred(
        builder: reqwest::ClientBuilder,
        env_secrets: BTreeMap<String, SecretValue>,
        policy: Arc<AddressPolicy>,
    ) -> Self {
        let http = Arc::new(Http::deferred(builder, env_secrets, policy));
        Self { azure: Azure::new(http.clone()), http }
    }

    /// Lets the Azure steps sign in as `integration` (their `identity`, or the rotated
    /// credential's own integration), with token requests over this rollout's client.
    ///
    /// # Errors
    ///
    /// When the sign-in cannot be set up (an unreadable certificate, say).
    pub fn with_identity(mut self, integration: IntegrationId, sign_in: AzureSignIn) -> crate::Result<Self> {
        self.azure.identities.insert(&self.http, integration, sign_in)?;
        Ok(self)
    }

    /// Lets `rotator_own_secret` steps write `integration`'s own secret where it is kept.
    #[must_use]
    pub fn with_own_secret(mut self, integration: IntegrationId, own: OwnSecret) -> Self {
        self.azure.own_secrets.insert(integration, own);
        self
    }

    /// Signs EKS tokens with these AWS credentials instead of aws-config's default chain (the
    /// Lambda function's role, the environment, a profile), which is what runs when this is not
    /// called.
    #[must_use]
    pub fn with_aws_credentials(mut self, signing: AwsSigning) -> Self {
        self.azure.aws = crate::adapters::aws_identity::AwsCredentialsSource::given(signing);
        self
    }
}

#[async_trait]
impl StepRunner for Rollout {
    fn supports(&self, kind: StepKind) -> bool {
        RUNS.contains(&kind)
    }

    fn probes(&self, kind: StepKind) -> bool {
        matches!(
            kind,
            StepKind::AzureKeyVault
                | StepKind::AzureAppServiceRestart
                | StepKind::KubernetesSecret
                | StepKind::RotatorOwnSecret
        )
    }

    async fn probe(&self, step: &StepDefinition, ctx: &ProbeContext<'_>) -> Vec<Probe> {
        match &step.config {
            StepConfig::AzureKeyVault(cfg) => key_vault::probe(&self.azure, cfg, ctx).await,
            StepConfig::AzureAppServiceRestart(cfg) => app_service::probe(&self.azure, cfg, ctx).await,
            StepConfig::KubernetesSecret(cfg) => kubernetes::probe(&self.azure, cfg, ctx).await,
            StepConfig::RotatorOwnSecret(cfg) => rotator_own_secret::probe(&self.azure, cfg, ctx).await,
            _ => Vec::new(),
        }
    }

    async fn run(&self, step: &StepDefinition, ctx: &StepContext<'_>) -> Result<(), StepFailure> {
        match &step.config {
            StepConfig::AzureKeyVault(cfg) => key_vault::run(&self.azure, cfg, ctx).await,
            StepConfig::AzureAppServiceRestart(cfg) => app_service::run(&self.azure, cfg, ctx).await,
            StepConfig::KubernetesSecret(cfg) => kubernetes::run(&self.azure, cfg, ctx).await,
            StepConfig::Webhook(cfg) => webhook::run(&self.http, cfg, ctx).await,
            StepConfig::SpringActuatorRefresh(cfg) => spring_refresh::run(&self.http, cfg).await,
            StepConfig::HttpHealthCheck(cfg) => health_check::run(&self.http, cfg).await,
            StepConfig::RotatorOwnSecret(cfg) => rotator_own_secret::run(&self.azure, cfg, ctx).await,
            _ => Err(StepFailure::permanent(format!(
                "{} steps are not supported by this build yet",
                step.kind().as_str()
            ))),
        }
    }
}

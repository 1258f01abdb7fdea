//! What the Azure runners (`azure_key_vault`, `azure_app_service_restart`) share: the Entra
//! identities they sign in as, one `azure_identity` credential per configured integration, and the
//! steps' own HTTPS client as the transport of the Azure SDK pipeline (so the configured CA, the
//! outbound address policy and the no-redirect rule apply to Key Vault and Resource Manager too).
//!
//! A step signs in as the integration its `identity` field names, or as the rotated credential's
//! own integration. The identity is never a secret of the step: it is the integration's configured
//! sign-in (client secret, certificate, workload or managed identity).

use std::collections::HashMap;
use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use azure_core::http::{
    AsyncRawResponse, ClientOptions, ExponentialRetryOptions, HttpClient, Request, RetryOptions, Transport,
};

use super::http::Http;
use crate::adapters::graph::{RetryPolicy, TokenSource, token_credential};
use crate::domain::ids::{ClientId, CredentialId, IntegrationId, TenantId};
use crate::ports::step_runner::StepFailure;

/// How long the Azure pipeline retries one call (429 and 5xx, honouring `Retry-After`) before the
/// step's own retry takes over.
const CALL_BUDGET: std::time::Duration = std::time::Duration::from_secs(60);

/// One integration's Entra identity, as the Azure steps use it.
pub struct AzureIdentity {
    pub(super) integration: IntegrationId,
    pub(super) client_id: Option<ClientId>,
    pub(super) credential: Arc<dyn TokenCredential>,
    /// Azure Resource Manager of the integration's cloud, without a trailing slash.
    pub(super) resource_manager: url::Url,
}

impl AzureIdentity {
    /// In words, for errors: `the identity of integration contoso (client id 1111…)`.
    pub(super) fn describe(&self) -> String {
        match self.client_id {
            Some(id) => format!("the identity of integration {} (client id {id})", self.integration),
            None => format!("the managed identity of integration {}", self.integration),
        }
    }

    /// The OAuth scope of Resource Manager: the public cloud's, or a sovereign cloud's when its
    /// Resource Manager is configured. Any other host (a private gateway, the simulation) is
    /// reached with the public cloud's audience, as Entra issues it.
    pub(super) fn resource_manager_scope(&self) -> String {
        let host = self.resource_manager.host_str().unwrap_or_default();
        let sovereign = ["management.chinacloudapi.cn", "management.usgovcloudapi.net"];
        if sovereign.contains(&host) {
            format!("https://{host}/.default")
        } else {
            "https://management.azure.com/.default".to_owned()
        }
    }
}

/// The identities the Azure steps may sign in as, by integration.
#[derive(Default)]
pub struct AzureIdentities {
    by_integration: HashMap<IntegrationId, AzureIdentity>,
}

/// What an identity needs to be built: the integration's tenant, authority, sign-in and cloud.
pub struct AzureSignIn {
    pub tenant: TenantId,
    pub authority_host: url::Url,
    pub source: TokenSource,
    pub resource_manager_url: url::Url,
}

impl AzureIdentities {
    /// Adds the identity of `integration`, its token requests sent through `http`.
    pub(super) fn insert(
        &mut self,
        http: &Arc<Http>,
        integration: IntegrationId,
        sign_in: AzureSignIn,
    ) -> crate::Result<()> {
        let client_id = sign_in.source.client_id();
        let credential = token_credential(
            sign_in.source,
            sign_in.tenant,
            &sign_in.authority_host,
            Transport::new(Arc::new(StepsTransport(http.clone()))),
            RetryPolicy::default(),
        )?;
        let mut resource_manager = sign_in.resource_manager_url;
        let trimmed = resource_manager.path().trim_end_matches('/').to_owned();
        resource_manager.set_path(&trimmed);
        self.by_integration
            .insert(integration.clone(), AzureIdentity { integration, client_id, credential, resource_manager });
        Ok(())
    }

    /// The identity a step signs in as: the one it names, else the rotated credential's own
    /// integration's. A permanent failure when that integration is not configured here.
    pub(super) fn for_step(
        &self,
        named: Option<&IntegrationId>,
        credential: &CredentialId,
    ) -> Result<&AzureIdentity, StepFailure> {
        let id = named.unwrap_or(&credential.integration);
        self.by_integration.get(id).ok_or_else(|| {
            StepFailure::permanent(format!(
                "no Entra identity to sign in with: integration {id} is not configured in this deployment"
            ))
        })
    }
}

/// The Azure SDK pipeline's options: the steps' client as transport, and retries of 429 and 5xx
/// (honouring `Retry-After`) within [`CALL_BUDGET`].
pub(super) fn client_options(http: &Arc<Http>) -> ClientOptions {
    ClientOptions {
        transport: Some(Transport::new(Arc::new(StepsTransport(http.clone())))),
        retry: RetryOptions::exponential(ExponentialRetryOptions {
            initial_delay: azure_core::time::Duration::milliseconds(500),
            max_retries: 4,
            max_total_elapsed: azure_core::time::Duration::try_from(CALL_BUDGET)
                .unwrap_or(azure_core::time::Duration::MAX),
            max_delay: azure_core::time::Duration::seconds(30),
        }),
        ..Default::default()
    }
}

/// The steps' [`Http`] client as an Azure SDK transport: every request's URL is checked against the
/// outbound address policy first (a literal address is never resolved, so the resolver would not
/// see it), and the client is built on first use, as for the other steps.
pub(super) struct StepsTransport(pub(super) Arc<Http>);

impl std::fmt::Debug for StepsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StepsTransport")
    }
}

#[async_trait::async_trait]
impl HttpClient for StepsTransport {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        let client = self
            .0
            .client_for(request.url())
            .map_err(|f| azure_core::Error::with_message(azure_core::error::ErrorKind::Other, f.message))?;
        client.execute_request(request).await
    }
}

/// The status and service error code of an Azure SDK error, when the service answered.
pub(super) fn answered(e: &azure_core::Error) -> Option<(u16, Option<&str>)> {
    match e.kind() {
        // Without a service code the SDK puts the status number there: not worth saying twice.
        azure_core::error::ErrorKind::HttpResponse { status, error_code, .. } => {
            Some((u16::from(*status), error_code.as_deref().filter(|c| !c.bytes().all(|b| b.is_ascii_digit()))))
        }
        _ => None,
    }
}

/// Whether an Azure SDK error that got no answer is worth retrying: a connection or I/O problem
/// is, a credential that cannot get a token is only when its own answer was transient (the
/// pipeline already retried those).
pub(super) fn unanswered_is_transient(e: &azure_core::Error) -> bool {
    matches!(e.kind(), azure_core::error::ErrorKind::Connection | azure_core::error::ErrorKind::Io)
}

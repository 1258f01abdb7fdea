//! The Microsoft Graph adapter: the [`Directory`] port over HTTPS, against Graph and the Entra token
//! endpoint of one integration (tenant).
//!
//! Decided here, at the boundary, and nowhere else:
//! - which failures are transient (throttling, concurrency refusals, server errors, the network) and
//!   which are permanent (a missing permission, a missing object, a malformed request);
//! - which requests may be sent again: every read, `removePassword`, and any request refused before
//!   Graph acted on it (429, concurrency). `addPassword` is never re-sent after an answer that leaves
//!   its outcome unknown, because a second call would create a second secret;
//! - what may be written down: never an access token, a secret, or `addPassword`'s answer.
//!
//! One `reqwest` client serves Graph and, as its transport, the `azure_identity` credential, so the
//! configured CA certificate is trusted on both paths and only one TLS stack (rustls with aws-lc-rs)
//! is in the process.
//!
//! The adapter's parts: `request` sends one request (token, retries, answer), `failure` reads a
//! refusal, `odata` writes the URLs, `reads` and `passwords` are the port's calls, `auth` gets the
//! tokens, `retry` decides the waits and `wire` holds Graph's JSON shapes.

mod access;
mod auth;
mod failure;
mod odata;
mod op;
mod passwords;
mod reads;
mod request;
mod retry;
mod sts;
mod wire;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use time::OffsetDateTime;

pub use auth::TokenSource;
pub(crate) use auth::token_credential;
pub use odata::odata_string_literal;
pub use retry::{RetryPolicy, parse_retry_after};

use crate::adapters::system_clock::SystemClock;
use crate::domain::address::AddressPolicy;
use crate::domain::ids::{AppObjectId, ClientId, KeyId, ServicePrincipalId, TenantId};
use crate::domain::integration::IntegrationConfig;
use crate::domain::secret::SecretValue;
use crate::ports::Clock;
use crate::ports::directory::{
    Cursor, Directory, DirectoryAccess, DirectoryApplication, DirectoryServicePrincipal, NewPassword, Page, Removal,
};
use crate::{Error, Result};
use failure::error_chain;
use odata::{APPLICATION_FIELDS, SERVICE_PRINCIPAL_FIELDS};

/// The resource whose token Graph accepts. National clouds have their own Graph host; any other
/// host (a proxy, the simulated tenant) stands in for the global one.
const GLOBAL_GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
const NATIONAL_GRAPH_HOSTS: [&str; 4] =
    ["graph.microsoft.com", "graph.microsoft.us", "dod-graph.microsoft.us", "microsoftgraph.chinacloudapi.cn"];

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The Graph adapter for one integration. Cheap to share behind an `Arc`; its `Debug` shows where it
/// points and how it signs in, never a secret.
pub struct GraphClient {
    http: reqwest::Client,
    /// Without a trailing slash, e.g. `https://graph.microsoft.com/v1.0`.
    graph_base: String,
    graph_url: url::Url,
    authority: url::Url,
    tenant: TenantId,
    scope: String,
    token_method: &'static str,
    credential: Arc<dyn TokenCredential>,
    retry: RetryPolicy,
    request_timeout: Duration,
    clock: Arc<dyn Clock>,
    /// The client id it signs in as, when configured.
    identity: Option<ClientId>,
    /// The last known answer about the identity's permissions, and when it was read.
    access_cache: std::sync::Mutex<Option<(std::time::Instant, DirectoryAccess)>>,
    /// Until when (on the adapter's clock, as the queue's delays are) Graph asked this integration's
    /// writes to wait (the last throttled write's `Retry-After`): writes that hand refusals back are not sent before it (see `request.rs`).
    writes_paused_until: std::sync::Mutex<Option<OffsetDateTime>>,
}

impl fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphClient")
            .field("graph", &self.graph_base)
            .field("authority", &self.authority.as_str())
            .field("tenant", &self.tenant)
            .field("auth", &self.token_method)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl GraphClient {
    /// The adapter an integration's configuration describes: its Graph and authority hosts, its CA
    /// certificate (read now), and its sign-in method; every address its hosts resolve to is checked
    /// against `addresses` (the configuration checked the URLs themselves).
    pub fn from_integration(
        config: &IntegrationConfig,
        retry: RetryPolicy,
        addresses: Arc<AddressPolicy>,
    ) -> Result<Self> {
        Self::from_integration_with_aws(config, retry, addresses, None)
    }

    /// As [`GraphClient::from_integration`]; an `auth = "aws_federation"` integration asks STS as
    /// `aws` (the deployment's own AWS identity) when given, else as aws-config's default chain.
    pub fn from_integration_with_aws(
        config: &IntegrationConfig,
        retry: RetryPolicy,
        addresses: Arc<AddressPolicy>,
        aws: Option<&crate::adapters::aws_identity::AwsSigning>,
    ) -> Result<Self> {
        let source = TokenSource::from_credentials(config.client_id, &config.credentials)?.with_aws_identity(aws);
        Self::from_integration_with_source(config, source, retry, addresses)
    }

    /// As [`GraphClient::from_integration`], signing in with `source` (built from the
    /// integration's credentials by the caller, so a stored secret's place can be shared with the
    /// step that writes it).
    pub fn from_integration_with_source(
        config: &IntegrationConfig,
        source: TokenSource,
        retry: RetryPolicy,
        addresses: Arc<AddressPolicy>,
    ) -> Result<Self> {
        let ca = match &config.ca_certificate {
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|e| Error::Config(format!("cannot read ca_certificate {}: {e}", path.display())))?,
            ),
            None => None,
        };
        // A system-assigned managed identity's client id is the integration's `client_id`.
        let identity = source.client_id().unwrap_or(config.client_id);
        let client = Self::with_addresses(
            config.graph_base_url.clone(),
            config.authority_host.clone(),
            config.tenant,
            source,
            ca.as_deref(),
            retry,
            addresses,
        )?;
        Ok(Self { identity: Some(identity), ..client })
    }

    /// The adapter from its parts. `extra_ca_pem` (one or more PEM certificates) is trusted besides
    /// the system's roots, by Graph requests and token requests alike.
    pub fn new(
        graph_base_url: url::Url,
        authority_host: url::Url,
        tenant: TenantId,
        token_source: TokenSource,
        extra_ca_pem: Option<&[u8]>,
        retry: RetryPolicy,
    ) -> Result<Self> {
        Self::with_addresses(
            graph_base_url,
            authority_host,
            tenant,
            token_source,
            extra_ca_pem,
            retry,
            Arc::new(AddressPolicy::default()),
        )
    }

    /// As [`GraphClient::new`], resolved addresses checked against `addresses` rather than the
    /// default rules.
    pub fn with_addresses(
        graph_base_url: url::Url,
        authority_host: url::Url,
        tenant: TenantId,
        token_source: TokenSource,
        extra_ca_pem: Option<&[u8]>,
        retry: RetryPolicy,
        addresses: Arc<AddressPolicy>,
    ) -> Result<Self> {
        install_crypto_provider();
        for (field, url) in [("graph_base_url", &graph_base_url), ("authority_host", &authority_host)] {
            if url.scheme() != "https" || url.host_str().is_none() {
                return Err(Error::Config(format!("{field}: {url} is not an https URL")));
            }
        }
        if retry.max_attempts == 0 {
            return Err(Error::Config("retry policy: max_attempts must be at least 1".into()));
        }
        let http = http_client(extra_ca_pem, addresses)?;
        let token_method = token_source.method();
        let identity = token_source.client_id();
        // STS, for a federated sign-in, is trusted by the same extra CA as the token endpoint.
        let mut token_source = token_source;
        if let TokenSource::AwsFederation { extra_ca_pem: ca @ None, .. } = &mut token_source {
            *ca = extra_ca_pem.map(<[u8]>::to_vec);
        }
        let credential = auth::credential(token_source, tenant, &authority_host, http.clone(), retry)?;
        Ok(Self {
            http,
            graph_base: graph_base_url.as_str().trim_end_matches('/').to_owned(),
            scope: graph_scope(&graph_base_url),
            graph_url: graph_base_url,
            authority: authority_host,
            tenant,
            token_method,
            credential,
            retry,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            clock: Arc::new(SystemClock),
            identity,
            access_cache: std::sync::Mutex::new(None),
            writes_paused_until: std::sync::Mutex::new(None),
        })
    }

    /// How long one request may take before it counts as failed (default 60 s).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The clock `Retry-After` dates are measured against (default: the system's).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }
}

/// Each call's work is in `reads.rs` or `passwords.rs`, beside the notes on how safe it is to repeat.
#[async_trait]
impl Directory for GraphClient {
    async fn applications(&self, cursor: Cursor) -> Result<Page<DirectoryApplication>> {
        self.list("applications", APPLICATION_FIELDS, cursor).await
    }

    async fn service_principals(&self, cursor: Cursor) -> Result<Page<DirectoryServicePrincipal>> {
        self.list::<ServicePrincipalId>("servicePrincipals", SERVICE_PRINCIPAL_FIELDS, cursor).await
    }

    async fn application(&self, id: AppObjectId) -> Result<Option<DirectoryApplication>> {
        self.read_application(id).await
    }

    async fn applications_named(&self, name: &str) -> Result<Vec<DirectoryApplication>> {
        self.find_applications_named(name).await
    }

    /// Sent again only when Graph certainly did not act on it; see `GraphClient::create_password`.
    async fn add_password(&self, app: AppObjectId, display_name: &str, end: OffsetDateTime) -> Result<NewPassword> {
        self.create_password(app, display_name, end).await
    }

    /// Retried like a read; a password already gone is [`Removal::AlreadyGone`].
    async fn remove_password(&self, app: AppObjectId, key_id: KeyId) -> Result<Removal> {
        self.delete_password(app, key_id).await
    }

    async fn secret_signs_in(&self, client_id: ClientId, secret: &SecretValue) -> Result<bool> {
        self.try_sign_in(client_id, secret).await
    }

    fn sign_in_method(&self) -> &'static str {
        self.token_method
    }

    fn identity(&self) -> Option<ClientId> {
        self.identity
    }

    async fn sign_in(&self) -> Result<()> {
        self.get_token_now().await
    }

    async fn first_application(&self) -> Result<Option<DirectoryApplication>> {
        self.list_first_application().await
    }

    /// Remembered for [`access::ACCESS_TTL`] unless `fresh`; see `access.rs`.
    async fn access(&self, fresh: bool) -> Result<DirectoryAccess> {
        self.identity_access(fresh).await
    }
}

/// The OAuth scope of Graph at `graph`: a national cloud's own, else the global one.
pub fn graph_scope(graph: &url::Url) -> String {
    match graph.host_str() {
        Some(host) if NATIONAL_GRAPH_HOSTS.contains(&host) => format!("https://{host}/.default"),
        _ => GLOBAL_GRAPH_SCOPE.to_owned(),
    }
}

fn http_client(extra_ca_pem: Option<&[u8]>, addresses: Arc<AddressPolicy>) -> Result<reqwest::Client> {
    let builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("entra-rotator/", env!("CARGO_PKG_VERSION")));
    // Graph does not redirect; a redirect would only carry the token somewhere unexpected. A name
    // resolving to a forbidden address (the client secret is posted to the authority) is refused.
    let mut builder = crate::adapters::outbound::harden(builder, addresses);
    if let Some(pem) = extra_ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| Error::Config(format!("ca_certificate: not a PEM certificate: {e}")))?;
        if certs.is_empty() {
            return Err(Error::Config("ca_certificate: the file holds no PEM certificate".into()));
        }
        builder = builder.tls_certs_merge(certs);
    }
    builder.build().map_err(|e| Error::Config(format!("cannot build the HTTPS client: {}", error_chain(&e))))
}

/// Makes aws-lc-rs the process's rustls provider. reqwest picks aws-lc-rs itself, but anything that
/// asks rustls for "the" provider would panic if two providers were compiled in; installing one
/// explicitly settles it. Installing twice is refused harmlessly, hence the ignored result.
fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scope_follows_national_clouds_and_defaults_to_global_graph() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert_eq!(graph_scope(&u("https://graph.microsoft.us/v1.0")), "https://graph.microsoft.us/.default");
        assert_eq!(graph_scope(&u("https://127.0.0.1:8443/v1.0")), GLOBAL_GRAPH_SCOPE);
    }
}

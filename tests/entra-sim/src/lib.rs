//! # entra-sim: the simulated tenant
//!
//! A server that imitates, over real HTTPS, what entra-rotator talks to in Microsoft Entra ID: the
//! token endpoint (client credentials, with a secret or a client assertion) and Microsoft Graph v1.0
//! for applications and service principals; and, on the same server, the customer applications a
//! rollout reaches ([`Targets`]). The product's real clients (azure_identity for tokens, reqwest for
//! Graph and the rollout) are pointed at it in tests and in `make demo`; nothing else uses it.
//!
//! What it imitates, and where it is strict on purpose:
//!
//! - **Listings** (`GET /v1.0/applications`, `/v1.0/servicePrincipals`): `$select`, `$top` (1–999,
//!   default 100), `$filter=displayName eq '…'` with OData quoting, paging by `@odata.nextLink` in a
//!   stable order. Unknown query options are refused with 400 rather than ignored.
//! - **Delta** (`…/delta`): a first round enumerating everything, then only what changed (removed
//!   objects as `@removed`), `$deltatoken=latest`, and delta links that expire after seven days of
//!   sim time.
//! - **Passwords**: `addPassword` is not idempotent and returns `secretText` once; a new secret signs
//!   in only after the replication delay; personal-account applications hold at most two passwords;
//!   overlapping writes to one application get `409 Directory_ConcurrencyViolation`.
//! - **Faults** on demand ([`Faults`]): 429 with or without `Retry-After`, 409, the concurrency error
//!   as 400, 5xx, slowness, 403 — each in the shape of the service it hits — and
//!   [`FaultKind::Answer`], any status, headers and body verbatim.
//! - **Graph's pace** on demand ([`GraphLimits`], `throttle.rs`): a latency per Graph request, the
//!   documented write budgets (429 `TooManyRequests` with `Retry-After` over them), overlapping
//!   writes to one application refused, and counters ([`Sim::graph_pace`]) of what the product met.
//! - **Rollout targets** ([`Sim::targets`], URLs from [`Sim::target_url`]): a Spring Actuator
//!   (`/apps/{name}/actuator/refresh`), a health check (`/apps/{name}/health`) that can be scripted to
//!   fail, and a webhook receiver (`/hooks/{name}`) that checks Standard Webhooks signatures and keeps
//!   every body, so tests can assert the new secret never travels in one.
//! - **Azure Key Vault** (`keyvault.rs`, URL from [`Sim::key_vault_url`]): the secrets data plane —
//!   set, get, update, versions and listing with `maxresults` paging — behind Key Vault's bearer
//!   challenge, audience check and RBAC roles per vault ([`VaultRole`]). The official
//!   `azure_security_keyvault_secrets` client works against it when built with
//!   `verify_challenge_resource: Some(false)` (the challenge names `vault.azure.net`, not the sim's
//!   host); its `ResourceExt::resource_id()` does not parse the sim's ids, whose vault is a path.
//! - **Azure Resource Manager** (`arm.rs`, root [`Sim::resource_manager_url`]): App Service sites and
//!   slots — get, restart, stop, start, refresh of Key Vault references and their status — with
//!   `api-version`, audience and role checks ([`ArmRole`]) and long-running operations polled through
//!   `Azure-AsyncOperation` or `Location`.
//! - **Simulated web apps** (`webapp.rs`, [`Sim::site_health_url`]): a site's process holds the client
//!   secret its Key Vault reference resolved to when it started, and its health says whether that
//!   secret still signs in (`azure.rs` has when references are resolved; [`AzureHandle`] sets it all
//!   up).
//!
//! Tokens for Key Vault (`https://vault.azure.net/.default`) and Resource Manager
//! (`https://management.azure.com/.default`) are issued like Graph's, to any client that signs in;
//! each resource accepts only tokens issued for it.
//!
//! The inventory is generated from a seed ([`SimOptions::apps`], [`SimOptions::seed`]); [`Sim::truth`]
//! counts what the tenant holds so tests can compare the product's view with it, and
//! [`Sim::tenant`] changes it behind the product's back.
//!
//! The management application — the one the product signs in as — is a multi-tenant application
//! registered elsewhere and consented here: it can sign in and call Graph, but it is not one of the
//! tenant's listed applications, so the listed count is exactly [`SimOptions::apps`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), entra_sim::Error> {
//! let sim = entra_sim::Sim::start(entra_sim::SimOptions { apps: 20, ..Default::default() }).await?;
//! println!("Graph at {}, trust {}", sim.graph_base_url(), sim.ca_path().display());
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

mod arm;
mod azure;
mod client_certs;
mod clock;
mod control;
mod eks;
mod error;
mod faults;
mod federation;
mod generator;
mod graph;
mod keyvault;
mod kubernetes;
mod managed_identity;
mod odata;
mod permissions;
mod records;
mod server;
mod sign_ins;
mod sigv4;
mod state;
mod targets;
mod tenant;
mod throttle;
mod tls;
mod token;
mod truth;
mod webapp;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use url::Url;

pub use azure::{
    ArmRole, AzureDemo, AzureHandle, DEMO_SUBSCRIPTION_ID, ResolveStatus, SecretVersionView, SiteSpec, SiteView,
    VaultRole,
};
pub use error::{Error, TenantError};
pub use faults::{Fault, FaultKind, Faults, Match};
pub use federation::{ENTRA_TOKEN_EXCHANGE_AUDIENCE, Federation};
pub use kubernetes::{Kubernetes, NewWorkload, ROLLOUT_STEP, SecretUse, WorkloadKind};
pub use managed_identity::ManagedIdentities;
pub use permissions::{GraphRole, Permissions};
pub use records::{Endpoint, RequestRecord};
pub use sign_ins::SecretSignIn;
pub use targets::{HealthScript, ReceivedWebhook, SPRING_REFRESHED_KEYS, Targets, webhook_signature};
pub use tenant::{AddedPassword, AppSummary, NewApp, PasswordSummary, TenantHandle};
pub use throttle::{GraphLimits, GraphPace, WriteBudget};
pub use truth::Truth;

use crate::clock::{SimClock, wall_clock_now};
use crate::server::Shared;
use crate::state::Directory;

/// The management application's secret when none is given.
pub const DEFAULT_MANAGEMENT_SECRET: &str = "sim-management-secret";

/// Lock a mutex, carrying on if a panicking thread poisoned it: the sim's state stays consistent
/// between statements, and a test tool that stops answering after one panic helps nobody.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How to start the simulated tenant.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// How many applications to generate.
    pub apps: usize,
    /// The generator's seed; also fixes the tenant id and the management application's client id.
    pub seed: u64,
    /// How long after its creation a new secret starts to sign in (sim clock). Default 0.
    pub replication_delay: Duration,
    /// The most objects in one page: a plain listing serves `min($top or 100, page_size)`, a delta
    /// round `min($top, page_size)` or `page_size`. Default 999, the largest `$top` Graph accepts.
    pub page_size: usize,
    /// The generator's reference time, and where the sim clock starts. Default: now.
    pub now: Option<OffsetDateTime>,
    /// Where to listen. Default `127.0.0.1:0` (any free port).
    pub listen: SocketAddr,
    /// The management application's secret. Default [`DEFAULT_MANAGEMENT_SECRET`].
    pub management_secret: String,
    /// How long a write (addPassword, removePassword) takes. Another write to the same application
    /// arriving meanwhile is refused with 409. Default 20 ms.
    pub write_latency: Duration,
    /// Serve the unauthenticated control API under `/_sim/` (see [`Sim::control_url`]), for a sim
    /// run as a separate process. Default off.
    pub control_api: bool,
    /// Graph's pace: a latency on every request and Graph's write budgets (429 with
    /// `Retry-After` over them), counted in [`Sim::graph_pace`]. Default off.
    pub graph_limits: Option<GraphLimits>,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            apps: 50,
            seed: 1,
            replication_delay: Duration::ZERO,
            page_size: odata::MAX_TOP,
            now: None,
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            management_secret: DEFAULT_MANAGEMENT_SECRET.to_owned(),
            write_latency: Duration::from_millis(20),
            control_api: false,
            graph_limits: None,
        }
    }
}

/// A running simulated tenant. Dropping it stops the server; [`Sim::shutdown`] stops it and waits.
pub struct Sim {
    shared: Arc<Shared>,
    base_url: Url,
    ca_pem: String,
    ca_path: PathBuf,
    management_secret: String,
    control_api: bool,
    /// Holds the CA file for as long as the sim lives.
    _ca_dir: tempfile::TempDir,
    stop: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("base_url", &self.base_url.as_str())
            .field("tenant_id", &self.shared.tenant_id)
            .finish()
    }
}

impl Sim {
    /// Generate the tenant and its certificates, bind, and serve HTTPS in the background.
    pub async fn start(options: SimOptions) -> Result<Sim, Error> {
        // The product's clients use rustls with aws-lc-rs; make it the process default so nothing has
        // to guess (an error only means a default is already installed).
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        if !(1..=odata::MAX_TOP).contains(&options.page_size) {
            return Err(Error::InvalidOption(format!(
                "page_size must be 1 to {}, not {}",
                odata::MAX_TOP,
                options.page_size
            )));
        }
        if options.management_secret.is_empty() {
            return Err(Error::InvalidOption("the management secret must not be empty".to_owned()));
        }

        let listener = TcpListener::bind(options.listen).await?;
        let bound = listener.local_addr()?;
        // A sim listening on every interface is still reached (and named in links) through loopback.
        let advertised = if bound.ip().is_unspecified() {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), bound.port())
        } else {
            bound
        };
        let base_url = Url::parse(&format!("https://{advertised}/"))
            .map_err(|e| Error::InvalidOption(format!("listen address {advertised}: {e}")))?;
        let graph_base =
            base_url.join("v1.0").map_err(|e| Error::InvalidOption(format!("listen address {advertised}: {e}")))?;

        let identity = tls::generate(Some(advertised.ip()))?;
        let ca_dir = tempfile::Builder::new().prefix("entra-sim-").tempdir()?;
        let ca_path = ca_dir.path().join("ca.pem");
        std::fs::write(&ca_path, &identity.ca_pem)?;

        let now = options.now.unwrap_or_else(wall_clock_now);
        let (tenant_id, management_client_id) = generator::identities(options.seed);
        let mut directory = Directory::default();
        generator::populate(&mut directory, options.apps, options.seed, now);

        let shared = Arc::new(Shared {
            directory: Mutex::new(directory),
            clock: SimClock::starting_at(now),
            faults: Faults::default(),
            records: Mutex::new(Vec::new()),
            sign_ins: Mutex::new(Vec::new()),
            tokens: Mutex::new(HashMap::new()),
            writes_in_flight: Mutex::new(HashSet::new()),
            tenant_id,
            management_client_id,
            management_secret_sha256: Sha256::digest(options.management_secret.as_bytes()).into(),
            replication_delay: options.replication_delay,
            page_size: options.page_size,
            write_latency: options.write_latency,
            graph_base,
            targets: Mutex::default(),
            kubernetes: Mutex::default(),
            federation: Mutex::default(),
            client_certificates: Mutex::default(),
            permissions: Mutex::new(permissions::PermissionState::new(management_client_id)),
            managed_identities: Mutex::default(),
            base_url: base_url.clone(),
            azure: Mutex::default(),
            pace: throttle::Pace::new(options.graph_limits),
        });

        let (stop, stopped) = watch::channel(false);
        managed_identity::start(shared.clone(), stopped.clone()).await?;
        let router = server::router(shared.clone(), options.control_api);
        let acceptor = TlsAcceptor::from(identity.server_config);
        let server = tokio::spawn(server::serve(listener, acceptor, router, stopped));
        tracing::info!(%base_url, apps = options.apps, seed = options.seed, "simulated tenant listening");
        Ok(Sim {
            shared,
            base_url,
            ca_pem: identity.ca_pem,
            ca_path,
            management_secret: options.management_secret,
            control_api: options.control_api,
            _ca_dir: ca_dir,
            stop,
            server: Some(server),
        })
    }

    /// `https://127.0.0.1:PORT/`.
    pub fn base_url(&self) -> Url {
        self.base_url.clone()
    }

    /// The authority host for the token endpoint (`{authority}/{tenant}/oauth2/v2.0/token`): the base
    /// URL.
    pub fn authority_host(&self) -> Url {
        self.base_url.clone()
    }

    /// `https://127.0.0.1:PORT/v1.0`.
    pub fn graph_base_url(&self) -> Url {
        self.shared.graph_base.clone()
    }

    /// The PEM of the CA that signed the server certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The CA in a PEM file, which exists as long as the sim does.
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    /// The tenant id (fixed by the seed).
    pub fn tenant_id(&self) -> String {
        self.shared.tenant_id.to_string()
    }

    /// The client id of the application the product signs in as (fixed by the seed).
    pub fn management_client_id(&self) -> String {
        self.shared.management_client_id.to_string()
    }

    /// The management application's secret, as given in [`SimOptions::management_secret`].
    pub fn management_secret(&self) -> String {
        self.management_secret.clone()
    }

    /// `https://127.0.0.1:PORT/_sim` when the control API is on.
    pub fn control_url(&self) -> Option<Url> {
        self.control_api.then(|| self.base_url.join("_sim").ok()).flatten()
    }

    /// The URL of a rollout target on this sim: `path` (e.g. `/apps/orders/actuator/refresh`,
    /// `/hooks/rotations`) on [`Sim::base_url`]. A leading `/` is optional.
    pub fn target_url(&self, path: &str) -> Url {
        // Always a path-absolute reference, so a `:` or a leading `//` in `path` cannot turn it into
        // another scheme or host; resolving one against an https base does not fail.
        let absolute = format!("/{}", path.trim_start_matches('/'));
        self.base_url.join(&absolute).unwrap_or_else(|_| self.base_url.clone())
    }

    /// The rollout targets: what they received, and how they answer.
    pub fn targets(&self) -> Targets {
        Targets { shared: self.shared.clone() }
    }

    /// A new self-signed client certificate and RSA key for the application `client_id` (the
    /// management application's too), whose public half the token endpoint now holds: the PEM of
    /// the certificate and its private key. Assertions for that client are then checked in full
    /// (`x5t`, signature, audience), as Entra checks them.
    ///
    /// # Errors
    ///
    /// When the key or the certificate cannot be made.
    pub fn issue_client_certificate(&self, client_id: &str, common_name: &str) -> Result<String, Error> {
        let id =
            uuid::Uuid::parse_str(client_id).map_err(|_| Error::InvalidOption(format!("{client_id} is not a GUID")))?;
        crate::client_certs::issue(&self.shared, id, common_name)
    }

    /// The Graph application permissions of identities, and the owners of applications.
    pub fn permissions(&self) -> Permissions {
        Permissions { shared: self.shared.clone() }
    }

    /// The host's Azure managed identities: IMDS and the App Service endpoint, over plain HTTP.
    pub fn managed_identities(&self) -> ManagedIdentities {
        ManagedIdentities { shared: self.shared.clone() }
    }

    /// AWS STS's `GetWebIdentityToken` and Entra's federated identity credentials.
    pub fn federation(&self) -> Federation {
        Federation { shared: self.shared.clone() }
    }

    /// The simulated Kubernetes cluster (its API server is [`Sim::base_url`]).
    pub fn kubernetes(&self) -> Kubernetes {
        Kubernetes { shared: self.shared.clone() }
    }

    /// A kubeconfig (JSON, which is YAML) for the simulated cluster: context `context`, this
    /// sim's CA, and the bearer token `token` (`None`: a user without credentials, as an AKS
    /// kubeconfig whose sign-in `kubelogin` or the rotator supplies).
    pub fn kubeconfig(&self, context: &str, token: Option<&str>) -> String {
        use base64::Engine;
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        let server = self.base_url.as_str().trim_end_matches('/');
        let user = match token {
            Some(t) => serde_json::json!({"token": t}),
            None => serde_json::json!({}),
        };
        serde_json::json!({
            "apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": "sim", "cluster": {"server": server, "certificate-authority-data": ca}}],
            "users": [{"name": "rotator", "user": user}],
            "contexts": [{"name": context, "context": {"cluster": "sim", "user": "rotator", "namespace": "default"}}],
        })
        .to_string()
    }

    /// The simulated Azure resources: vaults, role assignments, App Service sites.
    pub fn azure(&self) -> AzureHandle {
        AzureHandle { shared: self.shared.clone() }
    }

    /// A vault's URL, `{base}vaults/{name}` (no trailing slash): the endpoint to give a Key Vault
    /// client, which appends `/secrets/…`.
    pub fn key_vault_url(&self, name: &str) -> Url {
        self.target_url(&format!("vaults/{name}"))
    }

    /// Where Resource Manager paths (`/subscriptions/…`) start: the base URL.
    pub fn resource_manager_url(&self) -> Url {
        self.base_url.clone()
    }

    /// A simulated web app's health: `{base}sites/{name}/health`, or
    /// `{base}sites/{name}/slots/{slot}/health` for a slot.
    pub fn site_health_url(&self, name: &str, slot: Option<&str>) -> Url {
        match slot {
            Some(slot) => self.target_url(&format!("sites/{name}/slots/{slot}/health")),
            None => self.target_url(&format!("sites/{name}/health")),
        }
    }

    /// Switch Graph's pace on (or off with `None`); its counters start afresh.
    pub fn set_graph_limits(&self, limits: Option<GraphLimits>) {
        self.shared.pace.set(limits);
    }

    /// What Graph's limits met since they were set: 429s, refused overlapping writes, the most
    /// writers in flight on one application.
    pub fn graph_pace(&self) -> GraphPace {
        self.shared.pace.snapshot()
    }

    /// Start [`Sim::graph_pace`]'s counters afresh, keeping the limits and their windows.
    pub fn reset_graph_pace(&self) {
        self.shared.pace.reset_counters();
    }

    /// The fault queue.
    pub fn faults(&self) -> Faults {
        self.shared.faults.clone()
    }

    /// Every request served so far, in the order they completed.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared.records).clone()
    }

    /// How many requests were served (and recorded) so far: [`Sim::requests`]'s length, without
    /// the copy.
    pub fn request_count(&self) -> usize {
        lock(&self.shared.records).len()
    }

    /// Every token granted to a client secret so far, in order, with the key id it matched.
    pub fn secret_sign_ins(&self) -> Vec<SecretSignIn> {
        lock(&self.shared.sign_ins).clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.shared.records).clear();
    }

    /// What the tenant holds, counted at `now`.
    pub fn truth(&self, now: OffsetDateTime) -> Truth {
        truth::compute(&lock(&self.shared.directory), now)
    }

    /// A handle to change the tenant and look at it.
    pub fn tenant(&self) -> TenantHandle {
        TenantHandle { shared: self.shared.clone() }
    }

    /// The sim clock's current time.
    pub fn now(&self) -> OffsetDateTime {
        self.shared.clock.now()
    }

    /// Move the sim clock forward (replication delays, delta link expiry). Access tokens are not
    /// affected: they expire on real time, as the product's token cache counts them.
    pub fn advance_clock(&self, by: Duration) {
        self.shared.clock.advance(by);
    }

    /// Stop serving and wait until the server has stopped.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

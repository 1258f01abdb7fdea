//! The Azure side of the simulated world: Key Vault vaults and their secrets, role assignments on
//! vaults and on Resource Manager scopes, and App Service sites whose app setting is a Key Vault
//! reference — the state behind `keyvault.rs`, `arm.rs` and `webapp.rs`, and [`AzureHandle`], the
//! handle tests (and the binary) use to set it up and look at it without HTTP.
//!
//! **Key Vault references** are modelled in three layers, as App Service has them:
//!
//! 1. the **vault**, which holds versions of a secret;
//! 2. the **platform's cache** of each site's resolved reference (value, version, [`ResolveStatus`]),
//!    filled by *resolving* the reference against the vault as the site's managed identity
//!    ([`SiteSpec::site_identity`]);
//! 3. the **process**, which got the cached value as an environment variable when it started and
//!    keeps it until it is started again.
//!
//! What resolves the reference (fills the cache): creating the site, `start` (of a stopped site),
//! `restart` when [`SiteSpec::restart_keeps_references`] is false, and
//! `config/configreferences/appsettings/refresh`. What (re)starts the process with the cache as it
//! is: creation, `start`, `restart`. Nothing else, ever: a new version in the vault is invisible to a
//! running process, and `refresh` alone changes the cache but not the process. A failed resolution
//! leaves the process with the reference text itself (as App Service does), which is no secret.
//!
//! Names: vault names are matched case-insensitively, as are secret names (Key Vault's are); site
//! ids are matched case-insensitively, as ARM matches them.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::lock;
use crate::server::Shared;

/// The location every simulated vault and site reports.
pub(crate) const LOCATION: &str = "westeurope";

/// A data-plane role on one vault (Azure RBAC's built-in Key Vault roles).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VaultRole {
    /// "Key Vault Secrets Officer": get, list, set, delete secrets.
    SecretsOfficer,
    /// "Key Vault Secrets User": get secret values and list.
    SecretsUser,
    /// "Key Vault Reader": list and read metadata, never a value.
    Reader,
}

/// What a Key Vault request does, for the rights check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VaultAction {
    /// Read a value (`GET /secrets/{name}[/{version}]`).
    Get,
    /// List names, versions and attributes, no values.
    List,
    /// Write a new version.
    Set,
}

impl VaultAction {
    /// The RBAC data action Key Vault names in a 403.
    pub(crate) fn data_action(self) -> &'static str {
        match self {
            Self::Get => "Microsoft.KeyVault/vaults/secrets/getSecret/action",
            Self::List => "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
            Self::Set => "Microsoft.KeyVault/vaults/secrets/setSecret/action",
        }
    }
}

impl VaultRole {
    pub(crate) fn allows(self, action: VaultAction) -> bool {
        match self {
            Self::SecretsOfficer => true,
            Self::SecretsUser => matches!(action, VaultAction::Get | VaultAction::List),
            Self::Reader => action == VaultAction::List,
        }
    }
}

/// A Resource Manager role on a scope (a subscription, resource group or site id prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArmRole {
    /// "Contributor": read, restart, stop, start, refresh references.
    Contributor,
    /// "Reader": `GET` only.
    Reader,
}

/// The state Key Vault resolution reports for a reference (App Service's `ResolveStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolveStatus {
    Initialized,
    Resolved,
    InvalidSyntax,
    VaultNotFound,
    SecretNotFound,
    SecretVersionNotFound,
    AccessToKeyVaultDenied,
}

impl ResolveStatus {
    /// The name App Service uses on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initialized => "Initialized",
            Self::Resolved => "Resolved",
            Self::InvalidSyntax => "InvalidSyntax",
            Self::VaultNotFound => "VaultNotFound",
            Self::SecretNotFound => "SecretNotFound",
            Self::SecretVersionNotFound => "SecretVersionNotFound",
            Self::AccessToKeyVaultDenied => "AccessToKeyVaultDenied",
        }
    }

    /// The `details` text App Service gives with the status.
    pub(crate) fn details(self) -> &'static str {
        match self {
            Self::Initialized => "Reference is initialized and will be resolved.",
            Self::Resolved => "Reference has been successfully resolved.",
            Self::InvalidSyntax => "Reference is not of valid syntax.",
            Self::VaultNotFound => "Key Vault reference was not able to be resolved because vault could not be found.",
            Self::SecretNotFound => {
                "Key Vault reference was not able to be resolved because secret was not found in vault."
            }
            Self::SecretVersionNotFound => {
                "Key Vault reference was not able to be resolved because secret version was not found in vault."
            }
            Self::AccessToKeyVaultDenied => {
                "Key Vault reference was not able to be resolved because site was denied access to Key Vault reference's vault."
            }
        }
    }
}

/// One stored version of a secret.
#[derive(Clone)]
pub(crate) struct StoredVersion {
    /// 32 lowercase hex digits.
    pub(crate) version: String,
    pub(crate) value: String,
    pub(crate) content_type: Option<String>,
    pub(crate) tags: BTreeMap<String, String>,
    pub(crate) enabled: bool,
    /// Unix seconds, as Key Vault carries them.
    pub(crate) nbf: Option<i64>,
    pub(crate) exp: Option<i64>,
    pub(crate) created: OffsetDateTime,
    pub(crate) updated: OffsetDateTime,
}

impl fmt::Debug for StoredVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredVersion").field("version", &self.version).field("value", &"<redacted>").finish()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct StoredSecret {
    /// The name as first written (Key Vault keeps the original case).
    pub(crate) name: String,
    /// Oldest first.
    pub(crate) versions: Vec<StoredVersion>,
}

impl StoredSecret {
    /// What `GET /secrets/{name}` answers: the newest version that is enabled.
    pub(crate) fn current(&self) -> Option<&StoredVersion> {
        self.versions.iter().rev().find(|v| v.enabled)
    }

    pub(crate) fn version(&self, version: &str) -> Option<&StoredVersion> {
        self.versions.iter().find(|v| v.version.eq_ignore_ascii_case(version))
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Vault {
    /// By lowercase name.
    pub(crate) secrets: BTreeMap<String, StoredSecret>,
    /// Requests that reached this vault's handler (past the front door and the fault queue).
    pub(crate) requests: usize,
}

/// A site (or slot) to create with [`AzureHandle::create_site`]: build it with [`SiteSpec::new`], or
/// name the fields and take the rest from `..Default::default()` (empty strings, no slot, setting
/// `AzureAdClientSecret`, restarts re-resolve, synchronous operations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteSpec {
    pub subscription_id: String,
    pub resource_group: String,
    pub name: String,
    /// A deployment slot of site `name`; the site itself when `None`.
    pub slot: Option<String>,
    /// The Entra application whose client secret the web app uses to sign in.
    pub app_client_id: String,
    /// The app setting holding the Key Vault reference, e.g. `AzureAdClientSecret`.
    pub setting_key: String,
    /// The reference's target: `@Microsoft.KeyVault(SecretUri={secret_uri})`, e.g.
    /// `{key_vault_url}/secrets/AzureAdClientSecret/` (versionless: the current version) or with a
    /// version after the last `/`.
    pub secret_uri: String,
    /// The client id of the site's managed identity, which reads the vault.
    pub site_identity: String,
    /// A plain `restart` keeps the cached references (only `refresh`, or `stop` + `start`, resolve
    /// them again) — "a standard restart sometimes keeps cached references warm".
    pub restart_keeps_references: bool,
    /// `stop`, `start`, `restart` and `refresh` answer `202 Accepted` and complete through polling.
    pub async_operations: bool,
}

impl Default for SiteSpec {
    fn default() -> Self {
        Self::new("", "", "", "", "", "")
    }
}

impl SiteSpec {
    /// A site (no slot) whose setting `AzureAdClientSecret` references `secret_uri`, read by the
    /// identity `site_identity`, for the application `app_client_id`; restarts re-resolve references
    /// and operations are synchronous.
    pub fn new(
        subscription_id: impl Into<String>,
        resource_group: impl Into<String>,
        name: impl Into<String>,
        app_client_id: impl Into<String>,
        secret_uri: impl Into<String>,
        site_identity: impl Into<String>,
    ) -> Self {
        Self {
            subscription_id: subscription_id.into(),
            resource_group: resource_group.into(),
            name: name.into(),
            slot: None,
            app_client_id: app_client_id.into(),
            setting_key: "AzureAdClientSecret".to_owned(),
            secret_uri: secret_uri.into(),
            site_identity: site_identity.into(),
            restart_keeps_references: false,
            async_operations: false,
        }
    }

    pub fn slot(mut self, slot: impl Into<String>) -> Self {
        self.slot = Some(slot.into());
        self
    }

    pub fn setting_key(mut self, key: impl Into<String>) -> Self {
        self.setting_key = key.into();
        self
    }

    pub fn restart_keeps_references(mut self, keeps: bool) -> Self {
        self.restart_keeps_references = keeps;
        self
    }

    pub fn async_operations(mut self, on: bool) -> Self {
        self.async_operations = on;
        self
    }

    /// `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Web/sites/{name}[/slots/{slot}]`.
    pub fn resource_id(&self) -> String {
        site_resource_id(&self.subscription_id, &self.resource_group, &self.name, self.slot.as_deref())
    }
}

pub(crate) fn site_resource_id(subscription: &str, group: &str, name: &str, slot: Option<&str>) -> String {
    let site = format!("/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Web/sites/{name}");
    match slot {
        Some(slot) => format!("{site}/slots/{slot}"),
        None => site,
    }
}

/// A site as the platform sees it, from [`AzureHandle::site`]. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteView {
    /// `Running` or `Stopped`, as the platform has it (a `GET` may lag behind, see `arm.rs`).
    pub state: String,
    /// How many times `start` started the stopped site (creation is not counted).
    pub starts: u32,
    /// How many times `restart` restarted the running site.
    pub restarts: u32,
    /// The version in the platform's cache (what the last resolution found), if it resolved.
    pub resolved_version: Option<String>,
    /// The cache's [`ResolveStatus`] name (`Resolved`, `AccessToKeyVaultDenied`, …).
    pub reference_status: String,
    /// How many times `config/configreferences/appsettings/refresh` ran.
    pub refreshes: u32,
    /// The version the running process started with; `None` when stopped or started without one.
    pub process_version: Option<String>,
}

/// The platform's cache of a site's resolved reference.
#[derive(Clone)]
pub(crate) struct Resolution {
    pub(crate) status: ResolveStatus,
    pub(crate) value: Option<String>,
    pub(crate) version: Option<String>,
}

impl fmt::Debug for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolution").field("status", &self.status).field("version", &self.version).finish()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Site {
    pub(crate) spec: SiteSpec,
    pub(crate) running: bool,
    /// `GET`s still to show the state from before the last stop (the platform takes a moment to
    /// report it).
    pub(crate) stale_reads: u32,
    pub(crate) cache: Resolution,
    /// What the process started with; `None` while stopped.
    pub(crate) process: Option<Resolution>,
    pub(crate) starts: u32,
    pub(crate) restarts: u32,
    pub(crate) refreshes: u32,
    /// The managed identity's principal id, as `identity.principalId` shows it.
    pub(crate) principal_id: Uuid,
}

/// A site operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SiteAction {
    Start,
    Stop,
    Restart,
    Refresh,
}

/// A long-running operation started with `202 Accepted` (sites with `async_operations`).
#[derive(Debug, Clone)]
pub(crate) struct Operation {
    /// Lowercase site id.
    pub(crate) site: String,
    pub(crate) action: SiteAction,
    /// Polls (of either URL) before it is done; the action is applied when this reaches 0.
    pub(crate) polls_left: u32,
    pub(crate) done: bool,
}

/// How many polls an asynchronous operation takes before it is done.
pub(crate) const POLLS_UNTIL_DONE: u32 = 2;

/// Everything Azure-side; lives in [`Shared`].
#[derive(Debug, Default)]
pub(crate) struct AzureState {
    /// By lowercase name.
    pub(crate) vaults: BTreeMap<String, Vault>,
    /// By (lowercase vault name, lowercase client id).
    pub(crate) vault_roles: HashMap<(String, String), VaultRole>,
    /// (lowercase client id, lowercase scope prefix, role).
    pub(crate) arm_roles: Vec<(String, String, ArmRole)>,
    /// By lowercase resource id.
    pub(crate) sites: BTreeMap<String, Site>,
    pub(crate) operations: HashMap<Uuid, Operation>,
}

impl AzureState {
    pub(crate) fn vault_role(&self, vault: &str, client_id: &str) -> Option<VaultRole> {
        self.vault_roles.get(&(vault.to_ascii_lowercase(), client_id.to_ascii_lowercase())).copied()
    }

    /// The strongest role `client_id` holds on a scope that contains `resource_id`.
    pub(crate) fn arm_role(&self, client_id: &str, resource_id: &str) -> Option<ArmRole> {
        let client = client_id.to_ascii_lowercase();
        let resource = resource_id.to_ascii_lowercase();
        let covers = |scope: &str| {
            let scope = scope.trim_end_matches('/');
            resource == scope || resource.starts_with(&format!("{scope}/"))
        };
        let roles: Vec<ArmRole> =
            self.arm_roles.iter().filter(|(c, s, _)| *c == client && covers(s)).map(|(_, _, r)| *r).collect();
        if roles.contains(&ArmRole::Contributor) { Some(ArmRole::Contributor) } else { roles.first().copied() }
    }

    /// Resolve `site`'s reference against the vault, as its managed identity.
    pub(crate) fn resolve(&self, spec: &SiteSpec) -> Resolution {
        let failed = |status| Resolution { status, value: None, version: None };
        let Some((vault, secret, version)) = parse_secret_uri(&spec.secret_uri) else {
            return failed(ResolveStatus::InvalidSyntax);
        };
        let Some(stored_vault) = self.vaults.get(&vault.to_ascii_lowercase()) else {
            return failed(ResolveStatus::VaultNotFound);
        };
        if !self.vault_role(&vault, &spec.site_identity).is_some_and(|r| r.allows(VaultAction::Get)) {
            return failed(ResolveStatus::AccessToKeyVaultDenied);
        }
        let Some(stored) = stored_vault.secrets.get(&secret.to_ascii_lowercase()) else {
            return failed(ResolveStatus::SecretNotFound);
        };
        let found = match &version {
            Some(version) => stored.version(version).filter(|v| v.enabled),
            None => stored.current(),
        };
        match found {
            Some(v) => Resolution {
                status: ResolveStatus::Resolved,
                value: Some(v.value.clone()),
                version: Some(v.version.clone()),
            },
            None if version.is_some() => failed(ResolveStatus::SecretVersionNotFound),
            None => failed(ResolveStatus::SecretNotFound),
        }
    }

    /// Apply a site operation now.
    pub(crate) fn apply(&mut self, site_key: &str, action: SiteAction) {
        let Some(spec) = self.sites.get(site_key).map(|s| s.spec.clone()) else {
            return;
        };
        let fresh = self.resolve(&spec);
        let Some(site) = self.sites.get_mut(site_key) else {
            return;
        };
        match action {
            SiteAction::Stop => {
                if site.running {
                    site.running = false;
                    site.process = None;
                    site.stale_reads = 1;
                }
            }
            SiteAction::Start => {
                if !site.running {
                    site.cache = fresh;
                    site.running = true;
                    site.process = Some(site.cache.clone());
                    site.starts += 1;
                    site.stale_reads = 0;
                }
            }
            SiteAction::Restart => {
                // Restarting a stopped site leaves it stopped.
                if site.running {
                    if !spec.restart_keeps_references {
                        site.cache = fresh;
                    }
                    site.process = Some(site.cache.clone());
                    site.restarts += 1;
                }
            }
            SiteAction::Refresh => {
                site.cache = fresh;
                site.refreshes += 1;
            }
        }
    }
}

/// `(vault, secret, version)` from a SecretUri naming `…/vaults/{vault}/secrets/{name}[/{version}]`
/// (the sim's Key Vault URLs), or from a real one (`https://{vault}.vault.azure.net/secrets/…`).
pub(crate) fn parse_secret_uri(uri: &str) -> Option<(String, String, Option<String>)> {
    let url = url::Url::parse(uri).ok()?;
    let segments: Vec<&str> = url.path_segments()?.collect();
    let (vault, rest) = match segments.iter().position(|s| *s == "vaults") {
        Some(at) => (segments.get(at + 1)?.to_string(), segments.get(at + 2..)?.to_vec()),
        None => (url.host_str()?.split('.').next()?.to_owned(), segments),
    };
    match rest.as_slice() {
        ["secrets", name] | ["secrets", name, ""] if !name.is_empty() => Some((vault, name.to_string(), None)),
        ["secrets", name, version] | ["secrets", name, version, ""] if !name.is_empty() => {
            Some((vault, name.to_string(), Some(version.to_string())))
        }
        _ => None,
    }
}

/// A new secret version id: 32 lowercase hex digits, as Key Vault's.
pub(crate) fn new_version() -> String {
    Uuid::new_v4().simple().to_string()
}

/// A handle on the simulated Azure resources (vaults, role assignments, sites). Cheap to clone.
#[derive(Clone)]
pub struct AzureHandle {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for AzureHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureHandle").finish_non_exhaustive()
    }
}

/// One version of a secret, from [`AzureHandle::secret_versions`] (a test tool: it shows the value).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretVersionView {
    pub version: String,
    pub value: String,
    pub content_type: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub enabled: bool,
    pub exp: Option<OffsetDateTime>,
    pub created: OffsetDateTime,
}

impl fmt::Debug for SecretVersionView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretVersionView")
            .field("version", &self.version)
            .field("value", &"<redacted>")
            .field("content_type", &self.content_type)
            .field("tags", &self.tags)
            .field("enabled", &self.enabled)
            .field("exp", &self.exp)
            .field("created", &self.created)
            .finish()
    }
}

impl AzureHandle {
    fn write<R>(&self, f: impl FnOnce(&mut AzureState) -> R) -> R {
        f(&mut lock(&self.shared.azure))
    }

    /// Create an empty vault (nothing happens if it exists). Its URL is [`crate::Sim::key_vault_url`].
    pub fn create_vault(&self, name: &str) {
        self.write(|a| {
            a.vaults
                .entry(name.to_ascii_lowercase())
                .or_insert_with(|| Vault { secrets: BTreeMap::new(), requests: 0 });
        });
    }

    /// Give `client_id` a role on `vault` (replacing the role it had there).
    pub fn grant_vault(&self, vault: &str, client_id: &str, role: VaultRole) {
        self.write(|a| a.vault_roles.insert((vault.to_ascii_lowercase(), client_id.to_ascii_lowercase()), role));
    }

    /// Take `client_id`'s role on `vault` away.
    pub fn revoke_vault(&self, vault: &str, client_id: &str) {
        self.write(|a| a.vault_roles.remove(&(vault.to_ascii_lowercase(), client_id.to_ascii_lowercase())));
    }

    /// Write a new version of a secret directly (seeding; no HTTP, no rights). Creates the vault if
    /// needed. Returns the new version.
    pub fn set_secret(&self, vault: &str, name: &str, value: &str) -> String {
        self.create_vault(vault);
        let now = self.shared.clock.now();
        let version = new_version();
        let stored = StoredVersion {
            version: version.clone(),
            value: value.to_owned(),
            content_type: None,
            tags: BTreeMap::new(),
            enabled: true,
            nbf: None,
            exp: None,
            created: now,
            updated: now,
        };
        self.write(|a| {
            if let Some(v) = a.vaults.get_mut(&vault.to_ascii_lowercase()) {
                v.secrets
                    .entry(name.to_ascii_lowercase())
                    .or_insert_with(|| StoredSecret { name: name.to_owned(), versions: Vec::new() })
                    .versions
                    .push(stored);
            }
        });
        version
    }

    /// Every version of a secret, oldest first (empty when the vault or secret does not exist).
    pub fn secret_versions(&self, vault: &str, name: &str) -> Vec<SecretVersionView> {
        let a = lock(&self.shared.azure);
        let Some(secret) =
            a.vaults.get(&vault.to_ascii_lowercase()).and_then(|v| v.secrets.get(&name.to_ascii_lowercase()))
        else {
            return Vec::new();
        };
        secret
            .versions
            .iter()
            .map(|v| SecretVersionView {
                version: v.version.clone(),
                value: v.value.clone(),
                content_type: v.content_type.clone(),
                tags: v.tags.clone(),
                enabled: v.enabled,
                exp: v.exp.and_then(|e| OffsetDateTime::from_unix_timestamp(e).ok()),
                created: v.created,
            })
            .collect()
    }

    /// How many requests reached `vault` (past the fault queue; challenges and refusals included).
    pub fn vault_requests(&self, vault: &str) -> usize {
        lock(&self.shared.azure).vaults.get(&vault.to_ascii_lowercase()).map_or(0, |v| v.requests)
    }

    /// Give `client_id` a Resource Manager role on every resource whose id starts with
    /// `scope_prefix` (a subscription `/subscriptions/{id}`, a resource group, a site).
    pub fn grant_arm(&self, client_id: &str, scope_prefix: &str, role: ArmRole) {
        self.write(|a| {
            a.arm_roles.push((
                client_id.to_ascii_lowercase(),
                scope_prefix.trim_end_matches('/').to_ascii_lowercase(),
                role,
            ))
        });
    }

    /// Take every Resource Manager role of `client_id` on exactly `scope_prefix` away.
    pub fn revoke_arm(&self, client_id: &str, scope_prefix: &str) {
        let client = client_id.to_ascii_lowercase();
        let scope = scope_prefix.trim_end_matches('/').to_ascii_lowercase();
        self.write(|a| a.arm_roles.retain(|(c, s, _)| !(*c == client && *s == scope)));
    }

    /// Create a site (or slot), Running, its reference resolved and its process started with it.
    /// A site with the same id is replaced. Returns its resource id.
    pub fn create_site(&self, spec: SiteSpec) -> String {
        let id = spec.resource_id();
        self.write(|a| {
            let cache = a.resolve(&spec);
            let site = Site {
                spec,
                running: true,
                stale_reads: 0,
                process: Some(cache.clone()),
                cache,
                starts: 0,
                restarts: 0,
                refreshes: 0,
                principal_id: Uuid::new_v4(),
            };
            a.sites.insert(id.to_ascii_lowercase(), site);
        });
        id
    }

    /// The site (or slot) `name` in any subscription and resource group, if it exists.
    pub fn site(&self, name: &str, slot: Option<&str>) -> Option<SiteView> {
        let a = lock(&self.shared.azure);
        let site = find_site(&a, name, slot)?;
        Some(SiteView {
            state: if site.running { "Running" } else { "Stopped" }.to_owned(),
            starts: site.starts,
            restarts: site.restarts,
            resolved_version: site.cache.version.clone(),
            reference_status: site.cache.status.as_str().to_owned(),
            refreshes: site.refreshes,
            process_version: site.process.as_ref().and_then(|p| p.version.clone()),
        })
    }
}

/// What [`AzureHandle::runbook_demo`] set up: where everything is, never a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureDemo {
    pub key_vault_url: String,
    pub resource_manager_url: String,
    pub subscription_id: String,
    pub resource_group: String,
    pub site: String,
    pub setting_key: String,
    pub health_url: String,
    /// The client id of the application whose secret the site uses.
    pub app_client_id: String,
    pub app_object_id: String,
    /// The key id of its one client secret.
    pub key_id: String,
    /// The version of `AzureAdClientSecret` in the vault that holds that secret.
    pub secret_version: String,
}

impl AzureDemo {
    /// The `azure` object the binary prints.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "key_vault_url": self.key_vault_url,
            "resource_manager_url": self.resource_manager_url,
            "subscription_id": self.subscription_id,
            "resource_group": self.resource_group,
            "site": self.site,
            "setting_key": self.setting_key,
            "health_url": self.health_url,
            "app_client_id": self.app_client_id,
            "app_object_id": self.app_object_id,
            "key_id": self.key_id,
            "secret_version": self.secret_version,
        })
    }
}

/// The demo's subscription.
pub const DEMO_SUBSCRIPTION_ID: &str = "5f2d6a1e-7c3b-4e8a-9d0f-1b2c3d4e5f60";

impl AzureHandle {
    /// The product notes' runbook scenario: the app registration "App Store for Intune - API" with
    /// one client secret (a real credential of the tenant, valid 180 days), its value in vault
    /// `portal-kv` as `AzureAdClientSecret`; site `app-store-portal` in resource group `app-store-rg`
    /// referencing it (versionless), its identity a Secrets User on the vault; the management
    /// application a Secrets Officer on the vault and Contributor on the resource group.
    pub fn runbook_demo(&self, restart_keeps_references: bool, async_operations: bool) -> AzureDemo {
        let tenant = crate::TenantHandle { shared: self.shared.clone() };
        let app = tenant.add_app(crate::NewApp::named("App Store for Intune - API").with_service_principal());
        let end = self.shared.clock.now() + time::Duration::days(180);
        // The application was just added, so adding its password cannot fail; a failure would
        // leave a demo without a secret, which the health URL then shows.
        let password = tenant.add_password_to(app.object_id, end).ok();
        let (vault, group, site, key) = ("portal-kv", "app-store-rg", "app-store-portal", "AzureAdClientSecret");
        self.create_vault(vault);
        let secret_version = password.as_ref().map(|p| self.set_secret(vault, key, &p.secret_text)).unwrap_or_default();
        let identity = Uuid::new_v4().to_string();
        let management = self.shared.management_client_id.to_string();
        self.grant_vault(vault, &identity, VaultRole::SecretsUser);
        self.grant_vault(vault, &management, VaultRole::SecretsOfficer);
        self.grant_arm(
            &management,
            &format!("/subscriptions/{DEMO_SUBSCRIPTION_ID}/resourceGroups/{group}"),
            ArmRole::Contributor,
        );
        let key_vault_url = format!("{}vaults/{vault}", self.shared.base_url);
        let spec = SiteSpec::new(
            DEMO_SUBSCRIPTION_ID,
            group,
            site,
            app.app_id.to_string(),
            format!("{key_vault_url}/secrets/{key}/"),
            identity,
        )
        .restart_keeps_references(restart_keeps_references)
        .async_operations(async_operations);
        self.create_site(spec);
        AzureDemo {
            key_vault_url,
            resource_manager_url: self.shared.base_url.to_string(),
            subscription_id: DEMO_SUBSCRIPTION_ID.to_owned(),
            resource_group: group.to_owned(),
            site: site.to_owned(),
            setting_key: key.to_owned(),
            health_url: format!("{}sites/{site}/health", self.shared.base_url),
            app_client_id: app.app_id.to_string(),
            app_object_id: app.object_id.to_string(),
            key_id: password.map(|p| p.key_id.to_string()).unwrap_or_default(),
            secret_version,
        }
    }

    /// A site's view as JSON (the control API's `GET /_sim/azure/site`); `None` if it does not exist.
    pub(crate) fn site_json(&self, name: &str, slot: Option<&str>) -> Option<serde_json::Value> {
        let view = self.site(name, slot)?;
        Some(serde_json::json!({
            "state": view.state,
            "starts": view.starts,
            "restarts": view.restarts,
            "refreshes": view.refreshes,
            "resolved_version": view.resolved_version,
            "reference_status": view.reference_status,
            "process_version": view.process_version,
        }))
    }
}

/// The site (or slot) called `name` (case-insensitive), whatever its subscription and group.
pub(crate) fn find_site<'a>(a: &'a AzureState, name: &str, slot: Option<&str>) -> Option<&'a Site> {
    a.sites.values().find(|s| {
        s.spec.name.eq_ignore_ascii_case(name)
            && match (&s.spec.slot, slot) {
                (None, None) => true,
                (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                _ => false,
            }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_uris_name_the_vault_the_secret_and_perhaps_a_version() {
        let sim = "https://127.0.0.1:8443/vaults/portal-kv/secrets/AzureAdClientSecret/";
        assert_eq!(parse_secret_uri(sim), Some(("portal-kv".into(), "AzureAdClientSecret".into(), None)));
        let versioned = "https://127.0.0.1:8443/vaults/kv/secrets/s/0123abcd";
        assert_eq!(parse_secret_uri(versioned), Some(("kv".into(), "s".into(), Some("0123abcd".into()))));
        let real = "https://myvault.vault.azure.net/secrets/mysecret";
        assert_eq!(parse_secret_uri(real), Some(("myvault".into(), "mysecret".into(), None)));
        assert_eq!(parse_secret_uri("not a uri"), None);
        assert_eq!(parse_secret_uri("https://127.0.0.1/vaults/kv/keys/k"), None);
    }

    #[test]
    fn roles_allow_what_the_built_in_roles_allow() {
        assert!(VaultRole::SecretsOfficer.allows(VaultAction::Set));
        assert!(VaultRole::SecretsUser.allows(VaultAction::Get));
        assert!(!VaultRole::SecretsUser.allows(VaultAction::Set));
        assert!(VaultRole::Reader.allows(VaultAction::List));
        assert!(!VaultRole::Reader.allows(VaultAction::Get));
    }

    #[test]
    fn arm_scopes_cover_their_descendants_only() {
        let mut a = AzureState::default();
        a.arm_roles.push(("c".into(), "/subscriptions/s/resourcegroups/rg".into(), ArmRole::Reader));
        let site = "/subscriptions/S/resourceGroups/RG/providers/Microsoft.Web/sites/x";
        assert_eq!(a.arm_role("C", site), Some(ArmRole::Reader));
        assert_eq!(a.arm_role("c", "/subscriptions/s/resourceGroups/rg2/providers/Microsoft.Web/sites/x"), None);
        a.arm_roles.push(("c".into(), "/subscriptions/s".into(), ArmRole::Contributor));
        assert_eq!(a.arm_role("c", site), Some(ArmRole::Contributor));
    }
}

//! Rollout steps: what happens to a new client secret after Entra has created it.
//!
//! A rotation publishes the new secret to where consumers read it (Key Vault, a Kubernetes Secret, a
//! file on an agent host), reloads the consumers (IIS app pool recycle, Spring Actuator refresh, App
//! Service restart), verifies (HTTP health check) and notifies (webhook). Operators write the steps in
//! the product notes' JSON format, which is accepted exactly as written, legacy fields included:
//!
//! ```json
//! [{ "type": "agent_secret_sync", "order": 10, "on_failure": "abort",
//!    "agent_id": "11111111-1111-1111-1111-111111111111",
//!    "config": { "target_path": "C:\\inetpub\\app\\appsettings.json",
//!                "secret_key": "Entra:ClientSecret", "file_format": "json" } }]
//! ```
//!
//! This module parses, validates and normalises such a document into a [`StepPlan`]: typed
//! [`StepDefinition`]s sorted by `order`, plus warnings (order problems, legacy fields) and
//! manual-review notes (a legacy `agent_url` cannot be probed). Nothing here does I/O: no DNS, no
//! file system, no environment.
//!
//! Why not just `#[derive(Deserialize)]`: a malformed step must get a clear error and change nothing
//! (DESIGN §4, promise 7), and serde stops at the first problem with a message that names neither the
//! step nor the field. So each element is read as a JSON object, its keys are checked against the
//! fields its `type` allows (an unknown one is named, with the closest allowed name when it is a
//! likely typo), and each field is read on its own, so that every problem of every step is reported
//! at once, as `step #1 (order 10, agent_secret_sync): config.targt_path: unknown field; did you mean
//! `target_path`?`. [`StepDefinition`]'s own `Deserialize` goes through the same checks, so there is
//! no second, laxer way in.
//!
//! Secrets never live in a step definition (promise 5): tokens and signing keys are named by the
//! environment variable that holds them (`bearer_token_env`, `signing_secret_env`). Error messages
//! never quote a URL, an environment variable name that was refused, or the value of an unknown
//! field, because that is where a pasted secret would be.
//!
//! A step serialises back to the normalised form of the same format (legacy `site_name` rewritten to
//! `app_pool`, defaults filled in), which parses back to an equal step.

use std::collections::BTreeMap;
use std::fmt;

use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use url::Url;
use uuid::Uuid;

use crate::domain::duration::Span;
use crate::ids::AgentId;

/// Retries of a failed step when the definition gives none: a publish or reload usually fails for a
/// passing reason (a pod restarting, a 429), and a rollout that stops needs an operator.
pub const DEFAULT_RETRIES: u32 = 3;
/// At most this many retries: beyond that the failure is not passing, and the old secret's grace
/// period is better spent by an operator than by a loop.
pub const MAX_RETRIES: u32 = 10;
/// The pause between two attempts of a step when the definition gives none.
pub const DEFAULT_RETRY_DELAY: Span = Span::from_secs(30);
/// The longest pause between two attempts: a retry is a delayed queue message, and SQS delays a
/// message by at most 15 minutes.
pub const MAX_RETRY_DELAY: Span = Span::from_secs(15 * 60);
/// Key Vault content type when none is given.
pub const DEFAULT_CONTENT_TYPE: &str = "text/plain";
/// User tags on a Key Vault secret: Key Vault allows 15 and the rotator adds 3 of its own (key id,
/// application id, execution).
pub const MAX_KEY_VAULT_USER_TAGS: usize = 12;
/// How long a Spring Actuator refresh may take when the definition says nothing.
pub const DEFAULT_SPRING_TIMEOUT: Span = Span::from_secs(30);
/// The status a health check waits for when the definition says nothing.
pub const DEFAULT_EXPECTED_STATUS: u16 = 200;
/// How long a health check waits in all for the expected answer when the definition says nothing.
pub const DEFAULT_HEALTH_TIMEOUT: Span = Span::from_secs(120);
/// The pause between two probes of a health check when the definition says nothing.
pub const DEFAULT_HEALTH_INTERVAL: Span = Span::from_secs(5);

/// The note attached to every step that targets an agent through the legacy `agent_url`.
pub const LEGACY_AGENT_URL_REVIEW: &str = "legacy direct agent_url cannot be probed automatically; confirm \
reachability and Windows/IIS permissions before rotating (or use agent_id of a connected agent)";
/// The warning given for a document without steps.
pub const EMPTY_PLAN_WARNING: &str = "no rollout steps: only the Entra secret will change";

/// The fields a step object may have, whatever its type.
const TOP_LEVEL_FIELDS: &[&str] =
    &["type", "name", "order", "on_failure", "retries", "retry_delay", "agent_id", "agent_url", "config"];

// ---------------------------------------------------------------------------------------------------
// Kinds, phases, failure policy
// ---------------------------------------------------------------------------------------------------

/// What the chain does when a step still fails after its retries.
///
/// Defaults to [`OnFailure::Abort`] when a definition leaves it out: stopping is the safe choice,
/// since the old secret stays valid and nothing breaks, while `continue` would go on rolling out
/// something that may be half-done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// The execution fails at this step, the chain stops and the message goes to the dead-letter
    /// queue; a redrive after the fix re-runs this step.
    #[default]
    Abort,
    /// The step is recorded failed, the execution needs attention, the chain goes on. Never
    /// reported healthy; grace cleanup waits for an operator.
    Continue,
}

impl OnFailure {
    const CHOICES: &[(&str, OnFailure)] = &[("abort", OnFailure::Abort), ("continue", OnFailure::Continue)];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Abort => "abort",
            Self::Continue => "continue",
        }
    }
}

/// Where a step belongs in a rollout: publish the secret, then reload the consumers, then verify,
/// then notify. Ordered that way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Publish,
    Reload,
    Verify,
    Notify,
}

/// The type of a step, as written in its `type` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    AzureKeyVault,
    KubernetesSecret,
    AgentSecretSync,
    IisRecycle,
    SpringActuatorRefresh,
    AzureAppServiceRestart,
    HttpHealthCheck,
    Webhook,
}

impl StepKind {
    pub const ALL: [StepKind; 8] = [
        Self::AzureKeyVault,
        Self::KubernetesSecret,
        Self::AgentSecretSync,
        Self::IisRecycle,
        Self::SpringActuatorRefresh,
        Self::AzureAppServiceRestart,
        Self::HttpHealthCheck,
        Self::Webhook,
    ];

    /// The JSON `type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AzureKeyVault => "azure_key_vault",
            Self::KubernetesSecret => "kubernetes_secret",
            Self::AgentSecretSync => "agent_secret_sync",
            Self::IisRecycle => "iis_recycle",
            Self::SpringActuatorRefresh => "spring_actuator_refresh",
            Self::AzureAppServiceRestart => "azure_app_service_restart",
            Self::HttpHealthCheck => "http_health_check",
            Self::Webhook => "webhook",
        }
    }

    /// The kind whose `type` string is `s` (exactly, lower case).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The phase of the rollout the step belongs to. A `kubernetes_secret` step that also restarts
    /// workloads is still a publish: its restart reloads right after its own publish.
    pub fn phase(self) -> Phase {
        match self {
            Self::AzureKeyVault | Self::KubernetesSecret | Self::AgentSecretSync => Phase::Publish,
            Self::IisRecycle | Self::SpringActuatorRefresh | Self::AzureAppServiceRestart => Phase::Reload,
            Self::HttpHealthCheck => Phase::Verify,
            Self::Webhook => Phase::Notify,
        }
    }

    /// Whether the step runs through a host agent, and so takes `agent_id` (or legacy `agent_url`).
    pub fn takes_agent(self) -> bool {
        matches!(self, Self::AgentSecretSync | Self::IisRecycle)
    }

    /// The keys its `config` object may have (legacy ones included).
    pub fn config_fields(self) -> &'static [&'static str] {
        match self {
            Self::AzureKeyVault => {
                &["vault_url", "secret_name", "secondary_vault_url", "secondary_secret_name", "content_type", "tags"]
            }
            Self::KubernetesSecret => &["namespace", "secret_name", "key", "context", "restart"],
            Self::AgentSecretSync => &["target_path", "secret_key", "file_format", "create_if_missing", "backup"],
            Self::IisRecycle => &["app_pool", "site_name", "mode"],
            Self::SpringActuatorRefresh => &["url", "bearer_token_env", "timeout"],
            Self::AzureAppServiceRestart => {
                &["subscription_id", "resource_group", "app_name", "slot", "mode", "refresh_key_vault_references"]
            }
            Self::HttpHealthCheck => &["url", "expected_status", "timeout", "interval", "contains"],
            Self::Webhook => &["url", "signing_secret_env", "headers", "events"],
        }
    }
}

impl fmt::Display for StepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------------------
// Step definitions
// ---------------------------------------------------------------------------------------------------

/// One validated, normalised step of a rollout.
///
/// Built only by [`parse_steps`], [`parse_step_values`] or `Deserialize` (which runs the same
/// checks); serialises to the normalised JSON form of the product notes' format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepDefinition {
    /// A human-readable name given by the operator, shown instead of the generated one.
    pub name: Option<String>,
    /// Position in the rollout; unique within a plan, steps run from low to high.
    pub order: u32,
    pub on_failure: OnFailure,
    /// Further attempts after the first fails, at most [`MAX_RETRIES`].
    pub retries: u32,
    /// Pause between attempts, at most [`MAX_RETRY_DELAY`].
    pub retry_delay: Span,
    /// What the step does, typed by its kind. The agent of agent steps lives in their config.
    pub config: StepConfig,
}

/// What a step does: one typed configuration per step kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum StepConfig {
    AzureKeyVault(AzureKeyVaultConfig),
    KubernetesSecret(KubernetesSecretConfig),
    AgentSecretSync(AgentSecretSyncConfig),
    IisRecycle(IisRecycleConfig),
    SpringActuatorRefresh(SpringActuatorRefreshConfig),
    AzureAppServiceRestart(AzureAppServiceRestartConfig),
    HttpHealthCheck(HttpHealthCheckConfig),
    Webhook(WebhookConfig),
}

impl StepConfig {
    pub fn kind(&self) -> StepKind {
        match self {
            Self::AzureKeyVault(_) => StepKind::AzureKeyVault,
            Self::KubernetesSecret(_) => StepKind::KubernetesSecret,
            Self::AgentSecretSync(_) => StepKind::AgentSecretSync,
            Self::IisRecycle(_) => StepKind::IisRecycle,
            Self::SpringActuatorRefresh(_) => StepKind::SpringActuatorRefresh,
            Self::AzureAppServiceRestart(_) => StepKind::AzureAppServiceRestart,
            Self::HttpHealthCheck(_) => StepKind::HttpHealthCheck,
            Self::Webhook(_) => StepKind::Webhook,
        }
    }
}

/// The host agent an agent step runs on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AgentTarget {
    /// A connected agent, by id: preflight can check its heartbeat and readiness.
    Agent(AgentId),
    /// Legacy direct addressing by URL: still accepted, but it cannot be probed, so every step using
    /// it carries a manual-review note.
    LegacyUrl(Url),
}

impl AgentTarget {
    pub fn agent_id(&self) -> Option<AgentId> {
        match self {
            Self::Agent(id) => Some(*id),
            Self::LegacyUrl(_) => None,
        }
    }

    pub fn is_legacy(&self) -> bool {
        matches!(self, Self::LegacyUrl(_))
    }

    /// Short form for display names: `agent 11111111…` or `agent at host:port`.
    fn short(&self) -> String {
        match self {
            Self::Agent(id) => format!("agent {}…", id.to_string().chars().take(8).collect::<String>()),
            Self::LegacyUrl(url) => format!("agent at {}", host_port(url)),
        }
    }
}

/// `azure_key_vault`: writes a new secret version, in a second vault too when one is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AzureKeyVaultConfig {
    /// `https://<vault>.vault.azure.net` (or a sovereign cloud's); https only, as Key Vault requires.
    #[serde(serialize_with = "ser_url")]
    pub vault_url: Url,
    /// 1 to 127 letters, digits and `-` (Key Vault's rule).
    pub secret_name: String,
    /// A second vault (another region, a DR copy), written after the first.
    #[serde(flatten)]
    pub secondary: Option<SecondaryVault>,
    pub content_type: String,
    /// Operator tags; the rotator adds its own (key id, application id, execution).
    pub tags: BTreeMap<String, String>,
}

/// The second vault of an `azure_key_vault` step. Its secret name defaults to the primary's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecondaryVault {
    #[serde(rename = "secondary_vault_url", serialize_with = "ser_url")]
    pub vault_url: Url,
    #[serde(rename = "secondary_secret_name")]
    pub secret_name: String,
}

/// `kubernetes_secret`: sets `namespace/secret_name/key`, then optionally rollout-restarts workloads
/// of the same namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KubernetesSecretConfig {
    /// A DNS-1123 label.
    pub namespace: String,
    /// A DNS-1123 subdomain.
    pub secret_name: String,
    /// A Secret data key: letters, digits, `-`, `_` and `.`.
    pub key: String,
    /// The kubeconfig context (cluster) to use, when not the default one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    pub restart: Vec<WorkloadRef>,
}

/// A workload restarted (`kubectl rollout restart`) after the Secret changed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct WorkloadRef {
    pub kind: WorkloadKind,
    /// A DNS-1123 subdomain.
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

impl WorkloadKind {
    const CHOICES: &[(&str, WorkloadKind)] = &[
        ("Deployment", WorkloadKind::Deployment),
        ("StatefulSet", WorkloadKind::StatefulSet),
        ("DaemonSet", WorkloadKind::DaemonSet),
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deployment => "Deployment",
            Self::StatefulSet => "StatefulSet",
            Self::DaemonSet => "DaemonSet",
        }
    }
}

/// `agent_secret_sync`: a connected agent writes the secret into a configuration file, atomically.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentSecretSyncConfig {
    /// Serialised at the top level of the step (`agent_id` / `agent_url`), as in the notes.
    #[serde(skip)]
    pub agent: AgentTarget,
    /// An absolute path on the agent's host: `C:\...`, `\\server\share\...` or `/...`, without `.` or
    /// `..` segments. A string, not a `PathBuf`: it names a file on another machine, often Windows.
    pub target_path: String,
    /// Where the secret goes in the file; see [`AgentSecretSyncConfig::key_path`].
    pub secret_key: String,
    pub file_format: FileFormat,
    /// Create the file (and the keys) when it does not exist, instead of failing.
    pub create_if_missing: bool,
    /// Keep a copy of the previous file beside it.
    pub backup: bool,
}

impl AgentSecretSyncConfig {
    /// The keys leading to the secret inside the file.
    ///
    /// - `json`, `yaml`: nested keys separated by `:`, the .NET configuration convention
    ///   (`Entra:ClientSecret` is `{"Entra": {"ClientSecret": …}}`).
    /// - `ini`: `Section:Key`, or just `Key` outside any section.
    /// - `env`, `properties`: one key, taken as written (`Entra__ClientSecret`,
    ///   `azure.client-secret`).
    /// - `text`: none, the whole file is the secret (`secret_key` only names it in history).
    pub fn key_path(&self) -> Vec<&str> {
        match self.file_format {
            FileFormat::Json | FileFormat::Yaml | FileFormat::Ini => self.secret_key.split(':').collect(),
            FileFormat::Env | FileFormat::Properties => vec![self.secret_key.as_str()],
            FileFormat::Text => Vec::new(),
        }
    }
}

/// The renderer an agent uses for the target file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    Json,
    Yaml,
    /// `NAME=value` lines.
    Env,
    /// Java `.properties`.
    Properties,
    Ini,
    /// The whole file is the secret.
    Text,
}

impl FileFormat {
    const CHOICES: &[(&str, FileFormat)] = &[
        ("json", FileFormat::Json),
        ("yaml", FileFormat::Yaml),
        ("env", FileFormat::Env),
        ("properties", FileFormat::Properties),
        ("ini", FileFormat::Ini),
        ("text", FileFormat::Text),
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Yaml => "yaml",
            Self::Env => "env",
            Self::Properties => "properties",
            Self::Ini => "ini",
            Self::Text => "text",
        }
    }
}

/// `iis_recycle`: a connected Windows agent recycles (or stops and starts) an IIS app pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IisRecycleConfig {
    /// Serialised at the top level of the step (`agent_id` / `agent_url`), as in the notes.
    #[serde(skip)]
    pub agent: AgentTarget,
    /// The app pool; legacy `site_name` is read into this field.
    pub app_pool: String,
    pub mode: RecycleMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecycleMode {
    /// Overlapped recycle: the new worker starts before the old one drains, no downtime.
    #[default]
    Recycle,
    /// Stop, then start: for apps that cannot run two workers at once.
    Restart,
}

impl RecycleMode {
    const CHOICES: &[(&str, RecycleMode)] = &[("recycle", RecycleMode::Recycle), ("restart", RecycleMode::Restart)];
}

/// `spring_actuator_refresh`: POSTs to a Spring Boot `/actuator/refresh` endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpringActuatorRefreshConfig {
    /// Taken as given, whether or not it ends in `/actuator/refresh`.
    #[serde(serialize_with = "ser_url")]
    pub url: Url,
    /// The name of the environment variable holding a bearer token, never the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bearer_token_env: Option<String>,
    pub timeout: Span,
}

/// `azure_app_service_restart`: through Azure Resource Manager, refreshes the app's Key Vault
/// references and restarts it (or stops and starts it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AzureAppServiceRestartConfig {
    pub subscription_id: Uuid,
    pub resource_group: String,
    pub app_name: String,
    /// A deployment slot; the production slot when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    pub mode: RestartMode,
    /// Ask App Service to re-read `@Microsoft.KeyVault(...)` app settings before restarting; without
    /// it the app may keep a cached old secret for up to a day.
    pub refresh_key_vault_references: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartMode {
    #[default]
    Restart,
    StopStart,
}

impl RestartMode {
    const CHOICES: &[(&str, RestartMode)] =
        &[("restart", RestartMode::Restart), ("stop_start", RestartMode::StopStart)];
}

/// `http_health_check`: probes a URL until it answers the expected status (and body), or the time is
/// up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpHealthCheckConfig {
    #[serde(serialize_with = "ser_url")]
    pub url: Url,
    /// 100 to 599.
    pub expected_status: u16,
    /// The whole wait budget, across probes.
    pub timeout: Span,
    /// Pause between probes; not longer than `timeout`.
    pub interval: Span,
    /// A substring the body must contain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
}

/// `webhook`: POSTs an event about the rotation (never the secret), signed with HMAC when a signing
/// key is named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookConfig {
    #[serde(serialize_with = "ser_url")]
    pub url: Url,
    /// The name of the environment variable holding the HMAC signing key, never the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_secret_env: Option<String>,
    /// Extra request headers.
    pub headers: BTreeMap<String, String>,
    /// Which events to send; all when empty.
    pub events: Vec<String>,
}

impl StepDefinition {
    pub fn kind(&self) -> StepKind {
        self.config.kind()
    }

    pub fn phase(&self) -> Phase {
        self.kind().phase()
    }

    /// The agent the step runs on, for agent steps.
    pub fn agent(&self) -> Option<&AgentTarget> {
        match &self.config {
            StepConfig::AgentSecretSync(c) => Some(&c.agent),
            StepConfig::IisRecycle(c) => Some(&c.agent),
            _ => None,
        }
    }

    /// Every URL the step will call, so a network policy can check the addresses before anything
    /// runs (this module resolves no names).
    pub fn url_fields(&self) -> Vec<&Url> {
        let agent_url = match self.agent() {
            Some(AgentTarget::LegacyUrl(url)) => Some(url),
            _ => None,
        };
        let mut urls: Vec<&Url> = agent_url.into_iter().collect();
        match &self.config {
            StepConfig::AzureKeyVault(c) => {
                urls.push(&c.vault_url);
                urls.extend(c.secondary.as_ref().map(|s| &s.vault_url));
            }
            StepConfig::SpringActuatorRefresh(c) => urls.push(&c.url),
            StepConfig::HttpHealthCheck(c) => urls.push(&c.url),
            StepConfig::Webhook(c) => urls.push(&c.url),
            StepConfig::KubernetesSecret(_)
            | StepConfig::AgentSecretSync(_)
            | StepConfig::IisRecycle(_)
            | StepConfig::AzureAppServiceRestart(_) => {}
        }
        urls
    }

    /// The operator's `name`, else a description such as `Recycle IIS app pool DefaultAppPool on
    /// agent 11111111…`. URLs are shown without query (which may hold a token); webhook URLs by their
    /// origin only, since chat webhooks carry their secret in the path.
    pub fn display_name(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        match &self.config {
            StepConfig::AzureKeyVault(c) => {
                let mut s = format!("Key Vault {}/{}", vault_name(&c.vault_url), c.secret_name);
                if let Some(second) = &c.secondary {
                    s.push_str(&format!(" and {}/{}", vault_name(&second.vault_url), second.secret_name));
                }
                s
            }
            StepConfig::KubernetesSecret(c) => {
                let mut s = format!("Kubernetes Secret {}/{} key {}", c.namespace, c.secret_name, c.key);
                if let Some(context) = &c.context {
                    s.push_str(&format!(" in {context}"));
                }
                if !c.restart.is_empty() {
                    let workloads: Vec<String> =
                        c.restart.iter().map(|w| format!("{}/{}", w.kind.as_str(), w.name)).collect();
                    s.push_str(&format!(", then restart {}", workloads.join(", ")));
                }
                s
            }
            StepConfig::AgentSecretSync(c) => {
                let what = match c.file_format {
                    FileFormat::Text => "text file".to_owned(),
                    _ => c.secret_key.clone(),
                };
                format!("Write secret to {} {} ({what})", c.agent.short(), c.target_path)
            }
            StepConfig::IisRecycle(c) => {
                let verb = match c.mode {
                    RecycleMode::Recycle => "Recycle",
                    RecycleMode::Restart => "Restart",
                };
                format!("{verb} IIS app pool {} on {}", c.app_pool, c.agent.short())
            }
            StepConfig::SpringActuatorRefresh(c) => format!("Refresh Spring Actuator {}", url_without_query(&c.url)),
            StepConfig::AzureAppServiceRestart(c) => {
                let verb = match c.mode {
                    RestartMode::Restart => "Restart",
                    RestartMode::StopStart => "Stop and start",
                };
                let slot = c.slot.as_ref().map(|s| format!(" slot {s}")).unwrap_or_default();
                format!("{verb} App Service {}{slot} in {}", c.app_name, c.resource_group)
            }
            StepConfig::HttpHealthCheck(c) => {
                format!("Wait for {} to answer {}", url_without_query(&c.url), c.expected_status)
            }
            StepConfig::Webhook(c) => format!("Webhook to {}", c.url.origin().ascii_serialization()),
        }
    }
}

impl Serialize for StepDefinition {
    /// The normalised form: the notes' field names, the agent at the top level, defaults written out.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("type", self.kind().as_str())?;
        if let Some(name) = &self.name {
            map.serialize_entry("name", name)?;
        }
        map.serialize_entry("order", &self.order)?;
        map.serialize_entry("on_failure", &self.on_failure)?;
        map.serialize_entry("retries", &self.retries)?;
        map.serialize_entry("retry_delay", &self.retry_delay)?;
        match self.agent() {
            Some(AgentTarget::Agent(id)) => map.serialize_entry("agent_id", id)?,
            Some(AgentTarget::LegacyUrl(url)) => map.serialize_entry("agent_url", url.as_str())?,
            None => {}
        }
        map.serialize_entry("config", &self.config)?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for StepDefinition {
    /// Runs the same checks as [`parse_steps`] on one step (without the checks across steps).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        let parsed = parse_one(0, &value);
        match parsed.step {
            Some(step) => Ok(step),
            None => {
                let problems: Vec<String> = parsed
                    .issues
                    .iter()
                    .filter(|i| i.severity == Severity::Error)
                    .map(|i| match &i.field {
                        Some(field) => format!("{field}: {}", i.message),
                        None => i.message.clone(),
                    })
                    .collect();
                Err(serde::de::Error::custom(format!("invalid step definition: {}", problems.join("; "))))
            }
        }
    }
}

fn ser_url<S: Serializer>(url: &Url, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(url.as_str())
}

// ---------------------------------------------------------------------------------------------------
// Plans and issues
// ---------------------------------------------------------------------------------------------------

/// A validated rollout: the steps sorted by `order`, and what the operator should know about them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StepPlan {
    pub steps: Vec<StepDefinition>,
    /// Warnings and manual-review notes (never errors), by input position.
    pub warnings: Vec<StepIssue>,
}

/// How bad an issue is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The document is refused.
    Error,
    /// Accepted, but probably not what was meant (order, legacy field).
    Warning,
    /// Accepted, but a person must confirm what cannot be checked automatically.
    ManualReview,
}

/// Which step an issue is about: as much as is known of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct StepRef {
    /// Position in the input array, from 0; `None` for the document as a whole. Shown from 1
    /// (`step #1`), as people count.
    pub index: Option<usize>,
    pub order: Option<u32>,
    #[serde(rename = "type")]
    pub kind: Option<StepKind>,
}

impl StepRef {
    /// The document as a whole (not an array, no steps).
    pub fn document() -> Self {
        Self { index: None, order: None, kind: None }
    }

    fn of(index: usize, step: &StepDefinition) -> Self {
        Self { index: Some(index), order: Some(step.order), kind: Some(step.kind()) }
    }
}

impl fmt::Display for StepRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(index) = self.index else { return f.write_str("steps") };
        write!(f, "step #{}", index + 1)?;
        match (self.order, self.kind) {
            (Some(order), Some(kind)) => write!(f, " (order {order}, {kind})"),
            (Some(order), None) => write!(f, " (order {order})"),
            (None, Some(kind)) => write!(f, " ({kind})"),
            (None, None) => Ok(()),
        }
    }
}

/// One problem or note about a step definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepIssue {
    pub step: StepRef,
    /// Where in the step, as a path like `config.target_path` or `config.restart[0].kind`.
    pub field: Option<String>,
    pub message: String,
    pub severity: Severity,
}

impl fmt::Display for StepIssue {
    /// `step #1 (order 10, agent_secret_sync): config.targt_path: unknown field; did you mean
    /// `target_path`?` (the severity is left to the caller, which usually groups by it).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{}: {field}: {}", self.step, self.message),
            None => write!(f, "{}: {}", self.step, self.message),
        }
    }
}

/// Every error found in a step document (all of them, across all steps), one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", lines(.0))]
pub struct StepErrors(pub Vec<StepIssue>);

fn lines(issues: &[StepIssue]) -> String {
    issues.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

impl StepErrors {
    fn document(message: impl Into<String>) -> Self {
        Self(vec![StepIssue {
            step: StepRef::document(),
            field: None,
            message: message.into(),
            severity: Severity::Error,
        }])
    }
}

/// Parses a JSON document holding an array of step definitions (a `steps_file`).
///
/// # Errors
///
/// Every error of every step (and of the document), when any; warnings only come with a valid plan.
pub fn parse_steps(json: &str) -> Result<StepPlan, StepErrors> {
    // serde_json's syntax errors give a position and what was expected, never the text around it.
    let value: Value = serde_json::from_str(json).map_err(|e| StepErrors::document(format!("not valid JSON: {e}")))?;
    match value {
        Value::Array(items) => parse_step_values(&items),
        other => Err(StepErrors::document(format!(
            "expected a JSON array of step objects ([{{\"type\": …, \"order\": …, \"config\": {{…}}}}, …]), got {}",
            kind_of(&other)
        ))),
    }
}

/// Parses step definitions already read as JSON values: the elements of a steps array, or steps
/// written inline in the TOML configuration and converted to JSON values by the config loader.
///
/// # Errors
///
/// As [`parse_steps`].
pub fn parse_step_values(values: &[Value]) -> Result<StepPlan, StepErrors> {
    let parsed: Vec<Parsed> = values.iter().enumerate().map(|(i, v)| parse_one(i, v)).collect();

    let mut errors = Vec::new();
    let mut notes = Vec::new();
    for issue in parsed.iter().flat_map(|p| p.issues.iter().cloned()) {
        if issue.severity == Severity::Error { errors.push(issue) } else { notes.push(issue) }
    }
    // Orders are compared across all steps, failed ones included, so that one run shows everything.
    let mut first_with_order: BTreeMap<u32, &StepRef> = BTreeMap::new();
    for p in &parsed {
        let Some(order) = p.reference.order else { continue };
        match first_with_order.get(&order) {
            Some(first) => errors.push(StepIssue {
                step: p.reference.clone(),
                field: Some("order".to_owned()),
                message: format!("{order} is also the order of {first}; give each step its own order"),
                severity: Severity::Error,
            }),
            None => {
                first_with_order.insert(order, &p.reference);
            }
        }
    }
    if !errors.is_empty() {
        errors.sort_by_key(|i| i.step.index);
        return Err(StepErrors(errors));
    }

    let steps: Vec<(usize, StepDefinition)> =
        parsed.into_iter().enumerate().filter_map(|(i, p)| p.step.map(|s| (i, s))).collect();
    notes.extend(order_warnings(&steps));
    if steps.is_empty() {
        notes.push(StepIssue {
            step: StepRef::document(),
            field: None,
            message: EMPTY_PLAN_WARNING.to_owned(),
            severity: Severity::Warning,
        });
    }
    notes.sort_by_key(|i| i.step.index);
    let mut steps: Vec<StepDefinition> = steps.into_iter().map(|(_, s)| s).collect();
    steps.sort_by_key(|s| s.order);
    Ok(StepPlan { steps, warnings: notes })
}

/// Warnings about the order of valid steps: publish before reload, reload before verify and notify.
fn order_warnings(steps: &[(usize, StepDefinition)]) -> Vec<StepIssue> {
    let mut out = Vec::new();
    for (index, step) in steps {
        let later = |pred: &dyn Fn(&StepDefinition) -> bool| -> Vec<String> {
            steps
                .iter()
                .filter(|(_, other)| other.order > step.order && pred(other))
                .map(|(j, other)| StepRef::of(*j, other).to_string())
                .collect()
        };
        let mut warn = |field: &str, message: String| {
            out.push(StepIssue {
                step: StepRef::of(*index, step),
                field: Some(field.to_owned()),
                message,
                severity: Severity::Warning,
            });
        };
        let is_publish = |s: &StepDefinition| s.phase() == Phase::Publish;
        let is_reload = |s: &StepDefinition| s.phase() == Phase::Reload;
        match &step.config {
            StepConfig::IisRecycle(c) => {
                let writes_same_agent =
                    |s: &StepDefinition| matches!(&s.config, StepConfig::AgentSecretSync(w) if w.agent == c.agent);
                if !steps.iter().any(|(_, s)| writes_same_agent(s)) {
                    let field = if c.agent.is_legacy() { "agent_url" } else { "agent_id" };
                    warn(
                        field,
                        "no agent_secret_sync step writes the secret on this agent: the app pool will reload \
                         whatever secret is already on disk"
                            .to_owned(),
                    );
                } else {
                    let writers = later(&writes_same_agent);
                    if !writers.is_empty() {
                        warn(
                            "order",
                            format!(
                                "recycles before {} writes the new secret on the same agent; give this step a \
                                 higher order",
                                writers.join(", ")
                            ),
                        );
                    }
                }
            }
            StepConfig::SpringActuatorRefresh(_) | StepConfig::AzureAppServiceRestart(_) => {
                let publishers = later(&is_publish);
                if !publishers.is_empty() {
                    warn(
                        "order",
                        format!(
                            "reloads before {} publishes the new secret, so it may reload the old one; give this \
                             step a higher order",
                            publishers.join(", ")
                        ),
                    );
                }
            }
            StepConfig::Webhook(_) => {
                let reloads = later(&is_reload);
                if !reloads.is_empty() {
                    warn(
                        "order",
                        format!(
                            "notifies before {} reloads the application; webhooks usually come last",
                            reloads.join(", ")
                        ),
                    );
                }
            }
            StepConfig::HttpHealthCheck(_) => {
                let pending = later(&|s: &StepDefinition| is_publish(s) || is_reload(s));
                if !pending.is_empty() {
                    warn(
                        "order",
                        format!(
                            "checks health before {}, so it proves nothing about the new secret; give this step \
                             a higher order",
                            pending.join(", ")
                        ),
                    );
                }
            }
            StepConfig::AzureKeyVault(_) | StepConfig::KubernetesSecret(_) | StepConfig::AgentSecretSync(_) => {}
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------------
// Parsing one step
// ---------------------------------------------------------------------------------------------------

/// One element of the input, parsed: what is known of it, the step if it is valid, and its issues.
struct Parsed {
    reference: StepRef,
    step: Option<StepDefinition>,
    issues: Vec<StepIssue>,
}

/// Issues of one step, before the step reference is known in full.
#[derive(Default)]
struct Notes(Vec<(Option<String>, String, Severity)>);

impl Notes {
    fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push((Some(field.into()), message.into(), Severity::Error));
    }
    fn warn(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push((Some(field.into()), message.into(), Severity::Warning));
    }
    fn manual_review(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push((Some(field.into()), message.into(), Severity::ManualReview));
    }
    fn has_errors(&self) -> bool {
        self.0.iter().any(|(_, _, s)| *s == Severity::Error)
    }
}

fn parse_one(index: usize, value: &Value) -> Parsed {
    let mut reference = StepRef { index: Some(index), order: None, kind: None };
    let mut notes = Notes::default();
    let step = match value {
        Value::Object(map) => parse_object(map, &mut reference, &mut notes),
        other => {
            notes.0.push((
                None,
                format!(
                    "expected a step object such as {{\"type\": …, \"order\": …, \"config\": {{…}}}}, got {}",
                    kind_of(other)
                ),
                Severity::Error,
            ));
            None
        }
    };
    let issues = notes
        .0
        .into_iter()
        .map(|(field, message, severity)| StepIssue { step: reference.clone(), field, message, severity })
        .collect();
    Parsed { reference, step, issues }
}

fn parse_object(map: &Map<String, Value>, reference: &mut StepRef, n: &mut Notes) -> Option<StepDefinition> {
    let top = Obj::new(map, "");
    let kind = read_kind(&top, n);
    reference.kind = kind;
    reference.order = map.get("order").and_then(Value::as_u64).and_then(|o| u32::try_from(o).ok());

    for key in map.keys() {
        if !TOP_LEVEL_FIELDS.contains(&key.as_str()) {
            let belongs_in_config = kind.is_some_and(|k| k.config_fields().contains(&key.as_str()));
            let message = if belongs_in_config {
                format!("unknown field here; `{key}` belongs inside `config`")
            } else {
                unknown_field_message(key, TOP_LEVEL_FIELDS, None)
            };
            n.error(key.as_str(), message);
        } else if (key == "agent_id" || key == "agent_url")
            && let Some(kind) = kind.filter(|k| !k.takes_agent())
        {
            n.error(
                key.as_str(),
                format!("{kind} runs without an agent; only agent_secret_sync and iis_recycle take one"),
            );
        }
    }

    let order = top.uint(n, "order", Need::Required, u64::from(u32::MAX)).and_then(|o| u32::try_from(o).ok());
    let on_failure = top.one_of(n, "on_failure", Need::Optional, OnFailure::CHOICES);
    let name = top.text(n, "name", Need::Optional, check_step_name);
    let retries = top.uint(n, "retries", Need::Optional, u64::from(MAX_RETRIES)).and_then(|r| u32::try_from(r).ok());
    let retry_delay = top.span(n, "retry_delay", Need::Optional);
    if retry_delay.is_some_and(|d| d > MAX_RETRY_DELAY) {
        n.error("retry_delay", format!("at most {MAX_RETRY_DELAY}: a retry is a delayed queue message"));
    }
    let agent = match kind {
        Some(k) if k.takes_agent() => read_agent(&top, n),
        _ => None,
    };
    let config = match top.value(n, "config", Need::Required) {
        None => None,
        Some(Value::Object(cfg)) => kind.and_then(|k| parse_config(k, &Obj::new(cfg, "config."), agent, n)),
        Some(other) => {
            n.error("config", wrong_type("an object", other));
            None
        }
    };
    if n.has_errors() {
        return None;
    }
    Some(StepDefinition {
        name,
        order: order?,
        on_failure: on_failure.unwrap_or_default(),
        retries: retries.unwrap_or(DEFAULT_RETRIES),
        retry_delay: retry_delay.unwrap_or(DEFAULT_RETRY_DELAY),
        config: config?,
    })
}

fn read_kind(top: &Obj<'_>, n: &mut Notes) -> Option<StepKind> {
    let known: Vec<&str> = StepKind::ALL.iter().map(|k| k.as_str()).collect();
    match top.get("type") {
        None => {
            n.error("type", format!("missing; one of {}", known.join(", ")));
            None
        }
        Some(Value::String(s)) => {
            let kind = StepKind::parse(s);
            if kind.is_none() {
                let hint = match closest(s, &known) {
                    Some(near) => format!("; did you mean `{near}`?"),
                    None => String::new(),
                };
                n.error("type", format!("unknown step type `{}`{hint} (known: {})", shorten(s), known.join(", ")));
            }
            kind
        }
        Some(other) => {
            n.error("type", wrong_type("a string", other));
            None
        }
    }
}

fn read_agent(top: &Obj<'_>, n: &mut Notes) -> Option<AgentTarget> {
    match (top.get("agent_id"), top.get("agent_url")) {
        (Some(_), Some(_)) => {
            n.error("agent_url", "give agent_id or the legacy agent_url, not both");
            None
        }
        (Some(_), None) => {
            let s = top.str(n, "agent_id", Need::Required)?;
            let id = AgentId::parse(s).map_err(|_| {
                "expected the GUID of a connected agent, such as 11111111-1111-1111-1111-111111111111".to_owned()
            });
            top.checked(n, "agent_id", id).map(AgentTarget::Agent)
        }
        (None, Some(_)) => {
            let url = top.url(n, "agent_url", Need::Required, Schemes::HttpOrHttps)?;
            n.manual_review("agent_url", LEGACY_AGENT_URL_REVIEW);
            Some(AgentTarget::LegacyUrl(url))
        }
        (None, None) => {
            n.error("agent_id", "missing; the id of the connected agent that runs this step");
            None
        }
    }
}

fn parse_config(kind: StepKind, cfg: &Obj<'_>, agent: Option<AgentTarget>, n: &mut Notes) -> Option<StepConfig> {
    let env_field = cfg_env_field(kind);
    for key in cfg.map.keys() {
        if kind.config_fields().contains(&key.as_str()) {
            continue;
        }
        let message = if TOP_LEVEL_FIELDS.contains(&key.as_str()) && key != "config" {
            format!("`{key}` belongs at the top level of the step, beside `type`, not inside `config`")
        } else {
            unknown_field_message(key, kind.config_fields(), env_field)
        };
        n.error(cfg.path(key), message);
    }
    let config = match kind {
        StepKind::AzureKeyVault => StepConfig::AzureKeyVault(key_vault(cfg, n)?),
        StepKind::KubernetesSecret => StepConfig::KubernetesSecret(kubernetes(cfg, n)?),
        StepKind::AgentSecretSync => StepConfig::AgentSecretSync(agent_sync(cfg, agent, n)?),
        StepKind::IisRecycle => StepConfig::IisRecycle(iis(cfg, agent, n)?),
        StepKind::SpringActuatorRefresh => StepConfig::SpringActuatorRefresh(spring(cfg, n)?),
        StepKind::AzureAppServiceRestart => StepConfig::AzureAppServiceRestart(app_service(cfg, n)?),
        StepKind::HttpHealthCheck => StepConfig::HttpHealthCheck(health_check(cfg, n)?),
        StepKind::Webhook => StepConfig::Webhook(webhook(cfg, n)?),
    };
    Some(config)
}

/// The field in which a step of this kind names the environment variable holding its secret.
fn cfg_env_field(kind: StepKind) -> Option<&'static str> {
    match kind {
        StepKind::SpringActuatorRefresh => Some("bearer_token_env"),
        StepKind::Webhook => Some("signing_secret_env"),
        _ => None,
    }
}

// Each reader below reads every field it knows, noting every problem, and builds the config only
// when all required fields are there; `parse_object` drops the step when any error was noted, so an
// optional field that failed never silently becomes its default.

fn key_vault(o: &Obj<'_>, n: &mut Notes) -> Option<AzureKeyVaultConfig> {
    let vault_url = o.url(n, "vault_url", Need::Required, Schemes::HttpsOnly);
    let secret_name = o.text(n, "secret_name", Need::Required, check_key_vault_secret_name);
    let secondary_url = o.url(n, "secondary_vault_url", Need::Optional, Schemes::HttpsOnly);
    let secondary_name = o.text(n, "secondary_secret_name", Need::Optional, check_key_vault_secret_name);
    for (field, url) in [("vault_url", &vault_url), ("secondary_vault_url", &secondary_url)] {
        if url.as_ref().is_some_and(|u| u.query().is_some()) {
            n.error(
                o.path(field),
                "must be the vault's address without a query, such as https://myvault.vault.azure.net",
            );
        }
    }
    if o.get("secondary_secret_name").is_some() && o.get("secondary_vault_url").is_none() {
        n.error(
            o.path("secondary_secret_name"),
            "given without secondary_vault_url: name the second vault, or remove it",
        );
    }
    let content_type = o.text(n, "content_type", Need::Optional, check_content_type);
    let tags = o.string_map(n, "tags", check_tag_name, check_tag_value);
    if tags.as_ref().is_some_and(|t| t.len() > MAX_KEY_VAULT_USER_TAGS) {
        n.error(
            o.path("tags"),
            format!("at most {MAX_KEY_VAULT_USER_TAGS} tags: Key Vault allows 15 and the rotator adds 3 of its own"),
        );
    }
    let (vault_url, secret_name) = (vault_url?, secret_name?);
    let secondary = secondary_url.map(|url| SecondaryVault {
        vault_url: url,
        secret_name: secondary_name.unwrap_or_else(|| secret_name.clone()),
    });
    if secondary.as_ref().is_some_and(|s| s.vault_url == vault_url && s.secret_name == secret_name) {
        n.error(o.path("secondary_vault_url"), "is the primary vault and secret again");
    }
    Some(AzureKeyVaultConfig {
        vault_url,
        secret_name,
        secondary,
        content_type: content_type.unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned()),
        tags: tags.unwrap_or_default(),
    })
}

fn kubernetes(o: &Obj<'_>, n: &mut Notes) -> Option<KubernetesSecretConfig> {
    let namespace = o.text(n, "namespace", Need::Required, check_dns_label);
    let secret_name = o.text(n, "secret_name", Need::Required, check_dns_subdomain);
    let key = o.text(n, "key", Need::Required, check_secret_data_key);
    let context = o.text(n, "context", Need::Optional, check_nothing_more);
    let mut restart = Vec::new();
    if let Some(items) = o.array(n, "restart") {
        for (i, item) in items.iter().enumerate() {
            let at = format!("{}[{i}]", o.path("restart"));
            let Value::Object(map) = item else {
                n.error(at, wrong_type("an object {\"kind\": \"Deployment\", \"name\": …}", item));
                continue;
            };
            let w = Obj::new(map, format!("{at}."));
            for key in map.keys().filter(|k| !["kind", "name"].contains(&k.as_str())) {
                n.error(w.path(key), unknown_field_message(key, &["kind", "name"], None));
            }
            let kind = w.one_of(n, "kind", Need::Required, WorkloadKind::CHOICES);
            let name = w.text(n, "name", Need::Required, check_dns_subdomain);
            if let (Some(kind), Some(name)) = (kind, name) {
                let workload = WorkloadRef { kind, name };
                if restart.contains(&workload) {
                    n.error(at, format!("{}/{} is listed twice", kind.as_str(), workload.name));
                } else {
                    restart.push(workload);
                }
            }
        }
    }
    Some(KubernetesSecretConfig { namespace: namespace?, secret_name: secret_name?, key: key?, context, restart })
}

fn agent_sync(o: &Obj<'_>, agent: Option<AgentTarget>, n: &mut Notes) -> Option<AgentSecretSyncConfig> {
    let target_path = o.text(n, "target_path", Need::Required, check_target_path);
    let secret_key = o.text(n, "secret_key", Need::Required, check_nothing_more);
    let file_format = o.one_of(n, "file_format", Need::Required, FileFormat::CHOICES);
    if let (Some(key), Some(format)) = (&secret_key, file_format) {
        let checked = check_secret_key(key, format);
        o.checked(n, "secret_key", checked);
    }
    let create_if_missing = o.bool(n, "create_if_missing", Need::Optional);
    let backup = o.bool(n, "backup", Need::Optional);
    Some(AgentSecretSyncConfig {
        agent: agent?,
        target_path: target_path?,
        secret_key: secret_key?,
        file_format: file_format?,
        create_if_missing: create_if_missing.unwrap_or(false),
        backup: backup.unwrap_or(true),
    })
}

fn iis(o: &Obj<'_>, agent: Option<AgentTarget>, n: &mut Notes) -> Option<IisRecycleConfig> {
    let app_pool = o.text(n, "app_pool", Need::Optional, check_app_pool);
    let site_name = o.text(n, "site_name", Need::Optional, check_app_pool);
    if o.get("app_pool").is_none() && o.get("site_name").is_none() {
        n.error(o.path("app_pool"), "missing; the IIS application pool to recycle");
    }
    let app_pool = match (app_pool, site_name) {
        (Some(pool), Some(site)) if pool != site => {
            n.error(
                o.path("site_name"),
                "is the legacy name of app_pool and names another pool than app_pool; give app_pool only",
            );
            None
        }
        (pool, Some(site)) => {
            n.warn(o.path("site_name"), "legacy field, normalised to app_pool; write app_pool");
            Some(pool.unwrap_or(site))
        }
        (pool, None) => pool,
    };
    let mode = o.one_of(n, "mode", Need::Optional, RecycleMode::CHOICES);
    Some(IisRecycleConfig { agent: agent?, app_pool: app_pool?, mode: mode.unwrap_or_default() })
}

fn spring(o: &Obj<'_>, n: &mut Notes) -> Option<SpringActuatorRefreshConfig> {
    let url = o.url(n, "url", Need::Required, Schemes::HttpOrHttps);
    let bearer_token_env = o.env_name(n, "bearer_token_env");
    let timeout = o.positive_span(n, "timeout");
    Some(SpringActuatorRefreshConfig {
        url: url?,
        bearer_token_env,
        timeout: timeout.unwrap_or(DEFAULT_SPRING_TIMEOUT),
    })
}

fn app_service(o: &Obj<'_>, n: &mut Notes) -> Option<AzureAppServiceRestartConfig> {
    let subscription_id = o.str(n, "subscription_id", Need::Required).and_then(|s| {
        let id = Uuid::parse_str(s.trim())
            .map_err(|_| "expected a subscription GUID such as 33333333-3333-3333-3333-333333333333".to_owned());
        o.checked(n, "subscription_id", id)
    });
    let resource_group = o.text(n, "resource_group", Need::Required, check_resource_group);
    let app_name = o.text(n, "app_name", Need::Required, check_app_service_name);
    let slot = o.text(n, "slot", Need::Optional, check_app_service_name);
    let mode = o.one_of(n, "mode", Need::Optional, RestartMode::CHOICES);
    let refresh = o.bool(n, "refresh_key_vault_references", Need::Optional);
    Some(AzureAppServiceRestartConfig {
        subscription_id: subscription_id?,
        resource_group: resource_group?,
        app_name: app_name?,
        slot,
        mode: mode.unwrap_or_default(),
        refresh_key_vault_references: refresh.unwrap_or(true),
    })
}

fn health_check(o: &Obj<'_>, n: &mut Notes) -> Option<HttpHealthCheckConfig> {
    let url = o.url(n, "url", Need::Required, Schemes::HttpOrHttps);
    let expected_status = o.uint(n, "expected_status", Need::Optional, 599).and_then(|s| {
        let status = u16::try_from(s)
            .ok()
            .filter(|s| *s >= 100)
            .ok_or_else(|| "expected an HTTP status from 100 to 599".to_owned());
        o.checked(n, "expected_status", status)
    });
    let timeout = o.positive_span(n, "timeout").unwrap_or(DEFAULT_HEALTH_TIMEOUT);
    let interval = o.positive_span(n, "interval").unwrap_or(DEFAULT_HEALTH_INTERVAL);
    if interval > timeout {
        n.error(o.path("interval"), format!("{interval} is longer than the whole wait (timeout {timeout})"));
    }
    let contains = match o.str(n, "contains", Need::Optional) {
        Some("") => {
            n.error(o.path("contains"), "must not be empty; leave it out to accept any body");
            None
        }
        other => other.map(str::to_owned),
    };
    Some(HttpHealthCheckConfig {
        url: url?,
        expected_status: expected_status.unwrap_or(DEFAULT_EXPECTED_STATUS),
        timeout,
        interval,
        contains,
    })
}

fn webhook(o: &Obj<'_>, n: &mut Notes) -> Option<WebhookConfig> {
    let url = o.url(n, "url", Need::Required, Schemes::HttpOrHttps);
    let signing_secret_env = o.env_name(n, "signing_secret_env");
    if o.get("signing_secret_env").is_none() {
        n.warn(
            o.path("signing_secret_env"),
            "not set, so events are sent unsigned; name the environment variable holding an HMAC key so the \
             receiver can check them",
        );
    }
    let headers = o.string_map(n, "headers", check_header_name, check_header_value);
    for name in headers.iter().flat_map(|h| h.keys()) {
        if name.eq_ignore_ascii_case("authorization") {
            n.warn(
                format!("{}.{name}", o.path("headers")),
                "a credential in a step definition is readable by anyone who can read the configuration; prefer \
                 signing_secret_env",
            );
        }
    }
    let mut events = Vec::new();
    if let Some(items) = o.array(n, "events") {
        for (i, item) in items.iter().enumerate() {
            let at = format!("{}[{i}]", o.path("events"));
            match item {
                Value::String(s) => match check_event(s) {
                    Ok(()) if events.contains(s) => n.error(at, "listed twice"),
                    Ok(()) => events.push(s.clone()),
                    Err(m) => n.error(at, m),
                },
                other => n.error(at, wrong_type("a string", other)),
            }
        }
    }
    Some(WebhookConfig { url: url?, signing_secret_env, headers: headers.unwrap_or_default(), events })
}

// ---------------------------------------------------------------------------------------------------
// Reading fields
// ---------------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    Required,
    Optional,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Schemes {
    HttpOrHttps,
    HttpsOnly,
}

type Check = fn(&str) -> Result<(), String>;

/// A JSON object being read, with the path prefix of its fields (`""`, `"config."`, ...).
struct Obj<'a> {
    map: &'a Map<String, Value>,
    prefix: String,
}

impl<'a> Obj<'a> {
    fn new(map: &'a Map<String, Value>, prefix: impl Into<String>) -> Self {
        Self { map, prefix: prefix.into() }
    }

    fn path(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The value of a field; `null` counts as absent (as it would in TOML, which has no null).
    fn get(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    fn value(&self, n: &mut Notes, name: &str, need: Need) -> Option<&'a Value> {
        let value = self.get(name);
        if value.is_none() && need == Need::Required {
            n.error(self.path(name), "missing");
        }
        value
    }

    fn checked<T>(&self, n: &mut Notes, name: &str, result: Result<T, String>) -> Option<T> {
        result.map_err(|message| n.error(self.path(name), message)).ok()
    }

    fn str(&self, n: &mut Notes, name: &str, need: Need) -> Option<&'a str> {
        match self.value(n, name, need)? {
            Value::String(s) => Some(s),
            other => {
                n.error(self.path(name), wrong_type("a string", other));
                None
            }
        }
    }

    /// A one-line text: not blank, no control characters, no surrounding spaces, then `check`.
    fn text(&self, n: &mut Notes, name: &str, need: Need, check: Check) -> Option<String> {
        let s = self.str(n, name, need)?;
        let checked = check_plain_text(s).and_then(|()| check(s)).map(|()| s.to_owned());
        self.checked(n, name, checked)
    }

    fn uint(&self, n: &mut Notes, name: &str, need: Need, max: u64) -> Option<u64> {
        let result = match self.value(n, name, need)? {
            Value::Number(num) => match num.as_u64() {
                Some(x) if x <= max => Ok(x),
                _ => Err(format!("expected a whole number from 0 to {max}, got {num}")),
            },
            other => Err(wrong_type("a whole number", other)),
        };
        self.checked(n, name, result)
    }

    fn bool(&self, n: &mut Notes, name: &str, need: Need) -> Option<bool> {
        match self.value(n, name, need)? {
            Value::Bool(b) => Some(*b),
            other => {
                n.error(self.path(name), wrong_type("true or false", other));
                None
            }
        }
    }

    fn span(&self, n: &mut Notes, name: &str, need: Need) -> Option<Span> {
        let result = match self.value(n, name, need)? {
            Value::String(s) => s.parse::<Span>().map_err(|e| e.to_string()),
            other => Err(wrong_type("a duration such as \"30s\" or \"2m\"", other)),
        };
        self.checked(n, name, result)
    }

    fn positive_span(&self, n: &mut Notes, name: &str) -> Option<Span> {
        let span = self.span(n, name, Need::Optional)?;
        self.checked(
            n,
            name,
            if span.as_duration().is_zero() { Err("must be longer than 0s".to_owned()) } else { Ok(span) },
        )
    }

    fn url(&self, n: &mut Notes, name: &str, need: Need, schemes: Schemes) -> Option<Url> {
        let s = self.str(n, name, need)?;
        self.checked(n, name, check_url(s, schemes))
    }

    /// One of a closed set of words; an unknown one gets the list (and the closest word).
    fn one_of<T: Copy>(&self, n: &mut Notes, name: &str, need: Need, choices: &[(&'static str, T)]) -> Option<T> {
        let s = self.str(n, name, need)?;
        let found = choices.iter().find(|(word, _)| *word == s).map(|(_, v)| *v);
        if found.is_none() {
            let words: Vec<&str> = choices.iter().map(|(w, _)| *w).collect();
            let hint = closest(s, &words).map(|w| format!("did you mean `{w}`? ")).unwrap_or_default();
            n.error(
                self.path(name),
                format!("unknown value `{}`; {hint}expected one of {}", shorten(s), words.join(", ")),
            );
        }
        found
    }

    /// The name of an environment variable holding a secret. Never quoted back when refused: a
    /// refused "name" is most likely the secret itself, pasted in the wrong place.
    fn env_name(&self, n: &mut Notes, name: &str) -> Option<String> {
        let s = self.str(n, name, Need::Optional)?;
        self.checked(n, name, check_env_name(s).map(|()| s.to_owned()))
    }

    fn array(&self, n: &mut Notes, name: &str) -> Option<&'a Vec<Value>> {
        match self.value(n, name, Need::Optional)? {
            Value::Array(items) => Some(items),
            other => {
                n.error(self.path(name), wrong_type("an array", other));
                None
            }
        }
    }

    /// An object of strings; each entry's problem is reported at `name.key`.
    fn string_map(
        &self,
        n: &mut Notes,
        name: &str,
        check_key: Check,
        check_value: Check,
    ) -> Option<BTreeMap<String, String>> {
        let map = match self.value(n, name, Need::Optional)? {
            Value::Object(map) => map,
            other => {
                n.error(self.path(name), wrong_type("an object of strings", other));
                return None;
            }
        };
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (key, value) in map {
            let checked = match value {
                Value::String(s) => check_key(key).and_then(|()| check_value(s)).map(|()| s.clone()),
                other => Err(wrong_type("a string", other)),
            };
            match checked {
                Ok(s) => {
                    out.insert(key.clone(), s);
                }
                Err(message) => {
                    n.error(format!("{}.{key}", self.path(name)), message);
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// "expected a string, got a number": the JSON kinds only, never the value (it may be a secret).
fn wrong_type(expected: &str, got: &Value) -> String {
    format!("expected {expected}, got {}", kind_of(got))
}

/// An operator's word quoted back (a type, a format), cut short.
fn shorten(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX { s.to_owned() } else { format!("{}…", s.chars().take(MAX).collect::<String>()) }
}

fn unknown_field_message(name: &str, allowed: &[&str], env_field: Option<&str>) -> String {
    let mut message = String::from("unknown field");
    let near = closest(name, allowed);
    if let Some(near) = near {
        message.push_str(&format!("; did you mean `{near}`?"));
    }
    let lower = name.to_ascii_lowercase();
    if ["secret", "token", "password", "passwd", "credential", "apikey", "api_key"].iter().any(|w| lower.contains(w)) {
        message.push_str("; step definitions never hold secret values");
        if let Some(env_field) = env_field {
            message.push_str(&format!(": name the environment variable that holds it in `{env_field}`"));
        }
    } else if near.is_none() {
        message.push_str(&format!("; expected one of {}", allowed.join(", ")));
    }
    message
}

/// The allowed word closest to `word` (case-insensitively), when it is at most 2 edits away, and
/// at most 1 for words under 6 characters (else `xml` would suggest `yaml`).
fn closest<'w>(word: &str, allowed: &[&'w str]) -> Option<&'w str> {
    let word = word.to_lowercase();
    let limit = if word.chars().count() < 6 { 1 } else { 2 };
    allowed
        .iter()
        .map(|candidate| (edit_distance(&word, &candidate.to_lowercase()), *candidate))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, candidate)| candidate)
}

/// Edit distance by characters, counting a swap of two neighbours as one edit (`ordre`, `ulr`).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // d[i][j]: distance between the first i characters of a and the first j of b.
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

// ---------------------------------------------------------------------------------------------------
// Field rules
// ---------------------------------------------------------------------------------------------------

fn check_nothing_more(_: &str) -> Result<(), String> {
    Ok(())
}

fn check_plain_text(s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        Err("must not be empty".to_owned())
    } else if s.chars().any(char::is_control) {
        Err("must not contain control characters (such as line breaks)".to_owned())
    } else if s.trim() != s {
        Err("must not start or end with spaces".to_owned())
    } else {
        Ok(())
    }
}

fn check_step_name(s: &str) -> Result<(), String> {
    if s.chars().count() > 200 { Err("at most 200 characters".to_owned()) } else { Ok(()) }
}

/// URLs in steps: http(s) only, a host, no credentials, no fragment. The URL itself is never
/// quoted in the message: webhook and callback URLs often carry a token.
fn check_url(s: &str, schemes: Schemes) -> Result<Url, String> {
    let url = Url::parse(s.trim()).map_err(|e| format!("not a valid absolute URL ({e})"))?;
    match (url.scheme(), schemes) {
        ("https", _) | ("http", Schemes::HttpOrHttps) => {}
        ("http", Schemes::HttpsOnly) => return Err("must use https".to_owned()),
        (_, Schemes::HttpsOnly) => return Err("must be an https URL".to_owned()),
        (_, Schemes::HttpOrHttps) => return Err("must be an http or https URL".to_owned()),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry a user name or password (user:pass@); credentials never live in a step \
                    definition"
            .to_owned());
    }
    if url.fragment().is_some() {
        return Err("must not have a #fragment".to_owned());
    }
    Ok(url)
}

fn check_key_vault_secret_name(s: &str) -> Result<(), String> {
    let ok = (1..=127).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok { Ok(()) } else { Err("Key Vault secret names are 1 to 127 letters, digits and '-'".to_owned()) }
}

fn check_content_type(s: &str) -> Result<(), String> {
    if s.chars().count() > 255 { Err("at most 255 characters (Key Vault's limit)".to_owned()) } else { Ok(()) }
}

fn check_tag_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.chars().count() > 512 || s.chars().any(char::is_control) {
        Err("tag names are 1 to 512 characters, without control characters".to_owned())
    } else {
        Ok(())
    }
}

fn check_tag_value(s: &str) -> Result<(), String> {
    if s.chars().count() > 256 || s.chars().any(char::is_control) {
        Err("tag values are at most 256 characters, without control characters".to_owned())
    } else {
        Ok(())
    }
}

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// A Kubernetes namespace: a DNS-1123 label.
fn check_dns_label(s: &str) -> Result<(), String> {
    if s.len() <= 63 && is_dns_label(s) {
        Ok(())
    } else {
        Err("must be a DNS-1123 label: at most 63 lower-case letters, digits and '-', starting and ending with a \
             letter or digit"
            .to_owned())
    }
}

/// A Kubernetes object name: a DNS-1123 subdomain.
fn check_dns_subdomain(s: &str) -> Result<(), String> {
    if s.len() <= 253 && s.split('.').all(is_dns_label) {
        Ok(())
    } else {
        Err("must be a DNS-1123 subdomain: at most 253 lower-case letters, digits, '-' and '.', each part \
             starting and ending with a letter or digit"
            .to_owned())
    }
}

/// A key of a Secret's `data`.
fn check_secret_data_key(s: &str) -> Result<(), String> {
    let ok = s.len() <= 253
        && s != "."
        && s != ".."
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok { Ok(()) } else { Err("Secret keys are at most 253 letters, digits, '-', '_' and '.'".to_owned()) }
}

/// An absolute path on the agent's host, in one of three forms, and without `.`/`..` segments, so
/// that the agent's allowed-roots check compares like with like and nothing climbs out of a root.
fn check_target_path(p: &str) -> Result<(), String> {
    let b = p.as_bytes();
    let (rest, windows) = if p.starts_with(r"\\?\") || p.starts_with(r"\\.\") {
        return Err(
            r"device and verbatim paths (\\?\, \\.\) are not accepted; write C:\... or \\server\share\...".to_owned()
        );
    } else if let Some(unc) = p.strip_prefix(r"\\") {
        let mut parts = unc.split(['\\', '/']);
        let (server, share) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if server.is_empty() || share.is_empty() {
            return Err(r"a UNC path needs a server and a share: \\server\share\dir\file".to_owned());
        }
        (&p[2..], true)
    } else if b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && matches!(b[2], b'\\' | b'/') {
        (&p[3..], true)
    } else if let Some(posix) = p.strip_prefix('/') {
        (posix, false)
    } else {
        return Err(r"must be an absolute path: C:\..., \\server\share\... or /...".to_owned());
    };
    let segments: Vec<&str> = rest.split(['\\', '/']).collect();
    if segments.iter().any(|s| *s == ".." || *s == ".") {
        return Err("must not contain `.` or `..` segments".to_owned());
    }
    if windows && rest.chars().any(|c| matches!(c, ':' | '*' | '?' | '"' | '<' | '>' | '|')) {
        return Err(
            r#"a Windows path must not contain : * ? " < > | after the drive (no alternate data streams)"#.to_owned()
        );
    }
    if segments.last().is_none_or(|s| s.is_empty()) {
        return Err("must name a file, not a directory".to_owned());
    }
    Ok(())
}

/// The key the secret is written under, by file format (see [`AgentSecretSyncConfig::key_path`]).
fn check_secret_key(key: &str, format: FileFormat) -> Result<(), String> {
    match format {
        FileFormat::Json | FileFormat::Yaml => {
            if key.split(':').any(str::is_empty) {
                return Err("nested keys are separated by single ':' with a name on each side, such as \
                            Entra:ClientSecret"
                    .to_owned());
            }
        }
        FileFormat::Ini => {
            let parts: Vec<&str> = key.split(':').collect();
            if parts.len() > 2 || parts.iter().any(|p| p.is_empty()) {
                return Err("an ini key is Key or Section:Key".to_owned());
            }
        }
        FileFormat::Env => {
            if key.contains(':') {
                return Err(format!(
                    "an environment variable name cannot contain ':'; .NET reads '__' as ':', so write {}",
                    shorten(&key.replace(':', "__"))
                ));
            }
            if check_env_name(key).is_err() {
                return Err("an env key is letters, digits and '_', not starting with a digit".to_owned());
            }
        }
        FileFormat::Properties => {
            if key.chars().any(|c| c.is_whitespace() || matches!(c, '=' | ':')) || key.starts_with(['#', '!']) {
                return Err("a properties key has no spaces, '=' or ':' and does not start with '#' or '!'".to_owned());
            }
        }
        FileFormat::Text => {}
    }
    Ok(())
}

/// An IIS app pool name: IIS refuses these characters, and the name is handed to the agent's IIS
/// tooling, where quotes and slashes are the start of trouble.
fn check_app_pool(s: &str) -> Result<(), String> {
    if s.chars().count() > 256 || s.chars().any(|c| matches!(c, '\\' | '/' | ':' | '*' | '?' | '"' | '<' | '>' | '|')) {
        Err(r#"an IIS app pool name is at most 256 characters, without \ / : * ? " < > |"#.to_owned())
    } else {
        Ok(())
    }
}

fn check_resource_group(s: &str) -> Result<(), String> {
    let ok = s.chars().count() <= 90
        && !s.ends_with('.')
        && s.chars().all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '(' | ')'));
    if ok {
        Ok(())
    } else {
        Err("a resource group name is 1 to 90 letters, digits, '-', '_', '.', '(' and ')', not ending in '.'"
            .to_owned())
    }
}

/// App Service app and slot names (ASCII only here, though Azure also takes some Unicode).
fn check_app_service_name(s: &str) -> Result<(), String> {
    let ok = (2..=60).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err("App Service names are 2 to 60 letters, digits and '-', not starting or ending with '-'".to_owned())
    }
}

fn check_env_name(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let ok = (1..=128).contains(&b.len())
        && !b[0].is_ascii_digit()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_');
    if ok {
        Ok(())
    } else {
        Err("must be the name of an environment variable (letters, digits and '_', not starting with a digit) \
             that holds the secret, never the secret itself"
            .to_owned())
    }
}

fn check_header_name(s: &str) -> Result<(), String> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if !s.is_empty() && s.chars().all(token) { Ok(()) } else { Err("not a valid HTTP header name".to_owned()) }
}

fn check_header_value(s: &str) -> Result<(), String> {
    if s.chars().any(|c| c.is_control() && c != '\t') {
        Err("a header value must not contain line breaks or control characters".to_owned())
    } else {
        Ok(())
    }
}

fn check_event(s: &str) -> Result<(), String> {
    if s.is_empty() || s.chars().count() > 100 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err("an event name is 1 to 100 characters without spaces".to_owned())
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------------
// Display helpers
// ---------------------------------------------------------------------------------------------------

/// `myvault` of `https://myvault.vault.azure.net/`.
fn vault_name(url: &Url) -> &str {
    url.host_str().and_then(|h| h.split('.').next()).unwrap_or("")
}

fn host_port(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

fn url_without_query(url: &Url) -> String {
    format!("{}{}", url.origin().ascii_serialization(), url.path())
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGENT: &str = "11111111-1111-1111-1111-111111111111";
    const SEED_1: &str = include_str!("../../../tests/fixtures/steps/seed-example-1.json");
    const SEED_2: &str = include_str!("../../../tests/fixtures/steps/seed-example-2.json");
    const ALL_OPTIONS: &str = include_str!("../../../tests/fixtures/steps/all-options.json");

    fn plan(json: &str) -> StepPlan {
        parse_steps(json).unwrap_or_else(|e| panic!("expected a valid plan, got:\n{e}"))
    }

    fn errors(json: &str) -> Vec<StepIssue> {
        match parse_steps(json) {
            Ok(plan) => panic!("expected errors, got {plan:?}"),
            Err(e) => e.0,
        }
    }

    /// The one issue about `field`, or a panic listing them all.
    fn issue<'a>(issues: &'a [StepIssue], field: &str) -> &'a StepIssue {
        let found: Vec<&StepIssue> = issues.iter().filter(|i| i.field.as_deref() == Some(field)).collect();
        match found.as_slice() {
            [one] => one,
            _ => panic!("expected one issue about {field}, got {issues:#?}"),
        }
    }

    fn sync_step(order: u32, agent: &str) -> String {
        format!(
            r#"{{"type": "agent_secret_sync", "order": {order}, "agent_id": "{agent}",
                "config": {{"target_path": "/etc/app/secrets.env", "secret_key": "CLIENT_SECRET", "file_format": "env"}}}}"#
        )
    }

    fn iis_step(order: u32, agent: &str) -> String {
        format!(
            r#"{{"type": "iis_recycle", "order": {order}, "agent_id": "{agent}", "config": {{"app_pool": "Pool"}}}}"#
        )
    }

    fn simple_step(kind: &str, order: u32) -> String {
        let config = match kind {
            "azure_key_vault" => r#"{"vault_url": "https://kv.vault.azure.net", "secret_name": "s"}"#,
            "spring_actuator_refresh" => r#"{"url": "https://app.example.com/actuator/refresh"}"#,
            "http_health_check" => r#"{"url": "https://app.example.com/health"}"#,
            "webhook" => r#"{"url": "https://hooks.example.com/x", "signing_secret_env": "HOOK_KEY"}"#,
            other => panic!("no simple step for {other}"),
        };
        format!(r#"{{"type": "{kind}", "order": {order}, "config": {config}}}"#)
    }

    fn array(steps: &[String]) -> String {
        format!("[{}]", steps.join(","))
    }

    fn agent() -> AgentId {
        AgentId::parse(AGENT).expect("a GUID")
    }

    #[test]
    fn seed_examples_are_accepted_verbatim() {
        let one = plan(SEED_1);
        assert!(one.warnings.is_empty(), "{:?}", one.warnings);
        let [step] = one.steps.as_slice() else { panic!("one step expected") };
        assert_eq!((step.order, step.on_failure, step.kind()), (10, OnFailure::Abort, StepKind::AgentSecretSync));
        let StepConfig::AgentSecretSync(c) = &step.config else { panic!("{step:?}") };
        assert_eq!(c.agent, AgentTarget::Agent(agent()));
        assert_eq!(c.target_path, r"C:\inetpub\app\appsettings.json");
        assert_eq!(c.key_path(), ["Entra", "ClientSecret"]);
        assert_eq!(c.file_format, FileFormat::Json);
        assert_eq!((c.create_if_missing, c.backup), (false, true));

        let two = plan(SEED_2);
        assert!(two.warnings.is_empty(), "{:?}", two.warnings);
        let kinds: Vec<StepKind> = two.steps.iter().map(StepDefinition::kind).collect();
        assert_eq!(kinds, [StepKind::AgentSecretSync, StepKind::IisRecycle]);
        let StepConfig::IisRecycle(iis) = &two.steps[1].config else { panic!() };
        assert_eq!((iis.app_pool.as_str(), iis.mode), ("DefaultAppPool", RecycleMode::Recycle));
        assert_eq!(two.steps[1].on_failure, OnFailure::Continue);
        assert_eq!(two.steps[1].agent(), Some(&AgentTarget::Agent(agent())));
    }

    #[test]
    fn every_step_type_parses_with_all_its_options() {
        let p = plan(ALL_OPTIONS);
        assert_eq!(p.steps.iter().map(StepDefinition::kind).collect::<Vec<_>>(), StepKind::ALL);
        assert!(p.warnings.is_empty(), "{:#?}", p.warnings);
        let [kv, k8s, sync, iis, spring, app, health, hook] = p.steps.as_slice() else { panic!() };

        assert_eq!(kv.name.as_deref(), Some("Publish to both vaults"));
        assert_eq!((kv.retries, kv.retry_delay), (5, Span::from_secs(60)));
        let StepConfig::AzureKeyVault(c) = &kv.config else { panic!() };
        assert_eq!(c.vault_url.as_str(), "https://kv-payroll.vault.azure.net/");
        assert_eq!(c.secret_name, "AzureAdClientSecret");
        let second = c.secondary.as_ref().expect("secondary vault");
        assert_eq!(second.vault_url.host_str(), Some("kv-payroll-dr.vault.azure.net"));
        assert_eq!(second.secret_name, "AzureAdClientSecret-dr");
        assert_eq!(c.content_type, "application/x-entra-client-secret");
        assert_eq!(c.tags.get("owner").map(String::as_str), Some("payroll"));

        let StepConfig::KubernetesSecret(c) = &k8s.config else { panic!() };
        assert_eq!(
            (c.namespace.as_str(), c.secret_name.as_str(), c.key.as_str()),
            ("payroll", "payroll-api.entra", "AZURE_CLIENT_SECRET")
        );
        assert_eq!(c.context.as_deref(), Some("aks-prod-westeurope"));
        let kinds: Vec<WorkloadKind> = c.restart.iter().map(|w| w.kind).collect();
        assert_eq!(kinds, [WorkloadKind::Deployment, WorkloadKind::StatefulSet, WorkloadKind::DaemonSet]);

        let StepConfig::AgentSecretSync(c) = &sync.config else { panic!() };
        assert_eq!((c.create_if_missing, c.backup), (true, false));

        let StepConfig::IisRecycle(c) = &iis.config else { panic!() };
        assert_eq!(c.mode, RecycleMode::Restart);

        let StepConfig::SpringActuatorRefresh(c) = &spring.config else { panic!() };
        assert_eq!(c.bearer_token_env.as_deref(), Some("ORDERS_ACTUATOR_TOKEN"));
        assert_eq!(c.timeout, Span::from_secs(45));

        let StepConfig::AzureAppServiceRestart(c) = &app.config else { panic!() };
        assert_eq!(c.subscription_id.to_string(), "33333333-3333-3333-3333-333333333333");
        assert_eq!(
            (c.resource_group.as_str(), c.app_name.as_str(), c.slot.as_deref()),
            ("rg-payroll", "payroll-api", Some("staging"))
        );
        assert_eq!((c.mode, c.refresh_key_vault_references), (RestartMode::StopStart, false));

        let StepConfig::HttpHealthCheck(c) = &health.config else { panic!() };
        assert_eq!((c.expected_status, c.timeout, c.interval), (204, Span::from_secs(180), Span::from_secs(10)));
        assert_eq!(c.contains.as_deref(), Some("Healthy"));

        let StepConfig::Webhook(c) = &hook.config else { panic!() };
        assert_eq!(c.signing_secret_env.as_deref(), Some("ROTATION_WEBHOOK_KEY"));
        assert_eq!(c.headers.get("X-Team").map(String::as_str), Some("payroll"));
        assert_eq!(c.events, ["rotation.completed", "rotation.failed"]);
    }

    #[test]
    fn defaults_are_filled_in_when_left_out() {
        let json = array(&[
            r#"{"type": "azure_key_vault", "order": 1, "config": {"vault_url": "https://kv.vault.azure.net", "secret_name": "s",
                "secondary_vault_url": "https://kv2.vault.azure.net"}}"#
                .to_owned(),
            r#"{"type": "azure_app_service_restart", "order": 2,
                "config": {"subscription_id": "33333333-3333-3333-3333-333333333333", "resource_group": "rg", "app_name": "app"}}"#
                .to_owned(),
            r#"{"type": "http_health_check", "order": 3, "config": {"url": "https://app.example.com/health"}}"#.to_owned(),
            r#"{"type": "spring_actuator_refresh", "order": 0, "config": {"url": "http://app:8080/actuator/refresh"}}"#.to_owned(),
        ]);
        let p = plan(&json);
        let [spring, kv, app, health] = p.steps.as_slice() else { panic!() };
        assert_eq!(
            (kv.on_failure, kv.retries, kv.retry_delay),
            (OnFailure::Abort, DEFAULT_RETRIES, DEFAULT_RETRY_DELAY)
        );
        let StepConfig::AzureKeyVault(c) = &kv.config else { panic!() };
        assert_eq!(c.content_type, "text/plain");
        assert_eq!(
            c.secondary.as_ref().map(|s| s.secret_name.as_str()),
            Some("s"),
            "secondary name defaults to the primary's"
        );
        let StepConfig::AzureAppServiceRestart(c) = &app.config else { panic!() };
        assert_eq!((c.mode, c.refresh_key_vault_references, c.slot.as_deref()), (RestartMode::Restart, true, None));
        let StepConfig::HttpHealthCheck(c) = &health.config else { panic!() };
        assert_eq!((c.expected_status, c.timeout, c.interval), (200, Span::from_secs(120), Span::from_secs(5)));
        let StepConfig::SpringActuatorRefresh(c) = &spring.config else { panic!() };
        assert_eq!((c.timeout, c.bearer_token_env.as_deref()), (Span::from_secs(30), None));
    }

    #[test]
    fn the_normalised_form_round_trips_for_every_type() {
        for json in [SEED_1, SEED_2, ALL_OPTIONS] {
            let first = plan(json);
            let normalised = serde_json::to_string_pretty(&first.steps).expect("serialises");
            let again = plan(&normalised);
            assert_eq!(again.steps, first.steps, "{normalised}");
            // And the normalised form is stable.
            assert_eq!(serde_json::to_string_pretty(&again.steps).expect("serialises"), normalised);
        }
        let normalised = serde_json::to_value(&plan(SEED_2).steps).expect("serialises");
        assert_eq!(normalised[1]["type"], "iis_recycle");
        assert_eq!(normalised[1]["agent_id"], AGENT);
        assert_eq!(normalised[1]["on_failure"], "continue");
        assert_eq!(normalised[1]["config"]["app_pool"], "DefaultAppPool");
        assert_eq!(normalised[1]["config"]["mode"], "recycle");
        assert_eq!(normalised[0]["retry_delay"], "30s");
        assert_eq!(normalised[0]["config"]["target_path"], r"C:\inetpub\app\appsettings.json");
        assert!(normalised[0]["config"].get("agent_id").is_none(), "the agent stays at the top level");
    }

    #[test]
    fn step_definition_deserialises_only_through_the_same_checks() {
        let good: serde_json::Value = serde_json::from_str(&sync_step(10, AGENT)).expect("json");
        let step: StepDefinition = serde_json::from_value(good).expect("valid step");
        assert_eq!(step.kind(), StepKind::AgentSecretSync);
        let typo = sync_step(10, AGENT).replace("target_path", "targt_path");
        let err = serde_json::from_str::<StepDefinition>(&typo).expect_err("unknown field");
        assert!(err.to_string().contains("config.targt_path: unknown field; did you mean `target_path`?"), "{err}");
    }

    #[test]
    fn unknown_type_lists_the_known_ones() {
        let e = errors(
            r#"[{"type": "iis_recycel", "order": 10, "config": {}}, {"type": "ftp_upload", "order": 20, "config": {}}]"#,
        );
        let first = issue(&e[..1], "type");
        assert!(matches!(first.step, StepRef { index: Some(0), order: Some(10), kind: None }));
        assert!(
            first.message.contains("unknown step type `iis_recycel`; did you mean `iis_recycle`?"),
            "{}",
            first.message
        );
        assert!(
            e[1].message.contains("known: azure_key_vault, kubernetes_secret, agent_secret_sync"),
            "{}",
            e[1].message
        );
        assert_eq!(e[1].step.index, Some(1));
    }

    #[test]
    fn unknown_top_level_field_is_named_and_suggested() {
        let e =
            errors(&array(&[sync_step(10, AGENT).replace("on_failure\"", "x\"").replace("\"order\"", "\"ordre\"")]));
        let i = issue(&e, "ordre");
        assert_eq!((i.step.index, i.severity), (Some(0), Severity::Error));
        assert!(i.message.starts_with("unknown field; did you mean `order`?"), "{}", i.message);
        let e = errors(&array(&[sync_step(10, AGENT).replace("\"order\"", "\"color\": 1, \"order\"")]));
        assert!(issue(&e, "color").message.contains("expected one of type, name, order, on_failure"), "{e:?}");
    }

    #[test]
    fn typo_in_config_field_names_step_and_field_and_suggests() {
        let json = SEED_1.replace("\"target_path\"", "\"targt_path\"");
        let e = errors(&json);
        let i = issue(&e, "config.targt_path");
        assert!(matches!(i.step, StepRef { index: Some(0), order: Some(10), kind: Some(StepKind::AgentSecretSync) }));
        assert_eq!(
            i.to_string(),
            "step #1 (order 10, agent_secret_sync): config.targt_path: unknown field; did you mean `target_path`?"
        );
        // The missing required field is reported too, in the same run.
        assert_eq!(issue(&e, "config.target_path").message, "missing");
        let far = SEED_1.replace("\"file_format\": \"json\"", "\"file_format\": \"json\", \"encoding\": \"utf-8\"");
        let i = issue(&errors(&far), "config.encoding").clone();
        assert!(
            i.message.contains("expected one of target_path, secret_key, file_format, create_if_missing, backup"),
            "{i}"
        );
    }

    #[test]
    fn fields_on_the_wrong_level_are_pointed_to_the_right_one() {
        let json = r#"[{"type": "iis_recycle", "order": 1, "app_pool": "P", "config": {"agent_id": "11111111-1111-1111-1111-111111111111"}}]"#;
        let e = errors(json);
        assert!(issue(&e, "app_pool").message.contains("belongs inside `config`"), "{e:?}");
        assert!(issue(&e, "config.agent_id").message.contains("belongs at the top level"), "{e:?}");
    }

    #[test]
    fn missing_required_field_is_named() {
        let json = SEED_1.replace("\"secret_key\": \"Entra:ClientSecret\",", "");
        let e = errors(&json);
        let i = issue(&e, "config.secret_key");
        assert_eq!(i.to_string(), "step #1 (order 10, agent_secret_sync): config.secret_key: missing");
        let e = errors(r#"[{"type": "webhook", "config": {"url": "https://hooks.example.com/x"}}]"#);
        assert_eq!(issue(&e, "order").message, "missing");
        let e = errors(r#"[{"type": "webhook", "order": 1}]"#);
        assert_eq!(issue(&e, "config").message, "missing");
        let e = errors(r#"[{"order": 1, "config": {}}]"#);
        assert!(issue(&e, "type").message.starts_with("missing; one of azure_key_vault"), "{e:?}");
        let e = errors(r#"[{"type": "iis_recycle", "order": 1, "config": {"app_pool": "P"}}]"#);
        assert!(issue(&e, "agent_id").message.starts_with("missing"), "{e:?}");
    }

    #[test]
    fn wrong_json_type_names_the_field_and_both_types() {
        let json = r#"[{"type": "http_health_check", "order": "10", "on_failure": true,
            "config": {"url": 5, "expected_status": "200", "timeout": 30, "contains": ["x"]}}]"#;
        let e = errors(json);
        assert_eq!(issue(&e, "order").message, "expected a whole number, got a string");
        assert_eq!(issue(&e, "on_failure").message, "expected a string, got a boolean");
        assert_eq!(issue(&e, "config.url").message, "expected a string, got a number");
        assert_eq!(issue(&e, "config.expected_status").message, "expected a whole number, got a string");
        assert!(issue(&e, "config.timeout").message.starts_with("expected a duration"), "{e:?}");
        assert_eq!(issue(&e, "config.contains").message, "expected a string, got an array");
        assert!(e.iter().all(|i| i.step.index == Some(0) && i.severity == Severity::Error));
        let e = errors(r#"[{"type": "webhook", "order": -1, "config": "https://hooks.example.com"}]"#);
        assert!(issue(&e, "order").message.contains("from 0 to 4294967295, got -1"), "{e:?}");
        assert_eq!(issue(&e, "config").message, "expected an object, got a string");
        let e = errors(r#"[42]"#);
        assert!(e[0].message.contains("expected a step object") && e[0].message.ends_with("got a number"), "{e:?}");
    }

    #[test]
    fn duplicate_order_names_both_steps() {
        let e = errors(&array(&[sync_step(10, AGENT), simple_step("webhook", 20), iis_step(10, AGENT)]));
        let i = issue(&e, "order");
        assert_eq!((i.step.index, i.step.order, i.severity), (Some(2), Some(10), Severity::Error));
        assert!(
            i.to_string().starts_with(
                "step #3 (order 10, iis_recycle): order: 10 is also the order of step #1 (order 10, agent_secret_sync)"
            ),
            "{i}"
        );
    }

    #[test]
    fn relative_target_path_is_refused() {
        let with_path = |p: &str| SEED_1.replace(r"C:\\inetpub\\app\\appsettings.json", p);
        for bad in
            [r"inetpub\\app\\appsettings.json", "app/appsettings.json", r"C:appsettings.json", r"\\inetpub\\app.json"]
        {
            let e = errors(&with_path(bad));
            let i = issue(&e, "config.target_path");
            assert!(i.message.starts_with("must be an absolute path"), "{bad}: {i}");
            assert_eq!(i.step.index, Some(0));
        }
        for bad in [r"C:\\inetpub\\..\\Windows\\win.ini", "/etc/app/../shadow", r"C:\\inetpub\\.\\app.json"] {
            let e = errors(&with_path(bad));
            assert!(issue(&e, "config.target_path").message.contains("`..` segments"), "{bad}");
        }
        for bad in [r"\\\\?\\C:\\x.json", r"C:\\inetpub\\app.json:stream", r"C:\\inetpub\\", r"\\\\server"] {
            assert!(parse_steps(&with_path(bad)).is_err(), "{bad} accepted");
        }
        for good in [
            r"C:\\inetpub\\app\\appsettings.json",
            "D:/sites/app/web.config",
            r"\\\\fs01\\apps\\app\\appsettings.json",
            "/etc/app/app.yaml",
        ] {
            plan(&with_path(good));
        }
    }

    #[test]
    fn unknown_file_format_lists_the_allowed_ones() {
        let e = errors(&SEED_1.replace("\"json\"", "\"xml\""));
        let i = issue(&e, "config.file_format");
        assert_eq!(i.message, "unknown value `xml`; expected one of json, yaml, env, properties, ini, text");
        let e = errors(&SEED_1.replace("\"json\"", "\"JSON\""));
        assert!(issue(&e, "config.file_format").message.contains("did you mean `json`?"), "{e:?}");
    }

    #[test]
    fn a_document_that_is_not_an_array_is_refused() {
        let e = errors(r#"{"type": "webhook", "order": 1}"#);
        assert_eq!(e.len(), 1);
        assert!(matches!(
            &e[0],
            StepIssue { step: StepRef { index: None, .. }, field: None, severity: Severity::Error, .. }
        ));
        assert!(e[0].to_string().starts_with("steps: expected a JSON array of step objects"), "{}", e[0]);
        assert!(e[0].message.ends_with("got an object"));
        let e = errors("[{\"type\": ");
        assert!(e[0].message.starts_with("not valid JSON"), "{}", e[0]);
    }

    #[test]
    fn an_empty_plan_is_valid_with_a_warning() {
        for p in [plan("[]"), parse_step_values(&[]).expect("valid")] {
            assert!(p.steps.is_empty());
            let [w] = p.warnings.as_slice() else { panic!("{:?}", p.warnings) };
            assert_eq!((w.step.index, w.severity), (None, Severity::Warning));
            assert_eq!(w.to_string(), "steps: no rollout steps: only the Entra secret will change");
        }
    }

    #[test]
    fn all_errors_across_all_steps_are_collected() {
        let json = array(&[
            sync_step(10, AGENT).replace("/etc/app/secrets.env", "secrets.env"),
            simple_step("webhook", 20).replace("\"url\"", "\"ulr\""),
            iis_step(30, "not-a-guid"),
        ]);
        let err = parse_steps(&json).expect_err("three bad steps");
        let indexes: Vec<Option<usize>> = err.0.iter().map(|i| i.step.index).collect();
        assert!(indexes.contains(&Some(0)) && indexes.contains(&Some(1)) && indexes.contains(&Some(2)), "{err}");
        assert!(issue(&err.0, "agent_id").message.contains("GUID of a connected agent"));
        let text = err.to_string();
        assert_eq!(text.lines().count(), err.0.len());
        assert!(text.contains("step #2 (order 20, webhook): config.ulr: unknown field; did you mean `url`?"), "{text}");
    }

    #[test]
    fn steps_are_sorted_by_order_and_issues_keep_input_positions() {
        let p = plan(&array(&[simple_step("webhook", 30), sync_step(5, AGENT), iis_step(20, AGENT)]));
        assert_eq!(p.steps.iter().map(|s| s.order).collect::<Vec<_>>(), [5, 20, 30]);
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }

    #[test]
    fn reload_before_publish_is_a_warning() {
        let p = plan(&array(&[iis_step(10, AGENT), sync_step(20, AGENT)]));
        let w = issue(&p.warnings, "order");
        assert_eq!((w.step.index, w.step.kind, w.severity), (Some(0), Some(StepKind::IisRecycle), Severity::Warning));
        assert!(w.message.contains("recycles before step #2 (order 20, agent_secret_sync)"), "{w}");

        let p = plan(&array(&[simple_step("spring_actuator_refresh", 10), simple_step("azure_key_vault", 20)]));
        let w = issue(&p.warnings, "order");
        assert_eq!((w.step.index, w.severity), (Some(0), Severity::Warning));
        assert!(w.message.contains("reloads before step #2 (order 20, azure_key_vault)"), "{w}");

        // A file sync on another agent does not make a recycle early, but the recycle has no sync.
        let other = "22222222-2222-2222-2222-222222222222";
        let p = plan(&array(&[iis_step(10, AGENT), sync_step(20, other), sync_step(5, AGENT)]));
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }

    #[test]
    fn iis_recycle_without_a_file_sync_on_its_agent_is_a_warning() {
        let other = "22222222-2222-2222-2222-222222222222";
        let p = plan(&array(&[sync_step(10, other), iis_step(20, AGENT)]));
        let w = issue(&p.warnings, "agent_id");
        assert_eq!((w.step.index, w.severity), (Some(1), Severity::Warning));
        assert!(w.message.starts_with("no agent_secret_sync step writes the secret on this agent"), "{w}");
    }

    #[test]
    fn webhook_before_a_reload_and_health_check_before_a_publish_are_warnings() {
        let p = plan(&array(&[
            simple_step("webhook", 10),
            simple_step("http_health_check", 20),
            simple_step("azure_key_vault", 30),
            simple_step("spring_actuator_refresh", 40),
        ]));
        let [hook, health] = p.warnings.as_slice() else { panic!("{:#?}", p.warnings) };
        assert_eq!(
            (hook.step.index, hook.step.kind, hook.severity),
            (Some(0), Some(StepKind::Webhook), Severity::Warning)
        );
        assert!(hook.message.contains("notifies before step #4 (order 40, spring_actuator_refresh)"), "{hook}");
        assert_eq!((health.step.index, health.severity), (Some(1), Severity::Warning));
        assert!(health.message.contains("step #3 (order 30, azure_key_vault), step #4"), "{health}");
    }

    #[test]
    fn legacy_agent_url_is_accepted_for_manual_review() {
        let json = SEED_2
            .replace(&format!("\"agent_id\": \"{AGENT}\""), "\"agent_url\": \"https://web01.corp.example.com:8443\"");
        let p = plan(&json);
        let reviews: Vec<&StepIssue> = p.warnings.iter().filter(|w| w.severity == Severity::ManualReview).collect();
        assert_eq!(reviews.len(), 2, "{:#?}", p.warnings);
        assert_eq!((reviews[0].step.index, reviews[0].field.as_deref()), (Some(0), Some("agent_url")));
        assert!(reviews[0].message.starts_with("legacy direct agent_url cannot be probed automatically"));
        let url = Url::parse("https://web01.corp.example.com:8443").expect("url");
        assert_eq!(p.steps[1].agent(), Some(&AgentTarget::LegacyUrl(url.clone())));
        assert_eq!(p.steps[1].url_fields(), [&url]);
        assert_eq!(
            p.steps[1].display_name(),
            "Recycle IIS app pool DefaultAppPool on agent at web01.corp.example.com:8443"
        );
        // Both targets on one step are refused.
        let both = SEED_1.replace("\"agent_id\"", "\"agent_url\": \"https://web01\", \"agent_id\"");
        assert!(issue(&errors(&both), "agent_url").message.contains("not both"));
    }

    #[test]
    fn legacy_site_name_is_normalised_to_app_pool() {
        let p = plan(&SEED_2.replace("\"app_pool\"", "\"site_name\""));
        let StepConfig::IisRecycle(c) = &p.steps[1].config else { panic!() };
        assert_eq!(c.app_pool, "DefaultAppPool");
        let w = issue(&p.warnings, "config.site_name");
        assert_eq!((w.step.index, w.severity), (Some(1), Severity::Warning));
        assert!(w.message.contains("normalised to app_pool"));
        let normalised = serde_json::to_value(&p.steps).expect("serialises");
        assert_eq!(normalised[1]["config"], serde_json::json!({"app_pool": "DefaultAppPool", "mode": "recycle"}));
        assert_eq!(plan(&normalised.to_string()).steps, p.steps);

        let same = SEED_2.replace(
            "\"app_pool\": \"DefaultAppPool\"",
            "\"app_pool\": \"DefaultAppPool\", \"site_name\": \"DefaultAppPool\"",
        );
        assert_eq!(plan(&same).steps, p.steps);
        let differ = SEED_2
            .replace("\"app_pool\": \"DefaultAppPool\"", "\"app_pool\": \"DefaultAppPool\", \"site_name\": \"Other\"");
        let e = errors(&differ);
        assert_eq!(
            (issue(&e, "config.site_name").step.index, issue(&e, "config.site_name").severity),
            (Some(1), Severity::Error)
        );
    }

    #[test]
    fn an_agent_on_a_step_that_takes_none_is_refused() {
        let json = simple_step("webhook", 10).replace("\"order\"", &format!("\"agent_id\": \"{AGENT}\", \"order\""));
        let e = errors(&array(&[json]));
        assert!(issue(&e, "agent_id").message.starts_with("webhook runs without an agent"), "{e:?}");
    }

    #[test]
    fn unsafe_urls_are_refused_without_quoting_them() {
        let cases = [
            ("webhook", "https://user:hunter2@hooks.example.com/x", "user name or password"),
            ("webhook", "https://hooks.example.com/x#hunter2", "#fragment"),
            ("webhook", "ftp://hooks.example.com/hunter2", "http or https"),
            ("webhook", "hooks.example.com/hunter2", "not a valid absolute URL"),
            ("webhook", "file:///etc/hunter2", "http or https"),
            ("azure_key_vault", "http://kv.vault.azure.net/hunter2", "must use https"),
            ("azure_key_vault", "https://kv.vault.azure.net/?x=hunter2", "without a query"),
        ];
        for (kind, url, expected) in cases {
            let field = if kind == "webhook" { "url" } else { "vault_url" };
            let step = simple_step(kind, 1).replace(
                &serde_json::from_str::<serde_json::Value>(&simple_step(kind, 1)).expect("json")["config"][field]
                    .as_str()
                    .expect("url")
                    .to_owned(),
                url,
            );
            let e = parse_steps(&array(&[step])).expect_err(url).to_string();
            assert!(e.contains(&format!("config.{field}: ")) && e.contains(expected), "{url}: {e}");
            assert!(!e.contains("hunter2"), "the URL was quoted: {e}");
        }
    }

    #[test]
    fn secret_like_fields_are_unknown_and_their_values_never_echoed() {
        let json = simple_step("webhook", 1)
            .replace("\"signing_secret_env\"", "\"signing_secret\"")
            .replace("HOOK_KEY", "hunter2-value");
        let e = parse_steps(&array(&[json])).expect_err("unknown field");
        let i = issue(&e.0, "config.signing_secret");
        assert!(
            i.message.contains(
                "never hold secret values: name the environment variable that holds it in `signing_secret_env`"
            ),
            "{i}"
        );
        let spring =
            simple_step("spring_actuator_refresh", 1).replace("\"url\"", "\"password\": \"hunter2-value\", \"url\"");
        let e2 = parse_steps(&array(&[spring])).expect_err("unknown field");
        assert!(issue(&e2.0, "config.password").message.contains("never hold secret values"));
        for text in [e.to_string(), e2.to_string()] {
            assert!(!text.contains("hunter2"), "{text}");
        }
    }

    #[test]
    fn env_var_fields_take_names_and_never_echo_a_pasted_secret() {
        let json = simple_step("webhook", 1).replace("HOOK_KEY", "whsec_hunter2/abc==");
        let e = parse_steps(&array(&[json])).expect_err("not a name");
        assert!(issue(&e.0, "config.signing_secret_env").message.contains("never the secret itself"));
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let unsigned = simple_step("webhook", 1).replace(", \"signing_secret_env\": \"HOOK_KEY\"", "");
        let p = plan(&array(&[unsigned]));
        assert_eq!(issue(&p.warnings, "config.signing_secret_env").severity, Severity::Warning);
    }

    #[test]
    fn secret_keys_are_checked_by_file_format() {
        let with = |key: &str, format: &str| {
            SEED_1
                .replace("Entra:ClientSecret", key)
                .replace("\"file_format\": \"json\"", &format!("\"file_format\": \"{format}\""))
        };
        let e = errors(&with("Entra:ClientSecret", "env"));
        assert!(issue(&e, "config.secret_key").message.contains("write Entra__ClientSecret"), "{e:?}");
        let p = plan(&with("Entra__ClientSecret", "env"));
        let StepConfig::AgentSecretSync(c) = &p.steps[0].config else { panic!() };
        assert_eq!(c.key_path(), ["Entra__ClientSecret"]);
        assert!(parse_steps(&with("Entra::ClientSecret", "yaml")).is_err());
        assert!(parse_steps(&with("a:b:c", "ini")).is_err());
        assert!(parse_steps(&with("azure client secret", "properties")).is_err());
        let p = plan(&with("AzureAd:Section", "ini"));
        let StepConfig::AgentSecretSync(c) = &p.steps[0].config else { panic!() };
        assert_eq!(c.key_path(), ["AzureAd", "Section"]);
        let p = plan(&with("client-secret", "text"));
        let StepConfig::AgentSecretSync(c) = &p.steps[0].config else { panic!() };
        assert!(c.key_path().is_empty());
        let e = errors(&with("", "json"));
        assert_eq!(issue(&e, "config.secret_key").message, "must not be empty");
    }

    #[test]
    fn kubernetes_names_and_workloads_are_checked() {
        let json = r#"[{"type": "kubernetes_secret", "order": 1, "config": {"namespace": "Payroll", "secret_name": "-bad",
            "key": "a/b", "restart": [{"kind": "Deployment", "name": "api"}, {"kind": "CronJob", "name": "x"},
            {"kind": "Deployment", "name": "api"}, {"kind": "DaemonSet", "nmae": "y"}]}}]"#;
        let e = errors(json);
        assert!(issue(&e, "config.namespace").message.contains("DNS-1123 label"));
        assert!(issue(&e, "config.secret_name").message.contains("DNS-1123 subdomain"));
        assert!(issue(&e, "config.key").message.contains("Secret keys"));
        assert!(
            issue(&e, "config.restart[1].kind").message.contains("expected one of Deployment, StatefulSet, DaemonSet")
        );
        assert!(issue(&e, "config.restart[2]").message.contains("listed twice"));
        assert!(issue(&e, "config.restart[3].nmae").message.contains("did you mean `name`?"));
        assert_eq!(issue(&e, "config.restart[3].name").message, "missing");
    }

    #[test]
    fn retries_and_delays_are_bounded() {
        let step =
            |extra: &str| array(&[simple_step("webhook", 1).replace("\"order\"", &format!("{extra}, \"order\""))]);
        assert!(issue(&errors(&step("\"retries\": 11")), "retries").message.contains("from 0 to 10"));
        assert!(issue(&errors(&step("\"retry_delay\": \"16m\"")), "retry_delay").message.contains("at most 15m"));
        assert!(issue(&errors(&step("\"retry_delay\": \"30\"")), "retry_delay").message.contains("not a duration"));
        let p = plan(&step("\"retries\": 0, \"retry_delay\": \"0s\", \"on_failure\": \"continue\""));
        assert_eq!(
            (p.steps[0].retries, p.steps[0].retry_delay, p.steps[0].on_failure),
            (0, Span::from_secs(0), OnFailure::Continue)
        );
        assert!(issue(&errors(&step("\"name\": \"  \"")), "name").message.contains("empty"));
    }

    #[test]
    fn health_check_bounds_are_checked() {
        let with = |config: &str| {
            format!(
                r#"[{{"type": "http_health_check", "order": 1, "config": {{"url": "https://a.example.com/h", {config}}}}}]"#
            )
        };
        assert!(issue(&errors(&with(r#""expected_status": 600"#)), "config.expected_status").message.contains("599"));
        assert!(
            issue(&errors(&with(r#""expected_status": 99"#)), "config.expected_status").message.contains("100 to 599")
        );
        assert!(
            issue(&errors(&with(r#""interval": "3m""#)), "config.interval")
                .message
                .contains("longer than the whole wait")
        );
        assert!(issue(&errors(&with(r#""timeout": "0s""#)), "config.timeout").message.contains("longer than 0s"));
        assert!(issue(&errors(&with(r#""contains": """#)), "config.contains").message.contains("empty"));
    }

    #[test]
    fn app_service_and_key_vault_names_are_checked() {
        let e = errors(
            r#"[{"type": "azure_app_service_restart", "order": 1, "config": {"subscription_id": "nope",
                "resource_group": "rg.", "app_name": "-app", "mode": "reboot"}},
               {"type": "azure_key_vault", "order": 2, "config": {"vault_url": "https://kv.vault.azure.net",
                "secret_name": "has_underscore", "secondary_secret_name": "x"}}]"#,
        );
        assert!(issue(&e, "config.subscription_id").message.contains("GUID"));
        assert!(issue(&e, "config.resource_group").message.contains("not ending in '.'"));
        assert!(issue(&e, "config.app_name").message.contains("App Service names"));
        assert!(issue(&e, "config.mode").message.contains("expected one of restart, stop_start"));
        assert!(issue(&e, "config.secret_name").message.contains("1 to 127 letters, digits and '-'"));
        assert!(issue(&e, "config.secondary_secret_name").message.contains("without secondary_vault_url"));
    }

    #[test]
    fn webhook_headers_are_checked_and_an_authorization_header_is_a_warning() {
        let json = simple_step("webhook", 1).replace(
            "\"url\"",
            "\"headers\": {\"Authorization\": \"Bearer x\"}, \"events\": [\"rotation.completed\"], \"url\"",
        );
        let p = plan(&array(&[json]));
        assert_eq!(issue(&p.warnings, "config.headers.Authorization").severity, Severity::Warning);
        let bad = simple_step("webhook", 1).replace(
            "\"url\"",
            "\"headers\": {\"X-A\": \"a\\r\\nX-B: b\", \"Bad Name\": \"v\"}, \"events\": [\"a\", \"a\", 3], \"url\"",
        );
        let e = errors(&array(&[bad]));
        assert!(issue(&e, "config.headers.X-A").message.contains("line breaks"));
        assert!(issue(&e, "config.headers.Bad Name").message.contains("header name"));
        assert!(issue(&e, "config.events[1]").message.contains("twice"));
        assert!(issue(&e, "config.events[2]").message.contains("got a number"));
    }

    #[test]
    fn kinds_have_their_type_string_and_phase() {
        for kind in StepKind::ALL {
            assert_eq!(StepKind::parse(kind.as_str()), Some(kind));
            assert_eq!(serde_json::to_value(kind).expect("serialises"), kind.as_str());
        }
        let phases: Vec<Phase> = StepKind::ALL.iter().map(|k| k.phase()).collect();
        use Phase::*;
        assert_eq!(phases, [Publish, Publish, Publish, Reload, Reload, Reload, Verify, Notify]);
        assert!(Phase::Publish < Phase::Reload && Phase::Verify < Phase::Notify);
    }

    #[test]
    fn display_names_say_what_the_step_does() {
        let p = plan(ALL_OPTIONS);
        let names: Vec<String> = p.steps.iter().map(StepDefinition::display_name).collect();
        assert_eq!(
            names,
            [
                "Publish to both vaults",
                "Kubernetes Secret payroll/payroll-api.entra key AZURE_CLIENT_SECRET in aks-prod-westeurope, then \
                 restart Deployment/payroll-api, StatefulSet/payroll-worker, DaemonSet/payroll-agent",
                r"Write secret to agent 11111111… C:\inetpub\app\appsettings.json (Entra:ClientSecret)",
                "Restart IIS app pool DefaultAppPool on agent 11111111…",
                "Refresh Spring Actuator https://orders.internal.example.com/actuator/refresh",
                "Stop and start App Service payroll-api slot staging in rg-payroll",
                "Wait for https://payroll.example.com/health to answer 204",
                "Webhook to https://hooks.example.com",
            ]
        );
        let mut kv = p.steps[0].clone();
        kv.name = None;
        assert_eq!(
            kv.display_name(),
            "Key Vault kv-payroll/AzureAdClientSecret and kv-payroll-dr/AzureAdClientSecret-dr"
        );
        assert_eq!(plan(SEED_2).steps[1].display_name(), "Recycle IIS app pool DefaultAppPool on agent 11111111…");
    }

    #[test]
    fn url_fields_list_every_address_a_step_calls() {
        let p = plan(ALL_OPTIONS);
        let urls: Vec<String> =
            p.steps.iter().flat_map(|s| s.url_fields()).map(|u| u.host_str().unwrap_or("").to_owned()).collect();
        assert_eq!(
            urls,
            [
                "kv-payroll.vault.azure.net",
                "kv-payroll-dr.vault.azure.net",
                "orders.internal.example.com",
                "payroll.example.com",
                "hooks.example.com"
            ]
        );
    }

    #[test]
    fn inline_values_parse_like_a_document() {
        let values: Vec<serde_json::Value> = serde_json::from_str(SEED_2).expect("json");
        assert_eq!(parse_step_values(&values), parse_steps(SEED_2));
    }
}

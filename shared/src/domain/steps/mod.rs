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
//!
//! # Layout
//!
//! One file per step type holds everything about that type: its config struct and enums, its
//! constants, the reading and checking of its `config` fields (and the field rules only it uses),
//! its entry in the registry (`TYPE`: type string, phase, agent or not, allowed fields, secret
//! field, reader), its part of [`StepDefinition::display_name`] and [`StepDefinition::url_fields`],
//! and its tests. Around them: this file (kinds, definitions, the registry), `plan` (a document to a
//! [`StepPlan`], one element to a step), `issues` (issues and their messages), `read` (reading JSON
//! fields, and the field rules several types share).
//!
//! # Adding a step type
//!
//! 1. Create `<type>.rs` following an existing one (`spring_refresh.rs` is the smallest): config
//!    struct, `read`, `impl TypeConfig`, `pub(super) const TYPE: StepType`, tests.
//! 2. Add a [`StepKind`] variant and a [`StepConfig`] variant (and its arms in `StepConfig::kind` and
//!    `StepConfig::as_type`), and `pub use` its public items below.
//! 3. Add ONE line to the registry table (`REGISTRY`, below), at the position of its `StepKind` variant.
//!
//! The runner that executes the step lives in another crate: `adapters/steps/<type>.rs`, with one
//! line in that registry.

use std::fmt;

use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use url::Url;

use crate::domain::duration::Span;
use crate::domain::ids::{AgentId, IntegrationId};

mod issues;
mod plan;
mod read;
#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;

mod agent_sync;
mod app_service;
mod health_check;
mod iis_recycle;
mod key_vault;
mod kubernetes;
mod rotator_own_secret;
mod spring_refresh;
mod webhook;

pub use agent_sync::{AgentSecretSyncConfig, FileFormat};
pub use app_service::{AzureAppServiceRestartConfig, DEFAULT_APP_SERVICE_TIMEOUT, RestartMode};
pub use health_check::{
    DEFAULT_EXPECTED_STATUS, DEFAULT_HEALTH_INTERVAL, DEFAULT_HEALTH_TIMEOUT, HttpHealthCheckConfig,
};
pub use iis_recycle::{IisRecycleConfig, RecycleMode};
pub use issues::{Severity, StepErrors, StepIssue, StepRef};
pub use key_vault::{
    AzureKeyVaultConfig, DEFAULT_CONTENT_TYPE, KEY_VAULT_OWN_TAGS, MAX_KEY_VAULT_USER_TAGS, SecondaryVault, VaultTarget,
};
pub use kubernetes::{
    ClusterAuth, DEFAULT_ROLLOUT_TIMEOUT, KUBERNETES_EXECUTION_ANNOTATION, KUBERNETES_KEY_ID_ANNOTATION,
    KubernetesSecretConfig, RESTARTED_AT_ANNOTATION, WorkloadKind, WorkloadRef,
};
pub use plan::{
    EMPTY_PLAN_WARNING, LEGACY_AGENT_URL_REVIEW, StepPlan, parse_step_values, parse_step_values_with, parse_steps,
    parse_steps_with,
};
pub use rotator_own_secret::RotatorOwnSecretConfig;
pub use spring_refresh::{DEFAULT_SPRING_TIMEOUT, SpringActuatorRefreshConfig};
pub use webhook::WebhookConfig;

use issues::Notes;
use read::Obj;

/// Retries of a failed step when the definition gives none: a publish or reload usually fails for a
/// passing reason (a pod restarting, a 429), and a rollout that stops needs an operator.
pub const DEFAULT_RETRIES: u32 = 3;
/// At most this many retries: beyond that the failure is not passing, and the old secret's grace
/// period is better spent by an operator than by a loop.
pub const MAX_RETRIES: u32 = 10;
/// The longest a step's own timeout may be (a health check's wait, a Spring refresh): one step runs
/// in one run-step invocation, whose budget is 5 minutes (`messages::CHAIN`; Lambda allows 15), and
/// the step's record and the next message must still be written after it.
pub const MAX_STEP_TIMEOUT: Span = Span::from_secs(4 * 60);
/// The pause between two attempts of a step when the definition gives none.
pub const DEFAULT_RETRY_DELAY: Span = Span::from_secs(30);
/// The longest pause between two attempts: a retry is a delayed queue message, and SQS delays a
/// message by at most 15 minutes.
pub const MAX_RETRY_DELAY: Span = Span::from_secs(15 * 60);

// ---------------------------------------------------------------------------------------------------
// The registry of step types
// ---------------------------------------------------------------------------------------------------

/// What the parser needs to know about one step type besides its config struct. Each type's file
/// defines its own as `TYPE`, so that a type's rules are read (and changed) in one place.
struct StepType {
    kind: StepKind,
    /// The JSON `type` string.
    name: &'static str,
    phase: Phase,
    /// Whether the step runs through a host agent, and so takes `agent_id` (or legacy `agent_url`).
    takes_agent: bool,
    /// The keys its `config` object may have (legacy ones included).
    config_fields: &'static [&'static str],
    /// The field naming the environment variable that holds the step's secret, if it has one: an
    /// unknown field that looks like a pasted secret is pointed to it.
    env_field: Option<&'static str>,
    /// Reads and checks the `config` object (whose keys were already checked against
    /// `config_fields`). It reads every field it knows, noting every problem, and builds the config
    /// only when all required fields are there; the step is dropped when any error was noted, so an
    /// optional field that failed never silently becomes its default. The agent, read from the top
    /// level, is given to agent types, and `None` to the others.
    read: fn(&Obj<'_>, Option<AgentTarget>, &mut Notes) -> Option<StepConfig>,
}

/// Every step type, in the order of the [`StepKind`] variants (checked when compiling, below), so
/// that a kind finds its entry by position.
const REGISTRY: [&StepType; 9] = [
    &key_vault::TYPE,
    &kubernetes::TYPE,
    &agent_sync::TYPE,
    &rotator_own_secret::TYPE,
    &iis_recycle::TYPE,
    &spring_refresh::TYPE,
    &app_service::TYPE,
    &health_check::TYPE,
    &webhook::TYPE,
];

// A registry line out of place would give a kind another type's rules: refuse to compile instead.
const _: () = {
    let mut i = 0;
    while i < REGISTRY.len() {
        assert!(REGISTRY[i].kind as usize == i, "REGISTRY must list the step types in StepKind order");
        assert!(StepKind::ALL[i] as usize == i, "StepKind::ALL must list the kinds in declaration order");
        i += 1;
    }
};

/// What differs between types' configs beyond their fields: how a step describes itself, and what
/// it calls. Implemented in each type's file.
trait TypeConfig {
    /// The generated display name (see [`StepDefinition::display_name`]).
    fn describe(&self) -> String;
    /// The URLs the step calls, besides a legacy agent URL, each with the path of its field.
    fn urls(&self) -> Vec<(&'static str, &Url)> {
        Vec::new()
    }
    /// The agent the step runs on, for agent types.
    fn agent(&self) -> Option<&AgentTarget> {
        None
    }
    /// The integrations whose Entra identity the step signs in as, each with the path of its field
    /// (`config.identity`); the configuration checks that they exist.
    fn identities(&self) -> Vec<(&'static str, &IntegrationId)> {
        Vec::new()
    }
}

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
    RotatorOwnSecret,
    IisRecycle,
    SpringActuatorRefresh,
    AzureAppServiceRestart,
    HttpHealthCheck,
    Webhook,
}

impl StepKind {
    pub const ALL: [StepKind; 9] = [
        Self::AzureKeyVault,
        Self::KubernetesSecret,
        Self::AgentSecretSync,
        Self::RotatorOwnSecret,
        Self::IisRecycle,
        Self::SpringActuatorRefresh,
        Self::AzureAppServiceRestart,
        Self::HttpHealthCheck,
        Self::Webhook,
    ];

    /// This kind's entry in [`REGISTRY`].
    fn step_type(self) -> &'static StepType {
        REGISTRY[self as usize]
    }

    /// The JSON `type` string.
    pub fn as_str(self) -> &'static str {
        self.step_type().name
    }

    /// The kind whose `type` string is `s` (exactly, lower case).
    pub fn parse(s: &str) -> Option<Self> {
        REGISTRY.iter().find(|t| t.name == s).map(|t| t.kind)
    }

    /// The phase of the rollout the step belongs to. A `kubernetes_secret` step that also restarts
    /// workloads is still a publish: its restart reloads right after its own publish.
    pub fn phase(self) -> Phase {
        self.step_type().phase
    }

    /// Whether the step runs through a host agent, and so takes `agent_id` (or legacy `agent_url`).
    pub fn takes_agent(self) -> bool {
        self.step_type().takes_agent
    }

    /// The keys its `config` object may have (legacy ones included).
    pub fn config_fields(self) -> &'static [&'static str] {
        self.step_type().config_fields
    }

    /// The field in which a step of this kind names the environment variable holding its secret.
    fn env_field(self) -> Option<&'static str> {
        self.step_type().env_field
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
/// checks); serialises to the normalised JSON form of the product notes' format (the stored
/// form). What is shown to people is [`StepDefinition::redacted`]; `Debug` shows that too.
#[derive(Clone, PartialEq, Eq)]
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
    RotatorOwnSecret(RotatorOwnSecretConfig),
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
            Self::RotatorOwnSecret(_) => StepKind::RotatorOwnSecret,
        }
    }

    /// The config seen through what its type's file says about it.
    fn as_type(&self) -> &dyn TypeConfig {
        match self {
            Self::AzureKeyVault(c) => c,
            Self::KubernetesSecret(c) => c,
            Self::AgentSecretSync(c) => c,
            Self::IisRecycle(c) => c,
            Self::SpringActuatorRefresh(c) => c,
            Self::AzureAppServiceRestart(c) => c,
            Self::HttpHealthCheck(c) => c,
            Self::Webhook(c) => c,
            Self::RotatorOwnSecret(c) => c,
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

impl StepDefinition {
    pub fn kind(&self) -> StepKind {
        self.config.kind()
    }

    pub fn phase(&self) -> Phase {
        self.kind().phase()
    }

    /// The agent the step runs on, for agent steps.
    pub fn agent(&self) -> Option<&AgentTarget> {
        self.config.as_type().agent()
    }

    /// The integrations the step signs in as besides the rotated credential's own, with the path of
    /// each field.
    pub fn identities(&self) -> Vec<(&'static str, &IntegrationId)> {
        self.config.as_type().identities()
    }

    /// Every URL the step will call, so a network policy can check the addresses before anything
    /// runs (this module resolves no names).
    pub fn url_fields(&self) -> Vec<&Url> {
        self.named_urls().into_iter().map(|(_, url)| url).collect()
    }

    /// As [`StepDefinition::url_fields`], each URL with the path of the field it was read from
    /// (`agent_url`, `config.url`, ...).
    pub fn named_urls(&self) -> Vec<(&'static str, &Url)> {
        let agent_url = match self.agent() {
            Some(AgentTarget::LegacyUrl(url)) => Some(("agent_url", url)),
            _ => None,
        };
        let mut urls: Vec<(&'static str, &Url)> = agent_url.into_iter().collect();
        urls.extend(self.config.as_type().urls());
        urls
    }

    /// The operator's `name`, else a description such as `Recycle IIS app pool DefaultAppPool on
    /// agent 11111111…`. URLs are shown without query (which may hold a token); webhook URLs by their
    /// origin only, since chat webhooks carry their secret in the path.
    pub fn display_name(&self) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => self.config.as_type().describe(),
        }
    }
}

/// What replaces a value that may be a secret in what people are shown.
pub const REDACTED: &str = "[redacted]";

impl StepDefinition {
    /// The normalised JSON form with what may hold a secret replaced by [`REDACTED`]: the values
    /// of every URL's query string (`?token=redacted`) and every header value. For
    /// `--json` output, logs and `Debug`; never for storage.
    pub fn redacted(&self) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        redact_step_value(&mut value);
        value
    }
}

/// Redacts, in place, a step in its normalised JSON form (as [`StepDefinition`] serialises, or
/// as an execution's stored plan holds it): see [`StepDefinition::redacted`].
pub fn redact_step_value(step: &mut Value) {
    let Some(step) = step.as_object_mut() else { return };
    if let Some(url) = step.get_mut("agent_url") {
        redact_url_value(url);
    }
    let Some(config) = step.get_mut("config").and_then(Value::as_object_mut) else { return };
    for field in ["url", "vault_url", "secondary_vault_url"] {
        if let Some(url) = config.get_mut(field) {
            redact_url_value(url);
        }
    }
    if let Some(headers) = config.get_mut("headers").and_then(Value::as_object_mut) {
        for value in headers.values_mut() {
            *value = Value::String(REDACTED.to_owned());
        }
    }
}

fn redact_url_value(value: &mut Value) {
    let Some(Ok(mut url)) = value.as_str().map(Url::parse) else { return };
    if url.query().is_none() {
        return;
    }
    let keys: Vec<String> = url.query_pairs().map(|(k, _)| k.into_owned()).collect();
    // A plain word, so the query stays readable (`?token=redacted`) rather than percent-encoded.
    url.query_pairs_mut().clear().extend_pairs(keys.iter().map(|k| (k.as_str(), "redacted")));
    *value = Value::String(url.to_string());
}

impl fmt::Debug for StepDefinition {
    /// The redacted form: a step printed in a panic or a log never shows a token in a query or a
    /// header.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StepDefinition({})", self.redacted())
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
        let parsed = plan::parse_one(0, &value);
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

// ---------------------------------------------------------------------------------------------------
// Serialisation and display helpers shared by the type files
// ---------------------------------------------------------------------------------------------------

fn ser_url<S: Serializer>(url: &Url, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(url.as_str())
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

//! Configuration: one TOML file, parsed once at start-up, failing fast with a message that names
//! the key. Unknown keys are refused. Secrets may come from the environment (and should); none is
//! ever printed back.
//!
//! Layer rule: configuration may import `domain`, `ports` and `error`; the adapters never see it
//! (wiring hands each its own settings), the use cases neither.
//!
//! ```toml
//! data_dir = "data"
//! listen = "127.0.0.1:8080"
//!
//! [schedules]
//! sync = "1h"
//! expiry_scan = "15m"
//! grace_cleanup = "1h"
//!
//! [integrations.contoso]
//! tenant_id = "…"
//! client_id = "…"
//! auth = "client_secret"          # client_secret | client_certificate | workload_identity | managed_identity
//! # client secret from $ROTATOR_CONTOSO_CLIENT_SECRET, or name another variable:
//! client_secret_env = "CONTOSO_SECRET"
//!
//! [policies.default]
//! auto_rotate = true
//! grace_period = "30d"
//! steps_file = "steps/default.json"   # the seed's JSON step format
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::domain::Span;
use crate::domain::ids::{ClientId, IntegrationId, PolicyId, TenantId};
use crate::domain::policy::{
    DEFAULT_ALERT_THRESHOLDS, DEFAULT_DAYS_BEFORE_EXPIRY, DEFAULT_GRACE_PERIOD, DEFAULT_SECRET_LIFETIME, RotationPolicy,
};
use crate::domain::secret::SecretValue;
use crate::domain::steps::{StepIssue, parse_step_values, parse_steps};
use crate::{Error, Result};

pub use crate::domain::integration::{AuthMethod, Credentials, IntegrationConfig};
pub use crate::ports::alerts::{WebhookFormat, WebhookSink};

pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";
pub const DEFAULT_GRAPH_BASE_URL: &str = "https://graph.microsoft.com/v1.0";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Where the environment is read: only here, once, at start-up.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    #[allow(clippy::disallowed_methods)] // the one home of environment reads
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Env for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

// ---------------------------------------------------------------------------------------------
// The file as written

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    data_dir: Option<PathBuf>,
    /// A CA certificate (PEM) that rollout steps (webhooks, Spring, health checks) trust besides
    /// the system's roots.
    ca_certificate: Option<PathBuf>,
    listen: Option<String>,
    #[serde(default)]
    schedules: RawSchedules,
    #[serde(default)]
    integrations: BTreeMap<String, RawIntegration>,
    #[serde(default)]
    policies: BTreeMap<String, RawPolicy>,
    #[serde(default)]
    alerts: RawAlerts,
    #[serde(default)]
    http: RawHttp,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(default)]
    tokens: Vec<RawToken>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    name: String,
    /// SHA-256 of the bearer token, hex: the file never holds the token itself.
    sha256: String,
    roles: Vec<Role>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSchedules {
    sync: Option<Span>,
    expiry_scan: Option<Span>,
    grace_cleanup: Option<Span>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntegration {
    tenant_id: String,
    client_id: String,
    auth: AuthMethod,
    display_name: Option<String>,
    #[serde(default = "default_true")]
    enabled: bool,
    client_secret: Option<String>,
    client_secret_env: Option<String>,
    certificate_path: Option<PathBuf>,
    certificate_password_env: Option<String>,
    federated_token_file: Option<PathBuf>,
    managed_identity_client_id: Option<String>,
    authority_host: Option<String>,
    graph_base_url: Option<String>,
    /// A CA certificate (PEM) to trust besides the system's: for the simulated tenant.
    ca_certificate: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    auto_rotate: Option<bool>,
    days_before_expiry: Option<u32>,
    grace_period: Option<Span>,
    secret_lifetime: Option<Span>,
    alert_thresholds: Option<Vec<u32>>,
    /// Application (client) ids this policy rotates; the policy named `default` takes the rest.
    #[serde(default)]
    applications: Vec<String>,
    steps_file: Option<PathBuf>,
    steps: Option<Vec<toml::Value>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    #[serde(default)]
    webhooks: Vec<RawWebhookSink>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhookSink {
    name: Option<String>,
    url: Option<String>,
    url_env: Option<String>,
    #[serde(default)]
    format: WebhookFormat,
}

fn default_true() -> bool {
    true
}

// ---------------------------------------------------------------------------------------------
// The configuration as used

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedules {
    pub sync: Span,
    pub expiry_scan: Span,
    pub grace_cleanup: Span,
}

pub struct PolicyConfig {
    pub policy: RotationPolicy,
    pub applications: Vec<ClientId>,
    /// Warnings and manual-review notes from the step definitions.
    pub step_notes: Vec<StepIssue>,
}

pub struct Config {
    /// The file it came from; relative paths in it are relative to its folder.
    pub source: PathBuf,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub schedules: Schedules,
    pub integrations: Vec<IntegrationConfig>,
    pub policies: Vec<PolicyConfig>,
    pub webhooks: Vec<WebhookSink>,
    /// Bearer tokens of the HTTP API, stored hashed.
    pub api_tokens: Vec<ApiToken>,
    /// Trusted by rollout steps besides the system's roots.
    pub ca_certificate: Option<PathBuf>,
    /// The values of the environment variables that steps name (`signing_secret_env`,
    /// `bearer_token_env`), read once here.
    pub step_secrets: BTreeMap<String, SecretValue>,
}

/// What a caller of the HTTP API may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
pub enum Role {
    /// Dashboard, executions, history.
    #[serde(rename = "entra:read")]
    Read,
    /// Operator decisions, such as confirming the cleanup of a rollout that needs attention.
    #[serde(rename = "entra:write")]
    Write,
    /// Start a rotation (or a dry run).
    #[serde(rename = "entra:rotate")]
    Rotate,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "entra:read",
            Self::Write => "entra:write",
            Self::Rotate => "entra:rotate",
        }
    }
}

/// An HTTP API token: its name (who is calling, for the audit trail), the SHA-256 of the token, its
/// roles. The token itself is never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub name: String,
    pub sha256: [u8; 32],
    pub roles: Vec<Role>,
}

impl Config {
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("rotator.db")
    }
    pub fn key_file_path(&self) -> PathBuf {
        self.data_dir.join("keys.json")
    }

    /// The policy for an application: the one that names it, else `default`.
    pub fn policy_for(&self, client_id: &ClientId) -> Option<&PolicyConfig> {
        self.policies
            .iter()
            .find(|p| p.applications.contains(client_id))
            .or_else(|| self.policies.iter().find(|p| p.policy.id.as_str() == "default"))
    }

    /// The policies, ready to look up by application.
    pub fn policy_set(&self) -> crate::domain::policy::PolicySet {
        crate::domain::policy::PolicySet::new(
            self.policies.iter().map(|p| (p.policy.clone(), p.applications.clone())).collect(),
        )
    }

    pub fn load(path: &Path, env: &dyn Env) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text, path, env)
    }

    /// Parses `text` as if read from `path`.
    pub fn parse(text: &str, path: &Path, env: &dyn Env) -> Result<Self> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| Error::Config(format!("{}: {}", path.display(), toml_error(text, &e))))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let resolve = |p: &Path| if p.is_absolute() { p.to_path_buf() } else { base.join(p) };
        let mut errors = Vec::new();

        let data_dir = env
            .var("ROTATOR_DATA_DIR")
            .map(PathBuf::from)
            .or(raw.data_dir)
            .map(|p| resolve(&p))
            .unwrap_or_else(|| base.join("data"));
        let listen_text = env.var("ROTATOR_LISTEN").or(raw.listen).unwrap_or_else(|| DEFAULT_LISTEN.into());
        let listen = listen_text.parse().unwrap_or_else(|_| {
            errors.push(format!("listen: {listen_text:?} is not an address such as 127.0.0.1:8080"));
            SocketAddr::from(([127, 0, 0, 1], 8080))
        });

        let schedules = Schedules {
            sync: raw.schedules.sync.unwrap_or(Span::from_secs(3600)),
            expiry_scan: raw.schedules.expiry_scan.unwrap_or(Span::from_secs(900)),
            grace_cleanup: raw.schedules.grace_cleanup.unwrap_or(Span::from_secs(3600)),
        };
        for (name, s) in [
            ("sync", schedules.sync),
            ("expiry_scan", schedules.expiry_scan),
            ("grace_cleanup", schedules.grace_cleanup),
        ] {
            if s.as_duration() < std::time::Duration::from_secs(1) {
                errors.push(format!("schedules.{name}: must be at least 1s"));
            }
        }

        let mut integrations = Vec::new();
        for (name, ri) in raw.integrations {
            match integration(&name, ri, env, &resolve) {
                Ok(i) => integrations.push(i),
                Err(mut e) => errors.append(&mut e),
            }
        }

        let mut policies = Vec::new();
        for (name, rp) in raw.policies {
            match policy(&name, rp, &resolve) {
                Ok(p) => policies.push(p),
                Err(mut e) => errors.append(&mut e),
            }
        }
        let mut seen = BTreeMap::new();
        for p in &policies {
            for app in &p.applications {
                if let Some(other) = seen.insert(*app, p.policy.id.clone()) {
                    errors.push(format!(
                        "policies.{}.applications: {app} is already rotated by policy {other}",
                        p.policy.id
                    ));
                }
            }
        }

        let mut webhooks = Vec::new();
        for (i, w) in raw.alerts.webhooks.into_iter().enumerate() {
            let at = format!("alerts.webhooks[{i}]");
            let url = match (w.url, w.url_env) {
                (Some(_), Some(_)) => {
                    errors.push(format!("{at}: give url or url_env, not both"));
                    continue;
                }
                (Some(u), None) => u,
                (None, Some(var)) => match env.var(&var) {
                    Some(u) => u,
                    None => {
                        errors.push(format!("{at}.url_env: environment variable {var} is not set"));
                        continue;
                    }
                },
                (None, None) => {
                    errors.push(format!("{at}: url or url_env is required"));
                    continue;
                }
            };
            match url::Url::parse(&url) {
                Ok(u) if matches!(u.scheme(), "https" | "http") && u.host_str().is_some() => {
                    webhooks.push(WebhookSink {
                        name: w.name.unwrap_or_else(|| format!("webhook-{}", i + 1)),
                        host: u.host_str().unwrap_or_default().to_owned(),
                        url: SecretValue::new(url),
                        format: w.format,
                    })
                }
                // The URL may hold a token: say what is wrong without quoting it.
                _ => errors.push(format!("{at}.url: not an http(s) URL")),
            }
        }

        let mut step_secrets = BTreeMap::new();
        for p in &policies {
            for step in &p.policy.steps {
                let names = match &step.config {
                    crate::domain::steps::StepConfig::Webhook(w) => w.signing_secret_env.iter().collect::<Vec<_>>(),
                    crate::domain::steps::StepConfig::SpringActuatorRefresh(s) => s.bearer_token_env.iter().collect(),
                    _ => Vec::new(),
                };
                for name in names {
                    match env.var(name) {
                        Some(v) => {
                            step_secrets.insert(name.clone(), SecretValue::new(v));
                        }
                        None => errors.push(format!(
                            "policies.{}: step \"{}\" reads ${name}, which is not set",
                            p.policy.id,
                            step.display_name()
                        )),
                    }
                }
            }
        }

        let mut api_tokens = Vec::new();
        for (i, t) in raw.http.tokens.into_iter().enumerate() {
            let at = format!("http.tokens[{i}]");
            let mut sha256 = [0u8; 32];
            match hex::decode_to_slice(t.sha256.trim(), &mut sha256).ok().map(|()| sha256) {
                Some(sha256) if !t.roles.is_empty() && !t.name.trim().is_empty() => {
                    api_tokens.push(ApiToken { name: t.name, sha256, roles: t.roles })
                }
                Some(_) => errors.push(format!("{at}: give a name and at least one role")),
                None => errors.push(format!(
                    "{at}.sha256: must be 64 hex digits, the SHA-256 of the token (printf %s TOKEN | sha256sum)"
                )),
            }
        }

        if !errors.is_empty() {
            return Err(Error::Config(format!("{}:\n  {}", path.display(), errors.join("\n  "))));
        }
        Ok(Config {
            source: path.to_path_buf(),
            data_dir,
            listen,
            schedules,
            integrations,
            policies,
            webhooks,
            api_tokens,
            ca_certificate: raw.ca_certificate.map(|p| resolve(&p)),
            step_secrets,
        })
    }
}

/// TOML's own error display quotes the offending line, which may hold a secret; say the message,
/// the line number and the table it is in, never the line itself.
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().to_owned();
    let Some(span) = e.span() else { return message };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let table = before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| format!(" in {}", l.split('#').next().unwrap_or(l).trim()))
        .unwrap_or_default();
    format!("line {line}{table}: {message}")
}

fn integration(
    name: &str,
    r: RawIntegration,
    env: &dyn Env,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> std::result::Result<IntegrationConfig, Vec<String>> {
    let at = format!("integrations.{name}");
    let mut errors = Vec::new();
    let id = IntegrationId::parse(name).map_err(|e| errors.push(format!("{at}: {e}"))).ok();
    let tenant = TenantId::parse(&r.tenant_id).map_err(|e| errors.push(format!("{at}.tenant_id: {e}"))).ok();
    let client_id = ClientId::parse(&r.client_id).map_err(|e| errors.push(format!("{at}.client_id: {e}"))).ok();
    let url_field = |field: &str, v: Option<String>, default: &str, errors: &mut Vec<String>| {
        let text = v.unwrap_or_else(|| default.to_owned());
        match url::Url::parse(&text) {
            Ok(u) if u.scheme() == "https" => Some(u),
            Ok(_) => {
                errors.push(format!("{at}.{field}: must be https (the Entra and Graph clients refuse plain http)"));
                None
            }
            Err(e) => {
                errors.push(format!("{at}.{field}: {e}"));
                None
            }
        }
    };
    let authority_host = url_field("authority_host", r.authority_host, DEFAULT_AUTHORITY_HOST, &mut errors);
    let graph_base_url = url_field("graph_base_url", r.graph_base_url, DEFAULT_GRAPH_BASE_URL, &mut errors);

    // Fields that belong to another method are a mistake worth naming.
    let given: [(&str, bool, AuthMethod); 6] = [
        ("client_secret", r.client_secret.is_some(), AuthMethod::ClientSecret),
        ("client_secret_env", r.client_secret_env.is_some(), AuthMethod::ClientSecret),
        ("certificate_path", r.certificate_path.is_some(), AuthMethod::ClientCertificate),
        ("certificate_password_env", r.certificate_password_env.is_some(), AuthMethod::ClientCertificate),
        ("federated_token_file", r.federated_token_file.is_some(), AuthMethod::WorkloadIdentity),
        ("managed_identity_client_id", r.managed_identity_client_id.is_some(), AuthMethod::ManagedIdentity),
    ];
    for (field, present, method) in given {
        if present && method != r.auth {
            errors.push(format!(
                "{at}.{field}: only used with auth = \"{}\", not \"{}\"",
                method.as_str(),
                r.auth.as_str()
            ));
        }
    }

    let env_name = format!("ROTATOR_{}_CLIENT_SECRET", name.to_ascii_uppercase().replace('-', "_"));
    let credentials = match r.auth {
        AuthMethod::ClientSecret => {
            // The environment wins over the file, so a file with a placeholder can be committed.
            let from_named = r.client_secret_env.as_ref().and_then(|v| env.var(v).map(|s| (s, format!("${v}"))));
            let found = from_named
                .or_else(|| env.var(&env_name).map(|s| (s, format!("${env_name}"))))
                .or_else(|| r.client_secret.clone().map(|s| (s, "the configuration file".to_owned())));
            match found {
                Some((secret, source)) => Some(Credentials::ClientSecret { secret: SecretValue::new(secret), source }),
                None => {
                    let named = r.client_secret_env.as_deref().map(|v| format!("${v} or ")).unwrap_or_default();
                    errors.push(format!("{at}: auth = \"client_secret\" needs a secret: set {named}${env_name}"));
                    None
                }
            }
        }
        AuthMethod::ClientCertificate => match r.certificate_path {
            Some(p) => Some(Credentials::ClientCertificate {
                path: resolve(&p),
                password: r.certificate_password_env.as_ref().and_then(|v| env.var(v)).map(SecretValue::new),
            }),
            None => {
                errors.push(format!("{at}.certificate_path: missing (needed with auth = \"client_certificate\")"));
                None
            }
        },
        AuthMethod::WorkloadIdentity => {
            match r
                .federated_token_file
                .map(|p| resolve(&p))
                .or_else(|| env.var("AZURE_FEDERATED_TOKEN_FILE").map(PathBuf::from))
            {
                Some(token_file) => Some(Credentials::WorkloadIdentity { token_file }),
                None => {
                    errors.push(format!(
                        "{at}.federated_token_file: missing, and $AZURE_FEDERATED_TOKEN_FILE is not set"
                    ));
                    None
                }
            }
        }
        AuthMethod::ManagedIdentity => match r.managed_identity_client_id.as_deref().map(ClientId::parse).transpose() {
            Ok(client_id) => Some(Credentials::ManagedIdentity { client_id }),
            Err(e) => {
                errors.push(format!("{at}.managed_identity_client_id: {e}"));
                None
            }
        },
    };

    match (id, tenant, client_id, credentials, authority_host, graph_base_url) {
        (Some(id), Some(tenant), Some(client_id), Some(credentials), Some(authority_host), Some(graph_base_url))
            if errors.is_empty() =>
        {
            Ok(IntegrationConfig {
                id,
                tenant,
                client_id,
                display_name: r.display_name,
                enabled: r.enabled,
                credentials,
                authority_host,
                graph_base_url,
                ca_certificate: r.ca_certificate.map(|p| resolve(&p)),
            })
        }
        _ => Err(errors),
    }
}

fn policy(
    name: &str,
    r: RawPolicy,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> std::result::Result<PolicyConfig, Vec<String>> {
    let at = format!("policies.{name}");
    let mut errors = Vec::new();
    let id = PolicyId::parse(name).map_err(|e| errors.push(format!("{at}: {e}"))).ok();
    let thresholds = r.alert_thresholds.unwrap_or_else(|| DEFAULT_ALERT_THRESHOLDS.to_vec());
    if thresholds.is_empty() || thresholds.iter().any(|d| *d == 0 || *d > 365) {
        errors.push(format!("{at}.alert_thresholds: give days between 1 and 365, such as [30, 7]"));
    }
    let days_before_expiry = r.days_before_expiry.unwrap_or(DEFAULT_DAYS_BEFORE_EXPIRY);
    if days_before_expiry == 0 || days_before_expiry > 365 {
        errors.push(format!("{at}.days_before_expiry: must be between 1 and 365"));
    }
    let secret_lifetime = r.secret_lifetime.unwrap_or(DEFAULT_SECRET_LIFETIME);
    if secret_lifetime.as_duration() > std::time::Duration::from_secs(2 * 366 * 86_400) {
        errors.push(format!("{at}.secret_lifetime: Entra allows at most 2 years (24 months)"));
    }
    if secret_lifetime.as_duration() < std::time::Duration::from_secs(u64::from(days_before_expiry) * 86_400)
        && r.auto_rotate == Some(true)
    {
        errors.push(format!(
            "{at}.secret_lifetime: {secret_lifetime} is shorter than days_before_expiry ({days_before_expiry}d): every new secret would be due at once"
        ));
    }
    let mut applications = Vec::new();
    for (i, a) in r.applications.iter().enumerate() {
        match ClientId::parse(a) {
            Ok(c) => applications.push(c),
            Err(e) => errors.push(format!("{at}.applications[{i}]: {e}")),
        }
    }
    let plan = match (r.steps_file, r.steps) {
        (Some(_), Some(_)) => {
            errors.push(format!("{at}: give steps or steps_file, not both"));
            None
        }
        (Some(file), None) => {
            let path = resolve(&file);
            match std::fs::read_to_string(&path) {
                Ok(text) => parse_steps(&text)
                    .map_err(|e| {
                        errors.push(format!("{at}.steps_file ({}):\n    {}", path.display(), indent(&e.to_string())))
                    })
                    .ok(),
                Err(e) => {
                    errors.push(format!("{at}.steps_file: cannot read {}: {e}", path.display()));
                    None
                }
            }
        }
        (None, Some(steps)) => {
            let values: std::result::Result<Vec<serde_json::Value>, _> =
                steps.into_iter().map(serde_json::to_value).collect();
            match values {
                Ok(values) => parse_step_values(&values)
                    .map_err(|e| errors.push(format!("{at}.steps:\n    {}", indent(&e.to_string()))))
                    .ok(),
                Err(e) => {
                    errors.push(format!("{at}.steps: {e}"));
                    None
                }
            }
        }
        (None, None) => parse_step_values(&[]).ok(),
    };
    match (id, plan) {
        (Some(id), Some(plan)) if errors.is_empty() => Ok(PolicyConfig {
            policy: RotationPolicy {
                id,
                auto_rotate: r.auto_rotate.unwrap_or(false),
                days_before_expiry,
                grace_period: r.grace_period.unwrap_or(DEFAULT_GRACE_PERIOD),
                secret_lifetime,
                alert_thresholds: thresholds,
                step_notes: plan.warnings.iter().map(|w| w.to_string()).collect(),
                steps: plan.steps,
            },
            applications,
            step_notes: plan.warnings,
        }),
        _ => Err(errors),
    }
}

fn indent(s: &str) -> String {
    s.lines().collect::<Vec<_>>().join("\n    ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    const MINIMAL: &str = r#"
[integrations.contoso]
tenant_id = "aaaaaaaa-0000-0000-0000-000000000001"
client_id = "bbbbbbbb-0000-0000-0000-000000000002"
auth = "client_secret"
"#;

    fn parse(text: &str, env: &BTreeMap<String, String>) -> Result<Config> {
        Config::parse(text, Path::new("/etc/rotator/rotator.toml"), env)
    }

    fn err(text: &str, env: &BTreeMap<String, String>) -> String {
        match parse(text, env) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_example_configuration_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rotator.toml");
        let c = Config::load(
            &path,
            &env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "s3cr3t-value"), ("ROTATION_WEBHOOK_KEY", "whsec_abc")]),
        )
        .unwrap();
        assert_eq!(c.integrations.len(), 1);
        assert_eq!(c.policies.len(), 2);
        let payroll = c.policies.iter().find(|p| p.policy.id.as_str() == "payroll").unwrap();
        assert_eq!(payroll.policy.steps.len(), 4);
        assert_eq!(payroll.policy.grace_period, Span::from_days(30));
        assert_eq!(c.schedules.expiry_scan, Span::from_secs(900));
    }

    #[test]
    fn defaults_fill_what_is_not_written() {
        let c = parse(MINIMAL, &env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "x")])).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/etc/rotator/data"));
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.schedules.sync, Span::from_secs(3600));
        assert_eq!(c.integrations[0].graph_base_url.as_str(), "https://graph.microsoft.com/v1.0");
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_name_line_and_table() {
        let text = format!("{MINIMAL}\n[policies.default]\ngrace_perid = \"30d\"\n");
        let e = err(&text, &env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "x")]));
        assert!(e.contains("unknown field `grace_perid`"), "{e}");
        assert!(e.contains("[policies.default]"), "{e}");
        assert!(e.contains("line 8"), "{e}");
    }

    #[test]
    fn durations_are_written_like_30d_and_bare_numbers_are_refused() {
        let text = format!("{MINIMAL}\n[policies.default]\ngrace_period = \"30\"\n");
        let e = err(&text, &env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "x")]));
        assert!(e.contains("not a duration"), "{e}");
        let text = format!("{MINIMAL}\n[policies.default]\ngrace_period = \"12h\"\n");
        let c = parse(&text, &env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "x")])).unwrap();
        assert_eq!(c.policies[0].policy.grace_period, Span::from_secs(12 * 3600));
    }

    #[test]
    fn the_environment_overrides_the_file_and_no_secret_is_shown_back() {
        let text =
            MINIMAL.replace("auth = \"client_secret\"", "auth = \"client_secret\"\nclient_secret = \"from-the-file\"");
        let c = parse(&text, &env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "from-the-env")])).unwrap();
        let Credentials::ClientSecret { secret, source } = &c.integrations[0].credentials else { panic!() };
        assert_eq!(secret.expose(), "from-the-env");
        assert_eq!(source, "$ROTATOR_CONTOSO_CLIENT_SECRET");
        let shown = c.integrations[0].credentials.describe();
        assert!(!shown.contains("from-the-env") && !shown.contains("from-the-file"), "{shown}");
        let named =
            MINIMAL.replace("auth = \"client_secret\"", "auth = \"client_secret\"\nclient_secret_env = \"MY_SECRET\"");
        let c = parse(&named, &env(&[("MY_SECRET", "v")])).unwrap();
        assert!(c.integrations[0].credentials.describe().contains("$MY_SECRET"));
    }

    #[test]
    fn a_missing_secret_names_the_variables_to_set() {
        let e = err(MINIMAL, &env(&[]));
        assert!(e.contains("integrations.contoso") && e.contains("$ROTATOR_CONTOSO_CLIENT_SECRET"), "{e}");
    }

    #[test]
    fn errors_never_quote_a_secret() {
        // A syntax error on the secret's own line, and a semantic error elsewhere.
        let broken =
            MINIMAL.replace("auth = \"client_secret\"", "auth = \"client_secret\"\nclient_secret = \"hunter2-secret");
        let e = err(&broken, &env(&[]));
        assert!(!e.contains("hunter2"), "{e}");
        let bad_listen = format!(
            "listen = \"nowhere\"\n{}",
            MINIMAL.replace("auth = \"client_secret\"", "auth = \"client_secret\"\nclient_secret = \"hunter2-secret\"")
        );
        let e = err(&bad_listen, &env(&[]));
        assert!(e.contains("listen") && !e.contains("hunter2"), "{e}");
        let webhook = format!("{MINIMAL}\n[[alerts.webhooks]]\nurl = \"notaurl-token-abc\"\n");
        let e = err(&webhook, &env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "x")]));
        assert!(e.contains("alerts.webhooks[0].url") && !e.contains("token-abc"), "{e}");
    }

    #[test]
    fn a_field_of_another_auth_method_is_named() {
        let text =
            MINIMAL.replace("auth = \"client_secret\"", "auth = \"managed_identity\"\ncertificate_path = \"c.pem\"");
        let e = err(&text, &env(&[]));
        assert!(e.contains("integrations.contoso.certificate_path") && e.contains("client_certificate"), "{e}");
    }

    #[test]
    fn plain_http_graph_is_refused() {
        let text = MINIMAL.replace(
            "auth = \"client_secret\"",
            "auth = \"client_secret\"\ngraph_base_url = \"http://localhost/v1.0\"",
        );
        let e = err(&text, &env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "x")]));
        assert!(e.contains("graph_base_url") && e.contains("https"), "{e}");
    }

    #[test]
    fn inline_steps_are_checked_and_a_typo_names_policy_step_and_field() {
        let text = format!(
            "{MINIMAL}\n[[policies.default.steps]]\ntype = \"webhook\"\norder = 10\non_failure = \"continue\"\nconfig = {{ ulr = \"https://hooks.example.com/x\" }}\n"
        );
        let e = err(&text, &env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "x")]));
        assert!(e.contains("policies.default.steps"), "{e}");
        assert!(e.contains("config.ulr"), "{e}");
        let ok = text.replace("ulr", "url");
        let c = parse(&ok, &env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "x")])).unwrap();
        assert_eq!(c.policies[0].policy.steps.len(), 1);
    }

    #[test]
    fn a_step_naming_an_unset_variable_is_refused_and_a_set_one_is_read_once() {
        let text = format!(
            "{MINIMAL}\n[[policies.default.steps]]\ntype = \"webhook\"\norder = 10\non_failure = \"continue\"\nconfig = {{ url = \"https://hooks.example.com/x\", signing_secret_env = \"HOOK_KEY\" }}\n"
        );
        let e = err(&text, &env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "x")]));
        assert!(e.contains("$HOOK_KEY") && e.contains("not set"), "{e}");
        let c = parse(&text, &env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "x"), ("HOOK_KEY", "k")])).unwrap();
        assert_eq!(c.step_secrets.get("HOOK_KEY").map(|s| s.expose().to_owned()), Some("k".to_owned()));
    }

    #[test]
    fn api_tokens_are_kept_hashed_with_their_roles() {
        let hash = "a".repeat(64);
        let text = format!(
            "{MINIMAL}\n[[http.tokens]]\nname = \"ops\"\nsha256 = \"{hash}\"\nroles = [\"entra:read\", \"entra:rotate\"]\n"
        );
        let c = parse(&text, &env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "x")])).unwrap();
        assert_eq!(c.api_tokens[0].roles, vec![Role::Read, Role::Rotate]);
        assert_eq!(c.api_tokens[0].sha256, [0xaa; 32]);
        let upper =
            parse(&text.replace(&hash, &"A".repeat(64)), &env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "x")])).unwrap();
        assert_eq!(upper.api_tokens[0].sha256, [0xaa; 32]);
        let bad = text.replace(&hash, "not-hex");
        assert!(err(&bad, &env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "x")])).contains("http.tokens[0].sha256"));
        let bad_role = text.replace("entra:rotate", "entra:admin");
        assert!(err(&bad_role, &env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "x")])).contains("entra:admin"));
    }

    #[test]
    fn an_application_in_two_policies_is_refused() {
        let text = format!(
            "{MINIMAL}\n[policies.a]\napplications = [\"cccccccc-0000-0000-0000-000000000003\"]\n[policies.b]\napplications = [\"cccccccc-0000-0000-0000-000000000003\"]\n"
        );
        let e = err(&text, &env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "x")]));
        assert!(e.contains("already rotated by policy a"), "{e}");
    }

    #[test]
    fn the_policy_for_an_application_is_the_one_naming_it_else_default() {
        let text = format!(
            "{MINIMAL}\n[policies.default]\n[policies.payroll]\napplications = [\"cccccccc-0000-0000-0000-000000000003\"]\n"
        );
        let c = parse(&text, &env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "x")])).unwrap();
        let named = ClientId::parse("cccccccc-0000-0000-0000-000000000003").unwrap();
        let other = ClientId::parse("dddddddd-0000-0000-0000-000000000004").unwrap();
        assert_eq!(c.policy_for(&named).unwrap().policy.id.as_str(), "payroll");
        assert_eq!(c.policy_for(&other).unwrap().policy.id.as_str(), "default");
    }
}

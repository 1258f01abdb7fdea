//! The configuration file as written: serde's view of each table, with unknown keys refused
//! (`deny_unknown_fields`) so a misspelt key is an error rather than a silent default, and the
//! reading of the TOML text with errors that never quote a line of it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::http::RawHttp;
use crate::domain::Span;
use crate::domain::integration::AuthMethod;
use crate::ports::alerts::WebhookFormat;

/// `text` parsed as the configuration file; the error is ready to follow the file's name.
pub(super) fn read(text: &str) -> Result<RawConfig, String> {
    toml::from_str(text).map_err(|e| toml_error(text, &e))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) data_dir: Option<PathBuf>,
    /// A CA certificate (PEM) that rollout steps (webhooks, Spring, health checks) trust besides
    /// the system's roots.
    pub(super) ca_certificate: Option<PathBuf>,
    pub(super) listen: Option<String>,
    #[serde(default)]
    pub(super) schedules: RawSchedules,
    #[serde(default)]
    pub(super) integrations: BTreeMap<String, RawIntegration>,
    #[serde(default)]
    pub(super) policies: BTreeMap<String, RawPolicy>,
    #[serde(default)]
    pub(super) alerts: RawAlerts,
    #[serde(default)]
    pub(super) http: RawHttp,
    #[serde(default)]
    pub(super) outbound: RawOutbound,
}

/// `[outbound]`: the exceptions to the outbound address policy (`allow`: host names, addresses or
/// CIDR ranges, such as the simulated tenant on loopback) and the ranges it refuses besides its
/// rules (`deny`, such as a private range no target lives in).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOutbound {
    #[serde(default)]
    pub(super) allow: Vec<String>,
    #[serde(default)]
    pub(super) deny: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSchedules {
    pub(super) sync: Option<Span>,
    pub(super) expiry_scan: Option<Span>,
    pub(super) grace_cleanup: Option<Span>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIntegration {
    pub(super) tenant_id: String,
    pub(super) client_id: String,
    pub(super) auth: AuthMethod,
    pub(super) display_name: Option<String>,
    #[serde(default = "default_true")]
    pub(super) enabled: bool,
    pub(super) client_secret: Option<String>,
    pub(super) client_secret_env: Option<String>,
    /// The stored-secret fallback that entra-rotator rotates itself (`rotator_own_secret`): the
    /// secret kept in a private file on this machine, or in a Secrets Manager secret.
    pub(super) client_secret_file: Option<PathBuf>,
    pub(super) client_secret_arn: Option<String>,
    pub(super) certificate_path: Option<PathBuf>,
    pub(super) certificate_password_env: Option<String>,
    pub(super) federated_token_file: Option<PathBuf>,
    pub(super) managed_identity_client_id: Option<String>,
    /// With `auth = "aws_federation"`: the audience of the web identity token (Entra's
    /// `api://AzureADTokenExchange` unless the federated credential says otherwise), the STS region
    /// (default: the rotator's own) and an STS endpoint (a VPC endpoint, or a stand-in).
    pub(super) aws_federation_audience: Option<String>,
    pub(super) aws_region: Option<String>,
    pub(super) sts_endpoint_url: Option<String>,
    pub(super) authority_host: Option<String>,
    pub(super) graph_base_url: Option<String>,
    /// Azure Resource Manager, for `azure_app_service_restart` steps signing in as this integration.
    pub(super) resource_manager_url: Option<String>,
    /// A CA certificate (PEM) to trust besides the system's: for the simulated tenant.
    pub(super) ca_certificate: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub(super) auto_rotate: Option<bool>,
    pub(super) days_before_expiry: Option<u32>,
    pub(super) grace_period: Option<Span>,
    pub(super) secret_lifetime: Option<Span>,
    pub(super) alert_thresholds: Option<Vec<u32>>,
    /// Application (client) ids this policy rotates; the policy named `default` takes the rest.
    #[serde(default)]
    pub(super) applications: Vec<String>,
    pub(super) steps_file: Option<PathBuf>,
    pub(super) steps: Option<Vec<toml::Value>>,
    /// `"steps"` (the default: a step must publish the secret) or `"manual"`.
    pub(super) delivery: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlerts {
    #[serde(default)]
    pub(super) webhooks: Vec<RawWebhookSink>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebhookSink {
    pub(super) name: Option<String>,
    pub(super) url: Option<String>,
    pub(super) url_env: Option<String>,
    #[serde(default)]
    pub(super) format: WebhookFormat,
}

fn default_true() -> bool {
    true
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

#[cfg(test)]
mod tests {
    use crate::config::tests::{MINIMAL, env, err};

    #[test]
    fn an_unknown_key_is_refused_with_its_name_line_and_table() {
        let text = format!("{MINIMAL}\n[policies.default]\ngrace_perid = \"30d\"\n");
        let e = err(&text, &env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "x")]));
        assert!(e.contains("unknown field `grace_perid`"), "{e}");
        assert!(e.contains("[policies.default]"), "{e}");
        assert!(e.contains("line 8"), "{e}");
    }
}

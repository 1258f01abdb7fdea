//! `azure_app_service_restart`: reloads an App Service app through Azure Resource Manager, after
//! making it re-read its Key Vault references.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::issues::Notes;
use super::read::{Need, Obj};
use super::{Phase, StepConfig, StepKind, StepType, TypeConfig};
use crate::domain::duration::Span;
use crate::domain::ids::IntegrationId;

pub(super) const TYPE: StepType = StepType {
    kind: StepKind::AzureAppServiceRestart,
    name: "azure_app_service_restart",
    phase: Phase::Reload,
    takes_agent: false,
    config_fields: &[
        "subscription_id",
        "resource_group",
        "app_name",
        "slot",
        "mode",
        "refresh_key_vault_references",
        "app_setting",
        "identity",
        "timeout",
    ],
    env_field: None,
    read: |o, _agent, n| read(o, n).map(StepConfig::AzureAppServiceRestart),
};

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
    /// The app setting holding the `@Microsoft.KeyVault(...)` reference to the secret, whose status
    /// must be `Resolved` after the restart; every Key Vault reference of the app when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_setting: Option<String>,
    /// The integration whose Entra identity calls Resource Manager; the rotated credential's own
    /// integration when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<IntegrationId>,
    /// How long the restart (or the stop and the start) may take, waiting included.
    pub timeout: Span,
}

/// How long an App Service restart may take when the definition says nothing: a cold start takes
/// "two to three minutes" in the product notes' runbook.
pub const DEFAULT_APP_SERVICE_TIMEOUT: Span = Span::from_secs(4 * 60);

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

impl TypeConfig for AzureAppServiceRestartConfig {
    fn identities(&self) -> Vec<(&'static str, &IntegrationId)> {
        self.identity.iter().map(|i| ("config.identity", i)).collect()
    }

    fn describe(&self) -> String {
        let verb = match self.mode {
            RestartMode::Restart => "Restart",
            RestartMode::StopStart => "Stop and start",
        };
        let slot = self.slot.as_ref().map(|s| format!(" slot {s}")).unwrap_or_default();
        format!("{verb} App Service {}{slot} in {}", self.app_name, self.resource_group)
    }
}

fn read(o: &Obj<'_>, n: &mut Notes) -> Option<AzureAppServiceRestartConfig> {
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
    let app_setting = o.text(n, "app_setting", Need::Optional, check_app_setting_name);
    let identity = o
        .text(n, "identity", Need::Optional, super::key_vault::check_identity)
        .and_then(|s| IntegrationId::parse(&s).ok());
    let timeout = o.positive_span(n, "timeout");
    Some(AzureAppServiceRestartConfig {
        subscription_id: subscription_id?,
        resource_group: resource_group?,
        app_name: app_name?,
        slot,
        mode: mode.unwrap_or_default(),
        refresh_key_vault_references: refresh.unwrap_or(true),
        app_setting,
        identity,
        timeout: timeout.unwrap_or(DEFAULT_APP_SERVICE_TIMEOUT),
    })
}

/// App setting names: letters, digits, `_`, `.` and `-` (App Service on Linux allows only these).
fn check_app_setting_name(s: &str) -> Result<(), String> {
    let ok =
        (1..=256).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok { Ok(()) } else { Err("app setting names are letters, digits, '_', '.' and '-'".to_owned()) }
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

#[cfg(test)]
mod tests {
    use crate::domain::steps::StepConfig;
    use crate::domain::steps::test_support::*;

    #[test]
    fn app_service_names_are_checked() {
        let e = errors(
            r#"[{"type": "azure_app_service_restart", "order": 1, "config": {"subscription_id": "nope",
                "resource_group": "rg.", "app_name": "-app", "mode": "reboot"}}]"#,
        );
        assert!(issue(&e, "config.subscription_id").message.contains("GUID"));
        assert!(issue(&e, "config.resource_group").message.contains("not ending in '.'"));
        assert!(issue(&e, "config.app_name").message.contains("App Service names"));
        assert!(issue(&e, "config.mode").message.contains("expected one of restart, stop_start"));
    }

    #[test]
    fn the_app_setting_identity_and_timeout_are_read_with_their_defaults() {
        let p = plan(
            r#"[{"type": "azure_app_service_restart", "order": 1, "config": {"subscription_id": "33333333-3333-3333-3333-333333333333",
                "resource_group": "rg", "app_name": "app", "slot": "staging"}}]"#,
        );
        let StepConfig::AzureAppServiceRestart(cfg) = &p.steps[0].config else { panic!() };
        assert!(cfg.app_setting.is_none() && cfg.identity.is_none() && cfg.refresh_key_vault_references);
        assert_eq!(cfg.timeout, super::DEFAULT_APP_SERVICE_TIMEOUT);
        let e = errors(
            r#"[{"type": "azure_app_service_restart", "order": 1, "config": {"subscription_id": "33333333-3333-3333-3333-333333333333",
                "resource_group": "rg", "app_name": "app", "app_setting": "has space", "timeout": "10m"}}]"#,
        );
        assert!(issue(&e, "config.app_setting").message.contains("app setting names"));
        assert!(issue(&e, "config.timeout").message.contains("at most"));
    }
}

//! Helpers shared by the tests of every file of the module: fixtures, one-step documents, and
//! assertions that print every issue when they fail.

use super::{StepIssue, StepPlan, parse_steps};
use crate::domain::ids::AgentId;

pub(crate) const AGENT: &str = "11111111-1111-1111-1111-111111111111";
pub(crate) const SEED_1: &str = include_str!("../../../../tests/fixtures/steps/seed-example-1.json");
pub(crate) const SEED_2: &str = include_str!("../../../../tests/fixtures/steps/seed-example-2.json");
pub(crate) const ALL_OPTIONS: &str = include_str!("../../../../tests/fixtures/steps/all-options.json");

pub(crate) fn plan(json: &str) -> StepPlan {
    parse_steps(json).unwrap_or_else(|e| panic!("expected a valid plan, got:\n{e}"))
}

pub(crate) fn errors(json: &str) -> Vec<StepIssue> {
    match parse_steps(json) {
        Ok(plan) => panic!("expected errors, got {plan:?}"),
        Err(e) => e.0,
    }
}

/// The one issue about `field`, or a panic listing them all.
pub(crate) fn issue<'a>(issues: &'a [StepIssue], field: &str) -> &'a StepIssue {
    let found: Vec<&StepIssue> = issues.iter().filter(|i| i.field.as_deref() == Some(field)).collect();
    match found.as_slice() {
        [one] => one,
        _ => panic!("expected one issue about {field}, got {issues:#?}"),
    }
}

pub(crate) fn sync_step(order: u32, agent: &str) -> String {
    format!(
        r#"{{"type": "agent_secret_sync", "order": {order}, "agent_id": "{agent}",
            "config": {{"target_path": "/etc/app/secrets.env", "secret_key": "CLIENT_SECRET", "file_format": "env"}}}}"#
    )
}

pub(crate) fn iis_step(order: u32, agent: &str) -> String {
    format!(r#"{{"type": "iis_recycle", "order": {order}, "agent_id": "{agent}", "config": {{"app_pool": "Pool"}}}}"#)
}

pub(crate) fn simple_step(kind: &str, order: u32) -> String {
    let config = match kind {
        "azure_key_vault" => r#"{"vault_url": "https://kv.vault.azure.net", "secret_name": "s"}"#,
        "spring_actuator_refresh" => r#"{"url": "https://app.example.com/actuator/refresh"}"#,
        "http_health_check" => r#"{"url": "https://app.example.com/health"}"#,
        "webhook" => r#"{"url": "https://hooks.example.com/x", "signing_secret_env": "HOOK_KEY"}"#,
        other => panic!("no simple step for {other}"),
    };
    format!(r#"{{"type": "{kind}", "order": {order}, "config": {config}}}"#)
}

pub(crate) fn array(steps: &[String]) -> String {
    format!("[{}]", steps.join(","))
}

pub(crate) fn agent() -> AgentId {
    AgentId::parse(AGENT).expect("a GUID")
}

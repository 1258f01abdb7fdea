//! The `[policies.<name>]` tables: when and how applications' secrets are rotated, and the rollout
//! steps that follow (inline or from a `steps_file`), checked here so a typo names its policy, step
//! and field. Also the checks across policies: no application in two, and every environment
//! variable a step names is set.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::Env;
use super::raw::RawPolicy;
use crate::domain::address::AddressPolicy;
use crate::domain::ids::{ClientId, PolicyId};
use crate::domain::policy::{
    DEFAULT_ALERT_THRESHOLDS, DEFAULT_DAYS_BEFORE_EXPIRY, DEFAULT_GRACE_PERIOD, DEFAULT_SECRET_LIFETIME, RotationPolicy,
};
use crate::domain::secret::SecretValue;
use crate::domain::steps::{StepConfig, StepIssue, parse_step_values_with, parse_steps_with};

/// A policy as configured: how it rotates, the applications it names, and what its steps noted.
pub struct PolicyConfig {
    pub policy: RotationPolicy,
    pub applications: Vec<ClientId>,
    /// Warnings and manual-review notes from the step definitions.
    pub step_notes: Vec<StepIssue>,
}

/// The policy `name` as configured, or every error found in its table.
pub(super) fn policy(
    name: &str,
    r: RawPolicy,
    resolve: &dyn Fn(&Path) -> PathBuf,
    addresses: &AddressPolicy,
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
                Ok(text) => parse_steps_with(&text, addresses)
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
                Ok(values) => parse_step_values_with(&values, addresses)
                    .map_err(|e| errors.push(format!("{at}.steps:\n    {}", indent(&e.to_string()))))
                    .ok(),
                Err(e) => {
                    errors.push(format!("{at}.steps: {e}"));
                    None
                }
            }
        }
        (None, None) => parse_step_values_with(&[], addresses).ok(),
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

/// An application named by two policies would be rotated by whichever is found first: refused.
pub(super) fn check_one_policy_per_application(policies: &[PolicyConfig], errors: &mut Vec<String>) {
    let mut seen = BTreeMap::new();
    for p in policies {
        for app in &p.applications {
            if let Some(other) = seen.insert(*app, p.policy.id.clone()) {
                errors
                    .push(format!("policies.{}.applications: {app} is already rotated by policy {other}", p.policy.id));
            }
        }
    }
}

/// The values of the environment variables the policies' steps name (`signing_secret_env`,
/// `bearer_token_env`), read once here; an unset one is an error naming its policy and step.
pub(super) fn step_secrets(
    policies: &[PolicyConfig],
    env: &dyn Env,
    errors: &mut Vec<String>,
) -> BTreeMap<String, SecretValue> {
    let mut step_secrets = BTreeMap::new();
    for p in policies {
        for step in &p.policy.steps {
            let names = match &step.config {
                StepConfig::Webhook(w) => w.signing_secret_env.iter().collect::<Vec<_>>(),
                StepConfig::SpringActuatorRefresh(s) => s.bearer_token_env.iter().collect(),
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
    step_secrets
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{MINIMAL, env, err, parse};
    use crate::domain::Span;

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
    fn an_application_in_two_policies_is_refused() {
        let text = format!(
            "{MINIMAL}\n[policies.a]\napplications = [\"cccccccc-0000-0000-0000-000000000003\"]\n[policies.b]\napplications = [\"cccccccc-0000-0000-0000-000000000003\"]\n"
        );
        let e = err(&text, &env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "x")]));
        assert!(e.contains("already rotated by policy a"), "{e}");
    }
}

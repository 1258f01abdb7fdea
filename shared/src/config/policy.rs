//! The `[policies.<name>]` tables: when and how applications' secrets are rotated, and the rollout
//! steps that follow (inline or from a `steps_file`), checked here so a typo names its policy, step
//! and field. Also the checks across policies: no application in two, and every environment
//! variable a step names is set.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::Env;
use super::raw::RawPolicy;
use crate::domain::Span;
use crate::domain::address::AddressPolicy;
use crate::domain::ids::{ClientId, PolicyId};
use crate::domain::policy::{
    DEFAULT_ALERT_THRESHOLDS, DEFAULT_DAYS_BEFORE_EXPIRY, DEFAULT_GRACE_PERIOD, DEFAULT_SECRET_LIFETIME, RotationPolicy,
};
use crate::domain::secret::SecretValue;
use crate::domain::steps::{StepConfig, StepIssue, parse_step_values_with, parse_steps_with};

/// The longest grace period: the old secret stays valid that long after a rotation, and a date
/// that far ahead must stay well inside the calendar's range (`10000y` overflowed finalize).
pub const MAX_GRACE_PERIOD: Span = Span::from_days(365);
/// The shortest secret lifetime: a new secret must outlive its own rollout and grace period's start.
pub const MIN_SECRET_LIFETIME: Span = Span::from_days(1);
/// The longest secret lifetime Entra grants (24 months; a tenant policy may cap it lower).
pub const MAX_SECRET_LIFETIME: Span = Span::from_days(2 * 366);
/// The largest steps file read: a rollout is a few kilobytes; `/dev/zero` must not fill memory.
pub const MAX_STEPS_FILE_BYTES: u64 = 1024 * 1024;

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
    if secret_lifetime > MAX_SECRET_LIFETIME {
        errors.push(format!("{at}.secret_lifetime: Entra allows at most 2 years (24 months, {MAX_SECRET_LIFETIME})"));
    }
    if secret_lifetime < MIN_SECRET_LIFETIME {
        errors.push(format!("{at}.secret_lifetime: must be at least {MIN_SECRET_LIFETIME}"));
    }
    let grace_period = r.grace_period.unwrap_or(DEFAULT_GRACE_PERIOD);
    if grace_period > MAX_GRACE_PERIOD {
        errors.push(format!("{at}.grace_period: must be at most {MAX_GRACE_PERIOD}"));
    }
    if secret_lifetime.as_duration() < std::time::Duration::from_secs(u64::from(days_before_expiry) * 86_400)
        && r.auto_rotate == Some(true)
    {
        errors.push(format!(
            "{at}.secret_lifetime: {secret_lifetime} is shorter than days_before_expiry ({days_before_expiry}d): every new secret would be due at once"
        ));
    }
    let manual_delivery = match r.delivery.as_deref() {
        None | Some("steps") => false,
        Some("manual") => true,
        Some(_) => {
            errors.push(format!("{at}.delivery: give \"steps\" (a step publishes the secret) or \"manual\""));
            false
        }
    };
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
            match read_bounded(&path, MAX_STEPS_FILE_BYTES) {
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
    // A kubeconfig named by a relative path is beside the configuration, as a steps file is (so
    // the Lambda packages, which carry the configuration's folder, find it too).
    let plan = plan.map(|mut plan| {
        for step in &mut plan.steps {
            if let StepConfig::KubernetesSecret(c) = &mut step.config
                && let Some(path) = c.kubeconfig.as_mut()
            {
                *path = resolve(Path::new(path.as_str())).display().to_string();
            }
        }
        plan
    });
    match (id, plan) {
        (Some(id), Some(plan)) if errors.is_empty() => Ok(PolicyConfig {
            policy: RotationPolicy {
                id,
                auto_rotate: r.auto_rotate.unwrap_or(false),
                days_before_expiry,
                grace_period,
                secret_lifetime,
                alert_thresholds: thresholds,
                step_notes: plan.warnings.iter().map(|w| w.to_string()).collect(),
                steps: plan.steps,
                manual_delivery,
            },
            applications,
            step_notes: plan.warnings,
        }),
        _ => Err(errors),
    }
}

/// The text of `path`, refused when it holds more than `max` bytes (or is not a regular file's
/// worth of text, such as a device that never ends).
fn read_bounded(path: &Path, max: u64) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?.take(max + 1).read_to_string(&mut text)?;
    if text.len() as u64 > max {
        return Err(std::io::Error::other(format!("larger than {} KiB", max / 1024)));
    }
    Ok(text)
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

/// A `rotator_own_secret` step must name an integration whose secret is stored in a place
/// (`client_secret_file` / `client_secret_arn`), in a policy that rotates that integration's own
/// application and nothing else: run on any other application, it would store that application's
/// secret where the rotator reads its own.
pub(super) fn check_own_secret_steps(
    policies: &[PolicyConfig],
    integrations: &[crate::domain::integration::IntegrationConfig],
    errors: &mut Vec<String>,
) {
    for p in policies {
        for step in &p.policy.steps {
            let crate::domain::steps::StepConfig::RotatorOwnSecret(cfg) = &step.config else { continue };
            let at = format!("policies.{}: step {} ({})", p.policy.id, step.order, step.display_name());
            let Some(i) = integrations.iter().find(|i| i.id == cfg.integration) else { continue };
            if i.secret_place().is_none() {
                errors.push(format!(
                    "{at}: integration `{}` signs in with {}; rotator_own_secret needs auth = \"client_secret\" \
                     with client_secret_file or client_secret_arn",
                    i.id,
                    i.credentials.describe()
                ));
            }
            if p.applications != [i.client_id] {
                errors.push(format!(
                    "{at}: the policy must rotate integration `{}`'s own application only: set applications = \
                     [\"{}\"]",
                    i.id, i.client_id
                ));
            }
        }
    }
}

/// A step that signs in as another integration (`identity`) must name one of the configuration.
pub(super) fn check_step_identities(
    policies: &[PolicyConfig],
    integrations: &[crate::domain::integration::IntegrationConfig],
    errors: &mut Vec<String>,
) {
    for p in policies {
        for step in &p.policy.steps {
            for (field, id) in step.identities() {
                if !integrations.iter().any(|i| &i.id == id) {
                    let known: Vec<String> = integrations.iter().map(|i| i.id.to_string()).collect();
                    errors.push(format!(
                        "policies.{}: step {} ({}): {field}: no integration `{id}` is configured (known: {})",
                        p.policy.id,
                        step.order,
                        step.display_name(),
                        known.join(", ")
                    ));
                }
            }
        }
    }
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

    #[test]
    fn every_bound_is_checked_at_its_edge_and_named_in_the_error() {
        let secret = env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "x")]);
        let policy = |line: &str| format!("{MINIMAL}\n[policies.default]\n{line}\n");
        let step = |config: &str| {
            format!(
                "{MINIMAL}\n[[policies.default.steps]]\ntype = \"http_health_check\"\norder = 1\nconfig = {{ url = \"https://app.example.com/h\", {config} }}\n"
            )
        };
        for ok in [
            policy("grace_period = \"365d\""),
            policy("secret_lifetime = \"1d\""),
            policy("secret_lifetime = \"732d\""),
            step("timeout = \"4m\", interval = \"4m\""),
        ] {
            assert!(parse(&ok, &secret).is_ok(), "{ok}: {}", err_or_empty(&ok));
        }
        for (bad, says) in [
            (policy("grace_period = \"366d\""), "grace_period: must be at most 365d"),
            (policy("grace_period = \"10000y\""), "grace_period: must be at most 365d"),
            (policy("secret_lifetime = \"86399s\""), "secret_lifetime: must be at least 1d"),
            (policy("secret_lifetime = \"0s\""), "secret_lifetime: must be at least 1d"),
            (policy("secret_lifetime = \"733d\""), "secret_lifetime: Entra allows at most 2 years"),
            (step("timeout = \"241s\""), "config.timeout: must be at most 4m"),
            (step("interval = \"0s\""), "config.interval: must be longer than 0s"),
        ] {
            let e = err(&bad, &secret);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    fn err_or_empty(text: &str) -> String {
        parse(text, &env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "x")])).err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn a_steps_file_that_never_ends_is_read_no_further_than_the_bound() {
        let text = format!("{MINIMAL}\n[policies.default]\nsteps_file = \"/dev/zero\"\n");
        let e = err(&text, &env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "x")]));
        assert!(e.contains("steps_file") && e.contains("larger than 1024 KiB"), "{e}");
    }

    #[test]
    fn a_relative_kubeconfig_is_beside_the_configuration_as_a_steps_file_is() {
        let step = |kubeconfig: &str| {
            format!(
                "{MINIMAL}\n[policies.default]\nsteps = [{{ type = \"kubernetes_secret\", order = 1, \
                 config = {{ namespace = \"orders\", secret_name = \"api\", key = \"k\", kubeconfig = \"{kubeconfig}\" }} }}]\n"
            )
        };
        let env = env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "x")]);
        for (given, resolved) in [("kube/orders.yaml", "/etc/rotator/kube/orders.yaml"), ("/srv/k.yaml", "/srv/k.yaml")]
        {
            let config = parse(&step(given), &env).unwrap();
            let crate::domain::steps::StepConfig::KubernetesSecret(c) = &config.policies[0].policy.steps[0].config
            else {
                panic!()
            };
            assert_eq!(c.kubeconfig.as_deref(), Some(resolved));
        }
    }

    #[test]
    fn a_missing_ca_certificate_is_refused_at_load() {
        let text = format!("ca_certificate = \"/nonexistent/ca.pem\"\n{MINIMAL}");
        let e = err(&text, &env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "x")]));
        assert!(e.contains("ca_certificate: /nonexistent/ca.pem is not a readable file"), "{e}");
    }

    #[test]
    fn a_huge_unknown_type_is_refused_quickly_and_quoted_only_by_its_start() {
        let pasted = format!("s3cr3t{}", "x".repeat(1_000_000));
        let text = format!(
            "{MINIMAL}\n[[policies.default.steps]]\ntype = \"{pasted}\"\norder = 1\non_failure = \"continue-{pasted}\"\nconfig = {{}}\n"
        );
        let started = std::time::Instant::now();
        let e = err(&text, &env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "x")]));
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "took {:?}", started.elapsed());
        assert!(e.contains("unknown step type `s3cr3txxxxxxxxxx…`"), "{}", &e[..e.len().min(400)]);
        assert!(e.len() < 2_000, "the value was echoed: {} bytes", e.len());
    }
}

//! Preflight and dry run: every global check and every step answers ok, warning, manual review or
//! failed, with a reason. Nothing changes.

use serde::Serialize;

use crate::Result;
use crate::domain::ids::{AppObjectId, ClientId, CredentialId, KeyId};
use crate::domain::inventory::{Credential, room_for_password};
use crate::domain::policy::RotationPolicy;
use crate::domain::steps::{AgentTarget, Phase};
use crate::ports::directory::{Directory, DirectoryApplication};
use crate::ports::step_runner::{ProbeContext, ProbeOutcome};
use crate::usecases::app::App;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckOutcome {
    Ok,
    Warning,
    ManualReview,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    pub outcome: CheckOutcome,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreflightReport {
    pub credential: CredentialId,
    pub policy: String,
    pub checks: Vec<Check>,
    /// No check failed.
    pub ok: bool,
}

use CheckOutcome::{Failed, ManualReview, Warning};

fn check(name: impl Into<String>, outcome: CheckOutcome, reason: impl Into<String>) -> Check {
    Check { name: name.into(), outcome, reason: reason.into() }
}

pub async fn preflight(
    s: &App,
    credential: &Credential,
    app: AppObjectId,
    policy: &RotationPolicy,
) -> Result<PreflightReport> {
    let mut checks = Vec::new();
    match s.directory(&credential.id.integration) {
        Err(e) => checks.push(check("Entra authentication", Failed, e.to_string())),
        Ok(directory) => match directory.application(app).await {
            Ok(Some(found)) => {
                checks.push(check(
                    "Entra authentication",
                    CheckOutcome::Ok,
                    "the background sign-in of the integration works and reads the application",
                ));
                checks.extend(application_checks(&found, credential.id.key_id));
                checks.push(write_permission_check(directory.as_ref(), credential.client_id).await);
            }
            Ok(None) => checks.push(check("Entra authentication", Failed, "the application no longer exists")),
            Err(e) => checks.push(check("Entra authentication", Failed, e.chain())),
        },
    }
    checks.extend(plan_checks(s, policy));
    checks.extend(target_checks(s, policy, &credential.id).await);
    let ok = !checks.iter().any(|c| c.outcome == Failed);
    Ok(PreflightReport { credential: credential.id.clone(), policy: policy.id.to_string(), checks, ok })
}

/// What the application as Graph has it now says: the secret to rotate is there, and one more fits.
pub fn application_checks(found: &DirectoryApplication, key_id: KeyId) -> Vec<Check> {
    let mut checks = Vec::new();
    let passwords = found.password_credentials.clone().unwrap_or_default();
    let has_key = passwords.iter().any(|p| p.key_id == key_id);
    checks.push(if has_key {
        check("credential present", CheckOutcome::Ok, "the secret to rotate is on the application")
    } else {
        check("credential present", Failed, "the secret to rotate is no longer on the application")
    });
    let n = passwords.len();
    checks.push(match room_for_password(found.sign_in_audience.as_deref(), n) {
        Err(reason) => check("room for one more password", Failed, reason),
        Ok(()) => check("room for one more password", CheckOutcome::Ok, format!("{n} password(s) now, one more fits")),
    });
    checks
}

/// May the integration add a password to the application? What its Graph permissions and the
/// application's owners say; when that cannot be read, it is left for review (Graph itself refuses
/// at rotation time, before anything else is written).
pub async fn write_permission_check(directory: &dyn Directory, client_id: ClientId) -> Check {
    match crate::usecases::integration_check::may_rotate(directory, client_id).await {
        (Some(true), reason) => check("write permission", CheckOutcome::Ok, reason),
        (Some(false), reason) => check("write permission", Failed, reason),
        (None, reason) => check("write permission", ManualReview, reason),
    }
}

/// What the policy and its steps say, without asking anyone: delivery, order, support, targets.
pub fn plan_checks(s: &App, policy: &RotationPolicy) -> Vec<Check> {
    let mut checks = Vec::new();
    checks.push(check(
        "secret lifetime",
        CheckOutcome::Ok,
        format!("asks for a secret valid {}; a tenant lifetime policy may shorten it", policy.secret_lifetime),
    ));
    checks.push(match policy.delivery_problem() {
        Some(problem) => check("delivery", Failed, problem),
        None if policy.manual_delivery => check(
            "delivery",
            ManualReview,
            "manual delivery: an operator reads the new secret once (`rotator reveal`), puts it where it is \
             used, and confirms (`rotator confirm`) before the old one may go",
        ),
        None => check("delivery", CheckOutcome::Ok, "a step publishes the new secret"),
    });
    // The rollout: order, support, targets.
    let mut last_publish = None;
    let mut first_reload = None;
    for (i, step) in policy.steps.iter().enumerate() {
        match step.phase() {
            Phase::Publish => last_publish = Some(i),
            Phase::Reload if first_reload.is_none() => first_reload = Some(i),
            _ => {}
        }
    }
    if let (Some(p), Some(r)) = (last_publish, first_reload)
        && r < p
    {
        checks.push(check(
            "step order",
            Warning,
            format!(
                "\"{}\" reloads before \"{}\" publishes the new secret: consumers would reload the old one",
                policy.steps[r].display_name(),
                policy.steps[p].display_name()
            ),
        ));
    } else {
        checks.push(check("step order", CheckOutcome::Ok, "publish steps come before reload steps"));
    }
    for note in &policy.step_notes {
        checks.push(check("step definitions", Warning, note.clone()));
    }
    for step in &policy.steps {
        let name = format!("step {}: {}", step.order, step.display_name());
        if !s.rollout.supports(step.kind()) {
            checks.push(check(
                name,
                Failed,
                format!("{} steps are not supported by this build yet", step.kind().as_str()),
            ));
            continue;
        }
        if s.rollout.probes(step.kind()) {
            // Its targets are asked by `target_checks`.
            continue;
        }
        match step.agent() {
            Some(AgentTarget::LegacyUrl(_)) => checks.push(check(
                name,
                ManualReview,
                "legacy direct agent_url cannot be probed; confirm reachability and permissions",
            )),
            _ => checks.push(check(name, CheckOutcome::Ok, "target configured; reached at rollout time")),
        }
    }
    checks
}

/// What the steps' targets say when asked, changing nothing: each step type with a probe (Key
/// Vault, App Service) answers for each of its targets. A target that cannot be reached is a
/// warning (the rollout retries); one that refuses is a failure.
pub async fn target_checks(s: &App, policy: &RotationPolicy, credential: &CredentialId) -> Vec<Check> {
    let mut checks = Vec::new();
    let ctx = ProbeContext { credential };
    for step in policy.steps.iter().filter(|st| s.rollout.supports(st.kind()) && s.rollout.probes(st.kind())) {
        for probe in s.rollout.probe(step, &ctx).await {
            let outcome = match probe.outcome {
                ProbeOutcome::Ok => CheckOutcome::Ok,
                ProbeOutcome::Warning => Warning,
                ProbeOutcome::ManualReview => ManualReview,
                ProbeOutcome::Failed => Failed,
            };
            checks.push(check(
                format!("step {}: {}: {}", step.order, step.display_name(), probe.target),
                outcome,
                probe.reason,
            ));
        }
    }
    checks
}

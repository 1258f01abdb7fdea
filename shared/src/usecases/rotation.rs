//! The rotation chain: request → rotate (claim, create the new secret, seal it) → run-step (verify,
//! each rollout step, finalize) → grace cleanup. Every decision that keeps DESIGN §4's promises
//! lives here:
//!
//! - the execution record is written before Graph is called, and the new secret is sealed and
//!   stored the moment Graph answers; a secret created by an attempt that crashed before storing it
//!   carries the execution's marker and is removed on the next attempt (or by the orphan sweep);
//! - every handler is idempotent per (execution, step, attempt): a duplicate or redelivered message
//!   is recognised and does nothing;
//! - the old secret is only ever removed by grace cleanup (see `cleanup`);
//! - preflight gates every rotation before anything is written to Entra, and a refusal that
//!   trying again cannot change ends the execution `failed` at once, with the reason in words.
//!
//! The steps are in `run_step`, the sweeps that resume stalled executions in `recovery`, and what
//! operators do to an execution (cancel, reveal, confirm) in `intervention`.

use std::time::Duration;

use serde::Serialize;

use crate::domain::execution::{Execution, ExecutionStatus, PlannedStep, Trigger, plan};
use crate::domain::ids::{AppObjectId, CredentialId, ExecutionId};
use crate::domain::inventory::{Credential, CredentialKind};
use crate::domain::policy::RotationPolicy;
use crate::domain::secret::SecretValue;
use crate::messages::Message;
use crate::ports::alerts::Problem;
use crate::ports::key_ring::SealContext;
use crate::ports::{AuditEvent, Claim, SealedRecord};
use crate::usecases::app::App;
use crate::usecases::preflight::{
    CheckOutcome, PreflightReport, application_checks, plan_checks, preflight, target_checks, write_permission_check,
};
use crate::usecases::scan::raise_problem;
use crate::{Error, Result};

/// What a rotation request came to.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RotationAccepted {
    /// A new execution was recorded and the rotation is queued.
    Started { execution: Box<Execution> },
    /// The credential is already being rotated: here is that execution.
    AlreadyRunning { execution: Box<Execution> },
    /// A dry run: what preflight found; nothing changed.
    DryRun { report: PreflightReport },
}

pub const SECRET_PURPOSE: &str = "new_client_secret";

pub(super) fn seal_context(e: &Execution) -> SealContext {
    SealContext::new(e.secret_record(), SECRET_PURPOSE)
}

/// The credential and policy a rotation needs, or a clear refusal.
async fn rotatable(s: &App, credential: &CredentialId) -> Result<(Credential, AppObjectId, RotationPolicy)> {
    let c = s.store.get_credential(credential).await?.ok_or_else(|| Error::not_found("credential", credential))?;
    // A disabled integration is not rotated: say so before anything is written.
    if s.disabled.contains(&c.id.integration) {
        s.directory(&c.id.integration)?;
    }
    if c.kind != CredentialKind::Password {
        return Err(Error::invalid("request", "only client secrets are rotated; certificates are watched"));
    }
    if c.removed_at.is_some() {
        return Err(Error::invalid("request", "this credential was already removed"));
    }
    let Some(app) = c.app else {
        return Err(Error::invalid(
            "request",
            "this password belongs to a service principal; entra-rotator rotates application secrets",
        ));
    };
    let policy = s.policies.for_client(&c.client_id).cloned().ok_or_else(|| {
        Error::invalid(
            "request",
            format!("no policy rotates application {}: add it to a policy, or define a `default` policy", c.client_id),
        )
    })?;
    Ok((c, app, policy))
}

pub(super) async fn audit(s: &App, action: &str, actor: &str, e: &Execution, detail: impl Into<String>) {
    let event = AuditEvent {
        at: s.clock.now(),
        action: action.into(),
        actor: actor.into(),
        execution: Some(e.id),
        credential: Some(e.credential.clone()),
        detail: detail.into(),
    };
    // The audit trail must not stop a rotation midway; a failed append is logged loudly.
    if let Err(err) = s.store.append_audit(&event).await {
        tracing::error!(execution = %e.id, action, error = %err.chain(), "audit trail append failed");
    }
}

fn actor(trigger: &Trigger) -> String {
    match trigger {
        Trigger::Automatic { .. } => "scheduler".into(),
        Trigger::Manual { by, .. } => by.clone(),
    }
}

/// Asks for a rotation (HTTP trigger, `rotator rotate`): claims the credential by writing the
/// execution record, then queues the work. A dry run only runs preflight.
pub async fn request_rotation(
    s: &App,
    credential: &CredentialId,
    trigger: Trigger,
    dry_run: bool,
) -> Result<RotationAccepted> {
    let (c, app, policy) = rotatable(s, credential).await?;
    if dry_run {
        return Ok(RotationAccepted::DryRun { report: preflight(s, &c, app, &policy).await? });
    }
    let e = new_execution(&c, app, &policy, trigger.clone(), s.clock.now());
    let e = seal_plan(s, e).await?;
    if let Claim::AlreadyActive(running) = claim(s, &e).await? {
        s.store.delete_sealed(&e.plan_record()).await?;
        return Ok(RotationAccepted::AlreadyRunning { execution: running });
    }
    audit(s, "rotation.requested", &actor(&trigger), &e, describe_trigger(&trigger)).await;
    send(s, Message::rotate_execution(&e), format!("rotate:{}", e.id), Duration::ZERO).await?;
    Ok(RotationAccepted::Started { execution: Box::new(e) })
}

fn new_execution(
    c: &Credential,
    app: AppObjectId,
    policy: &RotationPolicy,
    trigger: Trigger,
    now: time::OffsetDateTime,
) -> Execution {
    let mut e = Execution::new(c.id.clone(), app, policy.id.clone(), trigger, plan(&policy.steps), now);
    e.manual_delivery = policy.manual_delivery;
    e
}

/// Writes the new execution (the claim); when that fails, its sealed plan goes too, so no sealed
/// record outlives an execution that was never written.
async fn claim(s: &App, e: &Execution) -> Result<Claim> {
    let claimed = s.store.create_execution(e).await;
    if claimed.is_err() && e.plan_sealed {
        let _ = s.store.delete_sealed(&e.plan_record()).await;
    }
    claimed
}

pub const PLAN_PURPOSE: &str = "step_plan";

fn plan_context(e: &Execution) -> SealContext {
    SealContext::new(e.plan_record(), PLAN_PURPOSE)
}

/// A step's URL query and header values may hold tokens: when any does, the plan as written is
/// sealed in its own record and the execution keeps only the redacted plan, so the store never
/// holds them in clear. Run-step opens the sealed plan for the step it runs.
async fn seal_plan(s: &App, mut e: Execution) -> Result<Execution> {
    let mut redacted = Vec::with_capacity(e.plan.len());
    let mut changed = false;
    for p in &e.plan {
        let mut p = p.clone();
        if let Some(d) = &p.definition {
            let clear = serde_json::to_value(d).map_err(|err| Error::invalid("step", err.to_string()))?;
            let hidden = d.redacted();
            if hidden != clear {
                changed = true;
                p.definition =
                    Some(serde_json::from_value(hidden).map_err(|err| Error::invalid("step", err.to_string()))?);
            }
        }
        redacted.push(p);
    }
    if !changed {
        return Ok(e);
    }
    let whole = serde_json::to_string(&e.plan).map_err(|err| Error::invalid("step", err.to_string()))?;
    let sealed = s.keys.seal(&SecretValue::new(whole), &plan_context(&e)).await?;
    let record = SealedRecord {
        record_id: e.plan_record(),
        purpose: PLAN_PURPOSE.into(),
        execution: Some(e.id),
        sealed,
        created_at: e.created_at,
    };
    s.store.put_sealed(&record).await?;
    e.plan = redacted;
    e.plan_sealed = true;
    Ok(e)
}

/// The step `index` of `e`'s plan as written (opened from its sealed record when the stored plan
/// is redacted).
pub(super) async fn planned_step(s: &App, e: &Execution, index: u32) -> Result<PlannedStep> {
    let stored = e.plan.get(index as usize).cloned().ok_or_else(|| Error::invalid("step", "beyond the plan"))?;
    if !e.plan_sealed || stored.definition.is_none() {
        return Ok(stored);
    }
    let record = s
        .store
        .get_sealed(&e.plan_record())
        .await?
        .ok_or_else(|| Error::invalid("step", "the sealed plan of this execution is missing"))?;
    let whole = s.keys.unseal(&record.sealed, &plan_context(e)).await?;
    let plan: Vec<PlannedStep> =
        serde_json::from_str(whole.expose()).map_err(|_| Error::invalid("step", "the sealed plan does not read"))?;
    plan.into_iter().nth(index as usize).ok_or_else(|| Error::invalid("step", "beyond the sealed plan"))
}

fn describe_trigger(t: &Trigger) -> String {
    match t {
        Trigger::Automatic { reason } => format!("automatic: {reason}"),
        Trigger::Manual { by, reason } => {
            format!("manual by {by}{}", reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default())
        }
    }
}

pub(super) async fn send(s: &App, message: Message, key: String, delay: Duration) -> Result<()> {
    let envelope = message.envelope(key);
    s.queue.send(&envelope.message.queue(), envelope.to_outgoing(delay)?).await?;
    Ok(())
}

pub(super) async fn send_step(s: &App, e: &Execution, step: u32, attempt: u32, delay: Duration) -> Result<()> {
    let message =
        Message::StepRequested { execution: e.id, credential: e.credential.clone(), app: e.app, step, attempt };
    send(s, message, format!("step:{}:{step}:{attempt}", e.id), delay).await
}

/// rotate: claims (when the requester did not), runs preflight against the plan, creates the new
/// secret, seals and stores it, and starts the steps. `receive_count` tells a redrive (a fresh
/// delivery of a failed execution's message) from a redelivery; `delivery` names the message being
/// handled, so a deferral it sends is sent once however often that message is delivered.
///
/// When Graph refuses the write for now (throttled, or another write to the application in
/// flight) and says how long to wait, the rotation is deferred: a new message for the same
/// execution is queued with that delay and this one is done, so no worker waits and the refusal
/// uses up none of the message's receives (a long wave of 429s never dead-letters a rotation).
pub async fn rotate(
    s: &App,
    credential: &CredentialId,
    trigger: Trigger,
    execution: Option<ExecutionId>,
    receive_count: u32,
    delivery: &str,
) -> Result<()> {
    let mut e = match execution {
        Some(id) => s.store.get_execution(&id).await?.ok_or_else(|| Error::not_found("execution", id))?,
        None => {
            let (c, app, policy) = rotatable(s, credential).await?;
            let e = new_execution(&c, app, &policy, trigger.clone(), s.clock.now());
            let e = seal_plan(s, e).await?;
            match claim(s, &e).await? {
                Claim::Created => {
                    audit(s, "rotation.requested", &actor(&trigger), &e, describe_trigger(&trigger)).await;
                    e
                }
                // Someone else is rotating it: that rotation will do.
                Claim::AlreadyActive(_) => {
                    s.store.delete_sealed(&e.plan_record()).await?;
                    return Ok(());
                }
            }
        }
    };
    match e.status {
        ExecutionStatus::Pending => {}
        // Failed before it created a secret, and delivered afresh: a redrive. It takes the
        // credential again (unless a newer rotation holds it) and starts over.
        ExecutionStatus::Failed if e.new_key_id.is_none() && receive_count <= 1 => {
            e.status = ExecutionStatus::Pending;
            e.error = None;
            e.finished_at = None;
            e.updated_at = s.clock.now();
            match s.store.update_execution(&e).await {
                Ok(v) => e.version = v,
                Err(Error::Conflict { reason, .. }) => {
                    tracing::warn!(execution = %e.id, reason, "a redriven rotation was not resumed");
                    return Ok(());
                }
                Err(err) => return Err(err),
            }
            audit(s, "rotation.redriven", "operator", &e, "the rotation starts over").await;
        }
        // Running: created and stored before; the first step message may not have been sent (a
        // crash right after storing). Sending it again is harmless: run-step drops duplicates.
        ExecutionStatus::Running if e.new_key_id.is_some() => {
            return send_step(s, &e, e.current_step, 1, Duration::ZERO).await;
        }
        _ => return Ok(()),
    }
    if e.new_key_id.is_some() {
        return send_step(s, &e, e.current_step, 1, Duration::ZERO).await;
    }
    match create_secret(s, &mut e).await {
        Ok(()) => Ok(()),
        Err(Refusal::Final(reason)) => fail_before_secret(s, e, reason).await,
        Err(Refusal::Again(err)) => match refused_for_now(&err) {
            Some(wait) => defer(s, &e, wait, delivery, &err).await,
            None => Err(err),
        },
    }
}

/// How long Graph asked to wait, when `err` is a refusal that only time cures: throttling (429) or
/// a concurrent write to the same application (409, or 400 naming it), with a wait attached.
fn refused_for_now(err: &Error) -> Option<Duration> {
    match err {
        Error::Directory { status: 429 | 409 | 400, transient: true, retry_after: Some(wait), .. } => Some(*wait),
        _ => None,
    }
}

/// Queues the rotation again after `wait`; the execution stays pending and keeps its claim.
async fn defer(s: &App, e: &Execution, wait: Duration, delivery: &str, why: &Error) -> Result<()> {
    send(s, Message::rotate_execution(e), format!("rotate:{}:deferred:{delivery}", e.id), wait).await?;
    tracing::info!(
        execution = %e.id,
        app = %e.app,
        wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        reason = %why,
        "Graph asked the rotation to wait; queued again"
    );
    Ok(())
}

/// Why `create_secret` stopped: for good (the execution fails with the reason) or for now (the
/// message is retried).
enum Refusal {
    Final(String),
    Again(Error),
}

impl From<Error> for Refusal {
    fn from(err: Error) -> Self {
        // A lost conditional write means someone else moved the execution on: look again.
        if err.is_transient() || matches!(err, Error::Conflict { .. }) {
            Self::Again(err)
        } else {
            Self::Final(err.chain())
        }
    }
}

/// Raises the "rotation failed" alert at once (the scan would raise it only while the execution
/// holds its credential; one that failed before it made a secret holds nothing). Once per
/// execution, shared with the scan's marker; an alert that cannot be queued is logged, never fatal.
pub(super) async fn alert_failed(s: &App, e: &Execution) {
    let reason = e.error.clone().unwrap_or_else(|| "no reason was recorded".into());
    let problem = Problem::RotationFailed { execution: e.id, reason };
    if let Err(err) = raise_problem(s, &e.credential, problem).await {
        tracing::error!(execution = %e.id, error = %err.chain(), "the rotation-failed alert was not raised");
    }
}

async fn fail_before_secret(s: &App, mut e: Execution, reason: String) -> Result<()> {
    e.fail(reason.clone(), s.clock.now());
    e.version = s.store.update_execution(&e).await?;
    alert_failed(s, &e).await;
    tracing::error!(execution = %e.id, credential = %e.credential, reason, "rotation failed before a new secret was made");
    audit(s, "rotation.failed", "rotate", &e, format!("no new secret was created: {reason}")).await;
    Ok(())
}

async fn create_secret(s: &App, e: &mut Execution) -> std::result::Result<(), Refusal> {
    let integration = e.credential.integration.clone();
    let directory = s.directory(&integration)?.clone();
    let Some(app) = directory.application(e.app).await? else {
        e.status = ExecutionStatus::Cancelled;
        e.error = Some("the application no longer exists in the tenant".into());
        e.finished_at = Some(s.clock.now());
        s.store.update_execution(e).await?;
        audit(s, "rotation.cancelled", "rotate", e, "application gone").await;
        return Ok(());
    };

    // An earlier attempt of this execution may have created a secret and crashed before storing
    // it: nobody holds that secret, so it goes before a new one is made.
    let marker = e.id.marker();
    let mut app = app;
    let passwords = app.password_credentials.take().unwrap_or_default();
    let (orphans, kept): (Vec<_>, Vec<_>) =
        passwords.into_iter().partition(|p| p.display_name.as_deref().is_some_and(|n| n.contains(&marker)));
    for p in &orphans {
        directory.remove_password(e.app, p.key_id).await?;
        audit(s, "orphan.removed", "rotate", e, format!("secret {} of an earlier attempt was never stored", p.key_id))
            .await;
    }
    app.password_credentials = Some(kept);

    // Preflight, against the plan fixed at creation, before anything is written to Entra.
    let Some(mut policy) = s.policies.get(&e.policy).cloned() else {
        return Err(Refusal::Final(format!("its policy {} is no longer configured", e.policy)));
    };
    policy.steps = e.plan.iter().filter_map(|p| p.definition.clone()).collect();
    policy.manual_delivery = e.manual_delivery;
    let mut checks = application_checks(&app, e.credential.key_id);
    if let Some(client_id) = app.client_id {
        checks.push(write_permission_check(directory.as_ref(), client_id).await);
    }
    checks.extend(plan_checks(s, &policy));
    checks.extend(target_checks(s, &policy, &e.credential).await);
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| c.outcome == CheckOutcome::Failed)
        .map(|c| format!("{}: {}", c.name, c.reason))
        .collect();
    if !failed.is_empty() {
        return Err(Refusal::Final(format!("preflight failed: {}", failed.join("; "))));
    }

    let now = s.clock.now();
    let end = policy.new_secret_end(now, None);
    let display_name = format!("entra-rotator {marker}");
    let created = directory.add_password(e.app, &display_name, end).await?;
    // The secret exists only in this answer: seal and store it before anything else.
    let sealed = s.keys.seal(&created.secret, &seal_context(e)).await?;
    s.store
        .put_sealed(&SealedRecord {
            record_id: e.secret_record(),
            purpose: SECRET_PURPOSE.into(),
            execution: Some(e.id),
            sealed,
            created_at: now,
        })
        .await?;
    e.new_key_id = Some(created.key_id);
    e.new_secret_end = created.end.or(Some(end));
    e.status = ExecutionStatus::Running;
    e.current_step = 0;
    e.updated_at = now;
    e.version = s.store.update_execution(e).await?;
    audit(s, "secret.created", "rotate", e, format!("new secret {} valid until {}", created.key_id, end.date())).await;
    // The new credential is in the inventory at once, as Active.
    let old = s.store.get_credential(&e.credential).await?;
    if let Some(old) = old {
        let mut new = old.clone();
        new.id = CredentialId::for_application(integration, e.app, created.key_id);
        new.display_name = created.display_name.clone().or(Some(display_name));
        new.hint = created.hint.clone();
        new.start = created.start.or(Some(now));
        new.end = e.new_secret_end;
        s.store.put_credential(&new).await?;
    }
    send_step(s, e, 0, 1, Duration::ZERO).await?;
    Ok(())
}

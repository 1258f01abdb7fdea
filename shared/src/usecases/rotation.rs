//! The rotation chain: request → rotate (claim, create the new secret, seal it) → run-step (verify,
//! each rollout step, finalize) → grace cleanup. Every decision that keeps DESIGN §4's promises
//! lives here:
//!
//! - the execution record is written before Graph is called, and the new secret is sealed and
//!   stored the moment Graph answers; a secret created by an attempt that crashed before storing it
//!   carries the execution's marker and is removed on the next attempt (or by the orphan sweep);
//! - every handler is idempotent per (execution, step, attempt): a duplicate or redelivered message
//!   is recognised and does nothing;
//! - the old secret is only ever removed by grace cleanup (see `cleanup`).

use std::time::Duration;

use serde::Serialize;

use crate::domain::execution::{
    Cleanup, Execution, ExecutionStatus, FINALIZE, PlannedStep, StepOutcome, StepRecord, Trigger, VERIFY, plan,
};
use crate::domain::ids::{AppObjectId, CredentialId, ExecutionId};
use crate::domain::inventory::{Credential, CredentialKind, room_for_password};
use crate::domain::policy::RotationPolicy;
use crate::domain::steps::OnFailure;
use crate::messages::Message;
use crate::ports::key_ring::SealContext;
use crate::ports::step_runner::{StepContext, StepFailure};
use crate::ports::{AuditEvent, Claim, SealedRecord};
use crate::usecases::app::App;
use crate::usecases::preflight::{PreflightReport, preflight};
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

fn seal_context(e: &Execution) -> SealContext {
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

async fn audit(s: &App, action: &str, actor: &str, e: &Execution, detail: impl Into<String>) {
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
    let e = Execution::new(c.id.clone(), app, policy.id.clone(), trigger.clone(), plan(&policy.steps), s.clock.now());
    if let Claim::AlreadyActive(running) = s.store.create_execution(&e).await? {
        return Ok(RotationAccepted::AlreadyRunning { execution: running });
    }
    audit(s, "rotation.requested", &actor(&trigger), &e, describe_trigger(&trigger)).await;
    let message =
        Message::RotateRequested { credential: c.id.clone(), app, trigger, dry_run: false, execution: Some(e.id) };
    send(s, message, format!("rotate:{}", e.id), Duration::ZERO).await?;
    Ok(RotationAccepted::Started { execution: Box::new(e) })
}

fn describe_trigger(t: &Trigger) -> String {
    match t {
        Trigger::Automatic { reason } => format!("automatic: {reason}"),
        Trigger::Manual { by, reason } => {
            format!("manual by {by}{}", reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default())
        }
    }
}

async fn send(s: &App, message: Message, key: String, delay: Duration) -> Result<()> {
    let envelope = message.envelope(key);
    s.queue.send(&envelope.message.queue(), envelope.to_outgoing(delay)?).await?;
    Ok(())
}

async fn send_step(s: &App, e: &Execution, step: u32, attempt: u32, delay: Duration) -> Result<()> {
    let message =
        Message::StepRequested { execution: e.id, credential: e.credential.clone(), app: e.app, step, attempt };
    send(s, message, format!("step:{}:{step}:{attempt}", e.id), delay).await
}

/// rotate: claims (when the requester did not), creates the new secret, seals and stores it, and
/// starts the steps.
pub async fn rotate(
    s: &App,
    credential: &CredentialId,
    trigger: Trigger,
    execution: Option<ExecutionId>,
) -> Result<()> {
    let mut e = match execution {
        Some(id) => s.store.get_execution(&id).await?.ok_or_else(|| Error::not_found("execution", id))?,
        None => {
            let (c, app, policy) = rotatable(s, credential).await?;
            let e = Execution::new(c.id, app, policy.id.clone(), trigger.clone(), plan(&policy.steps), s.clock.now());
            match s.store.create_execution(&e).await? {
                Claim::Created => {
                    audit(s, "rotation.requested", &actor(&trigger), &e, describe_trigger(&trigger)).await;
                    e
                }
                // Someone else is rotating it: that rotation will do.
                Claim::AlreadyActive(_) => return Ok(()),
            }
        }
    };
    if e.status.is_terminal() {
        return Ok(());
    }
    if e.new_key_id.is_some() {
        // Created and stored before; the first step message may not have been sent (a crash right
        // after storing). Sending it again is harmless: run-step drops duplicates.
        return send_step(s, &e, e.current_step, 1, Duration::ZERO).await;
    }
    let integration = e.credential.integration.clone();
    let directory = s.directory(&integration)?.clone();
    let Some(app) = directory.application(e.app).await? else {
        e.status = ExecutionStatus::Cancelled;
        e.error = Some("the application no longer exists in the tenant".into());
        e.finished_at = Some(s.clock.now());
        s.store.update_execution(&e).await?;
        audit(s, "rotation.cancelled", "rotate", &e, "application gone").await;
        return Ok(());
    };

    // An earlier attempt of this execution may have created a secret and crashed before storing
    // it: nobody holds that secret, so it goes before a new one is made.
    let marker = e.id.marker();
    let passwords = app.password_credentials.clone().unwrap_or_default();
    let mut count = passwords.len();
    for p in passwords.iter().filter(|p| p.display_name.as_deref().is_some_and(|n| n.contains(&marker))) {
        directory.remove_password(e.app, p.key_id).await?;
        count -= 1;
        audit(s, "orphan.removed", "rotate", &e, format!("secret {} of an earlier attempt was never stored", p.key_id))
            .await;
    }
    if let Err(reason) = room_for_password(app.sign_in_audience.as_deref(), count) {
        return Err(Error::invalid("rotation", format!("no room for another password: {reason}")));
    }

    let policy = s.policies.get(&e.policy).cloned();
    let now = s.clock.now();
    let end = policy.map(|p| p.new_secret_end(now, None)).unwrap_or(now + time::Duration::days(180));
    let display_name = format!("entra-rotator {marker}");
    let created = directory.add_password(e.app, &display_name, end).await?;
    // The secret exists only in this answer: seal and store it before anything else.
    let sealed = s.keys.seal(&created.secret, &seal_context(&e)).await?;
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
    e.version = s.store.update_execution(&e).await?;
    audit(s, "secret.created", "rotate", &e, format!("new secret {} valid until {}", created.key_id, end.date())).await;
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
    send_step(s, &e, 0, 1, Duration::ZERO).await
}

/// run-step: runs exactly one step of one execution.
pub async fn run_step(s: &App, id: ExecutionId, step: u32, attempt: u32, receive_count: u32) -> Result<()> {
    let Some(mut e) = s.store.get_execution(&id).await? else {
        return Err(Error::not_found("execution", id));
    };
    if e.status.is_terminal() || step > e.current_step {
        return Ok(());
    }
    if step < e.current_step {
        // A message about a step already done: a duplicate, or a redelivery because the message of
        // the next step may not have been sent (a crash right after moving on). Sending it again is
        // harmless: the queue drops a duplicate, and so does the attempt check below.
        if step + 1 == e.current_step && (e.current_step as usize) < e.plan.len() {
            let current = s.store.list_step_records(&id).await?.into_iter().find(|r| r.index == e.current_step);
            send_step(s, &e, e.current_step, current.map_or(1, |r| r.attempts.max(1)), Duration::ZERO).await?;
        }
        return Ok(());
    }
    let redriven = e.status == ExecutionStatus::Failed;
    if redriven {
        if receive_count > 1 {
            // Redelivery of the message that failed: keep failing until it is dead-lettered.
            return Err(Error::invalid("step", e.error.clone().unwrap_or_else(|| "the step failed".into())));
        }
        // A fresh delivery of a failed step: a redrive after the fix. Run it again.
        e.status = ExecutionStatus::Running;
        e.error = None;
        e.version = s.store.update_execution(&e).await?;
        audit(s, "step.redriven", "operator", &e, format!("step {step} runs again")).await;
    }
    let planned = e.plan.get(step as usize).cloned().ok_or_else(|| Error::invalid("step", "beyond the plan"))?;
    let records = s.store.list_step_records(&id).await?;
    let mut record = records.into_iter().find(|r| r.index == step).unwrap_or_else(|| StepRecord {
        execution: id,
        index: step,
        name: planned.name.clone(),
        kind: planned.kind.clone(),
        attempts: 0,
        outcome: StepOutcome::Pending,
        started_at: None,
        ended_at: None,
        error: None,
    });
    if record.outcome == StepOutcome::Succeeded {
        // Its effect is recorded; a crash came before moving on.
        return advance(s, e, step).await;
    }
    let duplicate = attempt < record.attempts || (attempt == record.attempts && record.outcome != StepOutcome::Running);
    if duplicate && !redriven {
        // This attempt already ran (its retry, if any, is queued): a duplicate. An attempt left
        // Running was cut short by a crash and runs again.
        return Ok(());
    }
    let now = s.clock.now();
    record.attempts = attempt;
    record.outcome = StepOutcome::Running;
    record.started_at.get_or_insert(now);
    s.store.put_step_record(&record).await?;

    let result = execute(s, &mut e, &planned, step, &record).await;
    let now = s.clock.now();
    match result {
        Ok(()) => {
            record.outcome = StepOutcome::Succeeded;
            record.ended_at = Some(now);
            record.error = None;
            s.store.put_step_record(&record).await?;
            if planned.kind == FINALIZE {
                return Ok(());
            }
            advance(s, e, step).await
        }
        Err(StepError::Retry { failure, delay }) => {
            record.outcome = StepOutcome::Pending;
            record.error = Some(failure.message);
            s.store.put_step_record(&record).await?;
            send_step(s, &e, step, attempt + 1, delay).await
        }
        Err(StepError::Failed(failure)) => {
            record.outcome = StepOutcome::Failed;
            record.ended_at = Some(now);
            record.error = Some(failure.message.clone());
            s.store.put_step_record(&record).await?;
            let words =
                format!("step {step} ({}) failed after {attempt} attempt(s): {}", planned.name, failure.message);
            match planned.on_failure {
                OnFailure::Continue => {
                    e.needs_attention = true;
                    e.version = s.store.update_execution(&e).await?;
                    audit(s, "step.failed", "run-step", &e, format!("{words}; continuing, needs attention")).await;
                    advance(s, e, step).await
                }
                OnFailure::Abort => {
                    e.status = ExecutionStatus::Failed;
                    e.error = Some(words.clone());
                    e.updated_at = now;
                    e.version = s.store.update_execution(&e).await?;
                    audit(s, "rotation.failed", "run-step", &e, words.clone()).await;
                    Err(Error::invalid("step", words))
                }
            }
        }
    }
}

enum StepError {
    Retry { failure: StepFailure, delay: Duration },
    Failed(StepFailure),
}

async fn execute(
    s: &App,
    e: &mut Execution,
    planned: &PlannedStep,
    step: u32,
    record: &StepRecord,
) -> std::result::Result<(), StepError> {
    let internal = |err: Error| StepError::Failed(StepFailure::permanent(err.chain()));
    if planned.kind == FINALIZE {
        return finalize(s, e).await.map_err(internal);
    }
    let sealed = s
        .store
        .get_sealed(&e.secret_record())
        .await
        .map_err(internal)?
        .ok_or_else(|| StepError::Failed(StepFailure::permanent("the sealed new secret is missing")))?;
    let secret = s.keys.unseal(&sealed.sealed, &seal_context(e)).await.map_err(internal)?;
    let new_key_id = e.new_key_id.ok_or_else(|| StepError::Failed(StepFailure::permanent("no new secret yet")))?;
    let now = s.clock.now();
    if planned.kind == VERIFY {
        let client_id = match s.store.get_credential(&e.credential).await.map_err(internal)? {
            Some(c) => c.client_id,
            None => return Err(StepError::Failed(StepFailure::permanent("the credential left the inventory"))),
        };
        let directory = s.directory(&e.credential.integration).map_err(internal)?.clone();
        // A transient failure of the token endpoint counts as "not yet", within the same budget.
        if let Ok(true) = directory.secret_signs_in(client_id, &secret).await {
            return Ok(());
        }
        // New secrets take seconds to minutes to replicate: try again with backoff, within budget.
        let started = record.started_at.unwrap_or(now);
        let elapsed = (now - started).try_into().unwrap_or(Duration::ZERO);
        let delay = Duration::from_secs(2u64.saturating_pow(record.attempts.min(5))).min(Duration::from_secs(30));
        if elapsed + delay <= s.settings.verify_budget {
            return Err(StepError::Retry {
                failure: StepFailure::retryable("the new secret does not sign in yet (replication)"),
                delay,
            });
        }
        return Err(StepError::Failed(StepFailure::permanent(format!(
            "the new secret did not sign in within {}",
            crate::domain::Span(s.settings.verify_budget)
        ))));
    }
    let Some(definition) = &planned.definition else {
        return Err(StepError::Failed(StepFailure::permanent("the step has no definition")));
    };
    let credential = e.credential.clone();
    let client_id = s.store.get_credential(&credential).await.ok().flatten().map(|c| c.client_id);
    let Some(client_id) = client_id else {
        return Err(StepError::Failed(StepFailure::permanent("the credential left the inventory")));
    };
    let ctx = StepContext {
        execution: e.id,
        step_index: step,
        credential: &credential,
        app: e.app,
        client_id,
        new_key_id,
        new_secret_end: e.new_secret_end,
        secret: &secret,
        now,
    };
    match s.rollout.run(definition, &ctx).await {
        Ok(()) => Ok(()),
        Err(f) if f.retryable && record.attempts < planned.attempts => {
            Err(StepError::Retry { failure: f, delay: planned.retry_delay.as_duration() })
        }
        Err(f) => Err(StepError::Failed(f)),
    }
}

async fn advance(s: &App, mut e: Execution, step: u32) -> Result<()> {
    if e.current_step == step {
        e.current_step = step + 1;
        e.updated_at = s.clock.now();
        e.version = s.store.update_execution(&e).await?;
    }
    if (e.current_step as usize) < e.plan.len() && !e.status.is_terminal() {
        send_step(s, &e, e.current_step, 1, Duration::ZERO).await?;
    }
    Ok(())
}

/// The rollout is over: the execution completes (or needs attention) and the old credential
/// enters its grace period.
async fn finalize(s: &App, e: &mut Execution) -> Result<()> {
    let now = s.clock.now();
    let grace =
        s.policies.get(&e.policy).map(|p| p.grace_period).unwrap_or(crate::domain::policy::DEFAULT_GRACE_PERIOD);
    let records = s.store.list_step_records(&e.id).await?;
    let rollout = records.iter().filter(|r| r.kind != VERIFY && r.kind != FINALIZE);
    let (ok, total) = rollout.fold((0, 0), |(ok, n), r| (ok + usize::from(r.outcome == StepOutcome::Succeeded), n + 1));
    e.status = if e.needs_attention { ExecutionStatus::NeedsAttention } else { ExecutionStatus::Completed };
    e.grace_until = Some(now + grace.as_time());
    e.finished_at = Some(now);
    e.updated_at = now;
    e.cleanup = if e.needs_attention { Cleanup::AwaitingConfirmation } else { Cleanup::NotDue };
    e.summary = Some(format!(
        "{ok} of {total} rollout steps succeeded{}; the old secret stays valid until {}",
        if e.needs_attention { ", needs attention" } else { "" },
        (now + grace.as_time()).date()
    ));
    e.version = s.store.update_execution(e).await?;
    audit(s, "rotation.completed", "run-step", e, e.summary.clone().unwrap_or_default()).await;
    Ok(())
}

/// An operator confirms that the old secret of a rollout that needs attention may be removed.
pub async fn confirm_cleanup(s: &App, id: ExecutionId, by: &str) -> Result<Execution> {
    let mut e = s.store.get_execution(&id).await?.ok_or_else(|| Error::not_found("execution", id))?;
    if !e.status.is_finalized() {
        return Err(Error::conflict("execution", id, format!("it is {}, not finished", e.status.as_str())));
    }
    if matches!(e.cleanup, Cleanup::Done { .. }) {
        return Ok(e);
    }
    e.cleanup = Cleanup::Confirmed { by: by.to_owned() };
    e.updated_at = s.clock.now();
    e.version = s.store.update_execution(&e).await?;
    audit(s, "cleanup.confirmed", by, &e, "the old secret may be removed after the grace period").await;
    Ok(e)
}

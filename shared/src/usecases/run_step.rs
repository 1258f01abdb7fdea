//! run-step: one step of one execution per message — `verify`, each rollout step in order,
//! `finalize`. A message for a step is answered from that step's record, so a redelivery after a
//! crash between two writes picks up where the first delivery stopped: a step that succeeded moves
//! on, a retry that was recorded sends its next attempt, a failure that was recorded is settled.

use std::time::Duration;

use crate::domain::execution::{
    Cleanup, Execution, ExecutionStatus, FINALIZE, PlannedStep, StepOutcome, StepRecord, VERIFY,
};
use crate::domain::ids::ExecutionId;
use crate::domain::steps::OnFailure;
use crate::ports::step_runner::{StepContext, StepFailure};
use crate::usecases::app::App;
use crate::usecases::rotation::{alert_failed, audit, planned_step, seal_context, send_step};
use crate::{Error, Result};

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
    let planned = planned_step(s, &e, step).await?;
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
        attempted_at: None,
        error: None,
        left_in_place: false,
    });
    if record.outcome == StepOutcome::Succeeded {
        // Its effect is recorded; a crash came before moving on.
        return advance(s, e, step).await;
    }
    if !redriven && attempt <= record.attempts {
        match record.outcome {
            // Its failure is recorded; a crash may have come before the execution was told.
            StepOutcome::Failed => {
                let words = failed_words(step, &planned, record.attempts, record.error.as_deref().unwrap_or("failed"));
                return settle_failure(s, e, &planned, step, words).await;
            }
            // Its retry is recorded; a crash may have come before the next attempt was queued.
            // Queueing it again is harmless: the queue and the attempt check drop a duplicate.
            StepOutcome::Pending if attempt == record.attempts && record.error.is_some() => {
                return send_step(s, &e, step, attempt + 1, planned.retry_delay.as_duration()).await;
            }
            _ => {}
        }
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
    record.attempted_at = Some(now);
    s.store.put_step_record(&record).await?;

    let result = execute(s, &mut e, &planned, step, &record).await;
    let now = s.clock.now();
    match result {
        Ok(()) => {
            record.outcome = StepOutcome::Succeeded;
            record.ended_at = Some(now);
            record.error = None;
            record.left_in_place = false;
            s.store.put_step_record(&record).await?;
            if planned.kind == FINALIZE {
                return Ok(());
            }
            advance(s, e, step).await
        }
        Err(StepError::Again(err)) => {
            // Left Running, so the redelivery of this same attempt runs it again.
            Err(err)
        }
        Err(StepError::Retry { failure, delay }) => {
            record.outcome = StepOutcome::Pending;
            record.left_in_place |= failure.left_in_place;
            record.error = Some(failure.message);
            record.attempted_at = Some(now);
            s.store.put_step_record(&record).await?;
            send_step(s, &e, step, attempt + 1, delay).await
        }
        Err(StepError::Failed(failure)) => {
            record.outcome = StepOutcome::Failed;
            record.left_in_place |= failure.left_in_place;
            record.ended_at = Some(now);
            record.attempted_at = Some(now);
            record.error = Some(failure.message.clone());
            s.store.put_step_record(&record).await?;
            let words = failed_words(step, &planned, attempt, &failure.message);
            settle_failure(s, e, &planned, step, words).await
        }
    }
}

fn failed_words(step: u32, planned: &PlannedStep, attempts: u32, error: &str) -> String {
    format!("step {step} ({}) failed after {attempts} attempt(s): {error}", planned.name)
}

/// A step failed for good (its record says so): `continue` marks the execution as needing
/// attention and moves on; `abort` fails it, and the message goes on to the dead-letter queue.
/// Settling twice changes nothing more.
async fn settle_failure(s: &App, mut e: Execution, planned: &PlannedStep, step: u32, words: String) -> Result<()> {
    match planned.on_failure {
        OnFailure::Continue => {
            if !e.needs_attention {
                e.needs_attention = true;
                e.updated_at = s.clock.now();
                e.version = s.store.update_execution(&e).await?;
                audit(s, "step.failed", "run-step", &e, format!("{words}; continuing, needs attention")).await;
            }
            advance(s, e, step).await
        }
        OnFailure::Abort => {
            if e.status != ExecutionStatus::Failed {
                e.fail(words.clone(), s.clock.now());
                e.version = s.store.update_execution(&e).await?;
                tracing::error!(execution = %e.id, credential = %e.credential, reason = words, "rotation failed");
                audit(s, "rotation.failed", "run-step", &e, words.clone()).await;
                alert_failed(s, &e).await;
            }
            Err(Error::invalid("step", words))
        }
    }
}

enum StepError {
    Retry {
        failure: StepFailure,
        delay: Duration,
    },
    Failed(StepFailure),
    /// Our own store or key ring hiccuped: the message is tried again, the step's budget untouched.
    Again(Error),
}

async fn execute(
    s: &App,
    e: &mut Execution,
    planned: &PlannedStep,
    step: u32,
    record: &StepRecord,
) -> std::result::Result<(), StepError> {
    let internal = |err: Error| {
        if err.is_transient() { StepError::Again(err) } else { StepError::Failed(StepFailure::permanent(err.chain())) }
    };
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
        attempt: record.attempts,
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
    let grace_until = now
        .checked_add(grace.as_time())
        .ok_or_else(|| Error::invalid("policy", format!("a grace period of {grace} ends beyond the calendar")))?;
    e.status = if e.needs_attention { ExecutionStatus::NeedsAttention } else { ExecutionStatus::Completed };
    e.grace_until = Some(grace_until);
    e.finished_at = Some(now);
    e.updated_at = now;
    // A rollout that needs attention, or a secret delivered by hand, waits for an operator.
    e.cleanup = if e.needs_attention || e.manual_delivery { Cleanup::AwaitingConfirmation } else { Cleanup::NotDue };
    e.summary = Some(format!(
        "{ok} of {total} rollout steps succeeded{}{}; the old secret stays valid until {}",
        if e.needs_attention { ", needs attention" } else { "" },
        if e.manual_delivery { ", delivered by hand (cleanup waits for `rotator confirm`)" } else { "" },
        grace_until.date()
    ));
    e.version = s.store.update_execution(e).await?;
    audit(s, "rotation.completed", "run-step", e, e.summary.clone().unwrap_or_default()).await;
    Ok(())
}

//! Nothing waits for ever (DESIGN §4.9). The store and the queue are not atomic together, so a
//! crash between a state change and the message that should follow it can leave an execution with
//! no message to move it on. Two things close that gap:
//!
//! - the recovery sweep (run with grace cleanup) finds executions that hold their credential and
//!   have shown no sign of life for [`RotationSettings::stall_after`] plus the current step's retry
//!   delay, and queues the message that moves them on again — every handler answers a repeated
//!   message from the records, so a message that was not lost after all does no harm;
//! - a message on its last delivery that fails again fails its execution with the reason, so a
//!   dead letter never leaves its execution `pending` or `running` with no word.
//!
//! [`RotationSettings::stall_after`]: crate::usecases::app::RotationSettings

use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use crate::domain::execution::{Execution, ExecutionStatus, Trigger};
use crate::domain::ids::{CredentialId, ExecutionId};
use crate::messages::{MAX_RECEIVE_COUNT, Message};
use crate::usecases::app::App;
use crate::usecases::rotation::{alert_failed, audit, send};
use crate::{Error, Result};

/// What one recovery sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RecoveryReport {
    /// Stalled executions whose next message was queued again.
    pub resumed: usize,
}

/// Queues again the message that moves each stalled execution on.
pub async fn resume_stalled(s: &App) -> Result<RecoveryReport> {
    let now = s.clock.now();
    let mut report = RecoveryReport::default();
    for e in s.store.list_open_executions().await? {
        if !matches!(e.status, ExecutionStatus::Pending | ExecutionStatus::Running) {
            continue;
        }
        // Each execution on its own: one that cannot be read or resumed never holds back the rest.
        match resume_one(s, &e, now).await {
            Ok(true) => report.resumed += 1,
            Ok(false) => {}
            Err(err) => tracing::warn!(execution = %e.id, error = %err.chain(), "a stalled execution was not resumed"),
        }
    }
    Ok(report)
}

async fn resume_one(s: &App, e: &Execution, now: OffsetDateTime) -> Result<bool> {
    let stall = time::Duration::try_from(s.settings.stall_after).unwrap_or(time::Duration::HOUR);
    // The sweep's period names the resend, so each sweep may resend once and the queue's
    // deduplication of the first message cannot swallow it.
    let tick = now.unix_timestamp() / stall.whole_seconds().max(1);
    if e.new_key_id.is_none() {
        if now - e.updated_at < stall {
            return Ok(false);
        }
        send(s, Message::rotate_execution(e), format!("resume:{}:rotate:{tick}", e.id), Duration::ZERO).await?;
    } else {
        let records = s.store.list_step_records(&e.id).await?;
        let current = records.iter().find(|r| r.index == e.current_step);
        let last_sign =
            current.and_then(|r| r.attempted_at.or(r.started_at)).map_or(e.updated_at, |t| t.max(e.updated_at));
        let delay = e.plan.get(e.current_step as usize).map_or(time::Duration::ZERO, |p| p.retry_delay.as_time());
        if now - last_sign < stall + delay {
            return Ok(false);
        }
        let attempt = current.map_or(1, |r| r.attempts.max(1));
        let message = Message::StepRequested {
            execution: e.id,
            credential: e.credential.clone(),
            app: e.app,
            step: e.current_step,
            attempt,
        };
        send(s, message, format!("resume:{}:{}:{attempt}:{tick}", e.id, e.current_step), Duration::ZERO).await?;
    }
    tracing::warn!(execution = %e.id, status = e.status.as_str(), step = e.current_step, "stalled execution resumed");
    audit(
        s,
        "rotation.resumed",
        "recovery",
        e,
        format!("no progress for {}: its next message was queued again", crate::domain::Span(s.settings.stall_after)),
    )
    .await;
    Ok(true)
}

/// Whether a failed delivery was the message's last: the queue dead-letters it next.
pub fn last_delivery(receive_count: u32) -> bool {
    receive_count >= MAX_RECEIVE_COUNT
}

/// A message of `execution` failed on its last delivery and goes to the dead-letter queue: the
/// execution fails with the reason, so it neither waits for ever nor says nothing. A redrive
/// resumes it. When the message named no execution (an automatic request, which rotate claims
/// itself), it is the one that message created: still pending, with no secret, and of that
/// trigger — never another rotation that happens to hold the credential.
pub async fn dead_lettered(
    s: &App,
    execution: Option<ExecutionId>,
    credential: &CredentialId,
    trigger: Option<&Trigger>,
    error: &Error,
) {
    let outcome = async {
        let found = match execution {
            Some(id) => s.store.get_execution(&id).await?,
            None => s.store.list_executions(credential).await?.into_iter().find(|e| {
                e.holds_claim()
                    && e.status == ExecutionStatus::Pending
                    && e.new_key_id.is_none()
                    && Some(&e.trigger) == trigger
            }),
        };
        let Some(mut e) = found else { return Ok(()) };
        if !matches!(e.status, ExecutionStatus::Pending | ExecutionStatus::Running) {
            return Ok(());
        }
        let reason = format!("its message was dead-lettered after {MAX_RECEIVE_COUNT} attempts: {}", error.chain());
        e.fail(reason.clone(), s.clock.now());
        e.version = s.store.update_execution(&e).await?;
        tracing::error!(execution = %e.id, credential = %e.credential, reason, "rotation failed");
        audit(s, "rotation.failed", "dead-letter", &e, reason).await;
        alert_failed(s, &e).await;
        Ok::<_, Error>(())
    };
    if let Err(err) = outcome.await {
        tracing::error!(credential = %credential, error = %err.chain(), "a dead-lettered rotation could not be marked failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::PolicyId;
    use crate::domain::inventory::Credential;

    #[tokio::test]
    async fn a_dead_lettered_automatic_request_never_fails_another_rotation_of_its_credential() {
        let app = App::test();
        let c = Credential::test_password(app.clock.now() + time::Duration::days(10));
        let manual = Trigger::Manual { by: "alice".into(), reason: None };
        let mut running = Execution::new(
            c.id.clone(),
            c.app.unwrap(),
            PolicyId::parse("default").unwrap(),
            manual,
            vec![],
            app.clock.now(),
        );
        app.store.create_execution(&running).await.unwrap();
        running.status = ExecutionStatus::Running;
        running.new_key_id = Some(crate::domain::ids::KeyId::from_uuid(uuid::Uuid::new_v4()));
        app.store.update_execution(&running).await.unwrap();

        // The scan's request for the same credential fails on its last delivery (say, its policy was
        // removed): it created no execution, so nothing is failed on its account.
        let automatic = Trigger::Automatic { reason: "expires in 30 days".into() };
        let err = Error::invalid("request", "no policy rotates application x");
        dead_lettered(&app, None, &c.id, Some(&automatic), &err).await;
        let still = app.store.get_execution(&running.id).await.unwrap().unwrap();
        assert_eq!(still.status, ExecutionStatus::Running, "another rotation is left alone");

        // A message that names it does fail it, with the reason.
        dead_lettered(&app, Some(running.id), &c.id, None, &Error::invalid("step", "503")).await;
        let failed = app.store.get_execution(&running.id).await.unwrap().unwrap();
        assert_eq!(failed.status, ExecutionStatus::Failed);
        assert!(failed.error.unwrap().contains("dead-lettered after 5 attempts"));
    }
}

//! What an operator does to an execution: cancel it, read a manually delivered secret once, and
//! confirm that the old secret may go. Each is audited with who asked.

use crate::domain::execution::{Cleanup, Execution, ExecutionStatus, Revealed, StepOutcome};
use crate::domain::ids::{CredentialId, ExecutionId};
use crate::domain::secret::SecretValue;
use crate::domain::steps::Phase;
use crate::usecases::app::App;
use crate::usecases::rotation::{audit, seal_context};
use crate::{Error, Result};

async fn load(s: &App, id: ExecutionId) -> Result<Execution> {
    s.store.get_execution(&id).await?.ok_or_else(|| Error::not_found("execution", id))
}

/// The step that published (or may have published) the new secret, if any: a publish step that
/// succeeded, was cut short while running, or failed leaving the secret in place; or the
/// operator's one reading of it.
async fn published_by(s: &App, e: &Execution) -> Result<Option<String>> {
    if let Some(r) = &e.revealed {
        return Ok(Some(format!("{} read it (manual delivery) at {}", r.by, r.at)));
    }
    let records = s.store.list_step_records(&e.id).await?;
    Ok(records.iter().find_map(|r| {
        let planned = e.plan.get(r.index as usize)?;
        let publishes = planned.definition.as_ref().is_some_and(|d| d.phase() == Phase::Publish);
        let how = match r.outcome {
            StepOutcome::Succeeded | StepOutcome::Running => "published it",
            StepOutcome::Failed | StepOutcome::Pending if r.left_in_place => "failed but left it in place",
            _ => return None,
        };
        publishes.then(|| format!("step {} ({}) {how}", r.index, planned.name))
    }))
}

/// Ends an execution that failed, is stuck, or needs attention, and frees its credential for a
/// new rotation with the current plan. The old secret stays. The new secret is removed from Entra
/// only when nothing published it: a published secret may already be in use, so then cancel
/// refuses and says to confirm or roll forward instead.
pub async fn cancel(s: &App, id: ExecutionId, by: &str) -> Result<Execution> {
    let mut e = load(s, id).await?;
    match e.status {
        ExecutionStatus::Cancelled => return Ok(e),
        ExecutionStatus::Completed => {
            return Err(Error::conflict("execution", id, "it completed healthy: there is nothing to cancel"));
        }
        ExecutionStatus::NeedsAttention if matches!(e.cleanup, Cleanup::Done { .. } | Cleanup::Confirmed { .. }) => {
            return Err(Error::conflict("execution", id, "its cleanup was confirmed: the old secret is going"));
        }
        _ => {}
    }
    if let (Some(key), Some(how)) = (e.new_key_id, published_by(s, &e).await?) {
        return Err(Error::conflict(
            "execution",
            id,
            format!(
                "the new secret {key} may already be in use ({how}): cancelling would remove it. Roll forward \
                 instead (`rotator dlq redrive` after the fix), or confirm the rollout (`rotator confirm {id}`)"
            ),
        ));
    }
    // Cancelled first (a conditional write), so no further step starts; then the new secret goes.
    let now = s.clock.now();
    let previous = e.status;
    e.status = ExecutionStatus::Cancelled;
    e.error = Some(format!("cancelled by {by} (it was {})", previous.as_str()));
    e.finished_at = Some(now);
    e.updated_at = now;
    e.cleanup = Cleanup::NotDue;
    e.version = s.store.update_execution(&e).await?;
    audit(s, "rotation.cancelled", by, &e, format!("cancelled while {}; the old secret stays", previous.as_str()))
        .await;
    // It never runs again: the plan as written is not needed any more.
    s.store.delete_sealed(&e.plan_record()).await?;
    if let Some(key) = e.new_key_id {
        // A step that was running when the cancel landed may have published it after all: then
        // it stays, owned by this execution, and the audit trail says so.
        if let Some(how) = published_by(s, &e).await? {
            audit(s, "cancel.kept_new_secret", by, &e, format!("the new secret {key} stays: {how}")).await;
            return Ok(e);
        }
        let directory = s.directory(&e.credential.integration)?.clone();
        directory.remove_password(e.app, key).await?;
        let new = CredentialId::for_application(e.credential.integration.clone(), e.app, key);
        if let Some(mut c) = s.store.get_credential(&new).await? {
            c.removed_at = Some(now);
            s.store.put_credential(&c).await?;
        }
        s.store.delete_sealed(&e.secret_record()).await?;
        audit(s, "secret.removed", by, &e, format!("the unpublished new secret {key} was removed")).await;
    }
    Ok(e)
}

/// The one reading of a manually delivered secret: for an operator with write access, audited,
/// never logged. A second reading is refused; so is any reading of a secret that steps deliver.
pub async fn reveal(s: &App, id: ExecutionId, by: &str) -> Result<SecretValue> {
    let mut e = load(s, id).await?;
    if !e.manual_delivery {
        return Err(Error::conflict("execution", id, "its policy delivers the secret by steps: it is never shown"));
    }
    if let Some(r) = &e.revealed {
        return Err(Error::conflict(
            "execution",
            id,
            format!("its new secret was read by {} at {}: it is shown once", r.by, r.at),
        ));
    }
    if e.new_key_id.is_none()
        || matches!(e.status, ExecutionStatus::Cancelled)
        || matches!(e.cleanup, Cleanup::Done { .. })
    {
        return Err(Error::conflict(
            "execution",
            id,
            format!("it is {} with no new secret to read", e.status.as_str()),
        ));
    }
    let sealed = s.store.get_sealed(&e.secret_record()).await?.ok_or_else(|| Error::not_found("sealed secret", id))?;
    let secret = s.keys.unseal(&sealed.sealed, &seal_context(&e)).await?;
    // Recorded before it is shown; the conditional write lets one reader win.
    e.revealed = Some(Revealed { by: by.to_owned(), at: s.clock.now() });
    e.updated_at = s.clock.now();
    e.version = s.store.update_execution(&e).await?;
    audit(s, "secret.revealed", by, &e, "the new secret was read once, for manual delivery").await;
    Ok(secret)
}

/// An operator confirms that the old secret of a rollout that needs attention (or was delivered by
/// hand) may be removed after the grace period.
pub async fn confirm_cleanup(s: &App, id: ExecutionId, by: &str) -> Result<Execution> {
    let mut e = load(s, id).await?;
    if !e.status.is_finalized() {
        return Err(Error::conflict("execution", id, format!("it is {}, not finished", e.status.as_str())));
    }
    if matches!(e.cleanup, Cleanup::Done { .. }) {
        return Ok(e);
    }
    if e.manual_delivery && e.revealed.is_none() {
        return Err(Error::conflict(
            "execution",
            id,
            "nobody has read its new secret yet: deliver it first (`rotator reveal`), then confirm",
        ));
    }
    e.cleanup = Cleanup::Confirmed { by: by.to_owned() };
    e.updated_at = s.clock.now();
    e.version = s.store.update_execution(&e).await?;
    audit(s, "cleanup.confirmed", by, &e, "the old secret may be removed after the grace period").await;
    Ok(e)
}

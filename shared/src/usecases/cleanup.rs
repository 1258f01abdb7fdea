//! grace-cleanup: removes the old secret once its grace period ended after a healthy rollout (or an
//! operator confirmed), only that key id, never the application's last working credential; and
//! sweeps orphans, secrets carrying a rotation marker that no execution owns.

use serde::Serialize;

use crate::Result;
use crate::domain::execution::{Cleanup, Execution, ExecutionStatus};
use crate::domain::ids::{ExecutionId, IntegrationId};
use crate::ports::AuditEvent;
use crate::usecases::app::App;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CleanupReport {
    /// Old secrets removed after their grace period.
    pub removed: usize,
    /// Old secrets that were already gone: done as well.
    pub already_gone: usize,
    /// Rollouts that need attention, waiting for `rotator confirm`.
    pub awaiting_confirmation: usize,
    /// Marked secrets no execution owns, removed.
    pub orphans_removed: usize,
}

async fn audit(s: &App, action: &str, e: Option<&Execution>, credential: Option<String>, detail: String) {
    let event = AuditEvent {
        at: s.clock.now(),
        action: action.into(),
        actor: "grace-cleanup".into(),
        execution: e.map(|e| e.id),
        credential: e.map(|e| e.credential.clone()).or_else(|| credential.and_then(|c| c.parse().ok())),
        detail,
    };
    if let Err(err) = s.store.append_audit(&event).await {
        tracing::error!(action, error = %err.chain(), "audit trail append failed");
    }
}

pub async fn cleanup(s: &App, integration: Option<&IntegrationId>) -> Result<CleanupReport> {
    let now = s.clock.now();
    let mut report = CleanupReport::default();
    for mut e in s.store.list_open_executions().await? {
        if integration.is_some_and(|i| &e.credential.integration != i) || !e.status.is_finalized() {
            continue;
        }
        if e.grace_until.is_none_or(|g| g > now) || matches!(e.cleanup, Cleanup::Done { .. }) {
            continue;
        }
        let confirmed = matches!(e.cleanup, Cleanup::Confirmed { .. });
        // A rollout that needs attention, or a secret delivered by hand, waits for an operator.
        if (e.status == ExecutionStatus::NeedsAttention
            || e.manual_delivery
            || e.cleanup == Cleanup::AwaitingConfirmation)
            && !confirmed
        {
            report.awaiting_confirmation += 1;
            continue;
        }
        let directory = s.directory(&e.credential.integration)?.clone();
        let old_key = e.credential.key_id;
        let Some(new_key) = e.new_key_id else { continue };
        match directory.application(e.app).await? {
            None => {
                // The application itself is gone: nothing left to remove.
                report.already_gone += 1;
            }
            Some(app) => {
                let passwords = app.password_credentials.unwrap_or_default();
                let new_works = passwords.iter().any(|p| p.key_id == new_key && p.end.is_none_or(|end| end > now));
                if !new_works {
                    // Removing the old secret now could leave the application with none that works.
                    audit(
                        s,
                        "cleanup.refused",
                        Some(&e),
                        None,
                        format!("the new secret {new_key} is missing or expired; the old one {old_key} stays"),
                    )
                    .await;
                    tracing::error!(execution = %e.id, "cleanup refused: the new secret is not on the application");
                    continue;
                }
                if passwords.iter().any(|p| p.key_id == old_key) {
                    directory.remove_password(e.app, old_key).await?;
                    report.removed += 1;
                } else {
                    report.already_gone += 1;
                }
            }
        }
        // Recorded after the removal: a crash in between removes again next time, and Graph's
        // "already gone" answer makes that harmless.
        if let Some(mut old) = s.store.get_credential(&e.credential).await? {
            old.removed_at = Some(now);
            s.store.put_credential(&old).await?;
        }
        s.store.delete_sealed(&e.secret_record()).await?;
        e.cleanup = Cleanup::Done { at: now };
        e.updated_at = now;
        s.store.update_execution(&e).await?;
        audit(s, "credential.removed", Some(&e), None, format!("old secret {old_key} removed after its grace period"))
            .await;
    }
    report.orphans_removed = sweep_orphans(s, integration).await?;
    Ok(report)
}

/// Secrets with a rotation marker whose execution does not own them (it never recorded them, or
/// recorded another one), older than the safety delay, are removed.
async fn sweep_orphans(s: &App, integration: Option<&IntegrationId>) -> Result<usize> {
    let now = s.clock.now();
    let safety = time::Duration::try_from(s.settings.orphan_safety_delay).unwrap_or(time::Duration::HOUR);
    let mut removed = 0;
    let mut after = None;
    loop {
        let page = s.store.credentials_page(after.as_ref(), 1000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        for c in page {
            if integration.is_some_and(|i| &c.id.integration != i) || c.removed_at.is_some() {
                continue;
            }
            let (Some(marked), Some(app)) = (c.display_name.as_deref().and_then(ExecutionId::from_marker), c.app)
            else {
                continue;
            };
            if c.start.is_some_and(|start| now - start < safety) {
                continue;
            }
            let owner = s.store.get_execution(&marked).await?;
            let owned = owner.as_ref().is_some_and(|e| e.new_key_id == Some(c.id.key_id));
            // An execution that has not recorded its secret yet may still be about to: leave it.
            let in_flight = owner.as_ref().is_some_and(|e| e.new_key_id.is_none() && e.holds_claim());
            if owned || in_flight {
                continue;
            }
            let directory = s.directory(&c.id.integration)?.clone();
            // Removed, or already gone (`Removal::AlreadyGone`): either way it signs in no more.
            directory.remove_password(app, c.id.key_id).await?;
            s.store.remove_credential(&c.id).await?;
            audit(
                s,
                "orphan.removed",
                owner.as_ref(),
                Some(c.id.to_string()),
                format!("secret {} carried a rotation marker no execution owns", c.id.key_id),
            )
            .await;
            removed += 1;
        }
    }
    Ok(removed)
}

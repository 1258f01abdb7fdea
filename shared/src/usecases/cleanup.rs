//! grace-cleanup: removes the old secret once its grace period ended after a healthy rollout (or an
//! operator confirmed), only that key id, never the application's last working credential; and
//! sweeps orphans, secrets carrying a rotation marker that no execution owns.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::domain::execution::{Cleanup, Execution, ExecutionStatus};
use crate::domain::ids::{AppObjectId, ExecutionId, IntegrationId};
use crate::domain::inventory::Credential;
use crate::ports::AuditEvent;
use crate::ports::alerts::Problem;
use crate::usecases::app::App;
use crate::usecases::scan::raise_problem;
use crate::{Error, Result};

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
    /// Cleanups and orphan removals that failed this time (each logged and audited on its own).
    pub failed: usize,
    /// Due cleanups of integrations that are disabled or were removed.
    pub skipped: usize,
    /// Integrations no longer configured whose inventory was removed.
    pub integrations_removed: usize,
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

/// Removes old secrets whose grace period ended, and sweeps orphans, one execution (or orphan) at
/// a time: a failure is logged, audited against its own execution or credential and counted, and
/// the others go on. A transient failure fails the run afterwards (so the queue soon retries it,
/// and the cleanups already done are no-ops then); a permanent one (say a 403) waits for the next
/// tick instead, so it neither fills the dead-letter queue nor holds anyone else back.
///
/// First, integrations that left the configuration are removed from the store
/// ([`remove_removed_integrations`]); disabled ones are skipped.
pub async fn cleanup(s: &App, integration: Option<&IntegrationId>) -> Result<CleanupReport> {
    let now = s.clock.now();
    let mut report = CleanupReport::default();
    let mut retry: Option<Error> = None;
    if integration.is_none() {
        report.integrations_removed = remove_removed_integrations(s).await?;
    }
    for e in s.store.list_open_executions().await? {
        if integration.is_some_and(|i| &e.credential.integration != i) || !e.status.is_finalized() {
            continue;
        }
        if e.grace_until.is_none_or(|g| g > now) || matches!(e.cleanup, Cleanup::Done { .. }) {
            continue;
        }
        if !s.is_configured(&e.credential.integration) || s.disabled.contains(&e.credential.integration) {
            // Removed (its inventory went above) or disabled: nothing to do for it, and nothing
            // that may hold back the integrations that are configured.
            report.skipped += 1;
            continue;
        }
        let id = e.id;
        if let Err(err) = clean_one(s, e.clone(), now, &mut report).await {
            report.failed += 1;
            tracing::error!(execution = %id, credential = %e.credential, error = %err.chain(), "grace cleanup failed");
            audit(s, "cleanup.failed", Some(&e), None, format!("the old secret was not removed: {}", err.chain()))
                .await;
            let problem = Problem::CleanupFailed { execution: id, reason: err.chain() };
            if let Err(alert) = raise_problem(s, &e.credential, problem).await {
                tracing::error!(execution = %id, error = %alert.chain(), "the cleanup failure could not be alerted");
            }
            if err.is_transient() {
                retry.get_or_insert(err);
            }
        }
    }
    report.orphans_removed = sweep_orphans(s, integration, &mut report.failed, &mut retry).await?;
    match retry {
        Some(err) => Err(err),
        None => Ok(report),
    }
}

/// The grace cleanup of one finalized execution whose grace period ended.
async fn clean_one(s: &App, mut e: Execution, now: time::OffsetDateTime, report: &mut CleanupReport) -> Result<()> {
    let confirmed = matches!(e.cleanup, Cleanup::Confirmed { .. });
    // A rollout that needs attention, or a secret delivered by hand, waits for an operator.
    if (e.status == ExecutionStatus::NeedsAttention || e.manual_delivery || e.cleanup == Cleanup::AwaitingConfirmation)
        && !confirmed
    {
        report.awaiting_confirmation += 1;
        return Ok(());
    }
    let directory = s.directory(&e.credential.integration)?.clone();
    let old_key = e.credential.key_id;
    let Some(new_key) = e.new_key_id else { return Ok(()) };
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
                return Ok(());
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
    s.store.delete_sealed(&e.plan_record()).await?;
    e.cleanup = Cleanup::Done { at: now };
    e.updated_at = now;
    s.store.update_execution(&e).await?;
    audit(s, "credential.removed", Some(&e), None, format!("old secret {old_key} removed after its grace period"))
        .await;
    Ok(())
}

/// Integrations with inventory in the store that the configuration no longer names (enabled or
/// not) are removed, each in one lifecycle operation ([`crate::ports::Store::remove_integration`]):
/// their inventory and rotation entries go, their history and audit trail stay. The
/// configuration loaded cleanly, or there would be no [`App`] to run this; and an [`App`] without
/// any integration (a test, a broken deployment) removes nothing rather than everything.
pub async fn remove_removed_integrations(s: &App) -> Result<usize> {
    if s.directories.is_empty() && s.disabled.is_empty() {
        return Ok(0);
    }
    let mut stored = BTreeSet::new();
    let mut after = None;
    loop {
        let page = s.store.credentials_page(after.as_ref(), 1000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        stored.extend(page.into_iter().map(|c| c.id.integration));
    }
    let mut removed = 0;
    for gone in stored.into_iter().filter(|i| !s.is_configured(i)) {
        let credentials = s.store.remove_integration(&gone).await?;
        tracing::warn!(integration = %gone, credentials, "integration removed from the configuration: its inventory went");
        let event = AuditEvent {
            at: s.clock.now(),
            action: "integration.removed".into(),
            actor: "grace-cleanup".into(),
            execution: None,
            credential: None,
            detail: format!(
                "integration {gone} is no longer configured: {credentials} credentials and their rotation entries removed, history kept"
            ),
        };
        s.store.append_audit(&event).await?;
        removed += 1;
    }
    Ok(removed)
}

/// Secrets with a rotation marker whose execution does not own them (it never recorded them, or
/// recorded another one), older than the safety delay, are removed.
async fn sweep_orphans(
    s: &App,
    integration: Option<&IntegrationId>,
    failed: &mut usize,
    retry: &mut Option<Error>,
) -> Result<usize> {
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
            if !s.directories.contains_key(&c.id.integration) {
                // Disabled: its orphans wait until it is enabled again.
                continue;
            }
            let (Some(marked), Some(app)) = (c.display_name.as_deref().and_then(ExecutionId::from_marker), c.app)
            else {
                continue;
            };
            if c.start.is_some_and(|start| now - start < safety) {
                continue;
            }
            match sweep_one(s, &c, marked, app).await {
                Ok(true) => removed += 1,
                Ok(false) => {}
                Err(err) => {
                    *failed += 1;
                    tracing::error!(credential = %c.id, error = %err.chain(), "orphan sweep failed");
                    let detail = format!("the orphan {} was not removed: {}", c.id.key_id, err.chain());
                    audit(s, "orphan.failed", None, Some(c.id.to_string()), detail).await;
                    if err.is_transient() {
                        retry.get_or_insert(err);
                    }
                }
            }
        }
    }
    Ok(removed)
}

/// Removes one marked secret if no execution owns it; whether it did.
async fn sweep_one(s: &App, c: &Credential, marked: ExecutionId, app: AppObjectId) -> Result<bool> {
    let owner = s.store.get_execution(&marked).await?;
    let owned = owner.as_ref().is_some_and(|e| e.new_key_id == Some(c.id.key_id));
    // An execution that has not recorded its secret yet may still be about to: leave it.
    let in_flight = owner.as_ref().is_some_and(|e| e.new_key_id.is_none() && e.holds_claim());
    if owned || in_flight {
        return Ok(false);
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
    Ok(true)
}

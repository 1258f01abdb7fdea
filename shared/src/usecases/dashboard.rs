//! The dashboard: credentials by lifecycle state, what expires in 7/30/90 days, the most urgent.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use time::OffsetDateTime;

use crate::Result;
use crate::domain::execution::Execution;
use crate::domain::ids::{CredentialId, IntegrationId};
use crate::domain::inventory::{Credential, CredentialKind};
use crate::domain::lifecycle::{LifecycleFacts, LifecycleState, lifecycle_state};
use crate::ports::Store;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub total: usize,
    pub active: usize,
    pub expiring_soon: usize,
    pub rotating: usize,
    pub rotation_failed: usize,
    pub grace_period: usize,
    pub expired: usize,
    pub cleaned_up: usize,
    /// Not expired, ending within 7 / 30 / 90 days (each includes the shorter ones).
    pub expiring_within_7_days: usize,
    pub expiring_within_30_days: usize,
    pub expiring_within_90_days: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UrgentCredential {
    pub credential: CredentialId,
    pub application: Option<String>,
    pub kind: CredentialKind,
    pub state: LifecycleState,
    #[serde(with = "time::serde::rfc3339::option")]
    pub end: Option<OffsetDateTime>,
    /// Whole days left (negative once expired).
    pub days_left: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dashboard {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub counts: Counts,
    pub most_urgent: Vec<UrgentCredential>,
}

/// Builds the dashboard from the store at `now`. `expiring_within_days` is the largest alert
/// threshold (what "Expiring Soon" means).
pub async fn dashboard(
    store: &dyn Store,
    now: OffsetDateTime,
    expiring_within_days: u32,
    urgent: usize,
) -> Result<Dashboard> {
    let credentials = store.list_credentials(None).await?;
    let open = store.list_open_executions().await?;
    let mut by_credential: HashMap<&CredentialId, Vec<Execution>> = HashMap::new();
    for e in &open {
        by_credential.entry(&e.credential).or_default().push(e.clone());
    }
    let mut names: BTreeMap<IntegrationId, HashMap<uuid::Uuid, String>> = BTreeMap::new();
    for c in &credentials {
        if !names.contains_key(&c.id.integration) {
            let apps = store.list_applications(&c.id.integration).await?;
            names.insert(
                c.id.integration.clone(),
                apps.into_iter().map(|a| (a.object_id.as_uuid(), a.display_name)).collect(),
            );
        }
    }
    Ok(summarise(&credentials, &by_credential, &names, now, expiring_within_days, urgent))
}

fn summarise(
    credentials: &[Credential],
    executions: &HashMap<&CredentialId, Vec<Execution>>,
    names: &BTreeMap<IntegrationId, HashMap<uuid::Uuid, String>>,
    now: OffsetDateTime,
    expiring_within_days: u32,
    urgent: usize,
) -> Dashboard {
    let mut counts = Counts::default();
    let mut candidates = Vec::new();
    // Certificates appear twice in Graph (Sign and Verify); count a thumbprint once.
    let mut seen_thumbprints = std::collections::HashSet::new();
    for c in credentials {
        if let Some(t) = &c.thumbprint
            && !seen_thumbprints.insert((c.id.integration.clone(), c.id.owner, t.clone()))
        {
            continue;
        }
        let execs = executions.get(&c.id).map(Vec::as_slice).unwrap_or(&[]);
        let state = lifecycle_state(&LifecycleFacts::of(c, execs, expiring_within_days), now);
        counts.total += 1;
        match state {
            LifecycleState::Active => counts.active += 1,
            LifecycleState::ExpiringSoon => counts.expiring_soon += 1,
            LifecycleState::Rotating => counts.rotating += 1,
            LifecycleState::RotationFailed => counts.rotation_failed += 1,
            LifecycleState::GracePeriod => counts.grace_period += 1,
            LifecycleState::Expired => counts.expired += 1,
            LifecycleState::CleanedUp => counts.cleaned_up += 1,
        }
        let live = c.removed_at.is_none();
        if let (true, Some(end)) = (live, c.end) {
            let left = end - now;
            if left > time::Duration::ZERO {
                counts.expiring_within_7_days += usize::from(left <= time::Duration::days(7));
                counts.expiring_within_30_days += usize::from(left <= time::Duration::days(30));
                counts.expiring_within_90_days += usize::from(left <= time::Duration::days(90));
            }
        }
        if live
            && matches!(
                state,
                LifecycleState::Expired
                    | LifecycleState::ExpiringSoon
                    | LifecycleState::Rotating
                    | LifecycleState::RotationFailed
            )
        {
            candidates.push(UrgentCredential {
                credential: c.id.clone(),
                application: names.get(&c.id.integration).and_then(|m| m.get(&c.id.owner)).cloned(),
                kind: c.kind,
                state,
                end: c.end,
                days_left: c.end.map(|e| (e - now).whole_days()),
            });
        }
    }
    // Soonest end first; an expired secret still in use is the most urgent of all.
    candidates.sort_by_key(|u| (u.end, u.credential.to_string()));
    candidates.truncate(urgent);
    Dashboard { at: now, counts, most_urgent: candidates }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn counts_follow_lifecycle_states_and_windows() {
        let now = datetime!(2026-11-22 00:00 UTC);
        let d = time::Duration::days;
        let creds = vec![
            Credential::test_password(now + d(3)),
            Credential::test_password(now + d(20)),
            Credential::test_password(now + d(60)),
            Credential::test_password(now + d(200)),
            Credential::test_password(now - d(1)),
        ];
        let dash = summarise(&creds, &HashMap::new(), &BTreeMap::new(), now, 30, 10);
        assert_eq!(dash.counts.total, 5);
        assert_eq!(dash.counts.expiring_soon, 2);
        assert_eq!(dash.counts.active, 2);
        assert_eq!(dash.counts.expired, 1);
        assert_eq!(
            (
                dash.counts.expiring_within_7_days,
                dash.counts.expiring_within_30_days,
                dash.counts.expiring_within_90_days
            ),
            (1, 2, 3)
        );
        assert_eq!(dash.most_urgent.len(), 3);
        assert_eq!(dash.most_urgent[0].state, LifecycleState::Expired);
        assert_eq!(dash.most_urgent[1].days_left, Some(3));
    }

    #[test]
    fn a_certificate_seen_twice_is_counted_once() {
        let now = datetime!(2026-11-22 00:00 UTC);
        let mut sign = Credential::test_password(now + time::Duration::days(100));
        sign.kind = CredentialKind::Certificate;
        sign.thumbprint = Some("AB12".into());
        let mut verify = sign.clone();
        verify.id.key_id = crate::domain::ids::KeyId::from_uuid(uuid::Uuid::new_v4());
        let dash = summarise(&[sign, verify], &HashMap::new(), &BTreeMap::new(), now, 30, 10);
        assert_eq!(dash.counts.total, 1);
    }
}

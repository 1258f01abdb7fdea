//! The lifecycle state of a credential, derived by one pure function from facts and the time.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use super::execution::{Execution, ExecutionStatus};
use super::inventory::Credential;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleState {
    Active,
    ExpiringSoon,
    Rotating,
    /// The latest rotation failed: it still holds the credential (the old secret stays valid) and
    /// waits for an operator's redrive or cancel. Not "Rotating": nothing is under way.
    RotationFailed,
    GracePeriod,
    Expired,
    CleanedUp,
}

impl LifecycleState {
    pub fn label(self) -> &'static str {
        match self {
            Self::Active => "Active",
            Self::ExpiringSoon => "Expiring Soon",
            Self::Rotating => "Rotating",
            Self::RotationFailed => "Rotation Failed",
            Self::GracePeriod => "Grace Period",
            Self::Expired => "Expired",
            Self::CleanedUp => "Cleaned Up",
        }
    }
}

/// The facts the state is derived from; built from a credential and the executions that touch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LifecycleFacts {
    pub end: Option<OffsetDateTime>,
    pub removed_at: Option<OffsetDateTime>,
    /// An execution rotating this credential away is not yet terminal.
    pub rotating: bool,
    /// That execution failed: it holds the credential, but nothing is under way.
    pub failed: bool,
    /// A finalized execution superseded this credential; it stays valid until then.
    pub superseded_until: Option<OffsetDateTime>,
    /// "Expiring Soon" starts this long before the end (the largest alert threshold).
    pub expiring_within: Duration,
}

impl LifecycleFacts {
    /// `executions` are those whose `credential` is this one (the ones rotating it away).
    pub fn of(credential: &Credential, executions: &[Execution], expiring_within_days: u32) -> Self {
        let mine = || executions.iter().filter(|e| e.credential == credential.id);
        Self {
            end: credential.end,
            removed_at: credential.removed_at,
            rotating: mine().any(|e| !e.status.is_terminal()),
            failed: mine().any(|e| e.status == ExecutionStatus::Failed),
            superseded_until: mine().filter(|e| e.status.is_finalized()).filter_map(|e| e.grace_until).max(),
            expiring_within: Duration::days(i64::from(expiring_within_days)),
        }
    }
}

/// The one function that says what state a credential is in at `now`.
///
/// Precedence, first match wins: removed → Cleaned Up; a failed rotation holding it → Rotation
/// Failed (even past its end: the failure is what an operator must act on, and the expiry alerts
/// still go out); a rotation under way → Rotating; past its
/// end → Expired (a secret that no longer signs in is the most useful thing to say, even in
/// grace); superseded → Grace Period (until cleanup removes it, even once the grace date passed, so
/// a late cleanup stays visible); within the threshold → Expiring Soon; otherwise Active. A
/// credential without an end date never expires.
pub fn lifecycle_state(f: &LifecycleFacts, now: OffsetDateTime) -> LifecycleState {
    if f.removed_at.is_some() {
        return LifecycleState::CleanedUp;
    }
    if f.failed {
        return LifecycleState::RotationFailed;
    }
    if f.rotating {
        return LifecycleState::Rotating;
    }
    if f.end.is_some_and(|end| end <= now) {
        return LifecycleState::Expired;
    }
    if f.superseded_until.is_some() {
        return LifecycleState::GracePeriod;
    }
    if f.end.is_some_and(|end| end - now <= f.expiring_within) {
        return LifecycleState::ExpiringSoon;
    }
    LifecycleState::Active
}

/// An alert threshold a credential can cross.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "days")]
pub enum AlertThreshold {
    /// N days or fewer before the end.
    DaysBefore(u32),
    Expired,
}

impl AlertThreshold {
    pub fn key(self) -> String {
        match self {
            Self::DaysBefore(d) => format!("{d}d"),
            Self::Expired => "expired".into(),
        }
    }
}

/// The most severe threshold crossed at `now` by a credential ending at `end`, if any. Alerts are
/// sent once per (credential, end, threshold); the caller keeps that record.
pub fn crossed_threshold(end: OffsetDateTime, now: OffsetDateTime, thresholds_days: &[u32]) -> Option<AlertThreshold> {
    if end <= now {
        return Some(AlertThreshold::Expired);
    }
    let left = end - now;
    thresholds_days
        .iter()
        .copied()
        .filter(|d| left <= Duration::days(i64::from(*d)))
        .min()
        .map(AlertThreshold::DaysBefore)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-22 12:00 UTC);

    fn facts(end: Option<OffsetDateTime>) -> LifecycleFacts {
        LifecycleFacts {
            end,
            removed_at: None,
            rotating: false,
            failed: false,
            superseded_until: None,
            expiring_within: Duration::days(30),
        }
    }

    #[test]
    fn lifecycle_table_covers_every_state_and_boundary() {
        use LifecycleState::*;
        let d = Duration::days;
        let cases: Vec<(&str, LifecycleFacts, LifecycleState)> = vec![
            ("far from expiry", facts(Some(NOW + d(90))), Active),
            ("one second outside the threshold", facts(Some(NOW + d(30) + Duration::seconds(1))), Active),
            ("exactly at the threshold", facts(Some(NOW + d(30))), ExpiringSoon),
            ("one second before the end", facts(Some(NOW + Duration::seconds(1))), ExpiringSoon),
            ("exactly at the end", facts(Some(NOW)), Expired),
            ("long expired", facts(Some(NOW - d(400))), Expired),
            ("no end date", facts(None), Active),
            ("rotating", LifecycleFacts { rotating: true, ..facts(Some(NOW + d(5))) }, Rotating),
            ("rotating an expired one", LifecycleFacts { rotating: true, ..facts(Some(NOW - d(1))) }, Rotating),
            (
                "a failed rotation",
                LifecycleFacts { rotating: true, failed: true, ..facts(Some(NOW + d(5))) },
                RotationFailed,
            ),
            (
                "a failed rotation past the end",
                LifecycleFacts { rotating: true, failed: true, ..facts(Some(NOW - d(1))) },
                RotationFailed,
            ),
            (
                "superseded, grace running",
                LifecycleFacts { superseded_until: Some(NOW + d(10)), ..facts(Some(NOW + d(20))) },
                GracePeriod,
            ),
            (
                "superseded, grace over but not yet cleaned",
                LifecycleFacts { superseded_until: Some(NOW - d(1)), ..facts(Some(NOW + d(20))) },
                GracePeriod,
            ),
            (
                "superseded and past its end",
                LifecycleFacts { superseded_until: Some(NOW + d(10)), ..facts(Some(NOW - d(1))) },
                Expired,
            ),
            (
                "removed by cleanup",
                LifecycleFacts {
                    removed_at: Some(NOW - d(1)),
                    superseded_until: Some(NOW - d(2)),
                    ..facts(Some(NOW + d(20)))
                },
                CleanedUp,
            ),
            (
                "removed wins over rotating",
                LifecycleFacts { removed_at: Some(NOW), rotating: true, ..facts(Some(NOW + d(20))) },
                CleanedUp,
            ),
        ];
        for (name, f, want) in cases {
            assert_eq!(lifecycle_state(&f, NOW), want, "{name}");
        }
    }

    #[test]
    fn facts_come_from_the_executions_that_rotate_the_credential_away() {
        use super::super::execution::{Execution, Trigger};
        use crate::domain::ids::PolicyId;
        let cred = Credential::test_password(NOW + Duration::days(20));
        let app = cred.app.unwrap();
        let mut e = Execution::new(
            cred.id.clone(),
            app,
            PolicyId::parse("p").unwrap(),
            Trigger::Manual { by: "ops".into(), reason: None },
            vec![],
            NOW,
        );
        let state = |e: &Execution| lifecycle_state(&LifecycleFacts::of(&cred, std::slice::from_ref(e), 30), NOW);
        assert_eq!(state(&e), LifecycleState::Rotating);
        e.status = ExecutionStatus::Failed;
        assert_eq!(state(&e), LifecycleState::RotationFailed, "a failed execution says so, not Rotating");
        e.status = ExecutionStatus::Completed;
        e.grace_until = Some(NOW + Duration::days(30));
        assert_eq!(state(&e), LifecycleState::GracePeriod);
        e.status = ExecutionStatus::Cancelled;
        assert_eq!(state(&e), LifecycleState::ExpiringSoon);
    }

    #[test]
    fn thresholds_report_the_most_severe_crossed() {
        let t = [30, 7];
        assert_eq!(crossed_threshold(NOW + Duration::days(31), NOW, &t), None);
        assert_eq!(crossed_threshold(NOW + Duration::days(30), NOW, &t), Some(AlertThreshold::DaysBefore(30)));
        assert_eq!(crossed_threshold(NOW + Duration::days(8), NOW, &t), Some(AlertThreshold::DaysBefore(30)));
        assert_eq!(crossed_threshold(NOW + Duration::days(7), NOW, &t), Some(AlertThreshold::DaysBefore(7)));
        assert_eq!(crossed_threshold(NOW, NOW, &t), Some(AlertThreshold::Expired));
    }
}

//! Rotation policies: when to rotate, how long the old secret stays valid, where the new one goes.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::Span;
use super::inventory::{Credential, CredentialKind};
use super::steps::StepDefinition;
use crate::domain::ids::{ClientId, PolicyId};

/// The defaults of the product notes: rotate 30 days before expiry, keep both secrets 30 days,
/// alert at 30 and 7 days.
pub const DEFAULT_DAYS_BEFORE_EXPIRY: u32 = 30;
pub const DEFAULT_GRACE_PERIOD: Span = Span::from_days(30);
pub const DEFAULT_SECRET_LIFETIME: Span = Span::from_days(180);
pub const DEFAULT_ALERT_THRESHOLDS: [u32; 2] = [30, 7];

/// How one set of credentials is rotated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RotationPolicy {
    pub id: PolicyId,
    /// Rotate automatically when the credential is due, or only when someone asks.
    pub auto_rotate: bool,
    pub days_before_expiry: u32,
    /// How long the old secret stays valid after a healthy rollout.
    pub grace_period: Span,
    /// The lifetime asked for a new secret (capped by the tenant's own policy).
    pub secret_lifetime: Span,
    /// Days before expiry at which an alert is sent, most distant first.
    pub alert_thresholds: Vec<u32>,
    /// The rollout, sorted by `order`.
    pub steps: Vec<StepDefinition>,
    /// Warnings and manual-review notes about the steps, for preflight to repeat.
    #[serde(default)]
    pub step_notes: Vec<String>,
    /// `delivery = "manual"`: no step publishes the new secret; an operator reads it once and
    /// confirms before the old one goes. Otherwise a plan must have a publish step.
    #[serde(default)]
    pub manual_delivery: bool,
}

impl RotationPolicy {
    pub fn with_defaults(id: PolicyId) -> Self {
        Self {
            id,
            auto_rotate: false,
            days_before_expiry: DEFAULT_DAYS_BEFORE_EXPIRY,
            grace_period: DEFAULT_GRACE_PERIOD,
            secret_lifetime: DEFAULT_SECRET_LIFETIME,
            alert_thresholds: DEFAULT_ALERT_THRESHOLDS.to_vec(),
            steps: Vec::new(),
            step_notes: Vec::new(),
            manual_delivery: false,
        }
    }

    /// Whether automatic rotation should start now. Only client secrets are rotated.
    pub fn rotation_due(&self, credential: &Credential, now: OffsetDateTime) -> bool {
        self.auto_rotate
            && credential.kind == CredentialKind::Password
            && credential.removed_at.is_none()
            && credential.end.is_some_and(|end| end - now <= time::Duration::days(i64::from(self.days_before_expiry)))
    }

    /// The end date to ask for a new secret created now, capped by `tenant_max_lifetime` when the
    /// tenant's app management policy sets one.
    /// Whether some step publishes the new secret where its consumers read it.
    pub fn publishes(&self) -> bool {
        self.steps.iter().any(|s| s.phase() == super::steps::Phase::Publish)
    }

    /// What is wrong with how the new secret reaches its consumers, if anything.
    pub fn delivery_problem(&self) -> Option<String> {
        (!self.publishes() && !self.manual_delivery).then(|| {
            format!(
                "policy {} has no step that publishes the new secret (azure_key_vault, kubernetes_secret, \
                 agent_secret_sync): a rotation would deliver it to nobody and then remove the old one. Add a \
                 publish step, or declare `delivery = \"manual\"` to read the new secret once and confirm by hand",
                self.id
            )
        })
    }

    pub fn new_secret_end(&self, now: OffsetDateTime, tenant_max_lifetime: Option<Span>) -> OffsetDateTime {
        let lifetime = match tenant_max_lifetime {
            Some(max) if max < self.secret_lifetime => max,
            _ => self.secret_lifetime,
        };
        now + lifetime.as_time()
    }
}

/// Which policy rotates which application: the one naming it, else the policy named `default`.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    policies: Vec<RotationPolicy>,
    by_client: std::collections::HashMap<ClientId, usize>,
    default: Option<usize>,
}

impl PolicySet {
    pub fn new(entries: Vec<(RotationPolicy, Vec<ClientId>)>) -> Self {
        let mut set = Self::default();
        for (policy, clients) in entries {
            let index = set.policies.len();
            if policy.id.as_str() == "default" {
                set.default = Some(index);
            }
            for c in clients {
                set.by_client.insert(c, index);
            }
            set.policies.push(policy);
        }
        set
    }

    /// Every policy, in the configuration's order.
    pub fn all(&self) -> &[RotationPolicy] {
        &self.policies
    }

    pub fn for_client(&self, client: &ClientId) -> Option<&RotationPolicy> {
        self.by_client.get(client).or(self.default.as_ref()).and_then(|i| self.policies.get(*i))
    }

    /// What "Expiring Soon" means across the set: the largest alert threshold of any policy (the
    /// default thresholds' largest when there is none).
    pub fn expiring_soon_days(&self) -> u32 {
        self.policies
            .iter()
            .flat_map(|p| p.alert_thresholds.iter().copied())
            .max()
            .or_else(|| DEFAULT_ALERT_THRESHOLDS.iter().copied().max())
            .unwrap_or(30)
    }

    pub fn get(&self, id: &PolicyId) -> Option<&RotationPolicy> {
        self.policies.iter().find(|p| &p.id == id)
    }

    /// The alert thresholds for a credential of `client`: its policy's, else the defaults.
    pub fn thresholds_for(&self, client: &ClientId) -> &[u32] {
        self.for_client(client).map(|p| p.alert_thresholds.as_slice()).unwrap_or(&DEFAULT_ALERT_THRESHOLDS)
    }

    /// Everything of the set that decides when a credential next needs the expiry scan, as text
    /// in a stable order: each policy's thresholds and automatic rotation, which clients it has,
    /// which is the default.
    pub fn moments_inputs(&self) -> String {
        let mut out = String::new();
        for (i, p) in self.policies.iter().enumerate() {
            out.push_str(&format!(
                "policy {i} {} auto={} days={} thresholds={:?} default={}\n",
                p.id,
                p.auto_rotate,
                p.days_before_expiry,
                p.alert_thresholds,
                self.default == Some(i)
            ));
        }
        let mut clients: Vec<String> = self.by_client.iter().map(|(c, i)| format!("client {c} {i}\n")).collect();
        clients.sort();
        out.extend(clients);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn policy() -> RotationPolicy {
        RotationPolicy { auto_rotate: true, ..RotationPolicy::with_defaults(PolicyId::parse("p").unwrap()) }
    }

    #[test]
    fn rotation_is_due_from_days_before_expiry_on() {
        let now = datetime!(2026-11-01 00:00 UTC);
        let p = policy();
        assert!(p.rotation_due(&Credential::test_password(now + time::Duration::days(30)), now));
        assert!(!p.rotation_due(&Credential::test_password(now + time::Duration::days(31)), now));
        assert!(p.rotation_due(&Credential::test_password(now - time::Duration::days(1)), now));
    }

    #[test]
    fn rotation_is_never_due_without_auto_rotate_or_for_certificates() {
        let now = datetime!(2026-11-01 00:00 UTC);
        let manual = RotationPolicy { auto_rotate: false, ..policy() };
        assert!(!manual.rotation_due(&Credential::test_password(now), now));
        let mut cert = Credential::test_password(now);
        cert.kind = CredentialKind::Certificate;
        assert!(!policy().rotation_due(&cert, now));
    }

    #[test]
    fn tenant_lifetime_policy_caps_the_new_secret() {
        let now = datetime!(2026-11-01 00:00 UTC);
        let p = policy();
        assert_eq!(p.new_secret_end(now, None), now + time::Duration::days(180));
        assert_eq!(p.new_secret_end(now, Some(Span::from_days(90))), now + time::Duration::days(90));
        assert_eq!(p.new_secret_end(now, Some(Span::from_days(365))), now + time::Duration::days(180));
    }
}

//! Alerts and where they go: a credential crossing an expiry threshold, or a problem with it (its
//! rotation failed, needs attention, or left a dead letter waiting). The log always receives them;
//! webhooks (generic JSON, Slack, Teams) when configured, through the queue (`AlertRequested`), so
//! that a sink that is down never holds back the scan.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::Result;
use crate::domain::ids::{ClientId, CredentialId, ExecutionId};
use crate::domain::inventory::CredentialKind;
use crate::domain::lifecycle::AlertThreshold;
use crate::domain::secret::SecretValue;

/// One credential crossing one threshold, or one problem with a credential. Never carries a
/// secret: it travels on the queue, so it holds only what a person reading it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub credential: CredentialId,
    pub application: Option<String>,
    pub client_id: ClientId,
    pub kind: CredentialKind,
    pub credential_name: Option<String>,
    /// The expiry threshold this alert is about; `None` for a problem alert of a credential that
    /// has crossed none.
    pub threshold: Option<AlertThreshold>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub end: Option<OffsetDateTime>,
    /// Whole days left; negative once expired. `None` without an end date.
    pub days_left: Option<i64>,
    /// Set for a problem alert (rotation failed, needs attention, dead letter waiting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<Problem>,
}

/// What went wrong with a credential, for an alert that is not about its expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// Its rotation failed; the old secret stays valid until an operator redrives or cancels.
    RotationFailed { execution: ExecutionId, reason: String },
    /// Its rotation finished, but a `continue` step failed: cleanup waits for an operator.
    NeedsAttention { execution: ExecutionId },
    /// A message about it is in a dead-letter queue.
    DeadLetter { queue: String, message: String, error: Option<String> },
    /// Grace cleanup could not remove its old secret; it tries again on every run.
    CleanupFailed { execution: ExecutionId, reason: String },
}

impl Problem {
    /// The once-only marker of this problem's alert: once per execution, or per dead letter.
    pub fn marker(&self) -> String {
        match self {
            Self::RotationFailed { execution, .. } => format!("alert:rotation-failed:{execution}"),
            Self::NeedsAttention { execution } => format!("alert:needs-attention:{execution}"),
            Self::DeadLetter { queue, message, .. } => format!("alert:dead-letter:{queue}:{message}"),
            Self::CleanupFailed { execution, .. } => format!("alert:cleanup-failed:{execution}"),
        }
    }
}

impl Alert {
    /// One line for people: "Client secret 'prod' of Payroll API expires in 6 days (2026-11-28)".
    pub fn summary(&self) -> String {
        let what = match self.kind {
            CredentialKind::Password => "Client secret",
            CredentialKind::Certificate => "Certificate",
        };
        let name = self.credential_name.as_deref().map(|n| format!(" '{n}'")).unwrap_or_default();
        let app = self.application.clone().unwrap_or_else(|| format!("application {}", self.client_id));
        let expiry = match (self.end, self.days_left) {
            (Some(end), Some(days)) if days < 0 || self.threshold == Some(AlertThreshold::Expired) => {
                format!("has expired ({})", end.date())
            }
            (Some(end), Some(days)) => {
                let unit = if days == 1 { "day" } else { "days" };
                format!("expires in {days} {unit} ({})", end.date())
            }
            _ => "has no end date".to_owned(),
        };
        match &self.problem {
            None => format!("{what}{name} of {app} {expiry}"),
            Some(Problem::RotationFailed { execution, reason }) => {
                format!("Rotation of {what}{name} of {app} failed ({execution}): {reason}; it {expiry}")
            }
            Some(Problem::NeedsAttention { execution }) => format!(
                "Rotation of {what}{name} of {app} needs attention ({execution}): a rollout step failed, cleanup waits for an operator; it {expiry}"
            ),
            Some(Problem::CleanupFailed { execution, reason }) => format!(
                "Grace cleanup of {what}{name} of {app} failed ({execution}): {reason}; the old secret stays and is tried again each run; it {expiry}"
            ),
            Some(Problem::DeadLetter { queue, message, error }) => {
                let why = error.as_deref().map(|e| format!(": {e}")).unwrap_or_default();
                format!(
                    "A dead letter is waiting in {queue} for {what}{name} of {app} (message {message}){why}; it {expiry}"
                )
            }
        }
    }

    /// Whether this alert is about an expired credential or a problem: the loudest kind.
    pub fn is_severe(&self) -> bool {
        self.problem.is_some() || self.threshold == Some(AlertThreshold::Expired)
    }
}

/// Somewhere alerts are delivered. Unless it is [`AlertSink::in_place`], each alert reaches it as
/// its own `AlertRequested` message: a failure is retried by the queue, then dead-lettered; a sink
/// must therefore tolerate receiving an alert twice.
#[async_trait]
pub trait AlertSink: Send + Sync {
    fn name(&self) -> &str;
    async fn send(&self, alerts: &[Alert]) -> Result<()>;
    /// A sink that cannot fail (the log) is written at once by the scan, not through the queue.
    fn in_place(&self) -> bool {
        false
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    #[default]
    Json,
    Slack,
    Teams,
}

/// An alert sink besides the log. The URL often carries a token (Slack, Teams), so it is kept as a
/// secret and shown only by its host.
pub struct WebhookSink {
    pub name: String,
    pub url: SecretValue,
    pub host: String,
    pub format: WebhookFormat,
}

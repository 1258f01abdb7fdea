//! Expiry alerts and where they go. The log always receives them; webhooks (generic JSON, Slack,
//! Teams) when configured.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::Result;
use crate::domain::ids::{ClientId, CredentialId};
use crate::domain::inventory::CredentialKind;
use crate::domain::lifecycle::AlertThreshold;
use crate::domain::secret::SecretValue;

/// One credential crossing one threshold. Never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    pub credential: CredentialId,
    pub application: Option<String>,
    pub client_id: ClientId,
    pub kind: CredentialKind,
    pub credential_name: Option<String>,
    pub threshold: AlertThreshold,
    #[serde(with = "time::serde::rfc3339")]
    pub end: OffsetDateTime,
    /// Whole days left; negative once expired.
    pub days_left: i64,
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
        let date = self.end.date();
        match self.threshold {
            AlertThreshold::Expired => format!("{what}{name} of {app} has expired ({date})"),
            AlertThreshold::DaysBefore(_) => {
                let days = self.days_left;
                let unit = if days == 1 { "day" } else { "days" };
                format!("{what}{name} of {app} expires in {days} {unit} ({date})")
            }
        }
    }
}

/// Somewhere alerts are delivered. A failure makes the scan try again later; a sink must
/// therefore tolerate receiving an alert twice.
#[async_trait]
pub trait AlertSink: Send + Sync {
    fn name(&self) -> &str;
    async fn send(&self, alerts: &[Alert]) -> Result<()>;
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

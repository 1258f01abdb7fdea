//! Expiry alerts and where they go. The log always receives them; webhooks (generic JSON, Slack,
//! Teams) when configured.

use async_trait::async_trait;
use serde::Serialize;
use time::OffsetDateTime;

use crate::Result;
use crate::domain::inventory::CredentialKind;
use crate::domain::lifecycle::AlertThreshold;
use crate::ids::{ClientId, CredentialId};

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

/// The log: always on.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogSink;

#[async_trait]
impl AlertSink for LogSink {
    fn name(&self) -> &str {
        "log"
    }
    async fn send(&self, alerts: &[Alert]) -> Result<()> {
        for a in alerts {
            tracing::warn!(
                credential = %a.credential,
                client_id = %a.client_id,
                threshold = %a.threshold.key(),
                days_left = a.days_left,
                "{}",
                a.summary()
            );
        }
        Ok(())
    }
}

/// Collects alerts in memory: for tests.
#[derive(Debug, Default)]
pub struct RecordingSink(pub std::sync::Mutex<Vec<Alert>>);

#[async_trait]
impl AlertSink for RecordingSink {
    fn name(&self) -> &str {
        "recording"
    }
    async fn send(&self, alerts: &[Alert]) -> Result<()> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(alerts);
        Ok(())
    }
}

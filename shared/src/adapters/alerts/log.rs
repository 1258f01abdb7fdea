//! The log as an alert sink: always on.

use async_trait::async_trait;

use crate::Result;
use crate::domain::lifecycle::AlertThreshold;
use crate::ports::alerts::{Alert, AlertSink};

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
                threshold = %a.threshold.map(AlertThreshold::key).unwrap_or_default(),
                days_left = ?a.days_left,
                problem = a.problem.is_some(),
                "{}",
                a.summary()
            );
        }
        Ok(())
    }
    fn in_place(&self) -> bool {
        true
    }
}

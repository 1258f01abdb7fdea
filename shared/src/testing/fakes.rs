//! Fakes named by behaviour, for tests of any crate: a clock that moves when told, a sink that
//! records alerts.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::Result;
use crate::ports::alerts::{Alert, AlertSink};
use crate::ports::clock::Clock;

/// A clock that moves only when told: for tests of visibility timeouts, delays and grace periods.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<OffsetDateTime>>);

impl ManualClock {
    pub fn new(start: OffsetDateTime) -> Self {
        Self(Arc::new(Mutex::new(start)))
    }
    pub fn advance(&self, by: Duration) {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *t += by;
    }
    pub fn set(&self, to: OffsetDateTime) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
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

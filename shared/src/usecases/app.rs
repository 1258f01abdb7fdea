//! The application context: the ports and settings every use case is handed.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::domain::ids::IntegrationId;
use crate::domain::policy::PolicySet;
use crate::ports::alerts::AlertSink;
use crate::ports::clock::Clock;
use crate::ports::directory::Directory;
use crate::ports::key_ring::KeyRing;
use crate::ports::queue::Queue;
use crate::ports::step_runner::StepRunner;
use crate::ports::store::Store;
use crate::{Error, Result};

/// The directory of each integration.
pub type Directories = HashMap<IntegrationId, Arc<dyn Directory>>;

/// Everything the use cases share: the ports, the policies and the timings. Built by
/// [`crate::wiring`] from the configuration, or by `App::test()` in tests.
#[derive(Clone)]
pub struct App {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub clock: Arc<dyn Clock>,
    pub directories: Arc<Directories>,
    /// Integrations in the configuration with `enabled = false`: no sync, alerts or rotations, and
    /// their inventory stays. An integration neither here nor in `directories` was removed.
    pub disabled: Arc<BTreeSet<IntegrationId>>,
    pub policies: Arc<PolicySet>,
    pub sinks: Arc<Vec<Arc<dyn AlertSink>>>,
    pub keys: Arc<dyn KeyRing>,
    pub rollout: Arc<dyn StepRunner>,
    pub settings: RotationSettings,
}

/// Timings of the rotation chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationSettings {
    /// How long `verify` keeps trying a new secret that has not replicated yet.
    pub verify_budget: Duration,
    /// Marked credentials that no execution owns are removed only once they are this old, so a
    /// rotation whose record is still being written is never mistaken for an orphan.
    pub orphan_safety_delay: Duration,
    /// An execution that holds its credential and shows no sign of life for this long (plus its
    /// step's retry delay) has lost its message: the recovery sweep queues it again.
    pub stall_after: Duration,
}

impl Default for RotationSettings {
    fn default() -> Self {
        Self {
            verify_budget: Duration::from_secs(120),
            orphan_safety_delay: Duration::from_secs(3600),
            stall_after: Duration::from_secs(600),
        }
    }
}

impl App {
    pub fn directory(&self, integration: &IntegrationId) -> Result<&Arc<dyn Directory>> {
        if self.disabled.contains(integration) {
            return Err(Error::invalid(
                "integration",
                format!("integration {integration} is disabled in the configuration (enabled = false)"),
            ));
        }
        self.directories
            .get(integration)
            .ok_or_else(|| Error::invalid("message", format!("integration {integration} is not configured")))
    }

    /// Whether the configuration names `integration`, enabled or not.
    pub fn is_configured(&self, integration: &IntegrationId) -> bool {
        self.directories.contains_key(integration) || self.disabled.contains(integration)
    }
}

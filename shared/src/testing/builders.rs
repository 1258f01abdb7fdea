//! Test builders for the application context: `App::test()` is a whole working context on the
//! embedded adapters in memory (a manual clock, the fixed test key, no integration, the default
//! policy, the real step runners over a plain client), and each `with_…` swaps one part.

use std::sync::Arc;

use time::macros::datetime;

use crate::adapters::sealing::key_file::LocalKeyRing;
use crate::adapters::sqlite::{SqliteQueue, SqliteStore};
use crate::adapters::steps::Rollout;
use crate::domain::address::AddressPolicy;
use crate::domain::ids::{IntegrationId, PolicyId};
use crate::domain::policy::{PolicySet, RotationPolicy};
use crate::messages::default_queue_specs;
use crate::ports::{AlertSink, Clock, Directory, KeyRing, Queue, StepRunner, Store};
use crate::testing::fakes::ManualClock;
use crate::usecases::app::{App, Directories, RotationSettings};

/// Where a test's clock starts when it does not say.
pub const TEST_START: time::OffsetDateTime = datetime!(2026-11-22 12:00 UTC);

impl App {
    /// A working context on in-memory adapters, its clock stopped at [`TEST_START`].
    pub fn test() -> Self {
        Self::test_at(ManualClock::new(TEST_START))
    }

    /// As [`App::test`], on `clock` (keep a clone to move time).
    pub fn test_at(clock: ManualClock) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(clock);
        let store = SqliteStore::in_memory(clock.clone()).expect("an in-memory store opens");
        let queue = SqliteQueue::in_memory(default_queue_specs(), clock.clone()).expect("an in-memory queue opens");
        let default = RotationPolicy::with_defaults(PolicyId::parse("default").expect("a valid policy id"));
        Self {
            store: Arc::new(store),
            queue: Arc::new(queue),
            clock,
            directories: Arc::new(Directories::new()),
            disabled: Arc::new(Default::default()),
            policies: Arc::new(PolicySet::new(vec![(default, vec![])])),
            sinks: Arc::new(Vec::new()),
            keys: Arc::new(LocalKeyRing::fixed("k1", [7; 32])),
            rollout: Arc::new(Rollout::deferred(
                reqwest::Client::builder(),
                Default::default(),
                Arc::new(AddressPolicy::allowing_loopback()),
            )),
            settings: RotationSettings::default(),
        }
    }

    pub fn with_store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = store;
        self
    }
    pub fn with_queue(mut self, queue: Arc<dyn Queue>) -> Self {
        self.queue = queue;
        self
    }
    pub fn with_keys(mut self, keys: Arc<dyn KeyRing>) -> Self {
        self.keys = keys;
        self
    }
    pub fn with_rollout(mut self, rollout: Arc<dyn StepRunner>) -> Self {
        self.rollout = rollout;
        self
    }
    pub fn with_policies(mut self, policies: PolicySet) -> Self {
        self.policies = Arc::new(policies);
        self
    }
    pub fn with_sinks(mut self, sinks: Vec<Arc<dyn AlertSink>>) -> Self {
        self.sinks = Arc::new(sinks);
        self
    }
    pub fn with_settings(mut self, settings: RotationSettings) -> Self {
        self.settings = settings;
        self
    }
    /// Adds (or replaces) the directory of `integration`.
    pub fn with_directory(mut self, integration: IntegrationId, directory: Arc<dyn Directory>) -> Self {
        let mut directories = (*self.directories).clone();
        directories.insert(integration, directory);
        self.directories = Arc::new(directories);
        self
    }
}

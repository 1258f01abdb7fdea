//! What the embedded runtime tells `/healthz` about its workers: which are running, which are down
//! (ended or panicked, waiting to be restarted), and how often each was restarted. A dead worker
//! must never be invisible (DESIGN §4.6): every later message on its queue would wait for ever.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// The state of one worker, by its queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WorkerState {
    pub running: bool,
    /// Times the worker was started again after it ended.
    pub restarts: u64,
    /// Why it last ended, in words (never a panic's payload, which may quote anything).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<String>,
}

/// The workers' states, shared by the runtime (which writes) and the API (which reads).
#[derive(Debug, Clone, Default)]
pub struct WorkerHealth(Arc<Mutex<BTreeMap<String, WorkerState>>>);

impl WorkerHealth {
    pub fn new() -> Self {
        Self::default()
    }

    fn update(&self, queue: &str, f: impl FnOnce(&mut WorkerState)) {
        let mut states = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(states.entry(queue.to_owned()).or_default());
    }

    /// The worker of `queue` is running (its first start, or a restart).
    pub fn started(&self, queue: &str, restart: bool) {
        self.update(queue, |s| {
            s.running = true;
            if restart {
                s.restarts += 1;
            }
        });
    }

    /// The worker of `queue` ended while it should have run on.
    pub fn down(&self, queue: &str, why: &str) {
        self.update(queue, |s| {
            s.running = false;
            s.last_exit = Some(why.to_owned());
        });
    }

    /// The workers' states, by queue.
    pub fn snapshot(&self) -> BTreeMap<String, WorkerState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The queues whose worker is down.
    pub fn down_workers(&self) -> Vec<String> {
        self.snapshot().into_iter().filter(|(_, s)| !s.running).map(|(q, _)| q).collect()
    }
}

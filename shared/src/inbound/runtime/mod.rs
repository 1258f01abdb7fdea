//! The embedded runtime (feature `embedded`): a worker per queue handing batches to handlers
//! (honouring partial batch failures, as Lambda's SQS integration does), the scheduler for the
//! timers, and graceful shutdown. `rotator serve` runs it; no Lambda function links it.

mod worker;

pub use worker::{Worker, WorkerOptions};

use crate::inbound::scheduler::Scheduler;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Everything `rotator serve` runs in one process.
#[derive(Default)]
pub struct EmbeddedRuntime {
    workers: Vec<Worker>,
    scheduler: Option<Scheduler>,
}

impl EmbeddedRuntime {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn with_worker(mut self, worker: Worker) -> Self {
        self.workers.push(worker);
        self
    }
    pub fn with_scheduler(mut self, scheduler: Scheduler) -> Self {
        self.scheduler = Some(scheduler);
        self
    }
    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// Runs until `shutdown` is cancelled, then lets every worker finish the batch in hand.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tasks = JoinSet::new();
        for worker in self.workers {
            tasks.spawn(worker.run(shutdown.clone()));
        }
        if let Some(scheduler) = self.scheduler {
            tasks.spawn(scheduler.run(shutdown.clone()));
        }
        while let Some(res) = tasks.join_next().await {
            if let Err(e) = res {
                tracing::error!(error = %e, "a runtime task ended abnormally");
            }
        }
    }
}

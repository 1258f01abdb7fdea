//! The embedded runtime (feature `embedded`): a worker per queue handing batches to handlers
//! (honouring partial batch failures, as Lambda's SQS integration does), the scheduler for the
//! timers, and graceful shutdown. `rotator serve` runs it; no Lambda function links it.

mod worker;

pub use worker::{Worker, WorkerOptions};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::inbound::health::WorkerHealth;
use crate::inbound::scheduler::Scheduler;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The pause before a worker that ended is started again, so one that ends at once every time
/// does not spin.
const RESTART_DELAY: Duration = Duration::from_secs(1);

/// Everything `rotator serve` runs in one process.
#[derive(Default)]
pub struct EmbeddedRuntime {
    workers: Vec<Worker>,
    scheduler: Option<Scheduler>,
    health: WorkerHealth,
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

    /// What the runtime reports about its workers (for `/healthz`); a handle to shared state.
    pub fn health(&self) -> WorkerHealth {
        self.health.clone()
    }

    /// Runs until `shutdown` is cancelled, then lets every worker finish the batch in hand. A
    /// worker that ends before (a panic outside a handler, a bug) is marked down, counted and
    /// started again.
    pub async fn run(self, shutdown: CancellationToken) {
        let health = self.health;
        let mut tasks = JoinSet::new();
        let mut worker_of = HashMap::new();
        for worker in self.workers {
            let worker = Arc::new(worker);
            health.started(worker.queue_name().as_str(), false);
            let id = spawn_worker(&mut tasks, worker.clone(), &health, shutdown.clone(), None);
            worker_of.insert(id, worker);
        }
        if let Some(scheduler) = self.scheduler {
            let scheduler_shutdown = shutdown.clone();
            tasks.spawn(async move { scheduler.run(scheduler_shutdown).await });
        }
        while let Some(res) = tasks.join_next_with_id().await {
            let (id, why) = match res {
                Ok((id, ())) => (id, "ended"),
                Err(e) if e.is_panic() => (e.id(), "panicked"),
                Err(e) => (e.id(), "was cancelled"),
            };
            let Some(worker) = worker_of.remove(&id) else {
                if !shutdown.is_cancelled() {
                    tracing::error!(why, "the scheduler ended before shutdown");
                }
                continue;
            };
            if shutdown.is_cancelled() {
                continue;
            }
            let queue = worker.queue_name().as_str().to_owned();
            tracing::error!(queue = %queue, why, "a worker ended before shutdown; starting it again");
            health.down(&queue, &format!("the worker {why}"));
            let id = spawn_worker(&mut tasks, worker.clone(), &health, shutdown.clone(), Some(RESTART_DELAY));
            worker_of.insert(id, worker);
        }
    }
}

/// Runs `worker` on `tasks`; a restart (`Some(delay)`) waits `delay` first and is counted in the
/// worker's health entry once it runs again.
fn spawn_worker(
    tasks: &mut JoinSet<()>,
    worker: Arc<Worker>,
    health: &WorkerHealth,
    shutdown: CancellationToken,
    restart_after: Option<Duration>,
) -> tokio::task::Id {
    let health = health.clone();
    tasks
        .spawn(async move {
            if let Some(delay) = restart_after {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                health.started(worker.queue_name().as_str(), true);
            }
            worker.serve(&shutdown).await;
        })
        .id()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    use async_trait::async_trait;
    use time::macros::datetime;

    use super::*;
    use crate::adapters::sqlite::SqliteQueue;
    use crate::inbound::batch::{BatchHandler, MessageFailure};
    use crate::ports::{OutgoingMessage, Queue, QueueName, QueueSpec, ReceivedMessage};
    use crate::testing::fakes::ManualClock;

    /// Panics outside any per-message guard the first time it sees "boom": the worker task dies.
    #[derive(Default)]
    struct DiesOnce {
        died: AtomicBool,
        seen: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl BatchHandler for DiesOnce {
        async fn handle(&self, batch: &[ReceivedMessage]) -> Vec<MessageFailure> {
            for m in batch {
                if m.body == "boom" && !self.died.swap(true, Ordering::SeqCst) {
                    panic!("a bug in the worker");
                }
                self.seen.lock().unwrap_or_else(|p| p.into_inner()).push(m.body.clone());
            }
            Vec::new()
        }
    }

    #[tokio::test]
    async fn a_worker_that_dies_is_reported_down_restarted_counted_and_serves_again() {
        let clock = ManualClock::new(datetime!(2026-11-22 12:00 UTC));
        let name = QueueName::new("work");
        let spec = QueueSpec {
            name: name.clone(),
            fifo: false,
            max_receive_count: 5,
            visibility_timeout: Duration::from_secs(30),
        };
        let queue = Arc::new(SqliteQueue::in_memory(vec![spec], Arc::new(clock)).expect("queue"));
        let handler = Arc::new(DiesOnce::default());
        let worker = Worker::new(
            queue.clone(),
            name.clone(),
            handler.clone(),
            WorkerOptions { idle_poll: Duration::from_millis(10), batch_size: 1, ..Default::default() },
        );
        let runtime = EmbeddedRuntime::new().with_worker(worker);
        let health = runtime.health();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(runtime.run(shutdown.clone()));

        queue.send(&name, OutgoingMessage { body: "boom".into(), ..Default::default() }).await.expect("sent");
        let mut saw_down = false;
        for _ in 0..200 {
            saw_down |= health.down_workers() == ["work"];
            if health.snapshot().get("work").is_some_and(|s| s.restarts == 1 && s.running) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(saw_down, "the dead worker was reported down: {:?}", health.snapshot());
        let state = health.snapshot()["work"].clone();
        assert_eq!((state.running, state.restarts), (true, 1), "{state:?}");
        assert_eq!(state.last_exit.as_deref(), Some("the worker panicked"));

        queue.send(&name, OutgoingMessage { body: "after".into(), ..Default::default() }).await.expect("sent");
        for _ in 0..200 {
            if handler.seen.lock().unwrap_or_else(|p| p.into_inner()).contains(&"after".to_owned()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(handler.seen.lock().unwrap_or_else(|p| p.into_inner()).contains(&"after".to_owned()), "still serving");
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), task).await.expect("stops").expect("no panic");
    }
}

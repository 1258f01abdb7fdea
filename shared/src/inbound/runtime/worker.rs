//! A worker: receives batches from one queue, hands them to a handler, deletes what succeeded and
//! leaves the failures to come back after their visibility timeout (or to the dead-letter queue).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::inbound::batch::BatchHandler;
use crate::ports::{Queue, QueueName};

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub batch_size: usize,
    /// How long to wait before polling an empty queue again.
    pub idle_poll: Duration,
    /// Visibility for received messages; the queue's default when `None`.
    pub visibility: Option<Duration>,
    /// Batches in hand at once. With the handlers running a batch's groups side by side, up to
    /// `concurrency × batch_size` messages of distinct groups (applications) are worked on together,
    /// as Lambda runs several invocations of one function; a FIFO queue still never hands out two
    /// messages of one group, so one application's work stays one at a time.
    pub concurrency: usize,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self { batch_size: 10, idle_poll: Duration::from_millis(250), visibility: None, concurrency: 4 }
    }
}

pub struct Worker {
    queue: Arc<dyn Queue>,
    name: QueueName,
    handler: Arc<dyn BatchHandler>,
    options: WorkerOptions,
}

impl Worker {
    pub fn new(queue: Arc<dyn Queue>, name: QueueName, handler: Arc<dyn BatchHandler>, options: WorkerOptions) -> Self {
        Self { queue, name, handler, options }
    }

    pub fn queue_name(&self) -> &QueueName {
        &self.name
    }

    /// Receives and processes one batch; returns how many messages it held.
    pub async fn run_once(&self) -> crate::Result<usize> {
        let batch = self.queue.receive(&self.name, self.options.batch_size, self.options.visibility).await?;
        if batch.is_empty() {
            return Ok(0);
        }
        let failures = self.handler.handle(&batch).await;
        for msg in &batch {
            match failures.iter().find(|f| f.id == msg.id) {
                None => {
                    if let Err(e) = self.queue.delete(&self.name, &msg.receipt).await {
                        // Not deleted means delivered again; handlers are idempotent, so this is safe.
                        tracing::warn!(queue = %self.name, message = %msg.id, error = %e.chain(), "acknowledge failed");
                    }
                }
                Some(failure) => {
                    tracing::warn!(
                        queue = %self.name,
                        message = %msg.id,
                        receive_count = msg.receive_count,
                        error = %failure.error,
                        "message failed; it will be retried or dead-lettered"
                    );
                    if let Err(e) = self.queue.record_failure(&self.name, &msg.receipt, &failure.error).await {
                        tracing::warn!(queue = %self.name, message = %msg.id, error = %e.chain(), "recording failure failed");
                    }
                    if let Some(after) = failure.retry_after
                        && let Err(e) = self.queue.change_visibility(&self.name, &msg.receipt, after).await
                    {
                        tracing::debug!(queue = %self.name, message = %msg.id, error = %e.chain(), "visibility not changed");
                    }
                }
            }
        }
        Ok(batch.len())
    }

    /// Polls until `shutdown` is cancelled; the batch in hand is always finished first.
    pub async fn run(self, shutdown: CancellationToken) {
        self.serve(&shutdown).await;
    }

    /// As [`Worker::run`], borrowing the worker, so that a supervisor can start it again.
    pub async fn serve(&self, shutdown: &CancellationToken) {
        tracing::info!(queue = %self.name, concurrency = self.options.concurrency, "worker started");
        let loops = (0..self.options.concurrency.max(1)).map(|_| self.poll(shutdown));
        futures::future::join_all(loops).await;
        tracing::info!(queue = %self.name, "worker stopped");
    }

    /// One receive loop: a batch at a time until `shutdown`.
    async fn poll(&self, shutdown: &CancellationToken) {
        let mut backoff = self.options.idle_poll;
        while !shutdown.is_cancelled() {
            let wait = match self.run_once().await {
                Ok(0) => self.options.idle_poll,
                Ok(_) => {
                    backoff = self.options.idle_poll;
                    continue;
                }
                Err(e) => {
                    tracing::error!(queue = %self.name, error = %e.chain(), "receiving failed");
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    backoff
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use time::macros::datetime;

    use async_trait::async_trait;

    use super::*;
    use crate::adapters::sqlite::SqliteQueue;
    use crate::inbound::batch::MessageFailure;
    use crate::ports::ReceivedMessage;
    use crate::ports::{OutgoingMessage, QueueSpec};
    use crate::testing::fakes::ManualClock;

    /// Fails every message whose body is "bad"; remembers what it saw.
    #[derive(Default)]
    struct Picky {
        seen: Mutex<Vec<String>>,
        delay: Duration,
    }

    #[async_trait]
    impl BatchHandler for Picky {
        async fn handle(&self, batch: &[ReceivedMessage]) -> Vec<MessageFailure> {
            tokio::time::sleep(self.delay).await;
            let mut failures = Vec::new();
            for m in batch {
                self.seen.lock().unwrap().push(m.body.clone());
                if m.body == "bad" {
                    failures.push(MessageFailure {
                        id: m.id.clone(),
                        error: "cannot process".into(),
                        retry_after: None,
                    });
                }
            }
            failures
        }
    }

    fn setup() -> (Arc<SqliteQueue>, ManualClock, QueueName) {
        let clock = ManualClock::new(datetime!(2026-11-22 12:00 UTC));
        let name = QueueName::new("work");
        let spec = QueueSpec {
            name: name.clone(),
            fifo: false,
            max_receive_count: 2,
            visibility_timeout: Duration::from_secs(30),
        };
        (Arc::new(SqliteQueue::in_memory(vec![spec], Arc::new(clock.clone())).unwrap()), clock, name)
    }

    async fn send(q: &SqliteQueue, name: &QueueName, body: &str) {
        q.send(name, OutgoingMessage { body: body.into(), ..Default::default() }).await.unwrap();
    }

    #[tokio::test]
    async fn partial_batch_failure_acknowledges_the_rest_and_retries_only_the_failed() {
        let (q, clock, name) = setup();
        for b in ["good-1", "bad", "good-2"] {
            send(&q, &name, b).await;
        }
        let handler = Arc::new(Picky::default());
        let worker = Worker::new(q.clone(), name.clone(), handler.clone(), WorkerOptions::default());
        assert_eq!(worker.run_once().await.unwrap(), 3);
        assert_eq!(worker.run_once().await.unwrap(), 0, "the failed one waits for its visibility timeout");
        clock.advance(Duration::from_secs(31));
        assert_eq!(worker.run_once().await.unwrap(), 1);
        assert_eq!(*handler.seen.lock().unwrap(), vec!["good-1", "bad", "good-2", "bad"]);
        clock.advance(Duration::from_secs(31));
        assert_eq!(worker.run_once().await.unwrap(), 0, "past its maximum receives");
        let dead = q.dead_letters(&name, 10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].last_error.as_deref(), Some("cannot process"));
    }

    #[tokio::test]
    async fn a_failure_with_retry_after_zero_comes_back_at_once() {
        let (q, _clock, name) = setup();
        send(&q, &name, "x").await;
        struct Reject;
        #[async_trait]
        impl BatchHandler for Reject {
            async fn handle(&self, batch: &[ReceivedMessage]) -> Vec<MessageFailure> {
                batch
                    .iter()
                    .map(|m| MessageFailure {
                        id: m.id.clone(),
                        error: "malformed".into(),
                        retry_after: Some(Duration::ZERO),
                    })
                    .collect()
            }
        }
        let worker = Worker::new(q.clone(), name.clone(), Arc::new(Reject), WorkerOptions::default());
        assert_eq!(worker.run_once().await.unwrap(), 1);
        assert_eq!(worker.run_once().await.unwrap(), 1);
        assert_eq!(worker.run_once().await.unwrap(), 0);
        assert_eq!(q.dead_letters(&name, 10).await.unwrap().len(), 1, "dead-lettered without waiting");
    }

    #[tokio::test]
    async fn shutdown_lets_the_batch_in_hand_finish() {
        let (q, _clock, name) = setup();
        send(&q, &name, "slow").await;
        let handler = Arc::new(Picky { delay: Duration::from_millis(300), ..Default::default() });
        let worker = Worker::new(
            q.clone(),
            name.clone(),
            handler.clone(),
            WorkerOptions { idle_poll: Duration::from_millis(10), ..Default::default() },
        );
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(worker.run(shutdown.clone()));
        // Wait until the handler has the message, then ask to stop.
        for _ in 0..100 {
            if q.depth(&name).await.unwrap().in_flight == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
        assert_eq!(*handler.seen.lock().unwrap(), vec!["slow"]);
        let depth = q.depth(&name).await.unwrap();
        assert_eq!((depth.visible, depth.in_flight), (0, 0), "finished and acknowledged");
    }
}

//! Timers: every so often, put a message on a queue (what EventBridge schedules do on AWS).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::messages::Message;
use crate::ports::{Clock, Queue};

/// A message sent every `every`, the first at start.
#[derive(Debug, Clone)]
pub struct Timer {
    pub name: String,
    pub every: Duration,
    pub message: Message,
}

pub struct Scheduler {
    queue: Arc<dyn Queue>,
    clock: Arc<dyn Clock>,
    timers: Vec<Timer>,
}

impl Scheduler {
    pub fn new(queue: Arc<dyn Queue>, clock: Arc<dyn Clock>, timers: Vec<Timer>) -> Self {
        Self { queue, clock, timers }
    }

    /// Sends the timer's message for the current period. The idempotency key names the period, so
    /// two schedulers (or a quick restart) within one period send it once.
    pub async fn fire(&self, timer: &Timer) -> crate::Result<()> {
        let period = timer.every.as_secs().max(1) as i64;
        let tick = self.clock.now().unix_timestamp() / period;
        let envelope = timer.message.clone().envelope(format!("timer:{}:{}", timer.name, tick));
        self.queue.send(&envelope.message.queue(), envelope.to_outgoing(Duration::ZERO)?).await?;
        tracing::info!(timer = %timer.name, "timer fired");
        Ok(())
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        let mut tasks = tokio::task::JoinSet::new();
        for timer in this.timers.clone() {
            let this = this.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                let mut interval = tokio::time::interval(timer.every);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = interval.tick() => {
                            if let Err(e) = this.fire(&timer).await {
                                tracing::error!(timer = %timer.name, error = %e.chain(), "timer could not send");
                            }
                        }
                    }
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::adapters::sqlite::SqliteQueue;
    use crate::messages::{Envelope, default_queue_specs, queues};
    use crate::ports::QueueName;
    use crate::testing::fakes::ManualClock;

    #[tokio::test]
    async fn a_timer_sends_once_per_period_however_often_it_fires() {
        let clock = ManualClock::new(datetime!(2026-11-22 12:00 UTC));
        let queue = Arc::new(SqliteQueue::in_memory(default_queue_specs(), Arc::new(clock.clone())).unwrap());
        let timer = Timer {
            name: "expiry-scan".into(),
            every: Duration::from_secs(900),
            message: Message::ScanRequested { integration: None },
        };
        let s = Scheduler::new(queue.clone(), Arc::new(clock.clone()), vec![timer.clone()]);
        s.fire(&timer).await.unwrap();
        s.fire(&timer).await.unwrap(); // a second scheduler, or a quick restart
        let q = QueueName::new(queues::SCAN);
        let got = queue.receive(&q, 10, None).await.unwrap();
        assert_eq!(got.len(), 1);
        assert!(matches!(Envelope::parse(&got[0].body).unwrap().message, Message::ScanRequested { .. }));
        queue.delete(&q, &got[0].receipt).await.unwrap();
        clock.advance(Duration::from_secs(900));
        s.fire(&timer).await.unwrap();
        assert_eq!(queue.receive(&q, 10, None).await.unwrap().len(), 1, "the next period sends again");
    }

    #[tokio::test]
    async fn the_scheduler_fires_at_start_and_stops_on_shutdown() {
        let clock = ManualClock::new(datetime!(2026-11-22 12:00 UTC));
        let queue = Arc::new(SqliteQueue::in_memory(default_queue_specs(), Arc::new(clock.clone())).unwrap());
        let timer = Timer {
            name: "sync".into(),
            every: Duration::from_secs(3600),
            message: Message::CleanupRequested { integration: None },
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(Scheduler::new(queue.clone(), Arc::new(clock), vec![timer]).run(shutdown.clone()));
        let q = QueueName::new(queues::CLEANUP);
        let mut depth = 0;
        for _ in 0..200 {
            depth = queue.depth(&q).await.unwrap().visible;
            if depth > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(depth, 1);
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
    }
}

//! The reusable batch wrapper: parses each message's envelope, hands it to a per-message handler,
//! and turns the results into a partial batch failure report — one bad message never fails the
//! batch. The Lambda entrypoints and the embedded workers share it.
//!
//! A handler that panics fails its own message like any other failure (retried, then
//! dead-lettered, with "internal error" as the note): it neither ends the embedded worker nor
//! aborts a Lambda invocation whose other messages succeeded.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;

use crate::Error;
use crate::messages::Envelope;
use crate::ports::{MessageId, ReceivedMessage};

/// One message of a batch that could not be processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageFailure {
    pub id: MessageId,
    /// In words, for the dead-letter view; never a secret.
    pub error: String,
    /// Try again after this long instead of the queue's visibility timeout (zero: at once, which
    /// sends a malformed message to the dead-letter queue quickly).
    pub retry_after: Option<Duration>,
}

/// Processes a batch; returns the messages that failed. The rest are acknowledged.
#[async_trait]
pub trait BatchHandler: Send + Sync {
    async fn handle(&self, batch: &[ReceivedMessage]) -> Vec<MessageFailure>;
}

/// Handles one message. Must be idempotent: the queue delivers at least once.
#[async_trait]
pub trait MessageHandler: Send + Sync {
    /// A short name for logs, such as `run-step`.
    fn name(&self) -> &'static str;
    async fn handle(&self, envelope: Envelope, received: &ReceivedMessage) -> crate::Result<()>;
}

/// Adapts a [`MessageHandler`] to a [`BatchHandler`].
pub struct EnvelopeHandler<H>(pub H);

/// How a failed message is retried: transient errors wait for the visibility timeout (the
/// backoff); permanent ones come back at once, so they reach the dead-letter queue after the
/// maximum receives instead of hours later.
pub fn retry_after(error: &Error) -> Option<Duration> {
    if error.is_transient() { None } else { Some(Duration::ZERO) }
}

#[async_trait]
impl<H: MessageHandler> BatchHandler for EnvelopeHandler<H> {
    /// The messages of one group are handled one after the other, in order; groups (on the chain's
    /// queues, applications and integrations) are handled concurrently, so a batch of rotations
    /// of ten applications takes as long as the slowest, not as the ten together.
    async fn handle(&self, batch: &[ReceivedMessage]) -> Vec<MessageFailure> {
        let mut groups: Vec<Vec<(usize, &ReceivedMessage)>> = Vec::new();
        let mut group_of: HashMap<&str, usize> = HashMap::new();
        for (index, received) in batch.iter().enumerate() {
            match received.group.as_deref() {
                Some(g) if group_of.contains_key(g) => groups[group_of[g]].push((index, received)),
                Some(g) => {
                    group_of.insert(g, groups.len());
                    groups.push(vec![(index, received)]);
                }
                None => groups.push(vec![(index, received)]),
            }
        }
        let per_group = groups.into_iter().map(|members| async move {
            let mut failed = Vec::new();
            for (index, received) in members {
                if let Some(failure) = self.handle_one(received).await {
                    failed.push((index, failure));
                }
            }
            failed
        });
        let mut failures: Vec<(usize, MessageFailure)> =
            futures::future::join_all(per_group).await.into_iter().flatten().collect();
        failures.sort_by_key(|(index, _)| *index);
        failures.into_iter().map(|(_, failure)| failure).collect()
    }
}

impl<H: MessageHandler> EnvelopeHandler<H> {
    /// One message: `None` when it was handled, else how it failed.
    async fn handle_one(&self, received: &ReceivedMessage) -> Option<MessageFailure> {
        let result = match Envelope::parse(&received.body) {
            Ok(envelope) => match CatchUnwind(self.0.handle(envelope, received)).await {
                Ok(result) => result,
                Err(()) => {
                    // The payload may quote anything (a value being formatted): never logged.
                    let error = format!("{}: internal error (the handler panicked)", self.0.name());
                    tracing::error!(
                        handler = self.0.name(),
                        message = %received.id,
                        receive_count = received.receive_count,
                        "handler panicked; the message fails and will be retried or dead-lettered"
                    );
                    return Some(MessageFailure { id: received.id.clone(), error, retry_after: None });
                }
            },
            Err(e) => Err(e),
        };
        let e = result.err()?;
        let error = format!("{}: {}", self.0.name(), e.chain());
        tracing::warn!(
            handler = self.0.name(),
            message = %received.id,
            receive_count = received.receive_count,
            transient = e.is_transient(),
            error = %error,
            "message failed"
        );
        Some(MessageFailure { id: received.id.clone(), error, retry_after: retry_after(&e) })
    }
}

/// A future whose panic is caught and answered `Err(())`. The handlers' futures are boxed (and so
/// `Unpin`), which is all this needs; `AssertUnwindSafe` is sound here because a panicked future
/// is dropped at once and nothing it touched is read again but through the store, whose writes
/// are atomic.
struct CatchUnwind<F>(F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, ()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(inner).poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_payload) => Poll::Ready(Err(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use time::macros::datetime;

    use super::*;
    use crate::messages::Message;
    use crate::ports::ReceiptHandle;

    struct Recorder(Mutex<Vec<String>>);

    #[async_trait]
    impl MessageHandler for Recorder {
        fn name(&self) -> &'static str {
            "recorder"
        }
        async fn handle(&self, envelope: Envelope, _: &ReceivedMessage) -> crate::Result<()> {
            self.0.lock().unwrap().push(envelope.idempotency_key.clone());
            match envelope.idempotency_key.as_str() {
                "busy" => Err(Error::Store { context: "locked".into(), transient: true, source: "busy".into() }),
                "denied" => Err(Error::invalid("request", "403 Authorization_RequestDenied")),
                "panics" => panic!("overflow while handling secret-value-xyz"),
                _ => Ok(()),
            }
        }
    }

    fn received(id: &str, body: String) -> ReceivedMessage {
        ReceivedMessage {
            id: MessageId(id.into()),
            receipt: ReceiptHandle(id.into()),
            body,
            receive_count: 1,
            group: None,
            sent_at: datetime!(2026-11-22 12:00 UTC),
        }
    }

    fn body(key: &str) -> String {
        serde_json::to_string(&Message::ScanRequested { integration: None }.envelope(key)).unwrap()
    }

    #[tokio::test]
    async fn only_the_failed_messages_of_a_batch_are_reported_with_how_to_retry() {
        let h = EnvelopeHandler(Recorder(Mutex::new(vec![])));
        let batch = vec![
            received("1", body("ok")),
            received("2", body("busy")),
            received("3", "{not json".into()),
            received("4", body("denied")),
            received("5", body("ok-too")),
        ];
        let failures = BatchHandler::handle(&h, &batch).await;
        let ids: Vec<_> = failures.iter().map(|f| f.id.0.as_str()).collect();
        assert_eq!(ids, vec!["2", "3", "4"]);
        assert_eq!(failures[0].retry_after, None, "transient: wait for the visibility timeout");
        assert_eq!(failures[1].retry_after, Some(Duration::ZERO), "malformed: straight on to the dead-letter queue");
        assert!(failures[1].error.starts_with("recorder: invalid message"));
        assert!(failures[2].error.contains("Authorization_RequestDenied"));
        assert_eq!(*h.0.0.lock().unwrap(), vec!["ok", "busy", "denied", "ok-too"]);
    }

    /// Two messages that can only finish together (a barrier of two), and one that must wait for
    /// the first of its group.
    struct Meeting {
        barrier: tokio::sync::Barrier,
        order: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl MessageHandler for Meeting {
        fn name(&self) -> &'static str {
            "meeting"
        }
        async fn handle(&self, envelope: Envelope, _: &ReceivedMessage) -> crate::Result<()> {
            let key = envelope.idempotency_key.clone();
            if key.starts_with("meet") {
                tokio::time::timeout(Duration::from_secs(30), self.barrier.wait())
                    .await
                    .map_err(|_| Error::invalid("request", "the other group never ran alongside"))?;
            }
            self.order.lock().unwrap().push(key);
            Ok(())
        }
    }

    #[tokio::test]
    async fn groups_of_a_batch_run_side_by_side_and_each_group_in_its_order() {
        let h = EnvelopeHandler(Meeting { barrier: tokio::sync::Barrier::new(2), order: Mutex::new(vec![]) });
        let in_group =
            |id: &str, key: &str, group: &str| ReceivedMessage { group: Some(group.into()), ..received(id, body(key)) };
        let batch =
            vec![in_group("1", "meet-a", "app:a"), in_group("2", "after-a", "app:a"), in_group("3", "meet-b", "app:b")];
        let failures = BatchHandler::handle(&h, &batch).await;
        assert!(failures.is_empty(), "{failures:?}");
        let order = h.0.order.lock().unwrap().clone();
        let at = |k: &str| order.iter().position(|o| o == k).unwrap();
        assert!(at("meet-a") < at("after-a"), "one group's messages keep their order: {order:?}");
        assert_eq!(order.len(), 3);
    }

    #[tokio::test]
    async fn a_handler_that_panics_fails_its_message_only_with_no_word_of_the_panic() {
        let h = EnvelopeHandler(Recorder(Mutex::new(vec![])));
        let batch = vec![received("1", body("ok")), received("2", body("panics")), received("3", body("ok-too"))];
        let failures = BatchHandler::handle(&h, &batch).await;
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].id.0, "2");
        assert_eq!(failures[0].error, "recorder: internal error (the handler panicked)");
        assert_eq!(failures[0].retry_after, None, "retried like a passing failure, then dead-lettered");
        assert!(!failures[0].error.contains("secret-value-xyz"));
        assert_eq!(*h.0.0.lock().unwrap(), vec!["ok", "panics", "ok-too"], "the batch went on");
    }
}

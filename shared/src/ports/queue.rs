//! The queue port: named queues with SQS semantics (at-least-once, visibility, receive counts, FIFO
//! groups, dead letters, redrive).

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::Result;

/// A named queue. Each has a dead-letter queue of its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QueueName(pub String);

impl QueueName {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for QueueName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a queue behaves, as SQS would be configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    pub name: QueueName,
    /// FIFO: messages of one group are delivered in order, one in flight at a time.
    pub fifo: bool,
    /// After this many receives a message goes to the dead-letter queue instead.
    pub max_receive_count: u32,
    /// The visibility timeout used when `receive` is not given one.
    pub visibility_timeout: Duration,
}

/// A message to send. The body is JSON with identifiers only, never a secret.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutgoingMessage {
    pub body: String,
    /// FIFO message group: one message of a group is in flight at a time.
    pub group: Option<String>,
    /// A second send with the same id within five minutes is accepted and dropped, as SQS FIFO does.
    pub dedup_id: Option<String>,
    pub delay: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MessageId(pub String);

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Proof of one particular receive; a stale handle (the message was received again since) does
/// nothing, so a slow consumer cannot delete a message someone else is now processing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptHandle(pub String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub id: MessageId,
    pub receipt: ReceiptHandle,
    pub body: String,
    /// 1 on the first delivery.
    pub receive_count: u32,
    pub group: Option<String>,
    pub sent_at: OffsetDateTime,
}

/// A message that could not be processed, with what is known of why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub id: MessageId,
    pub source_queue: QueueName,
    pub body: String,
    pub receive_count: u32,
    pub group: Option<String>,
    /// The last error a handler reported for it, in words.
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub sent_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub dead_at: OffsetDateTime,
}

/// Named queues with SQS semantics: at-least-once delivery, visibility timeouts, receive counts,
/// FIFO groups, dead-letter queues and redrive.
#[async_trait]
pub trait Queue: Send + Sync {
    async fn send(&self, queue: &QueueName, message: OutgoingMessage) -> Result<MessageId>;
    /// Sends each of `messages` as [`Queue::send`] does, in order, in as few round trips as the
    /// queue allows (the embedded queue: one transaction). On an error some may have been sent,
    /// as with `send` one by one. The default sends them one by one.
    async fn send_batch(&self, queue: &QueueName, messages: Vec<OutgoingMessage>) -> Result<Vec<MessageId>> {
        let mut ids = Vec::with_capacity(messages.len());
        for message in messages {
            ids.push(self.send(queue, message).await?);
        }
        Ok(ids)
    }
    /// Up to `max` visible messages, hidden for `visibility` (the queue's default when `None`).
    /// Messages past their maximum receive count go to the dead-letter queue instead.
    async fn receive(
        &self,
        queue: &QueueName,
        max: usize,
        visibility: Option<Duration>,
    ) -> Result<Vec<ReceivedMessage>>;
    /// Acknowledge: the message is done. A stale receipt does nothing.
    async fn delete(&self, queue: &QueueName, receipt: &ReceiptHandle) -> Result<()>;
    /// Make the message visible again after `timeout` from now (zero: at once).
    async fn change_visibility(&self, queue: &QueueName, receipt: &ReceiptHandle, timeout: Duration) -> Result<()>;
    /// Remember why the last attempt failed, for the dead-letter view. The message itself comes
    /// back when its visibility timeout runs out.
    async fn record_failure(&self, queue: &QueueName, receipt: &ReceiptHandle, error: &str) -> Result<()>;
    /// Dead letters of `queue`, oldest first.
    async fn dead_letters(&self, queue: &QueueName, limit: usize) -> Result<Vec<DeadLetter>>;
    async fn dead_letter(&self, id: &MessageId) -> Result<Option<DeadLetter>>;
    /// Move dead letters (all of `queue`'s, or those named) back to their source queue with a fresh
    /// receive count. Returns how many moved.
    async fn redrive(&self, queue: &QueueName, ids: Option<&[MessageId]>) -> Result<usize>;
    /// Messages waiting (visible or not) in `queue`, for status views.
    async fn depth(&self, queue: &QueueName) -> Result<QueueDepth>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct QueueDepth {
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
    pub dead: u64,
}

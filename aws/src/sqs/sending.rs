//! Sending: one message (SendMessage) or many (SendMessageBatch, ten entries and at most
//! [`MAX_BATCH_BYTES`] a call). Each message is checked and given its id and attributes first, the
//! same way for both, so a batch with one message SQS would refuse sends nothing.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use entra_rotator::adapters::system_clock::SystemClock;
use entra_rotator::ports::{Clock, MessageId, OutgoingMessage, QueueName, QueueSpec};
use entra_rotator::{Error, Result};

use super::attributes::{build_error, is_sqs_token, new_message_id, number_attribute, string_attribute, unix_millis};
use super::receiving::ceil_secs;
use super::{GROUP_ATTRIBUTE, ID_ATTRIBUTE, MAX_FIFO_DELAY, MAX_STANDARD_DELAY, NOT_BEFORE_ATTRIBUTE};

/// SendMessageBatch takes at most ten entries.
pub(super) const MAX_BATCH_ENTRIES: usize = 10;
/// And at most 256 KiB of bodies and attributes together; a batch is cut well below that (the
/// chain's messages carry identifiers, a few hundred bytes each).
pub(super) const MAX_BATCH_BYTES: usize = 192 * 1024;

/// A message as SQS will get it.
#[derive(Debug, Clone)]
pub(super) struct Prepared {
    pub id: String,
    pub body: String,
    pub attributes: HashMap<String, MessageAttributeValue>,
    pub group: Option<String>,
    pub dedup: Option<String>,
    pub delay_seconds: Option<i32>,
}

impl Prepared {
    /// Checks `message` against `spec` (a FIFO message needs a group SQS accepts; delays within
    /// SQS's limits) and gives it our id and its attributes.
    pub fn new(queue: &QueueName, spec: &QueueSpec, message: OutgoingMessage) -> Result<Self> {
        if spec.fifo {
            match &message.group {
                None => {
                    return Err(Error::invalid(
                        "message",
                        format!("queue {queue} is FIFO: a message group is required"),
                    ));
                }
                Some(g) if !is_sqs_token(g) => {
                    return Err(Error::invalid("message", "a message group is 1 to 128 printable ASCII characters"));
                }
                Some(_) => {}
            }
        }
        let max_delay = if spec.fifo { MAX_FIFO_DELAY } else { MAX_STANDARD_DELAY };
        if message.delay > max_delay {
            return Err(Error::invalid(
                "message",
                format!("queue {queue} delays a message by at most {} seconds", max_delay.as_secs()),
            ));
        }
        // Standard queues have no deduplication in SQS, so their messages always get ids of their own.
        let dedup = message.dedup_id.as_deref().filter(|_| spec.fifo);
        let id = new_message_id(queue, dedup);
        let context = || format!("send to {queue}");
        let mut attributes = HashMap::new();
        attributes.insert(ID_ATTRIBUTE.to_owned(), string_attribute(&id).map_err(|e| build_error(context(), e))?);
        let mut prepared =
            Self { id: id.clone(), body: message.body, attributes, group: None, dedup: None, delay_seconds: None };
        if spec.fifo {
            prepared.dedup = Some(match dedup {
                Some(d) if is_sqs_token(d) => d.to_owned(),
                _ => id,
            });
            prepared.group = message.group;
            if !message.delay.is_zero() {
                let at = SystemClock.now() + message.delay;
                prepared.attributes.insert(
                    NOT_BEFORE_ATTRIBUTE.to_owned(),
                    number_attribute(unix_millis(at)).map_err(|e| build_error(context(), e))?,
                );
            }
        } else {
            if let Some(group) = &message.group {
                prepared.attributes.insert(
                    GROUP_ATTRIBUTE.to_owned(),
                    string_attribute(group).map_err(|e| build_error(context(), e))?,
                );
            }
            if !message.delay.is_zero() {
                prepared.delay_seconds = Some(i32::try_from(ceil_secs(message.delay)).unwrap_or(900));
            }
        }
        Ok(prepared)
    }

    pub fn message_id(&self) -> MessageId {
        MessageId(self.id.clone())
    }

    /// What the message counts for in a batch's size: its body and its attributes.
    fn size(&self) -> usize {
        self.body.len()
            + self
                .attributes
                .iter()
                .map(|(name, value)| name.len() + value.data_type().len() + value.string_value().map_or(0, str::len))
                .sum::<usize>()
    }

    /// The entry `entry` of a SendMessageBatch.
    pub fn entry(&self, entry: usize, queue: &QueueName) -> Result<SendMessageBatchRequestEntry> {
        SendMessageBatchRequestEntry::builder()
            .id(format!("m{entry}"))
            .message_body(self.body.clone())
            .set_message_attributes(Some(self.attributes.clone()))
            .set_message_group_id(self.group.clone())
            .set_message_deduplication_id(self.dedup.clone())
            .set_delay_seconds(self.delay_seconds)
            .build()
            .map_err(|e| build_error(format!("send to {queue}"), e))
    }
}

/// Cuts `messages` into SendMessageBatch calls, in order: at most [`MAX_BATCH_ENTRIES`] entries
/// and [`MAX_BATCH_BYTES`] each (a message larger than that goes alone).
pub(super) fn batches(messages: &[Prepared]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, m) in messages.iter().enumerate() {
        let size = m.size();
        if i > start && (i - start == MAX_BATCH_ENTRIES || bytes + size > MAX_BATCH_BYTES) {
            out.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < messages.len() {
        out.push(start..messages.len());
    }
    out
}

/// How long to wait before sending again the entries SQS failed without blaming the sender.
pub(super) const RESEND_PAUSE: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(fifo: bool) -> QueueSpec {
        QueueSpec { name: QueueName::new("q"), fifo, max_receive_count: 3, visibility_timeout: Duration::from_secs(30) }
    }

    fn prepared(body: &str) -> Prepared {
        let m = OutgoingMessage { body: body.into(), group: Some("g".into()), ..Default::default() };
        Prepared::new(&QueueName::new("q"), &spec(true), m).unwrap()
    }

    #[test]
    fn batches_hold_ten_entries_or_fewer_bytes_than_sqs_allows_in_order() {
        let small: Vec<Prepared> = (0..25).map(|i| prepared(&format!("m{i}"))).collect();
        assert_eq!(batches(&small), vec![0..10, 10..20, 20..25]);
        assert!(batches(&[]).is_empty());
        let big = "x".repeat(100 * 1024);
        let large: Vec<Prepared> = (0..3).map(|_| prepared(&big)).collect();
        assert_eq!(batches(&large), vec![0..1, 1..2, 2..3], "two of 100 KiB would pass the limit");
        let huge = vec![prepared(&"y".repeat(300 * 1024)), prepared("after")];
        assert_eq!(batches(&huge), vec![0..1, 1..2], "one too large goes alone, for SQS to judge");
    }

    #[test]
    fn a_fifo_message_gets_its_group_deduplication_id_and_a_delay_as_an_attribute() {
        let m = OutgoingMessage {
            body: "b".into(),
            group: Some("app:1".into()),
            dedup_id: Some("step:1".into()),
            delay: Duration::from_secs(60),
        };
        let p = Prepared::new(&QueueName::new("q"), &spec(true), m).unwrap();
        assert_eq!((p.group.as_deref(), p.dedup.as_deref(), p.delay_seconds), (Some("app:1"), Some("step:1"), None));
        assert!(p.attributes.contains_key(NOT_BEFORE_ATTRIBUTE) && p.attributes.contains_key(ID_ATTRIBUTE));
        let ungrouped = OutgoingMessage { body: "b".into(), ..Default::default() };
        assert!(matches!(Prepared::new(&QueueName::new("q"), &spec(true), ungrouped), Err(Error::Invalid { .. })));
        let standard = OutgoingMessage {
            body: "b".into(),
            group: Some("g".into()),
            delay: Duration::from_secs(5),
            ..Default::default()
        };
        let p = Prepared::new(&QueueName::new("q"), &spec(false), standard).unwrap();
        assert_eq!((p.group, p.dedup, p.delay_seconds), (None, None, Some(5)));
        assert!(p.attributes.contains_key(GROUP_ATTRIBUTE));
    }
}

//! The [`Queue`] port on Amazon SQS, with failure notes in DynamoDB.
//!
//! # Mapping
//!
//! - **Queues.** Queue `q` of the specs is the SQS queue `<prefix>q` (`<prefix>q.fifo` when the spec
//!   is FIFO) and its dead-letter queue is `<prefix>q-dlq` (`<prefix>q-dlq.fifo`), joined by a
//!   redrive policy with the spec's `maxReceiveCount`: SQS itself counts receives and moves a message
//!   to the dead-letter queue on the receive after its last allowed one, as the embedded queue does.
//!   Queue URLs are looked up (GetQueueUrl) on first use and cached, so a Lambda cold start makes no
//!   AWS call before its first real one. [`SqsQueue::create_queues`] creates the queues as the SAM
//!   template does, for tests and emulators.
//! - **Message ids.** Our own id travels as the message attribute [`ID_ATTRIBUTE`]: a fresh UUID, or
//!   for a send with a deduplication id a UUID v5 of queue name and deduplication id, so a
//!   deduplicated second send answers the same id as the first. Redrive copies it, so the id survives
//!   dead-lettering and redrive. A message without the attribute is known by its SQS `MessageId`.
//! - **Receipts.** A [`ReceiptHandle`] is `"<our id> <SQS receipt handle>"` ([`receipt_for`]), so
//!   [`Queue::record_failure`] knows which message failed in any process, including the Lambda glue,
//!   which builds receipts from event records.
//! - **Failure notes.** SQS cannot store text on a message, so `record_failure` writes an item
//!   `pk = "QNOTE#<our id>"`, `sk = "NOTE"` to the notes table with `error`, `receive_count` (the
//!   failures recorded), `queue`, `at` (unix milliseconds) and `expires_at` (unix seconds, now + 14
//!   days; the table's TTL attribute). The dead-letter view reads `last_error` from it; redrive
//!   deletes it, as the embedded queue forgets the last error of a redriven message.
//! - **Dead letters.** SQS cannot list a queue, so the dead-letter view receives from the
//!   dead-letter queue (briefly hidden, [`DLQ_READ_VISIBILITY_SECS`]) and makes what it saw visible
//!   again at once; redrive receives, sends a copy to the source queue (same body, group and id; for
//!   FIFO a fresh deduplication id) and then deletes the dead letter.
//!
//! # Where SQS differs from the embedded queue, and what this adapter does about it
//!
//! - **FIFO delays.** SQS FIFO queues refuse per-message `DelaySeconds`. A delayed FIFO message is
//!   sent at once with the message attribute [`NOT_BEFORE_ATTRIBUTE`] (unix milliseconds); a receive
//!   that gets it early hides it for the time remaining (ChangeMessageVisibility) and does not return
//!   it. As with the embedded queue, the hidden message still holds its group, so later messages of
//!   the group wait behind it. Each early receive counts as a receive for SQS, so such a message
//!   arrives with a receive count one higher (it leaves one receive fewer before dead-lettering), and
//!   [`Queue::depth`] counts it as visible, then in flight, never as delayed. The Lambda glue does
//!   the same with [`not_before`]. Delays on FIFO queues are limited to 12 hours (the longest
//!   visibility timeout); on standard queues native `DelaySeconds` is used, limited to 15 minutes.
//! - **One message per FIFO group in flight.** SQS may return several messages of one group in one
//!   ReceiveMessage, and a receive counts against every message it returns, so handing back the
//!   extras would use up their receives (a long backlog in one group would be dead-lettered without
//!   ever being processed). A FIFO receive therefore asks for one message at a time, repeatedly:
//!   once a message of a group is in flight, SQS returns no other message of that group, so each
//!   call yields the head of another group. Should a call still return a second message of a group
//!   already taken, it is made visible again at once (ChangeMessageVisibility 0) and not returned.
//! - **Stale receipts.** SQS documents that deleting with an older receipt handle "may or may not"
//!   delete the message (moto deletes it). The embedded queue ignores a stale receipt. Handlers are
//!   idempotent per message, and a consumer that deletes with a stale receipt has itself completed
//!   the work, so nothing is lost either way. A receipt SQS calls invalid (the message is gone or
//!   was dead-lettered) is, as in the embedded queue, no error for `delete`.
//! - **Changing the visibility** of a message that is not in flight is a conflict when SQS says
//!   `MessageNotInflight` or calls the receipt invalid, as in the embedded queue; moto accepts it.
//! - **Standard queues** have no message groups and no deduplication in SQS: the group travels as the
//!   attribute [`GROUP_ATTRIBUTE`] (so it round-trips) and a deduplication id is ignored (each send
//!   gets a fresh id). Every queue of the chain is FIFO.
//! - **Deduplication window.** The same deduplication id sent again after SQS's five minutes is a
//!   new message, but with the same id (UUID v5) as the first.
//! - **Receive is short polling** and may return fewer messages than are visible (SQS samples its
//!   servers); callers poll again. Dead-letter reads long-poll for a second
//!   ([`DLQ_READ_WAIT_SECS`]) before concluding the queue holds no more, and read at most
//!   [`DEAD_LETTER_SCAN_LIMIT`] messages per dead-letter queue. In a FIFO dead-letter queue, SQS
//!   returns only the messages of each group that come in the first batch that reaches the group,
//!   so a view may miss the later dead letters of a group until the earlier ones are redriven.
//! - **Two readers of one dead-letter queue** hide messages from each other for the few seconds a
//!   read takes.
//! - **Redrive is not atomic:** a crash between the send to the source queue and the delete from the
//!   dead-letter queue delivers the message twice (it is still a dead letter as well), which the
//!   handlers tolerate because they are idempotent per message.
//! - **Timestamps and counts.** `sent_at` is the first send (redrive carries it in
//!   [`SENT_AT_ATTRIBUTE`]); a dead letter's `receive_count` is the spec's `max_receive_count` (SQS
//!   moves a message after exactly that many receives), or the note's count of recorded failures
//!   when that is higher; `dead_at` is the note's time of the last failure, else the first receive.
//!   Visibility timeouts are whole seconds (rounded up), at most 12 hours.
//!
//! Errors name the queue and the operation, never a message body.
//!
//! # Code
//!
//! `naming` knows the SQS queues behind each spec and their URLs; `attributes` what travels with a
//! message (ids, `not_before`, receipts); `sending` how a message is checked and prepared for
//! SendMessage or SendMessageBatch (ten a call); `receiving` the ReceiveMessage and visibility calls;
//! `notes` the failure notes in DynamoDB; `dead_letters` the dead-letter view and redrive. Sending,
//! receiving, deleting, visibility and depth are written out in the [`Queue`] implementation here.

mod attributes;
mod dead_letters;
mod naming;
mod notes;
mod receiving;
mod sending;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::QueueAttributeName;
use entra_rotator::adapters::system_clock::SystemClock;
use entra_rotator::ports::{
    Clock, DeadLetter, MessageId, OutgoingMessage, Queue, QueueDepth, QueueName, QueueSpec, ReceiptHandle,
    ReceivedMessage,
};
use entra_rotator::{Error, Result};

use self::attributes::split_receipt;
pub use self::attributes::{
    GROUP_ATTRIBUTE, ID_ATTRIBUTE, NOT_BEFORE_ATTRIBUTE, SENT_AT_ATTRIBUTE, message_id, not_before, receipt_for,
};
pub use self::dead_letters::{DEAD_LETTER_SCAN_LIMIT, DLQ_READ_VISIBILITY_SECS, DLQ_READ_WAIT_SECS};
use self::receiving::{MAX_VISIBILITY_SECS, hide_for, visibility_secs};
use self::sending::Prepared;
use crate::error;

/// The longest native delay SQS allows (standard queues).
pub const MAX_STANDARD_DELAY: Duration = Duration::from_secs(15 * 60);
/// The longest delay of a FIFO message: it is hidden with a visibility timeout, at most 12 hours.
pub const MAX_FIFO_DELAY: Duration = Duration::from_secs(MAX_VISIBILITY_SECS as u64);
/// A FIFO receive makes at most this many calls beyond the batch size (early messages it hides).
const EXTRA_FIFO_CALLS: usize = 10;

/// The [`Queue`] port on SQS. Cheap to clone: clones share the URL cache.
#[derive(Clone)]
pub struct SqsQueue {
    sqs: aws_sdk_sqs::Client,
    dynamo: aws_sdk_dynamodb::Client,
    notes_table: String,
    prefix: String,
    specs: Arc<HashMap<QueueName, QueueSpec>>,
    /// SQS queue name → queue URL, filled on first use.
    urls: Arc<Mutex<HashMap<String, String>>>,
}

impl SqsQueue {
    /// The queues of `specs` under `prefix`, with failure notes in `notes_table` (key schema `pk`
    /// S HASH, `sk` S RANGE; TTL attribute `expires_at`). Makes no AWS call.
    pub fn new(
        sqs: aws_sdk_sqs::Client,
        dynamo: aws_sdk_dynamodb::Client,
        notes_table: impl Into<String>,
        prefix: impl Into<String>,
        specs: Vec<QueueSpec>,
    ) -> Self {
        Self {
            sqs,
            dynamo,
            notes_table: notes_table.into(),
            prefix: prefix.into(),
            specs: Arc::new(specs.into_iter().map(|s| (s.name.clone(), s)).collect()),
            urls: Arc::default(),
        }
    }

    fn spec(&self, queue: &QueueName) -> Result<&QueueSpec> {
        self.specs.get(queue).ok_or_else(|| Error::not_found("queue", queue))
    }

    /// One SendMessage of a prepared message.
    async fn send_prepared(&self, queue: &QueueName, url: &str, m: &Prepared) -> Result<()> {
        self.sqs
            .send_message()
            .queue_url(url)
            .message_body(m.body.clone())
            .set_message_attributes(Some(m.attributes.clone()))
            .set_message_group_id(m.group.clone())
            .set_message_deduplication_id(m.dedup.clone())
            .set_delay_seconds(m.delay_seconds)
            .send()
            .await
            .map_err(|e| error::queue(format!("send to {queue}"), e))?;
        Ok(())
    }

    async fn queue_attributes(
        &self,
        url: &str,
        what: &str,
        names: &[QueueAttributeName],
    ) -> Result<HashMap<QueueAttributeName, String>> {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .set_attribute_names(Some(names.to_vec()))
            .send()
            .await
            .map_err(|e| error::queue(format!("depth of {what}"), e))?;
        Ok(out.attributes().cloned().unwrap_or_default())
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, queue: &QueueName, message: OutgoingMessage) -> Result<MessageId> {
        let spec = self.spec(queue)?;
        let prepared = Prepared::new(queue, spec, message)?;
        let url = self.url(spec, false).await?;
        self.send_prepared(queue, &url, &prepared).await?;
        Ok(prepared.message_id())
    }

    /// SendMessageBatch, ten at a time (fewer when the bodies are large), in order. Every message
    /// is checked before any is sent. Entries SQS failed without blaming the sender (its own
    /// trouble, throttling) are sent again one by one; an entry it refuses as the sender's fault
    /// fails the call, after the entries before it were sent, as one-by-one sends would.
    async fn send_batch(&self, queue: &QueueName, messages: Vec<OutgoingMessage>) -> Result<Vec<MessageId>> {
        let spec = self.spec(queue)?;
        let prepared = messages.into_iter().map(|m| Prepared::new(queue, spec, m)).collect::<Result<Vec<_>>>()?;
        if prepared.is_empty() {
            return Ok(Vec::new());
        }
        let url = self.url(spec, false).await?;
        let context = || format!("send a batch to {queue}");
        for range in sending::batches(&prepared) {
            let chunk = &prepared[range];
            if let [one] = chunk {
                self.send_prepared(queue, &url, one).await?;
                continue;
            }
            let entries = chunk.iter().enumerate().map(|(i, m)| m.entry(i, queue)).collect::<Result<Vec<_>>>()?;
            let out = self
                .sqs
                .send_message_batch()
                .queue_url(&url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| error::queue(context(), e))?;
            let mut failed: Vec<_> = out.failed().iter().collect();
            failed.sort_by_key(|f| f.id().trim_start_matches('m').parse::<usize>().unwrap_or(usize::MAX));
            if let Some(refused) = failed.iter().find(|f| f.sender_fault()) {
                return Err(Error::Queue {
                    context: context(),
                    transient: false,
                    source: format!("SQS refused a message: {}", refused.code()).into(),
                });
            }
            if !failed.is_empty() {
                tokio::time::sleep(sending::RESEND_PAUSE).await;
            }
            for f in failed {
                let index = f.id().trim_start_matches('m').parse::<usize>().ok();
                let Some(m) = index.and_then(|i| chunk.get(i)) else {
                    return Err(Error::Queue {
                        context: context(),
                        transient: true,
                        source: format!("SQS failed an entry it was not sent: {}", f.id()).into(),
                    });
                };
                self.send_prepared(queue, &url, m).await?;
            }
        }
        Ok(prepared.iter().map(Prepared::message_id).collect())
    }

    async fn receive(
        &self,
        queue: &QueueName,
        max: usize,
        visibility: Option<Duration>,
    ) -> Result<Vec<ReceivedMessage>> {
        let spec = self.spec(queue)?;
        let url = self.url(spec, false).await?;
        let max = max.clamp(1, 10);
        let visibility = visibility.map(visibility_secs);
        let mut out = Vec::new();
        let mut groups = HashSet::new();
        let mut calls = 0;
        loop {
            calls += 1;
            // FIFO: one at a time, so that SQS's group lock (not a batch) decides what comes next and
            // no message is counted as received without being handed out.
            let want = if spec.fifo { 1 } else { max };
            let batch = self.receive_raw(&url, queue, want, visibility, 0).await?;
            if batch.is_empty() {
                break;
            }
            let now = SystemClock.now();
            let mut progress = false;
            let mut hide: Vec<(String, i32)> = Vec::new();
            for got in batch {
                if let Some(not_before) = got.not_before.filter(|t| *t > now) {
                    hide.push((got.sqs_receipt, hide_for(not_before, now)));
                    progress = true;
                    continue;
                }
                if spec.fifo
                    && let Some(group) = &got.group
                    && !groups.insert(group.clone())
                {
                    // A second message of a group already taken: back at once, not handed out.
                    hide.push((got.sqs_receipt, 0));
                    continue;
                }
                progress = true;
                out.push(ReceivedMessage {
                    receipt: receipt_for(&got.id, &got.sqs_receipt),
                    id: MessageId(got.id),
                    body: got.body,
                    receive_count: got.receive_count,
                    group: got.group,
                    sent_at: got.sent_at,
                });
            }
            if !hide.is_empty() {
                let receipts: Vec<(&str, i32)> = hide.iter().map(|(r, s)| (r.as_str(), *s)).collect();
                self.set_visibility(&url, queue, &receipts).await;
            }
            if !spec.fifo || !progress || out.len() >= max || calls >= max + EXTRA_FIFO_CALLS {
                break;
            }
        }
        Ok(out)
    }

    async fn delete(&self, queue: &QueueName, receipt: &ReceiptHandle) -> Result<()> {
        let spec = self.spec(queue)?;
        let url = self.url(spec, false).await?;
        let (_, sqs_receipt) = split_receipt(receipt);
        match self.sqs.delete_message().queue_url(url).receipt_handle(sqs_receipt).send().await {
            Ok(_) => Ok(()),
            // The message is gone or was dead-lettered: nothing to delete, as in the embedded queue.
            Err(e) if has_code(&e, &["ReceiptHandleIsInvalid", "InvalidIdFormat"]) => {
                tracing::debug!(queue = %queue, "delete with a receipt SQS no longer knows");
                Ok(())
            }
            Err(e) => Err(error::queue(format!("delete from {queue}"), e)),
        }
    }

    async fn change_visibility(&self, queue: &QueueName, receipt: &ReceiptHandle, timeout: Duration) -> Result<()> {
        let spec = self.spec(queue)?;
        let url = self.url(spec, false).await?;
        let (id, sqs_receipt) = split_receipt(receipt);
        let result = self
            .sqs
            .change_message_visibility()
            .queue_url(url)
            .receipt_handle(sqs_receipt)
            .visibility_timeout(visibility_secs(timeout))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if has_code(&e, &["MessageNotInflight", "ReceiptHandleIsInvalid"]) => {
                Err(Error::conflict("message", id.unwrap_or("?"), "not in flight"))
            }
            Err(e) => Err(error::queue(format!("change visibility in {queue}"), e)),
        }
    }

    async fn record_failure(&self, queue: &QueueName, receipt: &ReceiptHandle, error: &str) -> Result<()> {
        self.record_failure_note(queue, receipt, error).await
    }

    async fn dead_letters(&self, queue: &QueueName, limit: usize) -> Result<Vec<DeadLetter>> {
        self.read_dead_letters(queue, limit).await
    }

    async fn dead_letter(&self, id: &MessageId) -> Result<Option<DeadLetter>> {
        self.find_dead_letter(id).await
    }

    async fn redrive(&self, queue: &QueueName, ids: Option<&[MessageId]>) -> Result<usize> {
        self.redrive_dead_letters(queue, ids).await
    }

    async fn depth(&self, queue: &QueueName) -> Result<QueueDepth> {
        let spec = self.spec(queue)?;
        let url = self.url(spec, false).await?;
        let dlq_url = self.url(spec, true).await?;
        let main = self
            .queue_attributes(
                &url,
                queue.as_str(),
                &[
                    QueueAttributeName::ApproximateNumberOfMessages,
                    QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                    QueueAttributeName::ApproximateNumberOfMessagesDelayed,
                ],
            )
            .await?;
        let dead = self
            .queue_attributes(
                &dlq_url,
                &format!("the dead-letter queue of {queue}"),
                &[
                    QueueAttributeName::ApproximateNumberOfMessages,
                    QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                ],
            )
            .await?;
        let n = |attrs: &HashMap<QueueAttributeName, String>, name: QueueAttributeName| {
            attrs.get(&name).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        };
        Ok(QueueDepth {
            visible: n(&main, QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: n(&main, QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            delayed: n(&main, QueueAttributeName::ApproximateNumberOfMessagesDelayed),
            dead: n(&dead, QueueAttributeName::ApproximateNumberOfMessages)
                + n(&dead, QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        })
    }
}

/// Whether SQS answered one of these error codes (with or without the `AWS.SimpleQueueService.`
/// prefix of the query protocol).
fn has_code<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>, codes: &[&str]) -> bool {
    match e {
        SdkError::ServiceError(s) => {
            s.err().code().is_some_and(|c| codes.iter().any(|want| c == *want || c.ends_with(&format!(".{want}"))))
        }
        _ => false,
    }
}

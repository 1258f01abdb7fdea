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

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, Message, MessageAttributeValue, MessageSystemAttributeName,
    QueueAttributeName,
};
use entra_rotator::adapters::system_clock::SystemClock;
use entra_rotator::ports::{
    Clock, DeadLetter, MessageId, OutgoingMessage, Queue, QueueDepth, QueueName, QueueSpec, ReceiptHandle,
    ReceivedMessage,
};
use entra_rotator::{Error, Result};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error;

/// The message attribute (String) carrying our own message id.
pub const ID_ATTRIBUTE: &str = "rotator-id";
/// The message attribute (Number, unix milliseconds) before which a FIFO message must not be
/// processed: SQS FIFO queues have no per-message delay.
pub const NOT_BEFORE_ATTRIBUTE: &str = "rotator-not-before";
/// The message attribute (String) carrying the message group on a standard queue, which has none.
pub const GROUP_ATTRIBUTE: &str = "rotator-group";
/// The message attribute (Number, unix milliseconds) carrying the first send time of a redriven
/// message, since SQS stamps the copy anew.
pub const SENT_AT_ATTRIBUTE: &str = "rotator-sent-at";

/// The longest native delay SQS allows (standard queues).
pub const MAX_STANDARD_DELAY: Duration = Duration::from_secs(15 * 60);
/// The longest delay of a FIFO message: it is hidden with a visibility timeout, at most 12 hours.
pub const MAX_FIFO_DELAY: Duration = Duration::from_secs(MAX_VISIBILITY_SECS as u64);
/// How long a dead-letter read hides what it saw (it makes it visible again when done).
pub const DLQ_READ_VISIBILITY_SECS: i32 = 20;
/// How long a dead-letter read waits (long polling) before it concludes the queue holds no more.
pub const DLQ_READ_WAIT_SECS: i32 = 1;
/// At most this many messages are read from one dead-letter queue per call.
pub const DEAD_LETTER_SCAN_LIMIT: usize = 1000;

/// The longest visibility timeout SQS allows, in seconds.
const MAX_VISIBILITY_SECS: i64 = 43_200;
/// Retention of a source queue (4 days) and of its dead-letter queue (14 days, longer, as SQS needs).
const QUEUE_RETENTION_SECS: u32 = 4 * 24 * 3600;
const DLQ_RETENTION_SECS: u32 = 14 * 24 * 3600;
/// How long a failure note is kept (the table's TTL attribute).
const NOTE_TTL_SECS: i64 = 14 * 24 * 3600;
/// Longest error text kept in a note, as in the embedded queue.
const MAX_ERROR_LEN: usize = 2000;
/// A FIFO receive makes at most this many calls beyond the batch size (early messages it hides).
const EXTRA_FIFO_CALLS: usize = 10;
/// The namespace of the UUID v5 ids derived from a deduplication id.
const DEDUP_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2b0e_5d4a_4c8e_9a37_0e2f_51c4_d8a1);

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

/// A received SQS message, decoded.
struct Got {
    sqs_id: String,
    sqs_receipt: String,
    id: String,
    body: String,
    group: Option<String>,
    receive_count: u32,
    sent_at: OffsetDateTime,
    first_receive: Option<OffsetDateTime>,
    not_before: Option<OffsetDateTime>,
}

/// What a failure note says.
#[derive(Default)]
struct Note {
    error: Option<String>,
    failures: Option<u32>,
    at: Option<OffsetDateTime>,
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

    /// Creates every queue and its dead-letter queue as the SAM template does (for tests and
    /// emulators): the dead-letter queue first (retention 14 days), then the queue with the spec's
    /// visibility timeout, a redrive policy with the spec's `maxReceiveCount`, FIFO attributes when
    /// FIFO, retention 4 days. Creating a queue that exists with the same attributes is a no-op.
    pub async fn create_queues(&self) -> Result<()> {
        for spec in self.sorted_specs() {
            let dlq_name = self.sqs_name(spec, true);
            let mut dlq = self
                .sqs
                .create_queue()
                .queue_name(&dlq_name)
                .attributes(QueueAttributeName::MessageRetentionPeriod, DLQ_RETENTION_SECS.to_string());
            if spec.fifo {
                dlq = dlq.attributes(QueueAttributeName::FifoQueue, "true");
            }
            let out = dlq.send().await.map_err(|e| error::queue(format!("create queue {dlq_name}"), e))?;
            let dlq_url = self.remember_url(&dlq_name, out.queue_url())?;
            let attrs = self
                .sqs
                .get_queue_attributes()
                .queue_url(&dlq_url)
                .attribute_names(QueueAttributeName::QueueArn)
                .send()
                .await
                .map_err(|e| error::queue(format!("read the ARN of queue {dlq_name}"), e))?;
            let dlq_arn = attrs
                .attributes()
                .and_then(|a| a.get(&QueueAttributeName::QueueArn))
                .ok_or_else(|| missing(&dlq_name, "create queue", "no QueueArn"))?;
            let redrive = serde_json::json!({
                "deadLetterTargetArn": dlq_arn,
                "maxReceiveCount": spec.max_receive_count,
            });
            let name = self.sqs_name(spec, false);
            let mut queue = self
                .sqs
                .create_queue()
                .queue_name(&name)
                .attributes(QueueAttributeName::VisibilityTimeout, visibility_secs(spec.visibility_timeout).to_string())
                .attributes(QueueAttributeName::MessageRetentionPeriod, QUEUE_RETENTION_SECS.to_string())
                .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string());
            if spec.fifo {
                queue = queue
                    .attributes(QueueAttributeName::FifoQueue, "true")
                    .attributes(QueueAttributeName::ContentBasedDeduplication, "false");
            }
            let out = queue.send().await.map_err(|e| error::queue(format!("create queue {name}"), e))?;
            self.remember_url(&name, out.queue_url())?;
        }
        Ok(())
    }

    fn sorted_specs(&self) -> Vec<&QueueSpec> {
        let mut specs: Vec<_> = self.specs.values().collect();
        specs.sort_by(|a, b| a.name.cmp(&b.name));
        specs
    }

    fn spec(&self, queue: &QueueName) -> Result<&QueueSpec> {
        self.specs.get(queue).ok_or_else(|| Error::not_found("queue", queue))
    }

    /// The SQS name of a queue (or of its dead-letter queue).
    fn sqs_name(&self, spec: &QueueSpec, dlq: bool) -> String {
        let dlq = if dlq { "-dlq" } else { "" };
        let fifo = if spec.fifo { ".fifo" } else { "" };
        format!("{}{}{dlq}{fifo}", self.prefix, spec.name)
    }

    fn cached_url(&self, name: &str) -> Option<String> {
        self.urls.lock().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    fn remember_url(&self, name: &str, url: Option<&str>) -> Result<String> {
        let url = url.ok_or_else(|| missing(name, "resolve queue", "no QueueUrl"))?.to_owned();
        self.urls.lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_owned(), url.clone());
        Ok(url)
    }

    /// The URL of a queue (or its dead-letter queue), looked up once.
    async fn url(&self, spec: &QueueSpec, dlq: bool) -> Result<String> {
        let name = self.sqs_name(spec, dlq);
        if let Some(url) = self.cached_url(&name) {
            return Ok(url);
        }
        let out = self
            .sqs
            .get_queue_url()
            .queue_name(&name)
            .send()
            .await
            .map_err(|e| error::queue(format!("resolve queue {name}"), e))?;
        self.remember_url(&name, out.queue_url())
    }

    /// One ReceiveMessage call, with every attribute decoded.
    async fn receive_raw(
        &self,
        url: &str,
        name: &QueueName,
        max: usize,
        visibility: Option<i32>,
        wait: i32,
    ) -> Result<Vec<Got>> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(i32::try_from(max.clamp(1, 10)).unwrap_or(10))
            .set_visibility_timeout(visibility)
            .wait_time_seconds(wait)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| error::queue(format!("receive from {name}"), e))?;
        Ok(out.messages().iter().filter_map(decode).collect())
    }

    /// Sets the visibility of received messages; a failure is logged, not returned: the message
    /// then comes back when the visibility it has runs out, which is always safe.
    async fn set_visibility(&self, url: &str, name: &QueueName, receipts: &[(&str, i32)]) {
        for chunk in receipts.chunks(10) {
            let entries: Vec<_> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, (receipt, secs))| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(*receipt)
                        .visibility_timeout(*secs)
                        .build()
                        .ok()
                })
                .collect();
            match self.sqs.change_message_visibility_batch().queue_url(url).set_entries(Some(entries)).send().await {
                Ok(out) => {
                    for failed in out.failed() {
                        tracing::warn!(queue = %name, code = failed.code(), "could not change a message's visibility");
                    }
                }
                Err(e) => {
                    tracing::warn!(queue = %name, error = %error::describe(&e), "could not change messages' visibility");
                }
            }
        }
    }

    /// Hides a message that arrived before its time until that time (at most 12 hours).
    fn hide_for(not_before: OffsetDateTime, now: OffsetDateTime) -> i32 {
        let remaining = Duration::try_from(not_before - now).unwrap_or_default();
        visibility_secs(remaining).max(1)
    }

    /// Up to `limit` messages of a dead-letter queue, each hidden for a short while; stops early once
    /// `done` says so. The caller makes them visible again or deletes them.
    async fn read_dead(
        &self,
        spec: &QueueSpec,
        url: &str,
        limit: usize,
        done: impl Fn(&[Got]) -> bool,
    ) -> Result<Vec<Got>> {
        let limit = limit.min(DEAD_LETTER_SCAN_LIMIT);
        let mut held: Vec<Got> = Vec::new();
        let mut seen = HashSet::new();
        while held.len() < limit && !done(&held) {
            let batch = self
                .receive_raw(url, &spec.name, limit - held.len(), Some(DLQ_READ_VISIBILITY_SECS), DLQ_READ_WAIT_SECS)
                .await?;
            let before = held.len();
            for got in batch {
                if seen.insert(got.sqs_id.clone()) {
                    held.push(got);
                }
            }
            if held.len() == before {
                break;
            }
        }
        Ok(held)
    }

    /// The failure notes of these message ids.
    async fn notes(&self, ids: &[&str]) -> Result<HashMap<String, Note>> {
        let mut out = HashMap::new();
        let unique: Vec<&str> = {
            let mut seen = HashSet::new();
            ids.iter().copied().filter(|id| seen.insert(*id)).collect()
        };
        for chunk in unique.chunks(100) {
            let keys: Vec<_> = chunk.iter().map(|id| note_key(id)).collect();
            let mut pending = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| Error::invalid("note request", e.to_string()))?,
            );
            let mut tries = 0u32;
            while let Some(request) = pending.take() {
                let got = self
                    .dynamo
                    .batch_get_item()
                    .request_items(&self.notes_table, request)
                    .send()
                    .await
                    .map_err(|e| error::queue("read failure notes", e))?;
                for item in got.responses().and_then(|r| r.get(&self.notes_table)).into_iter().flatten() {
                    if let Some((id, note)) = decode_note(item) {
                        out.insert(id, note);
                    }
                }
                pending = got
                    .unprocessed_keys()
                    .and_then(|u| u.get(&self.notes_table))
                    .filter(|k| !k.keys().is_empty())
                    .cloned();
                if pending.is_some() {
                    tries += 1;
                    if tries > 5 {
                        return Err(Error::Queue {
                            context: "read failure notes".into(),
                            transient: true,
                            source: "DynamoDB left keys unprocessed".into(),
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(50 << tries)).await;
                }
            }
        }
        Ok(out)
    }

    async fn delete_note(&self, id: &str, queue: &QueueName) {
        let key = note_key(id);
        let result = self.dynamo.delete_item().table_name(&self.notes_table).set_key(Some(key)).send().await;
        if let Err(e) = result {
            // The note only feeds the dead-letter view, and it expires.
            tracing::warn!(queue = %queue, error = %error::describe(&e), "could not delete a failure note");
        }
    }

    /// Dead letters with their notes, oldest first.
    async fn to_dead_letters(&self, spec: &QueueSpec, held: &[Got]) -> Result<Vec<DeadLetter>> {
        let ids: Vec<&str> = held.iter().map(|g| g.id.as_str()).collect();
        let notes = self.notes(&ids).await?;
        let mut out: Vec<DeadLetter> = held
            .iter()
            .map(|g| {
                let note = notes.get(&g.id);
                DeadLetter {
                    id: MessageId(g.id.clone()),
                    source_queue: spec.name.clone(),
                    body: g.body.clone(),
                    receive_count: note.and_then(|n| n.failures).unwrap_or(0).max(spec.max_receive_count),
                    group: g.group.clone(),
                    last_error: note.and_then(|n| n.error.clone()),
                    sent_at: g.sent_at,
                    dead_at: note.and_then(|n| n.at).or(g.first_receive).unwrap_or(g.sent_at),
                }
            })
            .collect();
        out.sort_by_key(|d| (d.dead_at, d.sent_at));
        Ok(out)
    }

    async fn release_all(&self, url: &str, name: &QueueName, held: &[Got]) {
        let receipts: Vec<(&str, i32)> = held.iter().map(|g| (g.sqs_receipt.as_str(), 0)).collect();
        self.set_visibility(url, name, &receipts).await;
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
        let id = match dedup {
            Some(d) => Uuid::new_v5(&DEDUP_NAMESPACE, format!("{queue}\n{d}").as_bytes()),
            None => Uuid::new_v4(),
        }
        .to_string();
        let url = self.url(spec, false).await?;
        let context = || format!("send to {queue}");
        let mut request = self
            .sqs
            .send_message()
            .queue_url(url)
            .message_body(message.body)
            .message_attributes(ID_ATTRIBUTE, string_attribute(&id).map_err(|e| build_error(context(), e))?);
        if spec.fifo {
            let sqs_dedup = match dedup {
                Some(d) if is_sqs_token(d) => d.to_owned(),
                _ => id.clone(),
            };
            request = request.set_message_group_id(message.group).message_deduplication_id(sqs_dedup);
            if !message.delay.is_zero() {
                let at = SystemClock.now() + message.delay;
                request = request.message_attributes(
                    NOT_BEFORE_ATTRIBUTE,
                    number_attribute(unix_millis(at)).map_err(|e| build_error(context(), e))?,
                );
            }
        } else {
            if let Some(group) = &message.group {
                request = request.message_attributes(
                    GROUP_ATTRIBUTE,
                    string_attribute(group).map_err(|e| build_error(context(), e))?,
                );
            }
            if !message.delay.is_zero() {
                request = request.delay_seconds(i32::try_from(ceil_secs(message.delay)).unwrap_or(900));
            }
        }
        request.send().await.map_err(|e| error::queue(context(), e))?;
        Ok(MessageId(id))
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
                    hide.push((got.sqs_receipt, Self::hide_for(not_before, now)));
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
        self.spec(queue)?;
        let (Some(id), _) = split_receipt(receipt) else {
            return Err(Error::invalid("receipt", "it names no message id (make it with receipt_for)"));
        };
        let now = SystemClock.now();
        let error: String = error.chars().take(MAX_ERROR_LEN).collect();
        self.dynamo
            .update_item()
            .table_name(&self.notes_table)
            .set_key(Some(note_key(id)))
            .update_expression("SET #error = :error, #queue = :queue, #at = :at, #expires = :expires ADD #count :one")
            .expression_attribute_names("#error", "error")
            .expression_attribute_names("#queue", "queue")
            .expression_attribute_names("#at", "at")
            .expression_attribute_names("#expires", "expires_at")
            .expression_attribute_names("#count", "receive_count")
            .expression_attribute_values(":error", AttributeValue::S(error))
            .expression_attribute_values(":queue", AttributeValue::S(queue.to_string()))
            .expression_attribute_values(":at", AttributeValue::N(unix_millis(now).to_string()))
            .expression_attribute_values(
                ":expires",
                AttributeValue::N((now.unix_timestamp() + NOTE_TTL_SECS).to_string()),
            )
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .send()
            .await
            .map_err(|e| error::queue(format!("record failure in {queue}"), e))?;
        Ok(())
    }

    async fn dead_letters(&self, queue: &QueueName, limit: usize) -> Result<Vec<DeadLetter>> {
        let spec = self.spec(queue)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let url = self.url(spec, true).await?;
        let held = self.read_dead(spec, &url, limit, |_| false).await?;
        self.release_all(&url, queue, &held).await;
        let mut out = self.to_dead_letters(spec, &held).await?;
        out.truncate(limit);
        Ok(out)
    }

    async fn dead_letter(&self, id: &MessageId) -> Result<Option<DeadLetter>> {
        for spec in self.sorted_specs() {
            let url = self.url(spec, true).await?;
            let held =
                self.read_dead(spec, &url, DEAD_LETTER_SCAN_LIMIT, |held| held.iter().any(|g| g.id == id.0)).await?;
            self.release_all(&url, &spec.name, &held).await;
            if let Some(found) = held.into_iter().find(|g| g.id == id.0) {
                return Ok(self.to_dead_letters(spec, std::slice::from_ref(&found)).await?.pop());
            }
        }
        Ok(None)
    }

    async fn redrive(&self, queue: &QueueName, ids: Option<&[MessageId]>) -> Result<usize> {
        let spec = self.spec(queue)?;
        let dlq_url = self.url(spec, true).await?;
        let url = self.url(spec, false).await?;
        let wanted: Option<HashSet<&str>> = ids.map(|ids| ids.iter().map(|i| i.0.as_str()).collect());
        let mut skipped: Vec<Got> = Vec::new();
        let mut seen = HashSet::new();
        let mut moved = 0;
        let mut result = Ok(());
        'read: while seen.len() < DEAD_LETTER_SCAN_LIMIT {
            if wanted.as_ref().is_some_and(|w| w.is_empty()) {
                break;
            }
            let batch =
                match self.receive_raw(&dlq_url, queue, 10, Some(DLQ_READ_VISIBILITY_SECS), DLQ_READ_WAIT_SECS).await {
                    Ok(b) => b,
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                };
            let mut fresh = false;
            let mut batch = batch.into_iter();
            while let Some(got) = batch.next() {
                if !seen.insert(got.sqs_id.clone()) {
                    continue;
                }
                fresh = true;
                let chosen = match &wanted {
                    None => true,
                    Some(w) => w.contains(got.id.as_str()),
                };
                if !chosen {
                    skipped.push(got);
                    continue;
                }
                if let Err(e) = self.move_back(spec, &url, &dlq_url, &got).await {
                    // Stop at the first failure; what is still held goes back at once.
                    skipped.push(got);
                    skipped.extend(batch);
                    result = Err(e);
                    break 'read;
                }
                moved += 1;
            }
            if !fresh {
                break;
            }
            if let Some(w) = &wanted
                && w.len() <= moved
            {
                break;
            }
        }
        self.release_all(&dlq_url, queue, &skipped).await;
        result.map(|()| moved)
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

impl SqsQueue {
    /// Sends a dead letter back to its source queue, then deletes it from the dead-letter queue and
    /// forgets its failure note. A crash between the send and the delete delivers it twice.
    async fn move_back(&self, spec: &QueueSpec, url: &str, dlq_url: &str, got: &Got) -> Result<()> {
        let queue = &spec.name;
        let context = || format!("redrive {queue}");
        let mut request = self
            .sqs
            .send_message()
            .queue_url(url)
            .message_body(&got.body)
            .message_attributes(ID_ATTRIBUTE, string_attribute(&got.id).map_err(|e| build_error(context(), e))?)
            .message_attributes(
                SENT_AT_ATTRIBUTE,
                number_attribute(unix_millis(got.sent_at)).map_err(|e| build_error(context(), e))?,
            );
        if spec.fifo {
            // A fresh deduplication id: the original's may still be inside SQS's five minutes.
            request =
                request.set_message_group_id(got.group.clone()).message_deduplication_id(Uuid::new_v4().to_string());
        } else if let Some(group) = &got.group {
            request = request
                .message_attributes(GROUP_ATTRIBUTE, string_attribute(group).map_err(|e| build_error(context(), e))?);
        }
        request.send().await.map_err(|e| error::queue(context(), e))?;
        self.sqs
            .delete_message()
            .queue_url(dlq_url)
            .receipt_handle(&got.sqs_receipt)
            .send()
            .await
            .map_err(|e| error::queue(format!("delete a redriven message from the dead-letter queue of {queue}"), e))?;
        self.delete_note(&got.id, queue).await;
        Ok(())
    }
}

/// The receipt handle this adapter hands out for a message: our id and SQS's receipt handle. The
/// Lambda glue builds it from an event record (`rotator-id` attribute, or the SQS message id when
/// absent, and the record's receipt handle).
pub fn receipt_for(id: &str, sqs_receipt: &str) -> ReceiptHandle {
    ReceiptHandle(format!("{id} {sqs_receipt}"))
}

/// Our id of a message, from its message attributes' string values; the SQS message id when the
/// message carries none.
pub fn message_id(attributes: &HashMap<String, String>, sqs_message_id: &str) -> MessageId {
    MessageId(attributes.get(ID_ATTRIBUTE).cloned().unwrap_or_else(|| sqs_message_id.to_owned()))
}

/// When a message may be processed, from its message attributes' string values: `None` when at
/// once. A message received before this time must be hidden until then (ChangeMessageVisibility,
/// whole seconds rounded up) and not processed; in a Lambda batch it must be reported as a batch
/// item failure, or Lambda deletes it.
pub fn not_before(attributes: &HashMap<String, String>) -> Option<OffsetDateTime> {
    attributes.get(NOT_BEFORE_ATTRIBUTE).and_then(|v| v.trim().parse::<i64>().ok()).and_then(from_millis)
}

/// Our id (if any) and SQS's receipt handle. A bare SQS receipt handle is accepted too (SQS's
/// handles contain no spaces).
fn split_receipt(receipt: &ReceiptHandle) -> (Option<&str>, &str) {
    match receipt.0.split_once(' ') {
        Some((id, sqs)) if !id.is_empty() => (Some(id), sqs),
        _ => (None, receipt.0.as_str()),
    }
}

fn decode(m: &Message) -> Option<Got> {
    let sqs_id = m.message_id()?.to_owned();
    let sqs_receipt = m.receipt_handle()?.to_owned();
    let strings: HashMap<String, String> = m
        .message_attributes()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.string_value().map(|s| (k.clone(), s.to_owned())))
        .collect();
    let system = |name: MessageSystemAttributeName| m.attributes().and_then(|a| a.get(&name));
    let millis =
        |name: MessageSystemAttributeName| system(name).and_then(|v| v.parse::<i64>().ok()).and_then(from_millis);
    let sent_at = strings
        .get(SENT_AT_ATTRIBUTE)
        .and_then(|v| v.parse::<i64>().ok())
        .and_then(from_millis)
        .or_else(|| millis(MessageSystemAttributeName::SentTimestamp))
        .unwrap_or_else(|| SystemClock.now());
    let group =
        system(MessageSystemAttributeName::MessageGroupId).cloned().or_else(|| strings.get(GROUP_ATTRIBUTE).cloned());
    Some(Got {
        id: message_id(&strings, &sqs_id).0,
        not_before: not_before(&strings),
        receive_count: system(MessageSystemAttributeName::ApproximateReceiveCount)
            .and_then(|v| v.parse().ok())
            .unwrap_or(1),
        first_receive: millis(MessageSystemAttributeName::ApproximateFirstReceiveTimestamp),
        sent_at,
        group,
        body: m.body().unwrap_or_default().to_owned(),
        sqs_id,
        sqs_receipt,
    })
}

fn note_key(id: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(format!("QNOTE#{id}"))),
        ("sk".to_owned(), AttributeValue::S("NOTE".to_owned())),
    ])
}

fn decode_note(item: &HashMap<String, AttributeValue>) -> Option<(String, Note)> {
    let id = item.get("pk")?.as_s().ok()?.strip_prefix("QNOTE#")?.to_owned();
    let number = |name: &str| item.get(name).and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<i64>().ok());
    Some((
        id,
        Note {
            error: item.get("error").and_then(|v| v.as_s().ok()).cloned(),
            failures: number("receive_count").and_then(|n| u32::try_from(n).ok()),
            at: number("at").and_then(from_millis),
        },
    ))
}

fn string_attribute(value: &str) -> std::result::Result<MessageAttributeValue, aws_sdk_sqs::error::BuildError> {
    MessageAttributeValue::builder().data_type("String").string_value(value).build()
}

fn number_attribute(value: i64) -> std::result::Result<MessageAttributeValue, aws_sdk_sqs::error::BuildError> {
    MessageAttributeValue::builder().data_type("Number").string_value(value.to_string()).build()
}

fn build_error(context: String, e: aws_sdk_sqs::error::BuildError) -> Error {
    Error::Queue { context, transient: false, source: e.to_string().into() }
}

fn missing(queue: &str, operation: &str, what: &str) -> Error {
    Error::Queue { context: format!("{operation} {queue}"), transient: false, source: what.to_owned().into() }
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

/// A deduplication id or message group SQS accepts: 1 to 128 printable ASCII characters.
fn is_sqs_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| (33..=126).contains(&b))
}

/// Whole seconds, rounded up.
fn ceil_secs(d: Duration) -> i64 {
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    if d.subsec_nanos() > 0 { secs.saturating_add(1) } else { secs }
}

/// A visibility timeout SQS accepts: whole seconds, rounded up, at most 12 hours.
fn visibility_secs(d: Duration) -> i32 {
    i32::try_from(ceil_secs(d).min(MAX_VISIBILITY_SECS)).unwrap_or(i32::MAX)
}

fn unix_millis(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn from_millis(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

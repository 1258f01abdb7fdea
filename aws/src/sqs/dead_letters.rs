//! The dead-letter view and redrive: SQS cannot list a queue, so dead letters are received (hidden
//! for a moment) and made visible again, or sent back to their source queue and then deleted.

use std::collections::HashSet;

use entra_rotator::Result;
use entra_rotator::ports::{DeadLetter, MessageId, QueueName, QueueSpec};
use uuid::Uuid;

use super::SqsQueue;
use super::attributes::{
    GROUP_ATTRIBUTE, Got, ID_ATTRIBUTE, SENT_AT_ATTRIBUTE, build_error, number_attribute, string_attribute, unix_millis,
};
use crate::error;

/// How long a dead-letter read hides what it saw (it makes it visible again when done).
pub const DLQ_READ_VISIBILITY_SECS: i32 = 20;
/// How long a dead-letter read waits (long polling) before it concludes the queue holds no more.
pub const DLQ_READ_WAIT_SECS: i32 = 1;
/// At most this many messages are read from one dead-letter queue per call.
pub const DEAD_LETTER_SCAN_LIMIT: usize = 1000;

impl SqsQueue {
    /// [`Queue::dead_letters`](entra_rotator::ports::Queue::dead_letters): the oldest `limit`
    /// dead letters of `queue`, seen and made visible again.
    pub(super) async fn read_dead_letters(&self, queue: &QueueName, limit: usize) -> Result<Vec<DeadLetter>> {
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

    /// [`Queue::dead_letter`](entra_rotator::ports::Queue::dead_letter): one dead letter by our id,
    /// looked for in every dead-letter queue.
    pub(super) async fn find_dead_letter(&self, id: &MessageId) -> Result<Option<DeadLetter>> {
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

    /// [`Queue::redrive`](entra_rotator::ports::Queue::redrive): the dead letters of `queue` (all,
    /// or those of `ids`) moved back to it one by one, stopping at the first that fails.
    pub(super) async fn redrive_dead_letters(&self, queue: &QueueName, ids: Option<&[MessageId]>) -> Result<usize> {
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

//! Failure notes: SQS cannot keep text on a message, so the last error of a failed message, and how
//! often it failed, are kept as an item in the DynamoDB table for the dead-letter view.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use entra_rotator::adapters::system_clock::SystemClock;
use entra_rotator::ports::{Clock, QueueName, ReceiptHandle};
use entra_rotator::{Error, Result};
use time::OffsetDateTime;

use super::SqsQueue;
use super::attributes::{from_millis, split_receipt, unix_millis};
use crate::error;

/// How long a failure note is kept (the table's TTL attribute).
const NOTE_TTL_SECS: i64 = 14 * 24 * 3600;
/// Longest error text kept in a note, as in the embedded queue.
const MAX_ERROR_LEN: usize = 2000;

/// What a failure note says.
#[derive(Default)]
pub(super) struct Note {
    pub(super) error: Option<String>,
    pub(super) failures: Option<u32>,
    pub(super) at: Option<OffsetDateTime>,
}

impl SqsQueue {
    /// [`Queue::record_failure`](entra_rotator::ports::Queue::record_failure): the error kept in
    /// the message's note, and its count of failures raised by one.
    pub(super) async fn record_failure_note(
        &self,
        queue: &QueueName,
        receipt: &ReceiptHandle,
        error: &str,
    ) -> Result<()> {
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

    /// The failure notes of these message ids.
    pub(super) async fn notes(&self, ids: &[&str]) -> Result<HashMap<String, Note>> {
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

    pub(super) async fn delete_note(&self, id: &str, queue: &QueueName) {
        let key = note_key(id);
        let result = self.dynamo.delete_item().table_name(&self.notes_table).set_key(Some(key)).send().await;
        if let Err(e) = result {
            // The note only feeds the dead-letter view, and it expires.
            tracing::warn!(queue = %queue, error = %error::describe(&e), "could not delete a failure note");
        }
    }
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

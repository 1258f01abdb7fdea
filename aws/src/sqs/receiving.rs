//! The SQS calls that receive messages and change their visibility, shared by the port's receive
//! and the dead-letter view, and SQS's limit on visibility timeouts.

use std::time::Duration;

use aws_sdk_sqs::types::{ChangeMessageVisibilityBatchRequestEntry, MessageSystemAttributeName};
use entra_rotator::Result;
use entra_rotator::ports::QueueName;
use time::OffsetDateTime;

use super::SqsQueue;
use super::attributes::{Got, decode};
use crate::error;

/// The longest visibility timeout SQS allows, in seconds.
pub(super) const MAX_VISIBILITY_SECS: i64 = 43_200;

impl SqsQueue {
    /// One ReceiveMessage call, with every attribute decoded.
    pub(super) async fn receive_raw(
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
    pub(super) async fn set_visibility(&self, url: &str, name: &QueueName, receipts: &[(&str, i32)]) {
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
}

/// Hides a message that arrived before its time until that time (at most 12 hours).
pub(super) fn hide_for(not_before: OffsetDateTime, now: OffsetDateTime) -> i32 {
    let remaining = Duration::try_from(not_before - now).unwrap_or_default();
    visibility_secs(remaining).max(1)
}

/// Whole seconds, rounded up.
pub(super) fn ceil_secs(d: Duration) -> i64 {
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    if d.subsec_nanos() > 0 { secs.saturating_add(1) } else { secs }
}

/// A visibility timeout SQS accepts: whole seconds, rounded up, at most 12 hours.
pub(super) fn visibility_secs(d: Duration) -> i32 {
    i32::try_from(ceil_secs(d).min(MAX_VISIBILITY_SECS)).unwrap_or(i32::MAX)
}

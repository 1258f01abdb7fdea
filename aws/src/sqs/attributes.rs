//! What travels with a message besides its body, as message attributes: our id (a UUID, v5 of the
//! deduplication id when there is one), the FIFO `not_before`, the group on standard queues and the
//! first send time; and the receipts, which carry our id.

use std::collections::HashMap;

use aws_sdk_sqs::types::{Message, MessageAttributeValue, MessageSystemAttributeName};
use entra_rotator::Error;
use entra_rotator::adapters::system_clock::SystemClock;
use entra_rotator::ports::{Clock, MessageId, QueueName, ReceiptHandle};
use time::OffsetDateTime;
use uuid::Uuid;

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

/// The namespace of the UUID v5 ids derived from a deduplication id.
const DEDUP_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2b0e_5d4a_4c8e_9a37_0e2f_51c4_d8a1);

/// Our id for a new message: a UUID v5 of queue name and deduplication id when the send has one,
/// so that a deduplicated second send answers the same id as the first; else a fresh UUID.
pub(super) fn new_message_id(queue: &QueueName, dedup: Option<&str>) -> String {
    match dedup {
        Some(d) => Uuid::new_v5(&DEDUP_NAMESPACE, format!("{queue}\n{d}").as_bytes()),
        None => Uuid::new_v4(),
    }
    .to_string()
}

/// A received SQS message, decoded.
pub(super) struct Got {
    pub(super) sqs_id: String,
    pub(super) sqs_receipt: String,
    pub(super) id: String,
    pub(super) body: String,
    pub(super) group: Option<String>,
    pub(super) receive_count: u32,
    pub(super) sent_at: OffsetDateTime,
    pub(super) first_receive: Option<OffsetDateTime>,
    pub(super) not_before: Option<OffsetDateTime>,
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
pub(super) fn split_receipt(receipt: &ReceiptHandle) -> (Option<&str>, &str) {
    match receipt.0.split_once(' ') {
        Some((id, sqs)) if !id.is_empty() => (Some(id), sqs),
        _ => (None, receipt.0.as_str()),
    }
}

pub(super) fn decode(m: &Message) -> Option<Got> {
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

pub(super) fn string_attribute(
    value: &str,
) -> std::result::Result<MessageAttributeValue, aws_sdk_sqs::error::BuildError> {
    MessageAttributeValue::builder().data_type("String").string_value(value).build()
}

pub(super) fn number_attribute(
    value: i64,
) -> std::result::Result<MessageAttributeValue, aws_sdk_sqs::error::BuildError> {
    MessageAttributeValue::builder().data_type("Number").string_value(value.to_string()).build()
}

pub(super) fn build_error(context: String, e: aws_sdk_sqs::error::BuildError) -> Error {
    Error::Queue { context, transient: false, source: e.to_string().into() }
}

/// A deduplication id or message group SQS accepts: 1 to 128 printable ASCII characters.
pub(super) fn is_sqs_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| (33..=126).contains(&b))
}

pub(super) fn unix_millis(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

pub(super) fn from_millis(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

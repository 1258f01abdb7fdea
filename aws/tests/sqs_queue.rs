//! `SqsQueue` against moto: the queue contract, and what is particular to SQS (FIFO delays by
//! attribute, failure notes in DynamoDB, redrive, depth, the helpers of the Lambda glue).
//!
//! Run with `scripts/with-moto.sh cargo test -p entra-rotator-aws --test sqs_queue`. Each test makes
//! queues under a prefix of its own and a notes table of its own, so tests run in parallel on one
//! moto server. Time passes for real.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use entra_rotator::Error;
use entra_rotator::adapters::system_clock::SystemClock;
use entra_rotator::ports::{Clock, OutgoingMessage, Queue, QueueName, QueueSpec};
use entra_rotator::testing::contract::queue::QueueFixture;
use entra_rotator_aws::SqsQueue;
use entra_rotator_aws::sqs::{self, ID_ATTRIBUTE, NOT_BEFORE_ATTRIBUTE};
use entra_rotator_aws::testing::{sdk_config, unique};

struct Sqs {
    queue: Arc<SqsQueue>,
    sqs: aws_sdk_sqs::Client,
    dynamo: aws_sdk_dynamodb::Client,
    prefix: String,
    table: String,
}

#[async_trait]
impl QueueFixture for Sqs {
    fn queue(&self) -> Arc<dyn Queue> {
        self.queue.clone()
    }
    async fn advance(&self, by: Duration) {
        tokio::time::sleep(by).await;
    }
}

impl Sqs {
    /// The SQS URL of one of this fixture's queues, by its SQS name without the prefix.
    async fn url(&self, name: &str) -> String {
        let out = self.sqs.get_queue_url().queue_name(format!("{}{name}", self.prefix)).send().await.unwrap();
        out.queue_url().unwrap().to_owned()
    }
}

async fn fixture_with(specs: Vec<QueueSpec>) -> Sqs {
    let config = sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let dynamo = aws_sdk_dynamodb::Client::new(&config);
    let table = unique("queue-notes");
    dynamo
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder().attribute_name("pk").attribute_type(ScalarAttributeType::S).build().unwrap(),
        )
        .attribute_definitions(
            AttributeDefinition::builder().attribute_name("sk").attribute_type(ScalarAttributeType::S).build().unwrap(),
        )
        .key_schema(KeySchemaElement::builder().attribute_name("pk").key_type(KeyType::Hash).build().unwrap())
        .key_schema(KeySchemaElement::builder().attribute_name("sk").key_type(KeyType::Range).build().unwrap())
        .send()
        .await
        .expect("create the notes table in moto");
    let prefix = format!("{}-", unique("q"));
    let queue = SqsQueue::new(sqs.clone(), dynamo.clone(), table.clone(), prefix.clone(), specs);
    queue.create_queues().await.expect("create the queues in moto");
    Sqs { queue: Arc::new(queue), sqs, dynamo, prefix, table }
}

async fn fixture() -> Sqs {
    fixture_with(entra_rotator::testing::contract::queue::specs()).await
}

/// Every case of the queue contract but one.
///
/// Left out: `stale_receipt_does_not_delete_a_redelivered_message`. SQS documents that deleting with
/// an older receipt handle "may or may not" delete the message, and moto deletes it, so the case
/// cannot hold on SQS. The handlers stay correct anyway: every handler is idempotent per message
/// (per execution and step), so what matters is that the work is done, not which delivery is
/// acknowledged; and a consumer that deletes with a stale receipt does so after it has itself
/// completed the work, so the message it removes (the redelivery) has nothing left to do.
mod contract {
    use super::fixture;

    // The shared suite's own expansion, given the list of cases that apply.
    entra_rotator::queue_contract_tests!(@cases fixture();
        sent_message_is_received_once_with_its_body,
        unacknowledged_message_is_redelivered_after_its_visibility_timeout,
        deleted_message_is_not_redelivered,
        delayed_message_is_invisible_until_its_delay_passes,
        message_goes_to_the_dead_letter_queue_after_the_maximum_receive_count,
        redrive_returns_dead_letters_to_their_queue_with_a_fresh_count,
        redrive_of_named_messages_moves_only_those,
        fifo_group_never_has_two_messages_in_flight,
        fifo_group_keeps_its_order_when_a_message_fails,
        fifo_group_moves_on_once_its_head_is_dead_lettered,
        duplicate_send_with_the_same_deduplication_id_is_dropped,
        fifo_send_without_a_group_is_refused,
        change_visibility_to_zero_makes_a_message_visible_at_once,
        receive_returns_at_most_the_batch_size_in_send_order,
        a_batch_is_sent_in_order_and_its_duplicates_are_dropped,
        unknown_queue_is_an_error,
    );
}

fn spec(name: &str, fifo: bool, max_receive_count: u32, visibility_secs: u64) -> QueueSpec {
    QueueSpec {
        name: QueueName::new(name),
        fifo,
        max_receive_count,
        visibility_timeout: Duration::from_secs(visibility_secs),
    }
}

fn grouped(body: &str, group: &str) -> OutgoingMessage {
    OutgoingMessage { body: body.into(), group: Some(group.into()), ..Default::default() }
}

fn bodies(messages: &[entra_rotator::ports::ReceivedMessage]) -> Vec<&str> {
    messages.iter().map(|m| m.body.as_str()).collect()
}

#[tokio::test]
async fn a_fifo_delayed_message_is_not_delivered_before_its_time_and_is_delivered_after_it() {
    let f = fixture_with(vec![spec("steps", true, 5, 2)]).await;
    let q = QueueName::new("steps");
    let delayed = OutgoingMessage { delay: Duration::from_secs(3), ..grouped("later", "app-a") };
    let id = f.queue.send(&q, delayed).await.unwrap();
    f.queue.send(&q, grouped("behind it", "app-a")).await.unwrap();
    f.queue.send(&q, grouped("other group", "app-b")).await.unwrap();

    let early = f.queue.receive(&q, 10, None).await.unwrap();
    assert_eq!(bodies(&early), vec!["other group"], "the delayed head holds its group back");
    f.queue.delete(&q, &early[0].receipt).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(f.queue.receive(&q, 10, None).await.unwrap().is_empty(), "still before its time");

    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let got = f.queue.receive(&q, 10, None).await.unwrap();
    assert_eq!(bodies(&got), vec!["later"], "after its time, and still ahead of its group");
    assert_eq!(got[0].id, id);
    // The early receive that hid it counts as a receive for SQS.
    assert_eq!(got[0].receive_count, 2);
    f.queue.delete(&q, &got[0].receipt).await.unwrap();
    let next = f.queue.receive(&q, 10, None).await.unwrap();
    assert_eq!(bodies(&next), vec!["behind it"]);
}

#[tokio::test]
async fn a_redriven_fifo_message_keeps_its_group_and_id() {
    let f = fixture_with(vec![spec("steps", true, 1, 1)]).await;
    let q = QueueName::new("steps");
    let message = OutgoingMessage { dedup_id: Some("step:e1:2:1".into()), ..grouped("{\"step\":2}", "app:1") };
    let id = f.queue.send(&q, message).await.unwrap();
    let first = f.queue.receive(&q, 10, None).await.unwrap();
    assert_eq!(first.len(), 1);
    f.queue.record_failure(&q, &first[0].receipt, "target answered 503").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert!(f.queue.receive(&q, 10, None).await.unwrap().is_empty(), "dead-lettered");

    let dead = f.queue.dead_letters(&q, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].id.clone(), dead[0].group.as_deref()), (id.clone(), Some("app:1")));
    assert_eq!(f.queue.redrive(&q, None).await.unwrap(), 1);
    assert!(f.queue.dead_letter(&id).await.unwrap().is_none());

    let back = f.queue.receive(&q, 10, None).await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].id, id);
    assert_eq!(back[0].group.as_deref(), Some("app:1"));
    assert_eq!(back[0].body, "{\"step\":2}");
    assert_eq!(back[0].receive_count, 1);
    assert_eq!(back[0].sent_at, first[0].sent_at, "sent_at is the first send");

    // Dead again without a new failure: the old error was forgotten with the redrive.
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert!(f.queue.receive(&q, 10, None).await.unwrap().is_empty());
    let again = f.queue.dead_letter(&id).await.unwrap().expect("dead again");
    assert_eq!(again.group.as_deref(), Some("app:1"));
    assert_eq!(again.last_error, None);
}

#[tokio::test]
async fn the_dead_letter_view_shows_the_last_recorded_error() {
    let f = fixture_with(vec![spec("work", false, 2, 1)]).await;
    let q = QueueName::new("work");
    let id = f.queue.send(&q, OutgoingMessage { body: "poison".into(), ..Default::default() }).await.unwrap();
    for error in ["first failure", "second failure"] {
        let got = f.queue.receive(&q, 1, None).await.unwrap();
        assert_eq!(got.len(), 1);
        f.queue.record_failure(&q, &got[0].receipt, error).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1_300)).await;
    }
    assert!(f.queue.receive(&q, 1, None).await.unwrap().is_empty());

    let dead = f.queue.dead_letters(&q, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, id);
    assert_eq!(dead[0].last_error.as_deref(), Some("second failure"));
    assert_eq!(dead[0].receive_count, 2);
    assert!(dead[0].dead_at >= dead[0].sent_at);
    let one = f.queue.dead_letter(&id).await.unwrap().expect("found in its dead-letter queue");
    assert_eq!(one.last_error.as_deref(), Some("second failure"));
    assert_eq!(f.queue.dead_letters(&q, 10).await.unwrap().len(), 1, "viewing leaves it in place");

    // The note, as the table's TTL and an operator see it.
    let note = f
        .dynamo
        .get_item()
        .table_name(&f.table)
        .key("pk", AttributeValue::S(format!("QNOTE#{id}")))
        .key("sk", AttributeValue::S("NOTE".into()))
        .send()
        .await
        .unwrap();
    let item = note.item().expect("a failure note");
    assert_eq!(item["queue"].as_s().unwrap(), "work");
    assert_eq!(item["receive_count"].as_n().unwrap(), "2");
    let expires: i64 = item["expires_at"].as_n().unwrap().parse().unwrap();
    let in_14_days = SystemClock.now().unix_timestamp() + 14 * 24 * 3600;
    assert!((expires - in_14_days).abs() < 60, "expires_at is unix seconds, 14 days ahead");
}

#[tokio::test]
async fn depth_counts_visible_in_flight_delayed_and_dead_messages() {
    let f = fixture_with(vec![spec("work", false, 1, 1)]).await;
    let q = QueueName::new("work");
    let msg = |body: &str| OutgoingMessage { body: body.into(), ..Default::default() };
    f.queue.send(&q, msg("poison")).await.unwrap();
    assert_eq!(f.queue.receive(&q, 1, None).await.unwrap().len(), 1);
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert!(f.queue.receive(&q, 1, None).await.unwrap().is_empty(), "dead-lettered");

    for body in ["a", "b", "c"] {
        f.queue.send(&q, msg(body)).await.unwrap();
    }
    assert_eq!(f.queue.receive(&q, 1, Some(Duration::from_secs(30))).await.unwrap().len(), 1);
    f.queue.send(&q, OutgoingMessage { delay: Duration::from_secs(60), ..msg("d") }).await.unwrap();

    let depth = f.queue.depth(&q).await.unwrap();
    assert_eq!((depth.visible, depth.in_flight, depth.delayed, depth.dead), (2, 1, 1, 1));
}

#[tokio::test]
async fn messages_waiting_behind_their_group_head_are_not_counted_as_received() {
    // With two receives allowed, a queue that handed out and took back the messages behind a group's
    // head would dead-letter the third of them unprocessed.
    let f = fixture_with(vec![spec("steps", true, 2, 5)]).await;
    let q = QueueName::new("steps");
    let all = ["m1", "m2", "m3", "m4", "m5"];
    for body in all {
        f.queue.send(&q, grouped(body, "app-a")).await.unwrap();
    }
    for body in all {
        let got = f.queue.receive(&q, 10, None).await.unwrap();
        assert_eq!(bodies(&got), vec![body]);
        assert_eq!(got[0].receive_count, 1, "{body} was never received before");
        f.queue.delete(&q, &got[0].receipt).await.unwrap();
    }
    assert!(f.queue.receive(&q, 10, None).await.unwrap().is_empty());
    assert_eq!(f.queue.depth(&q).await.unwrap().dead, 0);
}

#[tokio::test]
async fn bad_sends_are_refused_before_any_aws_call() {
    // Clients aimed at a port where nothing listens: a cold start makes no AWS call, and neither
    // does a send that cannot be valid.
    let config = sdk_config().await;
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&config).endpoint_url("http://127.0.0.1:9").build(),
    );
    let dynamo = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&config).endpoint_url("http://127.0.0.1:9").build(),
    );
    let queue = SqsQueue::new(sqs, dynamo, "notes", "p-", vec![spec("steps", true, 5, 30), spec("work", false, 5, 30)]);
    let steps = QueueName::new("steps");
    let work = QueueName::new("work");
    let plain = OutgoingMessage { body: "x".into(), ..Default::default() };

    let unknown = queue.send(&QueueName::new("no-such-queue"), plain.clone()).await;
    assert!(matches!(unknown, Err(Error::NotFound { .. })), "{unknown:?}");
    assert!(matches!(queue.send(&steps, plain.clone()).await, Err(Error::Invalid { .. })), "FIFO needs a group");
    let too_late = OutgoingMessage { delay: Duration::from_secs(15 * 60 + 1), ..plain.clone() };
    let refused = queue.send(&work, too_late).await;
    assert!(matches!(&refused, Err(Error::Invalid { reason, .. }) if reason.contains("900 seconds")), "{refused:?}");
    let far = OutgoingMessage { delay: Duration::from_secs(13 * 3600), ..grouped("x", "g") };
    assert!(matches!(queue.send(&steps, far).await, Err(Error::Invalid { .. })));
    assert!(matches!(queue.depth(&QueueName::new("nope")).await, Err(Error::NotFound { .. })));
}

#[tokio::test]
async fn a_receipt_the_lambda_glue_builds_from_a_raw_sqs_message_works_like_one_from_receive() {
    let f = fixture_with(vec![spec("steps", true, 5, 2)]).await;
    let q = QueueName::new("steps");
    let sent_at = SystemClock.now();
    let delayed = OutgoingMessage { delay: Duration::from_secs(1), ..grouped("x", "app-a") };
    let id = f.queue.send(&q, delayed).await.unwrap();

    // What an event source mapping hands the Lambda: the raw message with its attributes.
    let raw = f
        .sqs
        .receive_message()
        .queue_url(f.url("steps.fifo").await)
        .message_attribute_names("All")
        .send()
        .await
        .unwrap();
    let message = &raw.messages()[0];
    let attributes: HashMap<String, String> = message
        .message_attributes()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.string_value().unwrap().to_owned()))
        .collect();
    assert!(attributes.contains_key(ID_ATTRIBUTE) && attributes.contains_key(NOT_BEFORE_ATTRIBUTE));
    assert_eq!(sqs::message_id(&attributes, message.message_id().unwrap()), id);
    let not_before = sqs::not_before(&attributes).expect("a delayed FIFO message says when");
    let lead = not_before - sent_at;
    assert!(lead > time::Duration::milliseconds(500) && lead < time::Duration::seconds(3), "{lead}");
    assert_eq!(sqs::not_before(&HashMap::new()), None);

    let receipt = sqs::receipt_for(&id.0, message.receipt_handle().unwrap());
    f.queue.record_failure(&q, &receipt, "noted from a raw record").await.unwrap();
    f.queue.delete(&q, &receipt).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(f.queue.receive(&q, 10, None).await.unwrap().is_empty(), "deleted through the built receipt");
    assert!(f.queue.delete(&q, &receipt).await.is_ok(), "deleting twice is no error");
}

#[tokio::test]
async fn a_batch_larger_than_one_send_message_batch_arrives_whole_in_each_groups_order() {
    let f = fixture_with(vec![spec("rotate", true, 5, 30)]).await;
    let q = QueueName::new("rotate");
    // 23 messages over three groups: three SendMessageBatch calls of 10, 10 and 3 entries; one
    // delayed, which its group waits behind.
    let mut batch: Vec<OutgoingMessage> = (0..23)
        .map(|i| OutgoingMessage {
            dedup_id: Some(format!("rotate:{i}")),
            ..grouped(&format!("{}-{i:02}", ["a", "b", "c"][i % 3]), ["a", "b", "c"][i % 3])
        })
        .collect();
    batch[2].delay = Duration::from_secs(2);
    let ids = f.queue.send_batch(&q, batch).await.unwrap();
    assert_eq!(ids.len(), 23);
    assert_eq!(ids.iter().collect::<std::collections::HashSet<_>>().len(), 23, "an id each");
    let mut got: Vec<String> = Vec::new();
    let started = std::time::Instant::now();
    while got.len() < 23 && started.elapsed() < Duration::from_secs(20) {
        let received = f.queue.receive(&q, 10, None).await.unwrap();
        for m in &received {
            got.push(m.body.clone());
            f.queue.delete(&q, &m.receipt).await.unwrap();
        }
        if received.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert_eq!(got.len(), 23, "{got:?}");
    for group in ["a", "b", "c"] {
        let order: Vec<&String> = got.iter().filter(|b| b.starts_with(group)).collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted, "group {group} keeps the order it was sent in");
    }
}

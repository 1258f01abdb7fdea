//! The Queue contract: SQS semantics every queue adapter keeps.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::ports::{OutgoingMessage, Queue, QueueName, QueueSpec};

/// What a queue contract run needs: the queue, and a way to let time pass (a manual clock for the
/// embedded queue; real waiting against an emulator).
#[async_trait]
pub trait QueueFixture: Send + Sync {
    fn queue(&self) -> Arc<dyn Queue>;
    async fn advance(&self, by: Duration);
}

/// The queues the contract uses; a fixture must create them with these settings.
pub const STANDARD: &str = "contract-standard";
pub const FIFO: &str = "contract-fifo";
pub const MAX_RECEIVES: u32 = 3;
pub const VISIBILITY: Duration = Duration::from_secs(2);

pub fn specs() -> Vec<QueueSpec> {
    vec![
        QueueSpec {
            name: QueueName::new(STANDARD),
            fifo: false,
            max_receive_count: MAX_RECEIVES,
            visibility_timeout: VISIBILITY,
        },
        QueueSpec {
            name: QueueName::new(FIFO),
            fifo: true,
            max_receive_count: MAX_RECEIVES,
            visibility_timeout: VISIBILITY,
        },
    ]
}

fn std_q() -> QueueName {
    QueueName::new(STANDARD)
}
fn fifo_q() -> QueueName {
    QueueName::new(FIFO)
}
fn msg(body: &str) -> OutgoingMessage {
    OutgoingMessage { body: body.into(), ..Default::default() }
}
fn grouped(body: &str, group: &str) -> OutgoingMessage {
    OutgoingMessage { body: body.into(), group: Some(group.into()), ..Default::default() }
}
/// A little more than the visibility timeout.
const PAST_VISIBILITY: Duration = Duration::from_millis(2_500);

pub async fn sent_message_is_received_once_with_its_body(f: &dyn QueueFixture) {
    let q = f.queue();
    let id = q.send(&std_q(), msg("{\"a\":1}")).await.unwrap();
    let got = q.receive(&std_q(), 10, None).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, id);
    assert_eq!(got[0].body, "{\"a\":1}");
    assert_eq!(got[0].receive_count, 1);
    assert!(q.receive(&std_q(), 10, None).await.unwrap().is_empty(), "in flight, so not visible");
}

pub async fn unacknowledged_message_is_redelivered_after_its_visibility_timeout(f: &dyn QueueFixture) {
    let q = f.queue();
    q.send(&std_q(), msg("m")).await.unwrap();
    let first = q.receive(&std_q(), 1, None).await.unwrap();
    assert_eq!(first.len(), 1);
    f.advance(Duration::from_millis(500)).await;
    assert!(q.receive(&std_q(), 1, None).await.unwrap().is_empty());
    f.advance(PAST_VISIBILITY).await;
    let again = q.receive(&std_q(), 1, None).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, first[0].id);
    assert_eq!(again[0].receive_count, 2);
}

pub async fn deleted_message_is_not_redelivered(f: &dyn QueueFixture) {
    let q = f.queue();
    q.send(&std_q(), msg("m")).await.unwrap();
    let got = q.receive(&std_q(), 1, None).await.unwrap();
    q.delete(&std_q(), &got[0].receipt).await.unwrap();
    f.advance(PAST_VISIBILITY).await;
    assert!(q.receive(&std_q(), 10, None).await.unwrap().is_empty());
    assert_eq!(q.depth(&std_q()).await.unwrap().visible, 0);
}

pub async fn stale_receipt_does_not_delete_a_redelivered_message(f: &dyn QueueFixture) {
    let q = f.queue();
    q.send(&std_q(), msg("m")).await.unwrap();
    let first = q.receive(&std_q(), 1, None).await.unwrap();
    f.advance(PAST_VISIBILITY).await;
    let second = q.receive(&std_q(), 1, None).await.unwrap();
    assert_eq!(second.len(), 1);
    // The slow first consumer finishes late: its receipt must not remove the second delivery.
    q.delete(&std_q(), &first[0].receipt).await.unwrap_or(());
    f.advance(PAST_VISIBILITY).await;
    let third = q.receive(&std_q(), 1, None).await.unwrap();
    assert_eq!(third.len(), 1, "the message is still there");
    assert_eq!(third[0].receive_count, 3);
}

pub async fn delayed_message_is_invisible_until_its_delay_passes(f: &dyn QueueFixture) {
    let q = f.queue();
    q.send(&std_q(), OutgoingMessage { delay: Duration::from_secs(2), ..msg("later") }).await.unwrap();
    assert!(q.receive(&std_q(), 10, None).await.unwrap().is_empty());
    assert_eq!(q.depth(&std_q()).await.unwrap().delayed, 1);
    f.advance(PAST_VISIBILITY).await;
    let got = q.receive(&std_q(), 10, None).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "later");
}

pub async fn message_goes_to_the_dead_letter_queue_after_the_maximum_receive_count(f: &dyn QueueFixture) {
    let q = f.queue();
    let id = q.send(&std_q(), msg("poison")).await.unwrap();
    for n in 1..=MAX_RECEIVES {
        let got = q.receive(&std_q(), 1, None).await.unwrap();
        assert_eq!(got.len(), 1, "receive {n}");
        assert_eq!(got[0].receive_count, n);
        q.record_failure(&std_q(), &got[0].receipt, &format!("handler failed on try {n}")).await.unwrap();
        f.advance(PAST_VISIBILITY).await;
    }
    assert!(q.receive(&std_q(), 1, None).await.unwrap().is_empty(), "dead-lettered, not delivered");
    let dead = q.dead_letters(&std_q(), 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, id);
    assert_eq!(dead[0].body, "poison");
    assert_eq!(dead[0].source_queue, std_q());
    assert_eq!(dead[0].receive_count, MAX_RECEIVES);
    assert_eq!(dead[0].last_error.as_deref(), Some("handler failed on try 3"));
    assert_eq!(q.dead_letter(&id).await.unwrap().map(|d| d.id), Some(id));
    assert_eq!(q.depth(&std_q()).await.unwrap().dead, 1);
}

pub async fn redrive_returns_dead_letters_to_their_queue_with_a_fresh_count(f: &dyn QueueFixture) {
    let q = f.queue();
    let id = q.send(&std_q(), msg("poison")).await.unwrap();
    for _ in 0..MAX_RECEIVES {
        q.receive(&std_q(), 1, None).await.unwrap();
        f.advance(PAST_VISIBILITY).await;
    }
    assert!(q.receive(&std_q(), 1, None).await.unwrap().is_empty());
    assert_eq!(q.redrive(&std_q(), None).await.unwrap(), 1);
    assert!(q.dead_letters(&std_q(), 10).await.unwrap().is_empty());
    let back = q.receive(&std_q(), 1, None).await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].id, id);
    assert_eq!(back[0].body, "poison");
    assert_eq!(back[0].receive_count, 1);
}

pub async fn redrive_of_named_messages_moves_only_those(f: &dyn QueueFixture) {
    let q = f.queue();
    let a = q.send(&std_q(), msg("a")).await.unwrap();
    let _b = q.send(&std_q(), msg("b")).await.unwrap();
    for _ in 0..MAX_RECEIVES {
        q.receive(&std_q(), 10, None).await.unwrap();
        f.advance(PAST_VISIBILITY).await;
    }
    assert!(q.receive(&std_q(), 10, None).await.unwrap().is_empty());
    assert_eq!(q.dead_letters(&std_q(), 10).await.unwrap().len(), 2);
    assert_eq!(q.redrive(&std_q(), Some(std::slice::from_ref(&a))).await.unwrap(), 1);
    let back = q.receive(&std_q(), 10, None).await.unwrap();
    assert_eq!(back.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), vec!["a"]);
    assert_eq!(q.dead_letters(&std_q(), 10).await.unwrap().len(), 1);
}

pub async fn fifo_group_never_has_two_messages_in_flight(f: &dyn QueueFixture) {
    let q = f.queue();
    for body in ["a1", "a2", "a3"] {
        q.send(&fifo_q(), grouped(body, "app-a")).await.unwrap();
    }
    q.send(&fifo_q(), grouped("b1", "app-b")).await.unwrap();
    let first = q.receive(&fifo_q(), 10, None).await.unwrap();
    let mut bodies: Vec<_> = first.iter().map(|m| m.body.as_str()).collect();
    bodies.sort();
    assert_eq!(bodies, vec!["a1", "b1"], "one per group");
    assert!(q.receive(&fifo_q(), 10, None).await.unwrap().is_empty(), "both groups are busy");
    let a1 = first.iter().find(|m| m.body == "a1").unwrap();
    q.delete(&fifo_q(), &a1.receipt).await.unwrap();
    let next = q.receive(&fifo_q(), 10, None).await.unwrap();
    assert_eq!(next.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), vec!["a2"]);
}

pub async fn fifo_group_keeps_its_order_when_a_message_fails(f: &dyn QueueFixture) {
    let q = f.queue();
    q.send(&fifo_q(), grouped("first", "g")).await.unwrap();
    q.send(&fifo_q(), grouped("second", "g")).await.unwrap();
    let got = q.receive(&fifo_q(), 10, None).await.unwrap();
    assert_eq!(got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), vec!["first"]);
    f.advance(PAST_VISIBILITY).await; // not acknowledged: it comes back, still ahead of "second"
    let again = q.receive(&fifo_q(), 10, None).await.unwrap();
    assert_eq!(again.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), vec!["first"]);
    assert_eq!(again[0].receive_count, 2);
}

pub async fn fifo_group_moves_on_once_its_head_is_dead_lettered(f: &dyn QueueFixture) {
    let q = f.queue();
    q.send(&fifo_q(), grouped("poison", "g")).await.unwrap();
    q.send(&fifo_q(), grouped("next", "g")).await.unwrap();
    for _ in 0..MAX_RECEIVES {
        let got = q.receive(&fifo_q(), 10, None).await.unwrap();
        assert_eq!(got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), vec!["poison"]);
        f.advance(PAST_VISIBILITY).await;
    }
    let got = q.receive(&fifo_q(), 10, None).await.unwrap();
    assert_eq!(got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), vec!["next"]);
    assert_eq!(q.dead_letters(&fifo_q(), 10).await.unwrap().len(), 1);
}

pub async fn duplicate_send_with_the_same_deduplication_id_is_dropped(f: &dyn QueueFixture) {
    let q = f.queue();
    let m = OutgoingMessage { dedup_id: Some("step:1:2".into()), ..grouped("x", "g") };
    let first = q.send(&fifo_q(), m.clone()).await.unwrap();
    let second = q.send(&fifo_q(), m).await.unwrap();
    assert_eq!(first, second);
    let got = q.receive(&fifo_q(), 10, None).await.unwrap();
    assert_eq!(got.len(), 1);
    q.delete(&fifo_q(), &got[0].receipt).await.unwrap();
    f.advance(PAST_VISIBILITY).await;
    assert!(q.receive(&fifo_q(), 10, None).await.unwrap().is_empty());
}

pub async fn fifo_send_without_a_group_is_refused(f: &dyn QueueFixture) {
    let q = f.queue();
    assert!(matches!(q.send(&fifo_q(), msg("x")).await, Err(crate::Error::Invalid { .. })));
}

pub async fn change_visibility_to_zero_makes_a_message_visible_at_once(f: &dyn QueueFixture) {
    let q = f.queue();
    q.send(&std_q(), msg("m")).await.unwrap();
    let got = q.receive(&std_q(), 1, None).await.unwrap();
    q.change_visibility(&std_q(), &got[0].receipt, Duration::ZERO).await.unwrap();
    let again = q.receive(&std_q(), 1, None).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].receive_count, 2);
}

pub async fn receive_returns_at_most_the_batch_size_in_send_order(f: &dyn QueueFixture) {
    let q = f.queue();
    for i in 0..5 {
        q.send(&std_q(), msg(&format!("m{i}"))).await.unwrap();
    }
    let got = q.receive(&std_q(), 3, None).await.unwrap();
    assert_eq!(got.len(), 3);
    let rest = q.receive(&std_q(), 10, None).await.unwrap();
    assert_eq!(rest.len(), 2);
    let depth = q.depth(&std_q()).await.unwrap();
    assert_eq!((depth.visible, depth.in_flight), (0, 5));
}

pub async fn a_batch_is_sent_in_order_and_its_duplicates_are_dropped(f: &dyn QueueFixture) {
    let q = f.queue();
    let earlier = OutgoingMessage { dedup_id: Some("alert:a".into()), ..grouped("a", "g1") };
    let first = q.send(&fifo_q(), earlier.clone()).await.unwrap();
    let batch = vec![
        earlier,
        OutgoingMessage { dedup_id: Some("alert:b".into()), ..grouped("b", "g2") },
        OutgoingMessage { dedup_id: Some("alert:c".into()), ..grouped("c", "g3") },
        OutgoingMessage { dedup_id: Some("alert:b".into()), ..grouped("b", "g2") },
    ];
    let ids = q.send_batch(&fifo_q(), batch).await.unwrap();
    assert_eq!(ids.len(), 4);
    assert_eq!(ids[0], first, "a message sent before with the same deduplication id is dropped");
    assert_eq!(ids[1], ids[3], "and so is a duplicate within the batch");
    let mut bodies = Vec::new();
    for _ in 0..5 {
        bodies.extend(q.receive(&fifo_q(), 10, None).await.unwrap().into_iter().map(|m| m.body));
    }
    bodies.sort();
    assert_eq!(bodies, vec!["a", "b", "c"], "each message once");
    assert!(q.send_batch(&fifo_q(), Vec::new()).await.unwrap().is_empty());
    assert!(matches!(q.send_batch(&fifo_q(), vec![msg("no group")]).await, Err(crate::Error::Invalid { .. })));
}

pub async fn unknown_queue_is_an_error(f: &dyn QueueFixture) {
    let q = f.queue();
    assert!(q.send(&QueueName::new("no-such-queue"), msg("x")).await.is_err());
}

/// Expands to one `#[tokio::test]` per contract case. `$make` is an async expression giving a
/// fixture (`impl QueueFixture`).
#[macro_export]
macro_rules! queue_contract_tests {
    ($make:expr) => {
        $crate::queue_contract_tests!(@cases $make;
            sent_message_is_received_once_with_its_body,
            unacknowledged_message_is_redelivered_after_its_visibility_timeout,
            deleted_message_is_not_redelivered,
            stale_receipt_does_not_delete_a_redelivered_message,
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
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let fixture = $make.await;
                $crate::testing::contract::queue::$case(&fixture).await;
            }
        )*
    };
}

//! Named queues with SQS semantics in SQLite: at-least-once delivery, visibility timeouts,
//! receive counts, FIFO groups with one message in flight, deduplication, dead letters, redrive.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{Db, Kind, from_millis, millis, to_error};
use crate::ports::{
    Clock, DeadLetter, MessageId, OutgoingMessage, Queue, QueueDepth, QueueName, QueueSpec, ReceiptHandle,
    ReceivedMessage,
};
use crate::{Error, Result};

/// How long a FIFO deduplication id is remembered, as in SQS.
const DEDUP_WINDOW_MS: i64 = 5 * 60 * 1000;
/// Longest error text kept for a dead letter.
const MAX_ERROR_LEN: usize = 2000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS queue_messages (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    queue         TEXT NOT NULL,
    body          TEXT NOT NULL,
    grp           TEXT,
    sent_at       INTEGER NOT NULL,
    visible_at    INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt       TEXT UNIQUE,
    last_error    TEXT,
    dead_at       INTEGER
);
CREATE INDEX IF NOT EXISTS queue_messages_ready ON queue_messages (queue, dead_at, visible_at, seq);
CREATE INDEX IF NOT EXISTS queue_messages_group ON queue_messages (queue, grp, dead_at, seq);
CREATE TABLE IF NOT EXISTS queue_dedup (
    queue      TEXT NOT NULL,
    dedup_id   TEXT NOT NULL,
    message_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (queue, dedup_id)
);
-- Every send with a deduplication id first drops the expired entries: by this index, not by
-- reading every entry, so a send costs the same with 10 or 100,000 entries in the window.
CREATE INDEX IF NOT EXISTS queue_dedup_expiry ON queue_dedup (expires_at);
";

/// The embedded queue. Cheap to clone.
#[derive(Clone)]
pub struct SqliteQueue {
    db: Db,
    specs: Arc<HashMap<QueueName, QueueSpec>>,
    clock: Arc<dyn Clock>,
}

impl SqliteQueue {
    pub fn open(path: &Path, specs: Vec<QueueSpec>, clock: Arc<dyn Clock>) -> Result<Self> {
        Self::init(Db::open(path, Kind::Queue)?, specs, clock)
    }

    pub fn in_memory(specs: Vec<QueueSpec>, clock: Arc<dyn Clock>) -> Result<Self> {
        Self::init(Db::in_memory(Kind::Queue)?, specs, clock)
    }

    pub(super) fn init(db: Db, specs: Vec<QueueSpec>, clock: Arc<dyn Clock>) -> Result<Self> {
        {
            let conn = db.conn.lock().unwrap_or_else(|p| p.into_inner());
            conn.execute_batch(SCHEMA).map_err(|e| to_error(Kind::Queue, "creating queue tables".into(), e))?;
        }
        let specs = specs.into_iter().map(|s| (s.name.clone(), s)).collect();
        Ok(Self { db, specs: Arc::new(specs), clock })
    }

    fn spec(&self, queue: &QueueName) -> Result<QueueSpec> {
        self.specs.get(queue).cloned().ok_or_else(|| Error::not_found("queue", queue))
    }

    pub fn specs(&self) -> Vec<QueueSpec> {
        let mut v: Vec<_> = self.specs.values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
}

fn q(context: &str) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| to_error(Kind::Queue, context.to_owned(), e)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

#[async_trait]
impl Queue for SqliteQueue {
    async fn send(&self, queue: &QueueName, message: OutgoingMessage) -> Result<MessageId> {
        let mut ids = self.send_batch(queue, vec![message]).await?;
        ids.pop().ok_or_else(|| Error::invalid("message", "the queue accepted no message"))
    }

    async fn send_batch(&self, queue: &QueueName, messages: Vec<OutgoingMessage>) -> Result<Vec<MessageId>> {
        let spec = self.spec(queue)?;
        if spec.fifo && messages.iter().any(|m| m.group.is_none()) {
            return Err(Error::invalid("message", format!("queue {queue} is FIFO: a message group is required")));
        }
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let now = millis(self.clock.now());
        let queue = queue.clone();
        self.db
            .call(move |conn| {
                // One transaction, so one synchronous write to disk, for the whole batch.
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(q("send"))?;
                if messages.iter().any(|m| m.dedup_id.is_some()) {
                    tx.execute("DELETE FROM queue_dedup WHERE expires_at <= ?1", params![now]).map_err(q("send"))?;
                }
                let mut ids = Vec::with_capacity(messages.len());
                for message in &messages {
                    ids.push(insert_message(&tx, &queue, message, now)?);
                }
                tx.commit().map_err(q("send"))?;
                Ok(ids)
            })
            .await
    }

    async fn receive(
        &self,
        queue: &QueueName,
        max: usize,
        visibility: Option<Duration>,
    ) -> Result<Vec<ReceivedMessage>> {
        let spec = self.spec(queue)?;
        let now = millis(self.clock.now());
        let hide_until = now + ms(visibility.unwrap_or(spec.visibility_timeout));
        let max = max.clamp(1, 10);
        self.db
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(q("receive"))?;
                let mut out = Vec::new();
                loop {
                    // FIFO: only the oldest live message of each group may go, and only when it is
                    // visible, so a group never has two messages in flight and keeps its order.
                    let sql = if spec.fifo {
                        "SELECT m.id, m.body, m.grp, m.sent_at, m.receive_count FROM queue_messages m
                         WHERE m.queue = ?1 AND m.dead_at IS NULL AND m.visible_at <= ?2
                           AND m.seq = (SELECT MIN(h.seq) FROM queue_messages h
                                        WHERE h.queue = m.queue AND h.grp = m.grp AND h.dead_at IS NULL)
                         ORDER BY m.seq LIMIT ?3"
                    } else {
                        "SELECT m.id, m.body, m.grp, m.sent_at, m.receive_count FROM queue_messages m
                         WHERE m.queue = ?1 AND m.dead_at IS NULL AND m.visible_at <= ?2
                         ORDER BY m.seq LIMIT ?3"
                    };
                    let want = i64::try_from(max - out.len()).unwrap_or(10);
                    let rows: Vec<(String, String, Option<String>, i64, u32)> = {
                        let mut stmt = tx.prepare_cached(sql).map_err(q("receive"))?;
                        stmt.query_map(params![spec.name.as_str(), now, want], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                        })
                        .map_err(q("receive"))?
                        .collect::<rusqlite::Result<_>>()
                        .map_err(q("receive"))?
                    };
                    if rows.is_empty() {
                        break;
                    }
                    let mut moved_to_dlq = false;
                    for (id, body, grp, sent_at, count) in rows {
                        if count >= spec.max_receive_count {
                            // Received as often as allowed and still here: dead-letter it.
                            tx.execute(
                                "UPDATE queue_messages SET dead_at = ?2, receipt = NULL WHERE id = ?1",
                                params![id, now],
                            )
                            .map_err(q("receive"))?;
                            moved_to_dlq = true;
                            continue;
                        }
                        let receipt = format!("{id}#{}", uuid::Uuid::new_v4().simple());
                        tx.execute(
                            "UPDATE queue_messages SET receive_count = receive_count + 1, visible_at = ?2, receipt = ?3 WHERE id = ?1",
                            params![id, hide_until, receipt],
                        )
                        .map_err(q("receive"))?;
                        out.push(ReceivedMessage {
                            id: MessageId(id),
                            receipt: ReceiptHandle(receipt),
                            body,
                            receive_count: count + 1,
                            group: grp,
                            sent_at: from_millis(sent_at),
                        });
                    }
                    // A dead-lettered head may have unblocked its group; look again.
                    if out.len() >= max || !moved_to_dlq {
                        break;
                    }
                }
                tx.commit().map_err(q("receive"))?;
                Ok(out)
            })
            .await
    }

    async fn delete(&self, queue: &QueueName, receipt: &ReceiptHandle) -> Result<()> {
        let queue = queue.clone();
        let receipt = receipt.0.clone();
        self.db
            .call(move |conn| {
                conn.execute(
                    "DELETE FROM queue_messages WHERE queue = ?1 AND receipt = ?2 AND dead_at IS NULL",
                    params![queue.as_str(), receipt],
                )
                .map_err(q("delete"))?;
                Ok(())
            })
            .await
    }

    async fn change_visibility(&self, queue: &QueueName, receipt: &ReceiptHandle, timeout: Duration) -> Result<()> {
        let now = millis(self.clock.now());
        let queue = queue.clone();
        let receipt = receipt.0.clone();
        self.db
            .call(move |conn| {
                let n = conn
                    .execute(
                        "UPDATE queue_messages SET visible_at = ?3
                         WHERE queue = ?1 AND receipt = ?2 AND dead_at IS NULL AND visible_at > ?4",
                        params![queue.as_str(), receipt, now + ms(timeout), now],
                    )
                    .map_err(q("change visibility"))?;
                if n == 0 {
                    // SQS answers MessageNotInflight: the receipt is stale or its time ran out.
                    return Err(Error::conflict("message", &receipt, "not in flight"));
                }
                Ok(())
            })
            .await
    }

    async fn record_failure(&self, queue: &QueueName, receipt: &ReceiptHandle, error: &str) -> Result<()> {
        let queue = queue.clone();
        let receipt = receipt.0.clone();
        let error: String = error.chars().take(MAX_ERROR_LEN).collect();
        self.db
            .call(move |conn| {
                conn.execute(
                    "UPDATE queue_messages SET last_error = ?3 WHERE queue = ?1 AND receipt = ?2",
                    params![queue.as_str(), receipt, error],
                )
                .map_err(q("record failure"))?;
                Ok(())
            })
            .await
    }

    async fn dead_letters(&self, queue: &QueueName, limit: usize) -> Result<Vec<DeadLetter>> {
        let queue = queue.clone();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db
            .call(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT id, queue, body, receive_count, grp, last_error, sent_at, dead_at FROM queue_messages
                         WHERE queue = ?1 AND dead_at IS NOT NULL ORDER BY dead_at, seq LIMIT ?2",
                    )
                    .map_err(q("list dead letters"))?;
                stmt.query_map(params![queue.as_str(), limit], dead_letter_row)
                    .map_err(q("list dead letters"))?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(q("list dead letters"))
            })
            .await
    }

    async fn dead_letter(&self, id: &MessageId) -> Result<Option<DeadLetter>> {
        let id = id.0.clone();
        self.db
            .call(move |conn| {
                conn.query_row(
                    "SELECT id, queue, body, receive_count, grp, last_error, sent_at, dead_at FROM queue_messages
                     WHERE id = ?1 AND dead_at IS NOT NULL",
                    params![id],
                    dead_letter_row,
                )
                .optional()
                .map_err(q("show dead letter"))
            })
            .await
    }

    async fn redrive(&self, queue: &QueueName, ids: Option<&[MessageId]>) -> Result<usize> {
        let now = millis(self.clock.now());
        let queue = queue.clone();
        let ids: Option<Vec<String>> = ids.map(|ids| ids.iter().map(|i| i.0.clone()).collect());
        self.db
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(q("redrive"))?;
                // Redriven messages go to the back of their queue (and group), with a fresh count.
                let chosen: Vec<String> = match ids {
                    Some(ids) => ids,
                    None => {
                        let mut stmt = tx
                            .prepare("SELECT id FROM queue_messages WHERE queue = ?1 AND dead_at IS NOT NULL ORDER BY dead_at, seq")
                            .map_err(q("redrive"))?;
                        stmt.query_map(params![queue.as_str()], |r| r.get(0))
                            .map_err(q("redrive"))?
                            .collect::<rusqlite::Result<_>>()
                            .map_err(q("redrive"))?
                    }
                };
                let mut moved = 0;
                for id in chosen {
                    let row: Option<(String, Option<String>, i64, Option<String>)> = tx
                        .query_row(
                            "SELECT body, grp, sent_at, last_error FROM queue_messages
                             WHERE id = ?1 AND queue = ?2 AND dead_at IS NOT NULL",
                            params![id, queue.as_str()],
                            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                        )
                        .optional()
                        .map_err(q("redrive"))?;
                    let Some((body, grp, sent_at, _)) = row else { continue };
                    tx.execute("DELETE FROM queue_messages WHERE id = ?1", params![id]).map_err(q("redrive"))?;
                    tx.execute(
                        "INSERT INTO queue_messages (id, queue, body, grp, sent_at, visible_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        params![id, queue.as_str(), body, grp, sent_at, now],
                    )
                    .map_err(q("redrive"))?;
                    moved += 1;
                }
                tx.commit().map_err(q("redrive"))?;
                Ok(moved)
            })
            .await
    }

    async fn depth(&self, queue: &QueueName) -> Result<QueueDepth> {
        let now = millis(self.clock.now());
        let queue = queue.clone();
        self.db
            .call(move |conn| {
                conn.query_row(
                    "SELECT
                        COALESCE(SUM(dead_at IS NULL AND visible_at <= ?2), 0),
                        COALESCE(SUM(dead_at IS NULL AND visible_at > ?2 AND receive_count > 0), 0),
                        COALESCE(SUM(dead_at IS NULL AND visible_at > ?2 AND receive_count = 0), 0),
                        COALESCE(SUM(dead_at IS NOT NULL), 0)
                     FROM queue_messages WHERE queue = ?1",
                    params![queue.as_str(), now],
                    |r| {
                        let n = |i: usize| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
                        Ok(QueueDepth { visible: n(0)?, in_flight: n(1)?, delayed: n(2)?, dead: n(3)? })
                    },
                )
                .map_err(q("depth"))
            })
            .await
    }
}

fn dead_letter_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeadLetter> {
    Ok(DeadLetter {
        id: MessageId(r.get(0)?),
        source_queue: QueueName(r.get(1)?),
        body: r.get(2)?,
        receive_count: r.get(3)?,
        group: r.get(4)?,
        last_error: r.get(5)?,
        sent_at: from_millis(r.get(6)?),
        dead_at: from_millis(r.get(7)?),
    })
}

/// One message into the queue within `tx`, or the id of the message its deduplication id already
/// names (accepted and dropped, as SQS does within the deduplication window).
fn insert_message(
    tx: &rusqlite::Transaction<'_>,
    queue: &QueueName,
    message: &OutgoingMessage,
    now: i64,
) -> Result<MessageId> {
    if let Some(dedup) = &message.dedup_id {
        let existing: Option<String> = tx
            .query_row(
                "SELECT message_id FROM queue_dedup WHERE queue = ?1 AND dedup_id = ?2",
                params![queue.as_str(), dedup],
                |r| r.get(0),
            )
            .optional()
            .map_err(q("send"))?;
        if let Some(id) = existing {
            return Ok(MessageId(id));
        }
    }
    let id = uuid::Uuid::new_v4().to_string();
    tx.execute(
        "INSERT INTO queue_messages (id, queue, body, grp, sent_at, visible_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![id, queue.as_str(), message.body, message.group, now, now + ms(message.delay)],
    )
    .map_err(q("send"))?;
    if let Some(dedup) = &message.dedup_id {
        tx.execute(
            "INSERT INTO queue_dedup (queue, dedup_id, message_id, expires_at) VALUES (?1, ?2, ?3, ?4)",
            params![queue.as_str(), dedup, id, now + DEDUP_WINDOW_MS],
        )
        .map_err(q("send"))?;
    }
    Ok(MessageId(id))
}

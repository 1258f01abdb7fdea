//! The on-call view of DESIGN §3: dead letters listed, shown and sent back to their queue, with the
//! redrive recorded in the audit trail whoever asked (the CLI and the HTTP API alike).

use time::OffsetDateTime;

use crate::messages::queues;
use crate::ports::{AuditEvent, Clock, DeadLetter, MessageId, Queue, QueueName, Store};
use crate::{Error, Result};

/// The most dead letters one listing returns per queue.
pub const LIST_LIMIT: usize = 1000;

/// The queues a request names: one, if it is a queue of the chain, or all of them.
pub fn queues_named(queue: Option<&str>) -> Result<Vec<QueueName>> {
    match queue {
        Some(q) if queues::ALL.contains(&q) => Ok(vec![QueueName::new(q)]),
        Some(q) => Err(Error::invalid(
            "queue",
            format!("unknown queue {:?}; the queues are {}", shorten(q), queues::ALL.join(", ")),
        )),
        None => Ok(queues::ALL.iter().map(|q| QueueName::new(*q)).collect()),
    }
}

fn shorten(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Dead letters of the named queue, or of every queue, oldest first within each queue.
pub async fn list(queue: &dyn Queue, which: Option<&str>) -> Result<Vec<DeadLetter>> {
    let mut all = Vec::new();
    for q in queues_named(which)? {
        all.extend(queue.dead_letters(&q, LIST_LIMIT).await?);
    }
    Ok(all)
}

/// What to send back: every dead letter of `queue` (or of every queue), or only those named.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redrive {
    pub queue: Option<String>,
    pub ids: Vec<MessageId>,
}

/// Sends dead letters back to their source queue with a fresh receive count; the chain resumes at
/// the step that failed. Every named id is checked before any moves, so a typo changes nothing.
/// Recorded in the audit trail as done by `actor`; returns how many moved.
pub async fn redrive(
    queue: &dyn Queue,
    store: &dyn Store,
    clock: &dyn Clock,
    request: &Redrive,
    actor: &str,
) -> Result<usize> {
    let names = queues_named(request.queue.as_deref())?;
    let mut moved = 0;
    if request.ids.is_empty() {
        for q in &names {
            moved += queue.redrive(q, None).await?;
        }
    } else {
        let mut found = Vec::new();
        for id in &request.ids {
            let d = queue.dead_letter(id).await?.ok_or_else(|| Error::not_found("dead letter", id))?;
            if !names.contains(&d.source_queue) {
                return Err(Error::invalid(
                    "dead letter",
                    format!("{id} belongs to queue {}, not {}", d.source_queue, request.queue.as_deref().unwrap_or("")),
                ));
            }
            found.push(d);
        }
        for d in found {
            moved += queue.redrive(&d.source_queue, Some(std::slice::from_ref(&d.id))).await?;
        }
    }
    record(store, clock.now(), actor, moved, request.queue.as_deref()).await;
    Ok(moved)
}

/// The audit line of a redrive. The messages have moved already, so a failed write is logged, not
/// returned: the caller must not retry a redrive that happened.
async fn record(store: &dyn Store, at: OffsetDateTime, actor: &str, moved: usize, queue: Option<&str>) {
    let event = AuditEvent {
        at,
        action: "dead_letters.redriven".into(),
        actor: actor.to_owned(),
        execution: None,
        credential: None,
        detail: format!("{moved} message(s) sent back to {}", queue.unwrap_or("their queues")),
    };
    if let Err(e) = store.append_audit(&event).await {
        tracing::warn!(error = %e.chain(), "the redrive was not recorded in the audit trail");
    }
}

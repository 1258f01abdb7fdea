//! The messages that chain the handlers. Each carries identifiers only, never a secret value; each
//! has a version, an idempotency key, and the queue it travels on.
//!
//! Consumers tolerate fields they do not know (a newer producer may add some); a message that does
//! not parse at all is bad input and goes to the dead-letter queue.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::execution::Trigger;
use crate::domain::ids::{AppObjectId, CredentialId, ExecutionId, IntegrationId};
use crate::ports::alerts::Alert;
use crate::ports::{OutgoingMessage, QueueName, QueueSpec};
use crate::{Error, Result};

/// The version of the envelope this build writes; it reads this one and older.
pub const MESSAGE_VERSION: u32 = 1;

/// The queues of the chain. All are FIFO so that work on one application (or one integration)
/// is serialized by message group.
pub mod queues {
    pub const SYNC: &str = "sync";
    pub const SCAN: &str = "expiry-scan";
    pub const ROTATE: &str = "rotate";
    pub const STEP: &str = "run-step";
    pub const CLEANUP: &str = "grace-cleanup";
    pub const ALL: [&str; 5] = [SYNC, SCAN, ROTATE, STEP, CLEANUP];
}

/// One link of the chain: the queue, the handler that consumes it (on AWS, the Lambda function of
/// that name), and the handler's time budget (the function's timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub queue: &'static str,
    pub handler: &'static str,
    pub timeout: Duration,
}

/// The chain, queue by queue: `rotator serve`, the Lambda functions, `infra/template.yaml` and the
/// tests all follow this one table (aws/src/settings.rs holds the template to it).
pub const CHAIN: [Link; 5] = [
    Link { queue: queues::SYNC, handler: "sync", timeout: Duration::from_secs(900) },
    Link { queue: queues::SCAN, handler: "expiry-scan", timeout: Duration::from_secs(300) },
    Link { queue: queues::ROTATE, handler: "rotate", timeout: Duration::from_secs(120) },
    Link { queue: queues::STEP, handler: "run-step", timeout: Duration::from_secs(300) },
    Link { queue: queues::CLEANUP, handler: "grace-cleanup", timeout: Duration::from_secs(300) },
];

/// The link of `queue`.
pub fn link(queue: &str) -> Option<&'static Link> {
    CHAIN.iter().find(|l| l.queue == queue)
}

/// Receives before a message goes to its dead-letter queue, on both runtimes.
pub const MAX_RECEIVE_COUNT: u32 = 5;

/// The queues as the AWS deployment has them: FIFO, [`MAX_RECEIVE_COUNT`] receives, and a
/// visibility timeout six times the consuming function's timeout (as AWS advises for SQS event
/// sources), so a message is never redelivered while a slow invocation still holds it.
pub fn deployed_queue_specs() -> Vec<QueueSpec> {
    CHAIN
        .iter()
        .map(|l| QueueSpec {
            name: QueueName::new(l.queue),
            fifo: true,
            max_receive_count: MAX_RECEIVE_COUNT,
            visibility_timeout: l.timeout * 6,
        })
        .collect()
}

/// The queues of the embedded runtime: as deployed, but a message held by a worker that died comes
/// back after the longer of its handler's budget and [`EMBEDDED_MAX_VISIBILITY`]: one process runs
/// every worker, so there is no slow sibling invocation to wait for, and recovery after a restart
/// should not take half an hour.
pub fn default_queue_specs() -> Vec<QueueSpec> {
    deployed_queue_specs()
        .into_iter()
        .map(|mut spec| {
            let floor = link(spec.name.as_str()).map_or(Duration::ZERO, |l| l.timeout);
            spec.visibility_timeout = spec.visibility_timeout.min(EMBEDDED_MAX_VISIBILITY.max(floor));
            spec
        })
        .collect()
}

/// The longest an embedded queue hides a received message (unless its handler's budget is longer).
pub const EMBEDDED_MAX_VISIBILITY: Duration = Duration::from_secs(360);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Message {
    /// Read one integration from Graph (delta when possible, or `full`).
    SyncRequested { integration: IntegrationId, full: bool },
    /// Derive lifecycle states, alert and request due rotations (one integration, or all).
    ScanRequested { integration: Option<IntegrationId> },
    /// Rotate one credential. `execution` is set when the requester already claimed the
    /// credential (the HTTP trigger answers with the execution id); otherwise rotate claims it.
    RotateRequested {
        credential: CredentialId,
        app: AppObjectId,
        trigger: Trigger,
        dry_run: bool,
        #[serde(default)]
        execution: Option<ExecutionId>,
    },
    /// Run step `step` of an execution. `attempt` counts tries of that step across messages.
    StepRequested { execution: ExecutionId, credential: CredentialId, app: AppObjectId, step: u32, attempt: u32 },
    /// Remove old credentials whose grace ended, and sweep orphans.
    CleanupRequested { integration: Option<IntegrationId> },
    /// Deliver one alert to one sink (the outbox of the scan): on the expiry-scan queue, so a sink
    /// that is down is retried and then dead-lettered by the queue, never holding back a scan. The
    /// alert holds no secret; the sink is named, never its URL.
    AlertRequested { alert: Box<Alert>, sink: String },
}

/// What travels on the queue: the message, its version and its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u32,
    pub idempotency_key: String,
    #[serde(flatten)]
    pub message: Message,
}

impl Message {
    /// The message that (re)starts the rotation of an execution already recorded: `e` itself
    /// (a deferred rotation, a rotation the recovery sweep resumes, one just requested).
    pub fn rotate_execution(e: &crate::domain::execution::Execution) -> Self {
        Self::RotateRequested {
            credential: e.credential.clone(),
            app: e.app,
            trigger: e.trigger.clone(),
            dry_run: false,
            execution: Some(e.id),
        }
    }

    pub fn queue(&self) -> QueueName {
        QueueName::new(match self {
            Self::SyncRequested { .. } => queues::SYNC,
            Self::ScanRequested { .. } | Self::AlertRequested { .. } => queues::SCAN,
            Self::RotateRequested { .. } => queues::ROTATE,
            Self::StepRequested { .. } => queues::STEP,
            Self::CleanupRequested { .. } => queues::CLEANUP,
        })
    }

    /// The FIFO group: writes to one Entra application are serialized.
    pub fn group(&self) -> String {
        match self {
            Self::SyncRequested { integration, .. } => format!("integration:{integration}"),
            Self::ScanRequested { integration } | Self::CleanupRequested { integration } => match integration {
                Some(i) => format!("integration:{i}"),
                None => "all".into(),
            },
            Self::RotateRequested { app, .. } | Self::StepRequested { app, .. } => format!("app:{app}"),
            // A sink that is down holds back only its own alerts, not the scans or another sink.
            Self::AlertRequested { sink, .. } => format!("alert-sink:{sink}"),
        }
    }

    /// Two sends of the same effect share this key, so the queue (and the handler) drop the second.
    /// Timer-driven messages are keyed by the caller (with the tick), since every tick is new work.
    pub fn natural_key(&self) -> Option<String> {
        match self {
            Self::StepRequested { execution, step, attempt, .. } => Some(format!("step:{execution}:{step}:{attempt}")),
            _ => None,
        }
    }

    pub fn envelope(self, idempotency_key: impl Into<String>) -> Envelope {
        Envelope { v: MESSAGE_VERSION, idempotency_key: idempotency_key.into(), message: self }
    }
}

impl Envelope {
    pub fn to_outgoing(&self, delay: Duration) -> Result<OutgoingMessage> {
        let body = serde_json::to_string(self).map_err(|e| Error::invalid("message", e.to_string()))?;
        Ok(OutgoingMessage {
            body,
            group: Some(self.message.group()),
            dedup_id: Some(self.idempotency_key.clone()),
            delay,
        })
    }

    pub fn parse(body: &str) -> Result<Self> {
        let env: Envelope = serde_json::from_str(body).map_err(|e| Error::invalid("message", e.to_string()))?;
        if env.v == 0 || env.v > MESSAGE_VERSION {
            return Err(Error::invalid("message", format!("version {} is not understood by this build", env.v)));
        }
        Ok(env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step() -> Message {
        Message::StepRequested {
            execution: ExecutionId::parse("exe-11111111-1111-1111-1111-111111111111").unwrap(),
            credential: CredentialId::parse(
                "contoso/app/22222222-2222-2222-2222-222222222222/33333333-3333-3333-3333-333333333333",
            )
            .unwrap(),
            app: AppObjectId::parse("22222222-2222-2222-2222-222222222222").unwrap(),
            step: 2,
            attempt: 1,
        }
    }

    #[test]
    fn messages_round_trip_and_travel_on_their_queue_grouped_by_application() {
        let env = step().envelope("k1");
        let out = env.to_outgoing(Duration::ZERO).unwrap();
        assert_eq!(out.group.as_deref(), Some("app:22222222-2222-2222-2222-222222222222"));
        assert_eq!(Envelope::parse(&out.body).unwrap(), env);
        assert_eq!(env.message.queue().as_str(), queues::STEP);
    }

    #[test]
    fn unknown_fields_are_tolerated_but_unknown_versions_and_garbage_are_not() {
        let mut v: serde_json::Value = serde_json::to_value(step().envelope("k")).unwrap();
        v["added_later"] = serde_json::json!(true);
        assert!(Envelope::parse(&v.to_string()).is_ok());
        v["v"] = serde_json::json!(99);
        assert!(matches!(Envelope::parse(&v.to_string()), Err(Error::Invalid { .. })));
        assert!(matches!(Envelope::parse("{\"type\":\"Nope\"}"), Err(Error::Invalid { .. })));
        assert!(matches!(Envelope::parse("not json"), Err(Error::Invalid { .. })));
    }
}

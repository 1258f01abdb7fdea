//! The handlers: each takes one message kind off its queue and runs its use case. The embedded
//! runtime and the Lambda entrypoints wrap the same handlers.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::inbound::batch::{BatchHandler, EnvelopeHandler, MessageHandler};
use crate::messages::{CHAIN, Envelope, Link, Message, queues};
use crate::ports::ReceivedMessage;
use crate::usecases::app::App;
use crate::usecases::scan::{Scanner, deliver};
use crate::usecases::sync::{SyncMode, Syncer};
use crate::usecases::{recovery, rotation, run_step};
use crate::{Error, Result};

fn unexpected(handler: &str, message: &Message) -> Error {
    Error::invalid("message", format!("{handler} does not handle {}", message.queue()))
}

/// sync: `SyncRequested` → read the integration from Graph → `ScanRequested`.
pub struct SyncHandler(pub App);

#[async_trait]
impl MessageHandler for SyncHandler {
    fn name(&self) -> &'static str {
        "sync"
    }

    async fn handle(&self, envelope: Envelope, received: &ReceivedMessage) -> Result<()> {
        let Message::SyncRequested { integration, full } = &envelope.message else {
            return Err(unexpected(self.name(), &envelope.message));
        };
        let s = &self.0;
        if s.disabled.contains(integration) {
            // A timer or request from before it was disabled: nothing to do, and nothing wrong.
            tracing::info!(integration = %integration, "sync skipped: the integration is disabled");
            return Ok(());
        }
        let directory = s.directory(integration)?;
        let mode = if *full { SyncMode::Full } else { SyncMode::Auto };
        Syncer { directory: directory.as_ref(), store: s.store.as_ref(), clock: s.clock.as_ref(), progress: &|_| {} }
            .sync(integration, mode)
            .await?;
        // Keyed by the sync message, so a redelivered sync asks for one scan, not two.
        let scan = Message::ScanRequested { integration: Some(integration.clone()) }
            .envelope(format!("scan-after:{}", received.id));
        s.queue.send(&scan.message.queue(), scan.to_outgoing(Duration::ZERO)?).await?;
        Ok(())
    }
}

/// expiry-scan: `ScanRequested` → lifecycle, alerts (`AlertRequested` per sink), `RotateRequested`
/// for what is due; `AlertRequested` → the alert delivered to its sink.
pub struct ScanHandler(pub App);

#[async_trait]
impl MessageHandler for ScanHandler {
    fn name(&self) -> &'static str {
        "expiry-scan"
    }

    async fn handle(&self, envelope: Envelope, _: &ReceivedMessage) -> Result<()> {
        let s = &self.0;
        let integration = match &envelope.message {
            Message::ScanRequested { integration } => integration,
            // The scan's outbox: one alert to one sink; a failure is retried by the queue.
            Message::AlertRequested { alert, sink } => return deliver(&s.sinks, alert, sink).await,
            other => return Err(unexpected(self.name(), other)),
        };
        Scanner {
            store: s.store.as_ref(),
            queue: s.queue.as_ref(),
            clock: s.clock.as_ref(),
            policies: &s.policies,
            sinks: &s.sinks,
            disabled: &s.disabled,
        }
        .scan(integration.as_ref())
        .await?;
        Ok(())
    }
}

/// rotate: `RotateRequested` → claim, create the new secret, seal it, start the steps.
pub struct RotateHandler(pub App);

#[async_trait]
impl MessageHandler for RotateHandler {
    fn name(&self) -> &'static str {
        "rotate"
    }

    async fn handle(&self, envelope: Envelope, received: &ReceivedMessage) -> Result<()> {
        let Message::RotateRequested { credential, trigger, dry_run, execution, .. } = envelope.message else {
            return Err(unexpected(self.name(), &envelope.message));
        };
        if dry_run {
            // Dry runs are answered where they are asked; one that reaches the queue changes nothing.
            return Ok(());
        }
        let result =
            rotation::rotate(&self.0, &credential, trigger.clone(), execution, received.receive_count, &received.id.0)
                .await;
        if let Err(err) = &result
            && recovery::last_delivery(received.receive_count)
        {
            recovery::dead_lettered(&self.0, execution, &credential, Some(&trigger), err).await;
        }
        result
    }
}

/// run-step: `StepRequested` → exactly one step of one execution.
pub struct StepHandler(pub App);

#[async_trait]
impl MessageHandler for StepHandler {
    fn name(&self) -> &'static str {
        "run-step"
    }

    async fn handle(&self, envelope: Envelope, received: &ReceivedMessage) -> Result<()> {
        let Message::StepRequested { execution, credential, step, attempt, .. } = envelope.message else {
            return Err(unexpected(self.name(), &envelope.message));
        };
        let result = run_step::run_step(&self.0, execution, step, attempt, received.receive_count).await;
        if let Err(err) = &result
            && recovery::last_delivery(received.receive_count)
        {
            recovery::dead_lettered(&self.0, Some(execution), &credential, None, err).await;
        }
        result
    }
}

/// grace-cleanup: `CleanupRequested` → resume stalled executions, remove old secrets whose grace
/// ended, sweep orphans.
pub struct CleanupHandler(pub App);

#[async_trait]
impl MessageHandler for CleanupHandler {
    fn name(&self) -> &'static str {
        "grace-cleanup"
    }

    async fn handle(&self, envelope: Envelope, _: &ReceivedMessage) -> Result<()> {
        let Message::CleanupRequested { integration } = &envelope.message else {
            return Err(unexpected(self.name(), &envelope.message));
        };
        // The recovery sweep first, and on its own: a cleanup failure never stops it.
        if let Err(err) = recovery::resume_stalled(&self.0).await {
            tracing::error!(error = %err.chain(), "the recovery sweep failed");
        }
        crate::usecases::cleanup::cleanup(&self.0, integration.as_ref()).await.map(drop)
    }
}

/// The handler of `queue`, wrapped for batches: the one mapping from the chain's table
/// ([`crate::messages::CHAIN`]) to code, which `rotator serve`, the Lambda functions and the
/// tests all use. `None` for a queue that is not the chain's.
pub fn batch_handler(queue: &str, app: App) -> Option<Arc<dyn BatchHandler>> {
    Some(match queue {
        queues::SYNC => Arc::new(EnvelopeHandler(SyncHandler(app))),
        queues::SCAN => Arc::new(EnvelopeHandler(ScanHandler(app))),
        queues::ROTATE => Arc::new(EnvelopeHandler(RotateHandler(app))),
        queues::STEP => Arc::new(EnvelopeHandler(StepHandler(app))),
        queues::CLEANUP => Arc::new(EnvelopeHandler(CleanupHandler(app))),
        _ => return None,
    })
}

/// Every link of the chain with its handler, in the table's order.
pub fn chain_handlers(app: &App) -> Vec<(&'static Link, Arc<dyn BatchHandler>)> {
    CHAIN.iter().filter_map(|link| batch_handler(link.queue, app.clone()).map(|h| (link, h))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_link_of_the_chain_has_its_handler_under_its_own_name() {
        let app = App::test();
        let handlers = chain_handlers(&app);
        assert_eq!(handlers.len(), CHAIN.len());
        for link in CHAIN {
            assert!(batch_handler(link.queue, app.clone()).is_some(), "{} has no handler", link.queue);
        }
        assert!(batch_handler("no-such-queue", app).is_none());
    }
}

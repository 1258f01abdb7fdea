//! Which SQS queues stand for a queue of the specs: their names, their URLs (looked up once and
//! cached, so a cold start makes no call before its first real one), and creating them as the SAM
//! template does, for tests and emulators.

use aws_sdk_sqs::types::QueueAttributeName;
use entra_rotator::ports::QueueSpec;
use entra_rotator::{Error, Result};

use super::SqsQueue;
use super::receiving::visibility_secs;
use crate::error;

/// Retention of a source queue (4 days) and of its dead-letter queue (14 days, longer, as SQS needs).
const QUEUE_RETENTION_SECS: u32 = 4 * 24 * 3600;
const DLQ_RETENTION_SECS: u32 = 14 * 24 * 3600;

impl SqsQueue {
    /// Creates every queue and its dead-letter queue as the SAM template does (for tests and
    /// emulators): the dead-letter queue first (retention 14 days), then the queue with the spec's
    /// visibility timeout, a redrive policy with the spec's `maxReceiveCount`, FIFO attributes when
    /// FIFO, retention 4 days. Creating a queue that exists with the same attributes is a no-op.
    pub async fn create_queues(&self) -> Result<()> {
        for spec in self.sorted_specs() {
            let dlq_name = self.sqs_name(spec, true);
            let mut dlq = self
                .sqs
                .create_queue()
                .queue_name(&dlq_name)
                .attributes(QueueAttributeName::MessageRetentionPeriod, DLQ_RETENTION_SECS.to_string());
            if spec.fifo {
                dlq = dlq.attributes(QueueAttributeName::FifoQueue, "true");
            }
            let out = dlq.send().await.map_err(|e| error::queue(format!("create queue {dlq_name}"), e))?;
            let dlq_url = self.remember_url(&dlq_name, out.queue_url())?;
            let attrs = self
                .sqs
                .get_queue_attributes()
                .queue_url(&dlq_url)
                .attribute_names(QueueAttributeName::QueueArn)
                .send()
                .await
                .map_err(|e| error::queue(format!("read the ARN of queue {dlq_name}"), e))?;
            let dlq_arn = attrs
                .attributes()
                .and_then(|a| a.get(&QueueAttributeName::QueueArn))
                .ok_or_else(|| missing(&dlq_name, "create queue", "no QueueArn"))?;
            let redrive = serde_json::json!({
                "deadLetterTargetArn": dlq_arn,
                "maxReceiveCount": spec.max_receive_count,
            });
            let name = self.sqs_name(spec, false);
            let mut queue = self
                .sqs
                .create_queue()
                .queue_name(&name)
                .attributes(QueueAttributeName::VisibilityTimeout, visibility_secs(spec.visibility_timeout).to_string())
                .attributes(QueueAttributeName::MessageRetentionPeriod, QUEUE_RETENTION_SECS.to_string())
                .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string());
            if spec.fifo {
                queue = queue
                    .attributes(QueueAttributeName::FifoQueue, "true")
                    .attributes(QueueAttributeName::ContentBasedDeduplication, "false");
            }
            let out = queue.send().await.map_err(|e| error::queue(format!("create queue {name}"), e))?;
            self.remember_url(&name, out.queue_url())?;
        }
        Ok(())
    }

    pub(super) fn sorted_specs(&self) -> Vec<&QueueSpec> {
        let mut specs: Vec<_> = self.specs.values().collect();
        specs.sort_by(|a, b| a.name.cmp(&b.name));
        specs
    }

    /// The SQS name of a queue (or of its dead-letter queue).
    fn sqs_name(&self, spec: &QueueSpec, dlq: bool) -> String {
        let dlq = if dlq { "-dlq" } else { "" };
        let fifo = if spec.fifo { ".fifo" } else { "" };
        format!("{}{}{dlq}{fifo}", self.prefix, spec.name)
    }

    fn cached_url(&self, name: &str) -> Option<String> {
        self.urls.lock().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    fn remember_url(&self, name: &str, url: Option<&str>) -> Result<String> {
        let url = url.ok_or_else(|| missing(name, "resolve queue", "no QueueUrl"))?.to_owned();
        self.urls.lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_owned(), url.clone());
        Ok(url)
    }

    /// The URL of a queue (or its dead-letter queue), looked up once.
    pub(super) async fn url(&self, spec: &QueueSpec, dlq: bool) -> Result<String> {
        let name = self.sqs_name(spec, dlq);
        if let Some(url) = self.cached_url(&name) {
            return Ok(url);
        }
        let out = self
            .sqs
            .get_queue_url()
            .queue_name(&name)
            .send()
            .await
            .map_err(|e| error::queue(format!("resolve queue {name}"), e))?;
        self.remember_url(&name, out.queue_url())
    }
}

fn missing(queue: &str, operation: &str, what: &str) -> Error {
    Error::Queue { context: format!("{operation} {queue}"), transient: false, source: what.to_owned().into() }
}

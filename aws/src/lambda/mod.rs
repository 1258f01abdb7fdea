//! The Lambda glue: the shared handlers run as Lambda functions. Each function's `main.rs` builds a
//! [`Deployment`] (configuration and adapters, read once at cold start, failing fast with a clear
//! message) and hands one handler to [`run_queue_function`] or the router to [`run_http_api`].
//!
//! A queue function takes SQS batches (reporting partial batch failures, so one bad message never
//! fails the batch) and, for the timer-driven ones, EventBridge scheduled events, which put the
//! timer's message on the function's own queue (one per schedule period), so the work itself flows
//! through SQS with its retries and dead-letter queue. No AWS call is made before the first poll
//! of the Runtime API.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use entra_rotator::adapters::system_clock::SystemClock;
use entra_rotator::config::{Config, Env, ProcessEnv};
use entra_rotator::inbound::batch::BatchHandler;
use entra_rotator::inbound::scheduler::{Scheduler, Timer};
use entra_rotator::ports::{Clock, MessageId, Queue, QueueName, ReceivedMessage};
use entra_rotator::usecases::app::App;
use entra_rotator::wiring;
use entra_rotator::{Error, Result};
use serde_json::Value;
use time::OffsetDateTime;

#[cfg(feature = "lambda-http")]
mod http;
#[cfg(feature = "lambda-http")]
pub use http::{lambda_router, run_http_api, verified_caller};

use crate::settings::AwsSettings;
use crate::sqs::{ID_ATTRIBUTE, not_before, receipt_for};
use crate::{DynamoStore, KmsKeyRing, SqsQueue};

/// Where the configuration file is looked for when `ROTATOR_CONFIG` is not set: beside `bootstrap`.
const CONFIG_VAR: &str = "ROTATOR_CONFIG";

/// What the parts of a cold start took.
struct BuildTimings {
    config: Duration,
    aws: Duration,
    services: Duration,
}

/// Everything a function needs, built once per cold start.
pub struct Deployment {
    pub config: Config,
    pub settings: AwsSettings,
    pub services: App,
    pub queue: Arc<SqsQueue>,
}

impl Deployment {
    /// Reads the environment and the configuration file and builds the adapters. Makes no AWS call:
    /// clients connect on first use.
    ///
    /// Logs one `cold start` line with what each part took (in microseconds), so the start-up
    /// benchmark can say where the time goes: `sdk_us` (the AWS SDK configuration: region and
    /// credential chain), `config_us` (the configuration file and its step files), `aws_us` (the
    /// DynamoDB, SQS and KMS clients), `services_us` (Graph clients, alert sinks, step runners).
    pub async fn from_env() -> Result<Self> {
        let started = Instant::now();
        let env = ProcessEnv;
        let settings = AwsSettings::from_env(&env)?;
        let sdk = settings.sdk_config().await;
        let sdk_us = started.elapsed().as_micros();
        let (deployment, timings) = Self::build_timed(&env, settings, &sdk)?;
        tracing::info!(
            sdk_us,
            config_us = timings.config.as_micros(),
            aws_us = timings.aws.as_micros(),
            services_us = timings.services.as_micros(),
            total_us = started.elapsed().as_micros(),
            "cold start"
        );
        Ok(deployment)
    }

    /// As [`Deployment::from_env`], with the environment and SDK configuration given (tests).
    pub fn build(env: &dyn Env, settings: AwsSettings, sdk: &SdkConfig) -> Result<Self> {
        Self::build_timed(env, settings, sdk).map(|(d, _)| d)
    }

    fn build_timed(env: &dyn Env, settings: AwsSettings, sdk: &SdkConfig) -> Result<(Self, BuildTimings)> {
        let mut lap = Instant::now();
        let mut split = || {
            let now = Instant::now();
            let took = now - lap;
            lap = now;
            took
        };
        let path = env
            .var(CONFIG_VAR)
            .map(PathBuf::from)
            .or_else(|| env.var("LAMBDA_TASK_ROOT").map(|root| PathBuf::from(root).join("rotator.toml")))
            .ok_or_else(|| Error::Config(format!("set {CONFIG_VAR} to the configuration file")))?;
        let config = Config::load(&path, env)?;
        let config_took = split();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let dynamo = aws_sdk_dynamodb::Client::new(sdk);
        let store = Arc::new(DynamoStore::new(dynamo.clone(), settings.table.clone(), clock.clone()));
        let queue = Arc::new(SqsQueue::new(
            aws_sdk_sqs::Client::new(sdk),
            dynamo,
            settings.table.clone(),
            settings.queue_prefix.clone(),
            crate::settings::queue_specs(),
        ));
        let keys = Arc::new(KmsKeyRing::new(aws_sdk_kms::Client::new(sdk), settings.kms_key.clone()));
        let aws_took = split();
        // The function's own AWS identity (its role), for federated Entra sign-in, EKS tokens and
        // the stored-secret fallback's Secrets Manager secret (at the deployment's endpoint).
        let aws = sdk.credentials_provider().map(|credentials| entra_rotator::adapters::aws_identity::AwsSigning {
            credentials,
            region: sdk.region().map(ToString::to_string),
            endpoint_url: settings.endpoint.clone(),
        });
        let services = wiring::services_with_aws(&config, store, queue.clone(), clock, keys, aws)?;
        let timings = BuildTimings { config: config_took, aws: aws_took, services: split() };
        Ok((Self { config, settings, services, queue }, timings))
    }

    /// Once per cold start, in the background: each integration's sign-in and Graph permissions,
    /// logged (`rotator integrations check` on the deployment's own identity).
    pub fn log_integration_checks(&self) {
        let services = self.services.clone();
        tokio::spawn(async move { entra_rotator::usecases::integration_check::log_checks(&services).await });
    }

    /// The function of one queue of the chain, with the handler the chain's table gives it
    /// ([`entra_rotator::inbound::handlers::batch_handler`]).
    pub fn chain_function(&self, queue: &str) -> Result<QueueFunction> {
        let handler = entra_rotator::inbound::handlers::batch_handler(queue, self.services.clone())
            .ok_or_else(|| Error::Config(format!("{queue} is not a queue of the chain")))?;
        Ok(self.queue_function(queue, handler))
    }

    /// The function of one queue: its handler and the timers whose messages travel on it.
    pub fn queue_function(&self, queue: &str, handler: Arc<dyn BatchHandler>) -> QueueFunction {
        let name = QueueName::new(queue);
        let timers = wiring::timers(&self.config).into_iter().filter(|t| t.message.queue() == name).collect();
        QueueFunction { queue: self.queue.clone(), name, handler, clock: self.services.clock.clone(), timers }
    }
}

/// Tracing as Lambda expects it: JSON lines when the function's log format is JSON.
pub fn init_tracing() {
    lambda_runtime::tracing::init_default_subscriber();
}

/// A function fed by one SQS queue (and perhaps by schedules).
pub struct QueueFunction {
    queue: Arc<dyn Queue>,
    name: QueueName,
    handler: Arc<dyn BatchHandler>,
    clock: Arc<dyn Clock>,
    timers: Vec<Timer>,
}

/// The events a queue function is invoked with.
#[derive(Debug)]
pub enum FunctionEvent {
    Sqs(SqsEvent),
    Scheduled(Box<EventBridgeEvent>),
}

impl FunctionEvent {
    /// Tells an SQS batch (`Records`) from an EventBridge event (`detail-type`).
    pub fn parse(payload: Value) -> Result<Self> {
        if payload.get("Records").is_some() {
            return serde_json::from_value(payload)
                .map(Self::Sqs)
                .map_err(|e| Error::invalid("event", format!("not an SQS event: {e}")));
        }
        if payload.get("detail-type").is_some() {
            return serde_json::from_value(payload)
                .map(|e| Self::Scheduled(Box::new(e)))
                .map_err(|e| Error::invalid("event", format!("not an EventBridge event: {e}")));
        }
        Err(Error::invalid("event", "neither an SQS batch nor an EventBridge event"))
    }
}

impl QueueFunction {
    pub fn new(
        queue: Arc<dyn Queue>,
        name: QueueName,
        handler: Arc<dyn BatchHandler>,
        clock: Arc<dyn Clock>,
        timers: Vec<Timer>,
    ) -> Self {
        Self { queue, name, handler, clock, timers }
    }

    /// One invocation. An SQS batch answers with its failed items; a scheduled event sends the
    /// timers' messages and answers `{}`. Only an event that cannot be understood, or a schedule
    /// whose message cannot be sent, fails the invocation (and Lambda retries it).
    pub async fn call(&self, payload: Value) -> Result<Value> {
        match FunctionEvent::parse(payload)? {
            FunctionEvent::Sqs(event) => {
                let response = self.sqs_batch(event).await;
                serde_json::to_value(response).map_err(|e| Error::invalid("response", e.to_string()))
            }
            FunctionEvent::Scheduled(event) => {
                if event.detail_type != "Scheduled Event" {
                    return Err(Error::invalid("event", format!("unexpected EventBridge event {}", event.detail_type)));
                }
                let scheduler = Scheduler::new(self.queue.clone(), self.clock.clone(), self.timers.clone());
                for timer in &self.timers {
                    scheduler.fire(timer).await?;
                }
                Ok(Value::Object(Default::default()))
            }
        }
    }

    /// Runs a batch one message at a time and reports what failed. In a FIFO batch, once a message
    /// of a group fails, the group's later messages are not run and are reported too, so the
    /// group's order holds (as Lambda's documentation asks).
    pub async fn sqs_batch(&self, event: SqsEvent) -> SqsBatchResponse {
        let now = self.clock.now();
        let mut response = SqsBatchResponse::default();
        let mut stopped_groups: Vec<String> = Vec::new();
        for record in &event.records {
            let sqs_id = record.message_id.clone().unwrap_or_default();
            let mut fail = || {
                let mut item = BatchItemFailure::default();
                item.item_identifier = sqs_id.clone();
                response.batch_item_failures.push(item);
            };
            let received = match received_from_record(record) {
                Ok(r) => r,
                Err(e) => {
                    // Without a receipt nothing can be done to it; Lambda retries it, then dead-letters it.
                    tracing::warn!(queue = %self.name, message = %sqs_id, error = %e.chain(), "unreadable record");
                    fail();
                    continue;
                }
            };
            if let Some(group) = &received.group
                && stopped_groups.contains(group)
            {
                fail();
                continue;
            }
            // A FIFO message sent with a delay: not yet. Hide it for the time remaining.
            if let Some(at) = not_before(&string_attributes(record))
                && at > now
            {
                let wait = Duration::try_from(at - now).unwrap_or_default();
                if let Err(e) = self.queue.change_visibility(&self.name, &received.receipt, wait).await {
                    tracing::warn!(queue = %self.name, message = %received.id, error = %e.chain(), "could not defer");
                }
                stopped_groups.extend(received.group.clone());
                fail();
                continue;
            }
            let failures = self.handler.handle(std::slice::from_ref(&received)).await;
            let Some(failure) = failures.into_iter().next() else { continue };
            if let Err(e) = self.queue.record_failure(&self.name, &received.receipt, &failure.error).await {
                tracing::warn!(queue = %self.name, message = %received.id, error = %e.chain(), "recording failure failed");
            }
            if let Some(after) = failure.retry_after
                && let Err(e) = self.queue.change_visibility(&self.name, &received.receipt, after).await
            {
                tracing::debug!(queue = %self.name, message = %received.id, error = %e.chain(), "visibility not changed");
            }
            stopped_groups.extend(received.group.clone());
            fail();
        }
        response
    }
}

/// The string message attributes of a record.
fn string_attributes(record: &SqsMessage) -> HashMap<String, String> {
    record.message_attributes.iter().filter_map(|(k, v)| v.string_value.clone().map(|s| (k.clone(), s))).collect()
}

/// A record of an SQS event as the handlers see a received message.
pub fn received_from_record(record: &SqsMessage) -> Result<ReceivedMessage> {
    let sqs_id = record.message_id.clone().ok_or_else(|| Error::invalid("event", "an SQS record without messageId"))?;
    let sqs_receipt = record
        .receipt_handle
        .as_deref()
        .ok_or_else(|| Error::invalid("event", "an SQS record without receiptHandle"))?;
    let id = record.message_attributes.get(ID_ATTRIBUTE).and_then(|a| a.string_value.clone()).unwrap_or(sqs_id);
    let receive_count = record.attributes.get("ApproximateReceiveCount").and_then(|c| c.parse().ok()).unwrap_or(1);
    let sent_at = record
        .attributes
        .get("SentTimestamp")
        .and_then(|t| t.parse::<i128>().ok())
        .and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    Ok(ReceivedMessage {
        receipt: receipt_for(&id, sqs_receipt),
        id: MessageId(id),
        body: record.body.clone().unwrap_or_default(),
        receive_count,
        group: record.attributes.get("MessageGroupId").cloned(),
        sent_at,
    })
}

/// Serves a queue function until the Lambda environment stops it.
pub async fn run_queue_function(function: QueueFunction) -> std::result::Result<(), lambda_runtime::Error> {
    let function = Arc::new(function);
    lambda_runtime::run(lambda_runtime::service_fn(move |event: lambda_runtime::LambdaEvent<Value>| {
        let function = function.clone();
        async move { function.call(event.payload).await.map_err(|e| lambda_runtime::Error::from(e.chain())) }
    }))
    .await
}

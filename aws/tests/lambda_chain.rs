//! The rotation chain on the AWS adapters: DynamoDB, SQS and KMS on the moto server, the simulated
//! tenant over HTTPS, and the Lambda glue driven the way Lambda's SQS event source mapping drives
//! it (receive a batch, invoke the function with the SQS event JSON, delete what did not fail).
//! The promises of DESIGN §4 hold here as they do on the embedded runtime.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use entra_rotator::adapters::graph::{GraphClient, RetryPolicy, TokenSource};
use entra_rotator::adapters::system_clock::SystemClock;
use entra_rotator::domain::Span;
use entra_rotator::domain::execution::{Execution, ExecutionStatus};
use entra_rotator::domain::ids::{ClientId, CredentialId, IntegrationId, PolicyId, TenantId};
use entra_rotator::domain::policy::{PolicySet, RotationPolicy};
use entra_rotator::domain::secret::SecretValue;
use entra_rotator::domain::steps::StepDefinition;
use entra_rotator::inbound::batch::{BatchHandler, EnvelopeHandler, MessageFailure};
use entra_rotator::inbound::handlers::{CleanupHandler, RotateHandler, ScanHandler, StepHandler};
use entra_rotator::messages::{Message, default_queue_specs, queues};
use entra_rotator::ports::key_ring::SealedValue;
use entra_rotator::ports::{Clock, Queue, QueueName, ReceivedMessage, Store};
use entra_rotator::testing::faults::{FlakyKeyRing, FlakyQueue, FlakyStore};
use entra_rotator::usecases::app::{App, Directories, RotationSettings};
use entra_rotator::usecases::sync::{SyncMode, Syncer};
use entra_rotator_aws::lambda::QueueFunction;
use entra_rotator_aws::testing::{sdk_config, unique};
use entra_rotator_aws::{DynamoStore, KmsKeyRing, SqsQueue};
use entra_sim::{NewApp, Sim, SimOptions};
use serde_json::{Value, json};
use uuid::Uuid;

#[path = "../../tests/flows/chain.rs"]
mod chain;
use chain::World;
#[path = "../../tests/flows/azure.rs"]
mod azure;
#[path = "../../tests/flows/kubernetes.rs"]
mod kubernetes;

// The scenarios both worlds run (tests/flows/chain.rs), here on the AWS adapters and the Lambda glue.
chain::chain_scenarios!(Deployment::new);
// The product notes' Key Vault + App Service runbook (tests/flows/azure.rs), on the same world.
azure::azure_scenarios!(Deployment::new);
// The Kubernetes step's scenarios (tests/flows/kubernetes.rs), on the same world.
kubernetes::kubernetes_scenarios!(Deployment::new);

/// What Lambda's event source mapping does for one queue: receive, invoke, delete the successes.
struct Mapping {
    sqs: aws_sdk_sqs::Client,
    url: String,
    arn: String,
    function: QueueFunction,
    /// Every body this mapping delivered, to search for secrets.
    delivered: Arc<Mutex<Vec<String>>>,
}

impl Mapping {
    /// One poll: returns how many messages the batch held.
    async fn poll(&self) -> usize {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(10)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap();
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            return 0;
        }
        let records: Vec<Value> = messages
            .iter()
            .map(|m| {
                self.delivered.lock().unwrap().push(m.body.clone().unwrap_or_default());
                let attributes: HashMap<String, String> = m
                    .attributes()
                    .map(|a| a.iter().map(|(k, v)| (k.as_str().to_owned(), v.clone())).collect())
                    .unwrap_or_default();
                let message_attributes: serde_json::Map<String, Value> = m
                    .message_attributes()
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| {
                                (k.clone(), json!({ "stringValue": v.string_value(), "dataType": v.data_type() }))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                json!({
                    "messageId": m.message_id(),
                    "receiptHandle": m.receipt_handle(),
                    "body": m.body(),
                    "attributes": attributes,
                    "messageAttributes": message_attributes,
                    "md5OfBody": m.md5_of_body(),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": self.arn,
                    "awsRegion": "us-east-1",
                })
            })
            .collect();
        let response = self.function.call(json!({ "Records": records })).await.unwrap();
        let failed: Vec<String> = response["batchItemFailures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["itemIdentifier"].as_str().unwrap().to_owned())
            .collect();
        for m in &messages {
            if !failed.iter().any(|f| Some(f.as_str()) == m.message_id()) {
                self.sqs
                    .delete_message()
                    .queue_url(&self.url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
        messages.len()
    }
}

/// The AWS world: DynamoDB, SQS and KMS on moto, real time, every queue polled through the Lambda
/// glue as its event source mapping would.
struct Deployment {
    sim: Sim,
    store: Arc<DynamoStore>,
    table: String,
    dynamo: aws_sdk_dynamodb::Client,
    queue: Arc<SqsQueue>,
    /// The queue as the handlers see it: SQS, with sends that fail on request.
    flaky_queue: Arc<FlakyQueue>,
    keys: Arc<FlakyKeyRing>,
    services: App,
    mappings: Vec<Mapping>,
    delivered: Arc<Mutex<Vec<String>>>,
    sqs: aws_sdk_sqs::Client,
    prefix: String,
    app: Uuid,
    old: CredentialId,
}

/// The chain's queues with a visibility timeout of seconds, so that a message whose handler failed
/// comes back quickly (in production it is six times the function's timeout).
fn specs() -> Vec<entra_rotator::ports::QueueSpec> {
    default_queue_specs()
        .into_iter()
        .map(|s| entra_rotator::ports::QueueSpec { visibility_timeout: Duration::from_secs(3), ..s })
        .collect()
}

/// The policy's grace period in this world: seconds, so that a scenario can wait it out.
const GRACE: Duration = Duration::from_secs(4);

/// How long (real time) the chain may take to get where a scenario waits for.
const RUN_BUDGET: Duration = Duration::from_secs(90);

impl Deployment {
    async fn new(replication_delay: Duration) -> Self {
        let config = sdk_config().await;
        let dynamo = aws_sdk_dynamodb::Client::new(&config);
        let sqs = aws_sdk_sqs::Client::new(&config);
        let kms = aws_sdk_kms::Client::new(&config);
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);

        let table = unique("chain");
        DynamoStore::create_table(&dynamo, &table).await.unwrap();
        let store = Arc::new(DynamoStore::new(dynamo.clone(), table.clone(), clock.clone()));
        let prefix = format!("{}-", unique("chain"));
        let queue = Arc::new(SqsQueue::new(sqs.clone(), dynamo.clone(), table.clone(), prefix.clone(), specs()));
        queue.create_queues().await.unwrap();
        let key = kms.create_key().send().await.unwrap().key_metadata.unwrap().arn.unwrap();
        let keys = Arc::new(FlakyKeyRing::new(Arc::new(KmsKeyRing::new(kms, key))));

        let sim = Sim::start(SimOptions { apps: 3, seed: 11, replication_delay, ..Default::default() }).await.unwrap();
        let graph = GraphClient::new(
            sim.graph_base_url(),
            sim.authority_host(),
            TenantId::parse(&sim.tenant_id()).unwrap(),
            TokenSource::ClientSecret {
                client_id: ClientId::parse(&sim.management_client_id()).unwrap(),
                secret: SecretValue::new(sim.management_secret()),
            },
            Some(sim.ca_pem().as_bytes()),
            RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::from_millis(5),
                max_delay: Duration::from_millis(20),
                budget: Duration::from_secs(5),
            },
        )
        .unwrap();
        let integration = IntegrationId::parse("contoso").unwrap();
        let mut directories = Directories::new();
        directories.insert(integration.clone(), Arc::new(graph));
        let policy = RotationPolicy {
            grace_period: Span::from_secs(GRACE.as_secs()),
            // No step that publishes the secret runs yet: the chain's worlds deliver by hand.
            manual_delivery: true,
            steps: chain::rollout_steps(&sim, "abort"),
            ..RotationPolicy::with_defaults(PolicyId::parse("default").unwrap())
        };
        let flaky_queue = Arc::new(FlakyQueue::new(queue.clone()));
        let services = App {
            store: store.clone(),
            queue: flaky_queue.clone(),
            clock: clock.clone(),
            directories: Arc::new(directories),
            disabled: Arc::new(Default::default()),
            policies: Arc::new(PolicySet::new(vec![(policy, vec![])])),
            sinks: Arc::new(vec![]),
            keys: keys.clone(),
            rollout: Arc::new(azure::rollout(&sim, &integration)),
            settings: RotationSettings {
                verify_budget: Duration::from_secs(60),
                orphan_safety_delay: Duration::from_secs(2),
                // Seconds of real time: a stalled execution is resumed within the grace period.
                stall_after: Duration::from_secs(2),
            },
        };

        let delivered = Arc::new(Mutex::new(Vec::new()));
        let mappings = mappings(&sqs, &prefix, &services, delivered.clone()).await;

        let app = sim.tenant().add_app(NewApp::named("Payroll API"));
        let end = sim.now() + time::Duration::days(10);
        let added = sim.tenant().add_password_to(app.object_id, end).unwrap();
        Syncer {
            directory: services.directory(&integration).unwrap().as_ref(),
            store: store.as_ref(),
            clock: clock.as_ref(),
            progress: &|_| {},
        }
        .sync(&integration, SyncMode::Full)
        .await
        .unwrap();
        let old = CredentialId::parse(&format!("contoso/app/{}/{}", app.object_id, added.key_id)).unwrap();
        assert!(store.get_credential(&old).await.unwrap().is_some(), "the sync wrote the inventory to DynamoDB");
        Self {
            sim,
            store,
            table,
            dynamo,
            queue,
            flaky_queue,
            keys,
            services,
            mappings,
            delivered,
            sqs,
            prefix,
            app: app.object_id,
            old,
        }
    }

    /// Polls every mapping until `done` holds or `max` passes.
    async fn poll_until(&self, max: Duration, done: impl AsyncFn() -> bool) {
        let start = std::time::Instant::now();
        while start.elapsed() < max {
            let mut did = 0;
            for m in &self.mappings {
                did += m.poll().await;
            }
            if done().await {
                return;
            }
            if did == 0 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        panic!("the chain did not get there within {max:?}");
    }

    /// Sends one `CleanupRequested` and polls the grace-cleanup mapping until it was delivered.
    async fn cleanup(&self) {
        let m = Message::CleanupRequested { integration: None }.envelope(format!("cleanup:{}", Uuid::new_v4()));
        let out = m.to_outgoing(Duration::ZERO).unwrap();
        let body = out.body.clone();
        self.queue.send(&QueueName::new(queues::CLEANUP), out).await.unwrap();
        let cleanup = &self.mappings[2];
        let start = std::time::Instant::now();
        while !self.delivered.lock().unwrap().contains(&body) {
            assert!(start.elapsed() < RUN_BUDGET, "the cleanup message was not delivered within {RUN_BUDGET:?}");
            if cleanup.poll().await == 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Every item of the table, as text.
    async fn table_text(&self) -> String {
        let mut out = String::new();
        let mut start = None;
        loop {
            let page =
                self.dynamo.scan().table_name(&self.table).set_exclusive_start_key(start.take()).send().await.unwrap();
            for item in page.items() {
                out.push_str(&format!("{item:?}\n"));
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        out
    }
}

impl World for Deployment {
    fn app(&self) -> &App {
        &self.services
    }
    fn sim(&self) -> &Sim {
        &self.sim
    }
    fn credential(&self) -> &CredentialId {
        &self.old
    }
    fn application(&self) -> Uuid {
        self.app
    }

    async fn run_until(&self, done: impl AsyncFn() -> bool) {
        self.poll_until(RUN_BUDGET, done).await;
    }

    async fn pass_grace(&self) {
        tokio::time::sleep(GRACE + Duration::from_secs(1)).await;
    }

    async fn cleanup(&self) {
        Deployment::cleanup(self).await;
    }

    async fn use_flaky_store(&mut self) -> Arc<FlakyStore> {
        let flaky = Arc::new(FlakyStore::new(self.store.clone()));
        self.services.store = flaky.clone();
        self.mappings = mappings(&self.sqs, &self.prefix, &self.services, self.delivered.clone()).await;
        flaky
    }

    async fn set_plan(&mut self, steps: Vec<StepDefinition>, manual_delivery: bool) {
        let policy = RotationPolicy {
            grace_period: Span::from_secs(GRACE.as_secs()),
            steps,
            manual_delivery,
            ..RotationPolicy::with_defaults(PolicyId::parse("default").unwrap())
        };
        self.services.policies = Arc::new(PolicySet::new(vec![(policy, vec![])]));
        self.mappings = mappings(&self.sqs, &self.prefix, &self.services, self.delivered.clone()).await;
    }

    fn fail_next_seal(&self) {
        self.keys.fail_seals.store(1, Ordering::SeqCst);
    }

    fn fail_next_send(&self, queue: &str) {
        self.flaky_queue.fail_sends_to(queue, 1);
    }

    fn fail_next_send_where(&self, queue: &str, when: fn(&str) -> bool) {
        self.flaky_queue.fail_send_where(queue, when);
    }

    /// The chain runs to completion; then every message it delivered is sent again under a new
    /// deduplication id (as SQS may deliver it again), and delivered.
    async fn run_delivering_every_message_twice(&self, e: &Execution) -> Execution {
        self.run_until_status(e, ExecutionStatus::Completed).await;
        let bodies: Vec<String> = self.delivered.lock().unwrap().clone();
        for body in &bodies {
            let envelope = entra_rotator::messages::Envelope::parse(body).unwrap();
            let mut out = envelope.to_outgoing(Duration::ZERO).unwrap();
            out.dedup_id = Some(format!("again:{}", Uuid::new_v4()));
            self.queue.send(&envelope.message.queue(), out).await.unwrap();
        }
        self.poll_until(RUN_BUDGET, async || self.delivered.lock().unwrap().len() >= bodies.len() * 2).await;
        self.execution(e).await
    }

    fn delivered(&self) -> Vec<String> {
        self.delivered.lock().unwrap().clone()
    }

    async fn store_text(&self) -> String {
        self.table_text().await
    }

    fn assert_sealed_here(&self, sealed: &SealedValue) {
        assert!(sealed.encrypted_data_key.is_some(), "sealed under a KMS data key");
    }

    async fn reconfigure(&mut self, change: impl FnOnce(&mut App)) {
        change(&mut self.services);
        self.mappings = mappings(&self.sqs, &self.prefix, &self.services, self.delivered.clone()).await;
    }
}

/// The rotate, run-step, grace-cleanup and expiry-scan functions, each fed by its queue (in that
/// order: `cleanup` polls the third).
async fn mappings(
    sqs: &aws_sdk_sqs::Client,
    prefix: &str,
    services: &App,
    delivered: Arc<Mutex<Vec<String>>>,
) -> Vec<Mapping> {
    let mut out = Vec::new();
    for (name, handler) in [
        (queues::ROTATE, Arc::new(EnvelopeHandler(RotateHandler(services.clone()))) as Arc<dyn BatchHandler>),
        (queues::STEP, Arc::new(EnvelopeHandler(StepHandler(services.clone())))),
        (queues::CLEANUP, Arc::new(EnvelopeHandler(CleanupHandler(services.clone())))),
        (queues::SCAN, Arc::new(EnvelopeHandler(ScanHandler(services.clone())))),
    ] {
        let queue = services.queue.clone();
        out.push(mapping(sqs, prefix, name, queue, handler, services.clock.clone(), delivered.clone()).await);
    }
    out
}

async fn mapping(
    sqs: &aws_sdk_sqs::Client,
    prefix: &str,
    name: &str,
    queue: Arc<dyn Queue>,
    handler: Arc<dyn BatchHandler>,
    clock: Arc<dyn Clock>,
    delivered: Arc<Mutex<Vec<String>>>,
) -> Mapping {
    let url = sqs.get_queue_url().queue_name(format!("{prefix}{name}.fifo")).send().await.unwrap().queue_url.unwrap();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()
        .remove(&QueueAttributeName::QueueArn)
        .unwrap();
    let function = QueueFunction::new(queue, QueueName::new(name), handler, clock, vec![]);
    Mapping { sqs: sqs.clone(), url, arn, function, delivered }
}

/// Counts messages in progress per group, and the most ever in progress for one group.
#[derive(Default)]
struct Overlap {
    in_progress: Mutex<HashMap<String, usize>>,
    most: AtomicUsize,
    handled: AtomicUsize,
}

#[async_trait]
impl BatchHandler for Overlap {
    async fn handle(&self, batch: &[ReceivedMessage]) -> Vec<MessageFailure> {
        for m in batch {
            let group = m.group.clone().unwrap_or_default();
            let now = {
                let mut g = self.in_progress.lock().unwrap();
                let n = g.entry(group.clone()).or_default();
                *n += 1;
                *n
            };
            self.most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(150)).await;
            *self.in_progress.lock().unwrap().get_mut(&group).unwrap() -= 1;
            self.handled.fetch_add(1, Ordering::SeqCst);
        }
        vec![]
    }
}

#[tokio::test]
async fn two_messages_for_the_same_application_are_never_processed_at_once() {
    let config = sdk_config().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);
    let table = unique("overlap");
    DynamoStore::create_table(&dynamo, &table).await.unwrap();
    let prefix = format!("{}-", unique("overlap"));
    let queue = Arc::new(SqsQueue::new(sqs.clone(), dynamo, table, prefix.clone(), default_queue_specs()));
    queue.create_queues().await.unwrap();
    let step_q = QueueName::new(queues::STEP);
    for i in 0..6 {
        let group = if i % 2 == 0 { "app:a" } else { "app:b" };
        let body = format!("{{\"n\":{i}}}");
        let m = entra_rotator::ports::OutgoingMessage {
            body,
            group: Some(group.into()),
            dedup_id: Some(format!("m{i}")),
            delay: Duration::ZERO,
        };
        queue.send(&step_q, m).await.unwrap();
    }
    let handler = Arc::new(Overlap::default());
    let delivered = Arc::new(Mutex::new(Vec::new()));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let a =
        mapping(&sqs, &prefix, queues::STEP, queue.clone(), handler.clone(), clock.clone(), delivered.clone()).await;
    let b = mapping(&sqs, &prefix, queues::STEP, queue.clone(), handler.clone(), clock, delivered).await;
    // Two concurrent pollers, as Lambda runs several invocations of one function at once.
    let start = std::time::Instant::now();
    while handler.handled.load(Ordering::SeqCst) < 6 && start.elapsed() < Duration::from_secs(30) {
        tokio::join!(a.poll(), b.poll());
    }
    assert_eq!(handler.handled.load(Ordering::SeqCst), 6);
    assert_eq!(handler.most.load(Ordering::SeqCst), 1, "one message of a group in progress at a time");
}

#[tokio::test]
async fn a_poison_message_is_dead_lettered_after_its_receives_while_the_rest_of_its_batch_succeeds() {
    let d = Deployment::new(Duration::ZERO).await;
    let cleanup_q = QueueName::new(queues::CLEANUP);
    let poison = entra_rotator::ports::OutgoingMessage {
        body: "{\"not\": \"a message\"}".into(),
        group: Some("all".into()),
        dedup_id: Some("poison".into()),
        delay: Duration::ZERO,
    };
    let poison_id = d.queue.send(&cleanup_q, poison).await.unwrap();
    let good = Message::CleanupRequested { integration: None }.envelope("good-cleanup");
    let mut good = good.to_outgoing(Duration::ZERO).unwrap();
    good.group = Some("other".into());
    d.queue.send(&cleanup_q, good).await.unwrap();
    d.poll_until(Duration::from_secs(60), async || !d.queue.dead_letters(&cleanup_q, 10).await.unwrap().is_empty())
        .await;
    let dead = d.queue.dead_letters(&cleanup_q, 10).await.unwrap();
    assert_eq!(dead.len(), 1, "only the poison message: {dead:?}");
    assert_eq!(dead[0].id, poison_id);
    assert!(dead[0].last_error.as_deref().unwrap_or_default().contains("invalid message"), "{dead:?}");
    let depth = d.queue.depth(&cleanup_q).await.unwrap();
    assert_eq!((depth.visible, depth.in_flight), (0, 0), "the good message was processed and deleted");
}

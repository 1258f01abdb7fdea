//! The rotation chain end to end through the embedded runtime's workers, against the simulated
//! tenant over HTTPS, with crashes injected after each external effect (DESIGN §4).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use entra_rotator::adapters::graph::{GraphClient, RetryPolicy, TokenSource};
use entra_rotator::adapters::sealing::key_file::LocalKeyRing;
use entra_rotator::adapters::sqlite::{SqliteQueue, SqliteStore};
use entra_rotator::adapters::steps::Rollout;
use entra_rotator::domain::Span;
use entra_rotator::domain::execution::{Cleanup, Execution, ExecutionStatus, Trigger};
use entra_rotator::domain::ids::{ClientId, CredentialId, IntegrationId, KeyId, PolicyId, TenantId};
use entra_rotator::domain::lifecycle::{LifecycleFacts, LifecycleState, lifecycle_state};
use entra_rotator::domain::policy::{PolicySet, RotationPolicy};
use entra_rotator::domain::secret::SecretValue;
use entra_rotator::domain::steps::{StepDefinition, parse_steps};
use entra_rotator::inbound::batch::EnvelopeHandler;
use entra_rotator::inbound::handlers::{CleanupHandler, RotateHandler, StepHandler};
use entra_rotator::inbound::runtime::{Worker, WorkerOptions};
use entra_rotator::messages::{Message, default_queue_specs, queues};
use entra_rotator::ports::key_ring::{KeyRing, SealContext};
use entra_rotator::ports::{
    Clock, DeadLetter, MessageId, OutgoingMessage, Queue, QueueDepth, QueueName, ReceiptHandle, ReceivedMessage, Store,
};
use entra_rotator::testing::fakes::ManualClock;
use entra_rotator::testing::faults::FlakyKeyRing;
use entra_rotator::usecases::app::{App, Directories, RotationSettings};
use entra_rotator::usecases::rotation::{RotationAccepted, request_rotation};
use entra_rotator::usecases::sync::{SyncMode, Syncer};
use entra_sim::{NewApp, Sim, SimOptions};
use uuid::Uuid;

/// A queue that fails its next sends to one queue, and records every body sent.
struct FlakyQueue {
    inner: Arc<SqliteQueue>,
    fail_sends_to: Mutex<Option<(String, u32)>>,
    sent: Mutex<Vec<String>>,
}

#[async_trait]
impl Queue for FlakyQueue {
    async fn send(&self, queue: &QueueName, message: OutgoingMessage) -> entra_rotator::Result<MessageId> {
        {
            let mut fail = self.fail_sends_to.lock().unwrap();
            if let Some((name, n)) = fail.as_mut()
                && name == queue.as_str()
                && *n > 0
            {
                *n -= 1;
                return Err(entra_rotator::Error::Queue {
                    context: "injected crash before the send".into(),
                    transient: true,
                    source: "crash".into(),
                });
            }
        }
        self.sent.lock().unwrap().push(message.body.clone());
        self.inner.send(queue, message).await
    }
    async fn receive(
        &self,
        q: &QueueName,
        max: usize,
        v: Option<Duration>,
    ) -> entra_rotator::Result<Vec<ReceivedMessage>> {
        self.inner.receive(q, max, v).await
    }
    async fn delete(&self, q: &QueueName, r: &ReceiptHandle) -> entra_rotator::Result<()> {
        self.inner.delete(q, r).await
    }
    async fn change_visibility(&self, q: &QueueName, r: &ReceiptHandle, t: Duration) -> entra_rotator::Result<()> {
        self.inner.change_visibility(q, r, t).await
    }
    async fn record_failure(&self, q: &QueueName, r: &ReceiptHandle, e: &str) -> entra_rotator::Result<()> {
        self.inner.record_failure(q, r, e).await
    }
    async fn dead_letters(&self, q: &QueueName, limit: usize) -> entra_rotator::Result<Vec<DeadLetter>> {
        self.inner.dead_letters(q, limit).await
    }
    async fn dead_letter(&self, id: &MessageId) -> entra_rotator::Result<Option<DeadLetter>> {
        self.inner.dead_letter(id).await
    }
    async fn redrive(&self, q: &QueueName, ids: Option<&[MessageId]>) -> entra_rotator::Result<usize> {
        self.inner.redrive(q, ids).await
    }
    async fn depth(&self, q: &QueueName) -> entra_rotator::Result<QueueDepth> {
        self.inner.depth(q).await
    }
}

struct Chain {
    sim: Sim,
    clock: ManualClock,
    store: Arc<SqliteStore>,
    queue: Arc<FlakyQueue>,
    keys: Arc<FlakyKeyRing>,
    services: App,
    workers: Vec<Worker>,
    integration: IntegrationId,
    /// The application under rotation and its original secret.
    app: Uuid,
    old: CredentialId,
}

fn steps(json: &str) -> Vec<StepDefinition> {
    parse_steps(json).unwrap().steps
}

impl Chain {
    async fn new(replication_delay: Duration, rollout_steps: Vec<StepDefinition>) -> Self {
        let sim = Sim::start(SimOptions { apps: 3, seed: 9, replication_delay, ..Default::default() }).await.unwrap();
        let clock = ManualClock::new(sim.now());
        let dyn_clock: Arc<dyn Clock> = Arc::new(clock.clone());
        let store = Arc::new(SqliteStore::in_memory(dyn_clock.clone()).unwrap());
        let queue = Arc::new(FlakyQueue {
            inner: Arc::new(SqliteQueue::in_memory(default_queue_specs(), dyn_clock.clone()).unwrap()),
            fail_sends_to: Mutex::new(None),
            sent: Mutex::new(Vec::new()),
        });
        let keys = Arc::new(FlakyKeyRing::new(Arc::new(LocalKeyRing::fixed("k1", [3; 32]))));
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
        .unwrap()
        .with_clock(dyn_clock.clone());
        let integration = IntegrationId::parse("contoso").unwrap();
        let mut directories = Directories::new();
        directories.insert(integration.clone(), Arc::new(graph));
        let policy = RotationPolicy {
            grace_period: Span::from_secs(3600),
            steps: rollout_steps,
            ..RotationPolicy::with_defaults(PolicyId::parse("default").unwrap())
        };
        let http = reqwest::Client::builder()
            .tls_certs_merge(reqwest::Certificate::from_pem_bundle(sim.ca_pem().as_bytes()).unwrap())
            .build()
            .unwrap();
        let services = App {
            store: store.clone(),
            queue: queue.clone(),
            clock: dyn_clock,
            directories: Arc::new(directories),
            policies: Arc::new(PolicySet::new(vec![(policy, vec![])])),
            sinks: Arc::new(vec![]),
            keys: keys.clone(),
            rollout: Arc::new(Rollout::new(http, Default::default())),
            settings: RotationSettings {
                verify_budget: Duration::from_secs(120),
                orphan_safety_delay: Duration::from_secs(600),
            },
        };
        let worker = |name: &str, h: Arc<dyn entra_rotator::inbound::batch::BatchHandler>| {
            Worker::new(queue.clone(), QueueName::new(name), h, WorkerOptions::default())
        };
        let workers = vec![
            worker(queues::ROTATE, Arc::new(EnvelopeHandler(RotateHandler(services.clone())))),
            worker(queues::STEP, Arc::new(EnvelopeHandler(StepHandler(services.clone())))),
            worker(queues::CLEANUP, Arc::new(EnvelopeHandler(CleanupHandler(services.clone())))),
        ];

        // The application to rotate: one secret expiring in ten days.
        let app = sim.tenant().add_app(NewApp::named("Payroll API"));
        let end = sim.now() + time::Duration::days(10);
        let added = sim.tenant().add_password_to(app.object_id, end).unwrap();
        Syncer {
            directory: services.directory(&integration).unwrap().as_ref(),
            store: store.as_ref(),
            clock: &clock,
            progress: &|_| {},
        }
        .sync(&integration, SyncMode::Full)
        .await
        .unwrap();
        let old = CredentialId::parse(&format!("contoso/app/{}/{}", app.object_id, added.key_id)).unwrap();
        assert!(store.get_credential(&old).await.unwrap().is_some());
        Self { sim, clock, store, queue, keys, services, workers, integration, app: app.object_id, old }
    }

    /// Lets time pass on both sides.
    fn advance(&self, by: Duration) {
        self.clock.advance(by);
        self.sim.advance_clock(by);
    }

    /// Runs the workers until nothing is left to do now, letting time pass for delayed messages
    /// and visibility timeouts (at most `max_wait` of it).
    async fn pump(&self, max_wait: Duration) {
        let mut waited = Duration::ZERO;
        for _ in 0..500 {
            let mut did = 0;
            for w in &self.workers {
                did += w.run_once().await.unwrap();
            }
            if did > 0 {
                continue;
            }
            let mut pending = 0;
            for q in [queues::ROTATE, queues::STEP, queues::CLEANUP] {
                let d = self.queue.depth(&QueueName::new(q)).await.unwrap();
                pending += d.delayed + d.in_flight;
            }
            if pending == 0 || waited >= max_wait {
                return;
            }
            self.advance(Duration::from_secs(5));
            waited += Duration::from_secs(5);
        }
        panic!("the chain did not settle");
    }

    async fn request(&self) -> Execution {
        let trigger = Trigger::Manual { by: "alice".into(), reason: Some("test".into()) };
        match request_rotation(&self.services, &self.old, trigger, false).await.unwrap() {
            RotationAccepted::Started { execution } => *execution,
            other => panic!("not started: {other:?}"),
        }
    }

    async fn execution(&self, e: &Execution) -> Execution {
        self.store.get_execution(&e.id).await.unwrap().unwrap()
    }

    /// The application's passwords in the tenant.
    fn passwords(&self) -> Vec<entra_sim::PasswordSummary> {
        self.sim.tenant().app_passwords(self.app).unwrap()
    }

    fn marked(&self) -> Vec<entra_sim::PasswordSummary> {
        self.passwords()
            .into_iter()
            .filter(|p| p.display_name.as_deref().is_some_and(|n| n.contains("rotator:")))
            .collect()
    }

    async fn cleanup(&self) {
        let m = Message::CleanupRequested { integration: None }.envelope(format!("cleanup:{}", Uuid::new_v4()));
        self.queue.send(&QueueName::new(queues::CLEANUP), m.to_outgoing(Duration::ZERO).unwrap()).await.unwrap();
        self.pump(Duration::ZERO).await;
    }

    async fn state_of(&self, id: &CredentialId) -> LifecycleState {
        let c = self.store.get_credential(id).await.unwrap().unwrap();
        let execs = self.store.list_executions(id).await.unwrap();
        lifecycle_state(&LifecycleFacts::of(&c, &execs, 30), self.clock.now())
    }
}

#[tokio::test]
async fn a_rotation_creates_the_new_secret_first_and_removes_the_old_one_only_after_grace() {
    let c = Chain::new(Duration::ZERO, vec![]).await;
    let e = c.request().await;
    c.pump(Duration::from_secs(60)).await;
    let done = c.execution(&e).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{done:?}");
    let new_key = done.new_key_id.unwrap();
    let keys: Vec<Uuid> = c.passwords().iter().map(|p| p.key_id).collect();
    assert!(keys.contains(&new_key.as_uuid()) && keys.contains(&c.old.key_id.as_uuid()), "both valid during grace");
    assert_eq!(c.state_of(&c.old).await, LifecycleState::GracePeriod);

    c.cleanup().await;
    assert_eq!(c.passwords().len(), 2, "not before the grace period ends");
    c.advance(Duration::from_secs(3601));
    c.cleanup().await;
    let keys: Vec<Uuid> = c.passwords().iter().map(|p| p.key_id).collect();
    assert_eq!(keys, vec![new_key.as_uuid()], "only the old key id went");
    assert_eq!(c.state_of(&c.old).await, LifecycleState::CleanedUp);
    assert!(matches!(c.execution(&e).await.cleanup, Cleanup::Done { .. }));
    assert_eq!(c.store.get_sealed(&done.secret_record()).await.unwrap(), None, "the sealed copy is gone");
}

#[tokio::test]
async fn a_replication_delay_longer_than_one_verify_attempt_still_ends_in_success() {
    let c = Chain::new(Duration::from_secs(40), vec![]).await;
    let e = c.request().await;
    c.pump(Duration::from_secs(120)).await;
    let done = c.execution(&e).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{done:?}");
    let verify = &c.store.list_step_records(&e.id).await.unwrap()[0];
    assert!(verify.attempts > 1, "verify had to try again: {verify:?}");
}

#[tokio::test]
async fn a_secret_that_never_replicates_fails_the_rotation_and_keeps_the_old_secret() {
    let c = Chain::new(Duration::from_secs(3600), vec![]).await;
    let e = c.request().await;
    c.pump(Duration::from_secs(400)).await;
    let failed = c.execution(&e).await;
    assert_eq!(failed.status, ExecutionStatus::Failed);
    assert!(failed.error.as_deref().unwrap().contains("did not sign in"), "{failed:?}");
    assert!(c.passwords().iter().any(|p| p.key_id == c.old.key_id.as_uuid()));
    let dead = c.queue.dead_letters(&QueueName::new(queues::STEP), 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    let body = &dead[0].body;
    assert!(body.contains(&e.id.to_string()) && body.contains(&c.old.to_string()), "{body}");
    assert!(dead[0].last_error.as_deref().unwrap().contains("Verify the new secret"), "{dead:?}");
}

#[tokio::test]
async fn a_crash_right_after_add_password_leaves_no_untracked_secret() {
    let c = Chain::new(Duration::ZERO, vec![]).await;
    c.keys.fail_seals.store(1, Ordering::SeqCst);
    let e = c.request().await;
    // The first attempt creates a secret and "crashes" before storing it.
    c.pump(Duration::from_secs(1200)).await;
    let done = c.execution(&e).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{done:?}");
    let marked = c.marked();
    assert_eq!(marked.len(), 1, "the unstored secret was removed: {marked:?}");
    assert_eq!(marked[0].key_id, done.new_key_id.unwrap().as_uuid(), "the one left is the recorded one");
    let audit = c.store.list_audit(&Default::default()).await.unwrap();
    assert!(audit.iter().any(|a| a.action == "orphan.removed"));
}

#[tokio::test]
async fn a_crash_after_storing_but_before_the_first_step_is_sent_resumes_without_a_second_secret() {
    let c = Chain::new(Duration::ZERO, vec![]).await;
    *c.queue.fail_sends_to.lock().unwrap() = Some((queues::STEP.into(), 1));
    let e = c.request().await;
    c.pump(Duration::from_secs(1200)).await;
    let done = c.execution(&e).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{done:?}");
    assert_eq!(c.marked().len(), 1, "one new secret, not two");
}

#[tokio::test]
async fn every_message_delivered_twice_has_its_effect_once() {
    let c = Chain::new(Duration::ZERO, vec![]).await;
    let e = c.request().await;
    // Duplicate every message the chain sends, as an at-least-once queue may.
    for _ in 0..20 {
        let sent: Vec<String> = std::mem::take(&mut *c.queue.sent.lock().unwrap());
        for body in &sent {
            let env = entra_rotator::messages::Envelope::parse(body).unwrap();
            let q = env.message.queue();
            // A fresh copy without deduplication id: the queue will deliver it again.
            let copy = OutgoingMessage { body: body.clone(), group: Some(env.message.group()), ..Default::default() };
            c.queue.inner.send(&q, copy).await.unwrap();
        }
        for w in &c.workers {
            while w.run_once().await.unwrap() > 0 {}
        }
        if c.execution(&e).await.status.is_terminal() {
            break;
        }
    }
    c.pump(Duration::from_secs(60)).await;
    assert_eq!(c.execution(&e).await.status, ExecutionStatus::Completed);
    assert_eq!(c.marked().len(), 1, "one addPassword");
    c.advance(Duration::from_secs(3601));
    c.cleanup().await;
    c.cleanup().await;
    assert_eq!(c.passwords().len(), 1);
}

#[tokio::test]
async fn a_second_request_while_one_runs_gets_the_running_execution() {
    let c = Chain::new(Duration::ZERO, vec![]).await;
    let first = c.request().await;
    let trigger = Trigger::Manual { by: "bob".into(), reason: None };
    match request_rotation(&c.services, &c.old, trigger, false).await.unwrap() {
        RotationAccepted::AlreadyRunning { execution } => assert_eq!(execution.id, first.id),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_orphan_sweep_removes_a_marked_secret_no_execution_owns_after_the_safety_delay() {
    let c = Chain::new(Duration::ZERO, vec![]).await;
    c.keys.fail_seals.store(1, Ordering::SeqCst);
    let e = c.request().await;
    // Run only the rotate attempt that crashes, then abandon the execution.
    c.workers[0].run_once().await.unwrap();
    assert_eq!(c.marked().len(), 1);
    let mut abandoned = c.execution(&e).await;
    abandoned.status = ExecutionStatus::Cancelled;
    c.store.update_execution(&abandoned).await.unwrap();
    Syncer {
        directory: c.services.directory(&c.integration).unwrap().as_ref(),
        store: c.store.as_ref(),
        clock: &c.clock,
        progress: &|_| {},
    }
    .sync(&c.integration, SyncMode::Auto)
    .await
    .unwrap();
    c.cleanup().await;
    assert_eq!(c.marked().len(), 1, "not before the safety delay");
    c.advance(Duration::from_secs(601));
    c.cleanup().await;
    assert!(c.marked().is_empty(), "the orphan is gone");
    assert!(c.passwords().iter().any(|p| p.key_id == c.old.key_id.as_uuid()), "the old secret is untouched");
}

#[tokio::test]
async fn the_old_secret_is_never_removed_while_the_new_one_is_missing() {
    let c = Chain::new(Duration::ZERO, vec![]).await;
    let e = c.request().await;
    c.pump(Duration::from_secs(60)).await;
    let done = c.execution(&e).await;
    // Someone deletes the new secret by hand.
    let new_key = done.new_key_id.unwrap();
    c.services.directory(&c.integration).unwrap().remove_password(done.app, new_key).await.unwrap();
    c.advance(Duration::from_secs(3601));
    c.cleanup().await;
    assert!(c.passwords().iter().any(|p| p.key_id == c.old.key_id.as_uuid()), "the last working secret stays");
    let audit = c.store.list_audit(&Default::default()).await.unwrap();
    assert!(audit.iter().any(|a| a.action == "cleanup.refused"));
    let _ = KeyId::from_uuid(Uuid::nil());
}

#[tokio::test]
async fn a_dry_run_changes_nothing_and_warns_of_a_reload_before_its_publish() {
    let c = Chain::new(
        Duration::ZERO,
        steps(
            r#"[{"type":"spring_actuator_refresh","order":10,"on_failure":"continue","config":{"url":"https://orders.example.com/actuator/refresh"}},
                {"type":"azure_key_vault","order":20,"on_failure":"abort","config":{"vault_url":"https://kv.vault.azure.net","secret_name":"s"}}]"#,
        ),
    )
    .await;
    let trigger = Trigger::Manual { by: "alice".into(), reason: None };
    let RotationAccepted::DryRun { report } = request_rotation(&c.services, &c.old, trigger, true).await.unwrap()
    else {
        panic!("not a dry run")
    };
    let order = report.checks.iter().find(|k| k.name == "step order").unwrap();
    assert_eq!(order.outcome, entra_rotator::usecases::preflight::CheckOutcome::Warning, "{report:?}");
    assert!(order.reason.contains("reloads before"));
    assert!(c.store.list_executions(&c.old).await.unwrap().is_empty());
    assert_eq!(c.passwords().len(), 1);
    assert_eq!(c.queue.depth(&QueueName::new(queues::ROTATE)).await.unwrap().visible, 0);
}

/// The steps of the rollout tests: a Spring refresh, a health check and a signed webhook, all at
/// the simulated tenant's target endpoints.
fn rollout_steps(sim_base: &str, spring_on_failure: &str) -> Vec<StepDefinition> {
    steps(&format!(
        r#"[{{"type":"spring_actuator_refresh","order":10,"on_failure":"{spring_on_failure}","retries":1,"retry_delay":"5s",
              "config":{{"url":"{sim_base}apps/payroll/actuator/refresh"}}}},
            {{"type":"http_health_check","order":20,"on_failure":"abort",
              "config":{{"url":"{sim_base}apps/payroll/health","timeout":"3s","interval":"1s"}}}},
            {{"type":"webhook","order":30,"on_failure":"abort","retries":1,"retry_delay":"5s",
              "config":{{"url":"{sim_base}hooks/ops"}}}}]"#
    ))
}

async fn chain_with_rollout(spring_on_failure: &str) -> Chain {
    let mut c = Chain::new(Duration::ZERO, vec![]).await;
    let base = c.sim.target_url("/").to_string();
    let policy = RotationPolicy {
        grace_period: Span::from_secs(3600),
        steps: rollout_steps(&base, spring_on_failure),
        ..RotationPolicy::with_defaults(PolicyId::parse("default").unwrap())
    };
    c.services.policies = Arc::new(PolicySet::new(vec![(policy, vec![])]));
    c.workers = vec![
        Worker::new(
            c.queue.clone(),
            QueueName::new(queues::ROTATE),
            Arc::new(EnvelopeHandler(RotateHandler(c.services.clone()))),
            WorkerOptions::default(),
        ),
        Worker::new(
            c.queue.clone(),
            QueueName::new(queues::STEP),
            Arc::new(EnvelopeHandler(StepHandler(c.services.clone()))),
            WorkerOptions::default(),
        ),
        Worker::new(
            c.queue.clone(),
            QueueName::new(queues::CLEANUP),
            Arc::new(EnvelopeHandler(CleanupHandler(c.services.clone()))),
            WorkerOptions::default(),
        ),
    ];
    c
}

#[tokio::test]
async fn a_healthy_rollout_runs_each_step_once_in_order() {
    let c = chain_with_rollout("abort").await;
    let e = c.request().await;
    c.pump(Duration::from_secs(120)).await;
    let done = c.execution(&e).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{done:?}");
    let t = c.sim.targets();
    assert_eq!(t.spring_refreshes("payroll"), 1);
    assert!(t.health_requests("payroll") >= 1);
    let hooks = t.webhooks("ops");
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0].body["type"], "entra-rotator.secret.rotated");
    assert_eq!(hooks[0].body["new_key_id"], done.new_key_id.unwrap().to_string());
    let records = c.store.list_step_records(&e.id).await.unwrap();
    let names: Vec<_> = records.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(names, vec!["verify", "spring_actuator_refresh", "http_health_check", "webhook", "finalize"]);
    assert!(done.summary.unwrap().contains("3 of 3 rollout steps succeeded"));
}

#[tokio::test]
async fn an_abort_step_failing_lands_in_the_dead_letter_queue_and_a_redrive_after_the_fix_completes() {
    let c = chain_with_rollout("abort").await;
    c.sim.targets().set_webhook_failures("ops", 1000, 503);
    let e = c.request().await;
    c.pump(Duration::from_secs(600)).await;
    let failed = c.execution(&e).await;
    assert_eq!(failed.status, ExecutionStatus::Failed, "{failed:?}");
    assert!(c.passwords().iter().any(|p| p.key_id == c.old.key_id.as_uuid()), "the old secret stays valid");
    let step_q = QueueName::new(queues::STEP);
    let dead = c.queue.dead_letters(&step_q, 10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    let body: serde_json::Value = serde_json::from_str(&dead[0].body).unwrap();
    assert_eq!(body["type"], "StepRequested");
    assert_eq!(body["execution"], e.id.to_string());
    assert_eq!(body["credential"], c.old.to_string());
    assert_eq!(body["app"], c.app.to_string());
    assert_eq!(body["step"], 3);
    let error = dead[0].last_error.clone().unwrap();
    assert!(error.contains("Webhook") && error.contains("503"), "{error}");

    // The receiver is fixed; the operator redrives.
    c.sim.targets().set_webhook_failures("ops", 0, 200);
    assert_eq!(c.queue.redrive(&step_q, None).await.unwrap(), 1);
    c.pump(Duration::from_secs(60)).await;
    assert_eq!(c.execution(&e).await.status, ExecutionStatus::Completed);
    assert_eq!(c.sim.targets().spring_refreshes("payroll"), 1, "the steps before it did not run again");
}

#[tokio::test]
async fn a_continue_step_failing_needs_attention_and_cleanup_waits_for_confirmation() {
    let c = chain_with_rollout("continue").await;
    c.sim.targets().set_spring_failures("payroll", 1000, 500);
    let e = c.request().await;
    c.pump(Duration::from_secs(120)).await;
    let done = c.execution(&e).await;
    assert_eq!(done.status, ExecutionStatus::NeedsAttention, "{done:?}");
    assert!(done.needs_attention);
    assert_eq!(c.sim.targets().webhooks("ops").len(), 1, "the chain went on");
    c.advance(Duration::from_secs(3601));
    c.cleanup().await;
    assert_eq!(c.passwords().len(), 2, "never removed without an operator");
    entra_rotator::usecases::rotation::confirm_cleanup(&c.services, e.id, "alice").await.unwrap();
    c.cleanup().await;
    assert_eq!(c.passwords().len(), 1);
}

#[tokio::test]
async fn the_new_secret_appears_in_no_log_message_dead_letter_or_webhook() {
    use std::io::Write;
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let logs = Buf::default();
    let writer = logs.clone();
    let subscriber =
        tracing_subscriber::fmt().with_max_level(tracing::Level::TRACE).with_writer(move || writer.clone()).finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let c = chain_with_rollout("abort").await;
    // One failure on the way, so a retry and its log lines are part of what is searched.
    c.sim.targets().set_webhook_failures("ops", 1, 503);
    let e = c.request().await;
    c.pump(Duration::from_secs(120)).await;
    let done = c.execution(&e).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{done:?}");
    let sealed = c.store.get_sealed(&done.secret_record()).await.unwrap().unwrap();
    let secret =
        c.keys.unseal(&sealed.sealed, &SealContext::new(done.secret_record(), "new_client_secret")).await.unwrap();
    let secret = secret.expose().to_owned();
    assert!(secret.len() > 10);

    let mut haystacks: Vec<(String, String)> = Vec::new();
    haystacks.push(("logs".into(), String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned()));
    for body in c.queue.sent.lock().unwrap().iter() {
        haystacks.push(("queue message".into(), body.clone()));
    }
    for q in queues::ALL {
        for d in c.queue.dead_letters(&QueueName::new(q), 100).await.unwrap() {
            haystacks.push(("dead letter".into(), format!("{d:?}")));
        }
    }
    for (name, hooks) in c.sim.targets().all_webhooks() {
        for h in hooks {
            haystacks.push((format!("webhook {name}"), h.raw_body.clone()));
        }
    }
    for a in c.store.list_audit(&Default::default()).await.unwrap() {
        haystacks.push(("audit".into(), format!("{a:?}")));
    }
    haystacks.push(("execution".into(), serde_json::to_string(&done).unwrap()));
    for (what, text) in &haystacks {
        assert!(!text.contains(&secret), "the new secret appeared in a {what}");
    }
    assert!(haystacks.iter().any(|(w, _)| w == "logs") && haystacks.len() > 5);
}

impl Chain {
    /// Puts a store that fails on request between the handlers and the real one.
    fn with_flaky_store(&mut self) -> Arc<entra_rotator::testing::faults::FlakyStore> {
        let flaky = Arc::new(entra_rotator::testing::faults::FlakyStore::new(self.store.clone()));
        self.services.store = flaky.clone();
        let worker = |name: &str, h: Arc<dyn entra_rotator::inbound::batch::BatchHandler>| {
            Worker::new(self.queue.clone(), QueueName::new(name), h, WorkerOptions::default())
        };
        self.workers = vec![
            worker(queues::ROTATE, Arc::new(EnvelopeHandler(RotateHandler(self.services.clone())))),
            worker(queues::STEP, Arc::new(EnvelopeHandler(StepHandler(self.services.clone())))),
            worker(queues::CLEANUP, Arc::new(EnvelopeHandler(CleanupHandler(self.services.clone())))),
        ];
        flaky
    }
}

#[tokio::test]
async fn a_crash_after_a_step_took_effect_but_before_it_was_recorded_repeats_it_under_the_same_webhook_id() {
    let mut c = chain_with_rollout("abort").await;
    let flaky = c.with_flaky_store();
    flaky.fail("put_step_record", 1, |r| r.contains("kind: \"webhook\"") && r.contains("outcome: Succeeded"));
    let e = c.request().await;
    c.pump(Duration::from_secs(1200)).await;
    assert_eq!(c.execution(&e).await.status, ExecutionStatus::Completed);
    let hooks = c.sim.targets().webhooks("ops");
    assert_eq!(hooks.len(), 2, "delivered again after the crash");
    assert_eq!(hooks[0].id, hooks[1].id, "under the same webhook-id, so the receiver can drop the repeat");
    assert_eq!(c.sim.targets().spring_refreshes("payroll"), 1, "the recorded steps did not run again");
}

#[tokio::test]
async fn a_crash_after_the_old_secret_was_removed_but_before_it_was_recorded_completes_on_the_next_run() {
    let mut c = Chain::new(Duration::ZERO, vec![]).await;
    let flaky = c.with_flaky_store();
    let e = c.request().await;
    c.pump(Duration::from_secs(60)).await;
    let done = c.execution(&e).await;
    flaky.fail("put_credential", 1, |cred| cred.contains("removed_at: Some"));
    c.advance(Duration::from_secs(3601));
    c.cleanup().await;
    assert_eq!(c.passwords().len(), 1, "removed in the tenant");
    assert!(!matches!(c.execution(&e).await.cleanup, Cleanup::Done { .. }), "but not recorded");
    // The failed cleanup message comes back after its visibility timeout.
    c.pump(Duration::from_secs(600)).await;
    assert!(matches!(c.execution(&e).await.cleanup, Cleanup::Done { .. }));
    assert_eq!(c.state_of(&c.old).await, LifecycleState::CleanedUp);
    assert_eq!(c.passwords()[0].key_id, done.new_key_id.unwrap().as_uuid(), "the new secret is untouched");
}

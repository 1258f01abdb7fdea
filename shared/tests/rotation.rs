//! The rotation chain end to end through the embedded runtime's workers, against the simulated
//! tenant over HTTPS, with crashes injected after each external effect (DESIGN §4).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use entra_rotator::adapters::graph::{GraphClient, RetryPolicy, TokenSource};
use entra_rotator::adapters::sealing::key_file::LocalKeyRing;
use entra_rotator::adapters::sqlite::{SqliteQueue, SqliteStore};
use entra_rotator::adapters::steps::Rollout;
use entra_rotator::domain::Span;
use entra_rotator::domain::address::AddressPolicy;
use entra_rotator::domain::execution::{Execution, ExecutionStatus, Trigger};
use entra_rotator::domain::ids::{ClientId, CredentialId, IntegrationId, KeyId, PolicyId, TenantId};
use entra_rotator::domain::policy::{PolicySet, RotationPolicy};
use entra_rotator::domain::secret::SecretValue;
use entra_rotator::domain::steps::{StepDefinition, parse_steps_with};
use entra_rotator::inbound::batch::{BatchHandler, EnvelopeHandler};
use entra_rotator::inbound::handlers::{CleanupHandler, RotateHandler, StepHandler};
use entra_rotator::inbound::runtime::{Worker, WorkerOptions};
use entra_rotator::messages::{Message, default_queue_specs, queues};
use entra_rotator::ports::key_ring::SealedValue;
use entra_rotator::ports::{Clock, Queue, QueueName, Store};
use entra_rotator::testing::fakes::ManualClock;
use entra_rotator::testing::faults::{FlakyKeyRing, FlakyQueue, FlakyStore};
use entra_rotator::usecases::app::{App, Directories, RotationSettings};
use entra_rotator::usecases::rotation::{RotationAccepted, request_rotation};
use entra_rotator::usecases::sync::{SyncMode, Syncer};
use entra_sim::{NewApp, Sim, SimOptions};
use uuid::Uuid;

#[path = "../../tests/flows/chain.rs"]
mod chain;
use chain::World;

// The scenarios both worlds run (tests/flows/chain.rs), here on the embedded runtime.
chain::chain_scenarios!(|replication_delay| Chain::new(replication_delay, vec![]));

/// The embedded world: SQLite store and queue in memory, a manual clock moved by hand, the
/// workers of `rotate serve` pumped one batch at a time.
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
    // The sim is on loopback: the one exception these tests name.
    parse_steps_with(json, &AddressPolicy::allowing_loopback()).unwrap().steps
}

impl Chain {
    async fn new(replication_delay: Duration, rollout_steps: Vec<StepDefinition>) -> Self {
        let sim = Sim::start(SimOptions { apps: 3, seed: 9, replication_delay, ..Default::default() }).await.unwrap();
        let clock = ManualClock::new(sim.now());
        let dyn_clock: Arc<dyn Clock> = Arc::new(clock.clone());
        let store = Arc::new(SqliteStore::in_memory(dyn_clock.clone()).unwrap());
        let queue = Arc::new(FlakyQueue::new(Arc::new(
            SqliteQueue::in_memory(default_queue_specs(), dyn_clock.clone()).unwrap(),
        )));
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
            grace_period: Span::from_secs(GRACE.as_secs()),
            steps: rollout_steps,
            ..RotationPolicy::with_defaults(PolicyId::parse("default").unwrap())
        };
        let http = reqwest::Client::builder()
            .tls_certs_merge(reqwest::Certificate::from_pem_bundle(sim.ca_pem().as_bytes()).unwrap());
        let services = App {
            store: store.clone(),
            queue: queue.clone(),
            clock: dyn_clock,
            directories: Arc::new(directories),
            policies: Arc::new(PolicySet::new(vec![(policy, vec![])])),
            sinks: Arc::new(vec![]),
            keys: keys.clone(),
            rollout: Arc::new(
                Rollout::new(http, Default::default(), Arc::new(AddressPolicy::allowing_loopback())).unwrap(),
            ),
            settings: RotationSettings {
                verify_budget: Duration::from_secs(120),
                orphan_safety_delay: Duration::from_secs(600),
            },
        };
        let workers = workers(&queue, &services);

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

    async fn cleanup(&self) {
        let m = Message::CleanupRequested { integration: None }.envelope(format!("cleanup:{}", Uuid::new_v4()));
        self.queue.send(&QueueName::new(queues::CLEANUP), m.to_outgoing(Duration::ZERO).unwrap()).await.unwrap();
        self.pump(Duration::ZERO).await;
    }
}

/// The rotate, run-step and grace-cleanup workers, each on its queue.
fn workers(queue: &Arc<FlakyQueue>, services: &App) -> Vec<Worker> {
    let worker = |name: &str, h: Arc<dyn BatchHandler>| {
        Worker::new(queue.clone(), QueueName::new(name), h, WorkerOptions::default())
    };
    vec![
        worker(queues::ROTATE, Arc::new(EnvelopeHandler(RotateHandler(services.clone())))),
        worker(queues::STEP, Arc::new(EnvelopeHandler(StepHandler(services.clone())))),
        worker(queues::CLEANUP, Arc::new(EnvelopeHandler(CleanupHandler(services.clone())))),
    ]
}

/// How much time the chain may take (on the manual clock) to get where a scenario waits for:
/// enough for a visibility timeout to run out and a verify budget to be spent.
const PUMP_BUDGET: Duration = Duration::from_secs(1800);

/// The policy's grace period in this world.
const GRACE: Duration = Duration::from_secs(3600);

impl Chain {
    /// Runs the workers until none has anything visible to do, without letting time pass.
    async fn settle(&self) {
        loop {
            let mut did = 0;
            for w in &self.workers {
                did += w.run_once().await.unwrap();
            }
            if did == 0 {
                return;
            }
        }
    }
}

impl World for Chain {
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
        let mut waited = Duration::ZERO;
        for _ in 0..2000 {
            let mut did = 0;
            for w in &self.workers {
                did += w.run_once().await.unwrap();
            }
            if done().await {
                // What is visible now runs too, as a worker would run it before time moves on.
                self.settle().await;
                return;
            }
            if did == 0 {
                assert!(waited < PUMP_BUDGET, "the chain did not get there within {PUMP_BUDGET:?} (manual clock)");
                self.advance(Duration::from_secs(5));
                waited += Duration::from_secs(5);
            }
        }
        panic!("the chain did not get there");
    }

    async fn pass_grace(&self) {
        self.advance(GRACE + Duration::from_secs(1));
    }

    async fn cleanup(&self) {
        Chain::cleanup(self).await;
    }

    async fn use_flaky_store(&mut self) -> Arc<FlakyStore> {
        let flaky = Arc::new(FlakyStore::new(self.store.clone()));
        self.services.store = flaky.clone();
        self.workers = workers(&self.queue, &self.services);
        flaky
    }

    async fn set_steps(&mut self, steps: Vec<StepDefinition>) {
        let policy = RotationPolicy {
            grace_period: Span::from_secs(GRACE.as_secs()),
            steps,
            ..RotationPolicy::with_defaults(PolicyId::parse("default").unwrap())
        };
        self.services.policies = Arc::new(PolicySet::new(vec![(policy, vec![])]));
        self.workers = workers(&self.queue, &self.services);
    }

    fn fail_next_seal(&self) {
        self.keys.fail_seals.store(1, Ordering::SeqCst);
    }

    fn fail_next_send(&self, queue: &str) {
        self.queue.fail_sends_to(queue, 1);
    }

    async fn run_delivering_every_message_twice(&self, e: &Execution) -> Execution {
        self.queue.duplicate_sends(true);
        let done = self.run_until_status(e, ExecutionStatus::Completed).await;
        self.queue.duplicate_sends(false);
        done
    }

    fn delivered(&self) -> Vec<String> {
        self.queue.sent()
    }

    async fn store_text(&self) -> String {
        self.store.contents_as_text().await.unwrap()
    }

    fn assert_sealed_here(&self, sealed: &SealedValue) {
        assert_eq!(sealed.key_id, "k1", "sealed under the key file's key");
        assert!(sealed.encrypted_data_key.is_none(), "no data key of a KMS");
    }
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

//! The rotation chain end to end through the embedded runtime's workers, against the simulated
//! tenant over HTTPS, with crashes injected after each external effect (DESIGN §4).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use entra_rotator::adapters::graph::{GraphClient, RetryPolicy, TokenSource};
use entra_rotator::adapters::sealing::key_file::LocalKeyRing;
use entra_rotator::adapters::sqlite::{SqliteQueue, SqliteStore};
use entra_rotator::domain::Span;
use entra_rotator::domain::address::AddressPolicy;
use entra_rotator::domain::execution::{Execution, ExecutionStatus, Trigger};
use entra_rotator::domain::ids::{ClientId, CredentialId, IntegrationId, KeyId, PolicyId, TenantId};
use entra_rotator::domain::policy::{PolicySet, RotationPolicy};
use entra_rotator::domain::secret::SecretValue;
use entra_rotator::domain::steps::{StepDefinition, parse_steps_with};
use entra_rotator::inbound::batch::{BatchHandler, EnvelopeHandler};
use entra_rotator::inbound::handlers::{CleanupHandler, RotateHandler, ScanHandler, StepHandler};
use entra_rotator::inbound::runtime::{Worker, WorkerOptions};
use entra_rotator::messages::{Message, default_queue_specs, queues};
use entra_rotator::ports::key_ring::SealedValue;
use entra_rotator::ports::{Clock, Queue, QueueName, Store};
use entra_rotator::testing::fakes::ManualClock;
use entra_rotator::testing::faults::{Crash, FlakyKeyRing, FlakyQueue, FlakyStore};
use entra_rotator::usecases::app::{App, Directories, RotationSettings};
use entra_rotator::usecases::intervention;
use entra_rotator::usecases::rotation::{RotationAccepted, request_rotation};
use entra_rotator::usecases::sync::{SyncMode, Syncer};
use entra_sim::{NewApp, Sim, SimOptions};
use uuid::Uuid;

#[path = "../../tests/flows/chain.rs"]
mod chain;
use chain::World;
#[path = "../../tests/flows/azure.rs"]
mod azure;
#[path = "../../tests/flows/kubernetes.rs"]
mod kubernetes;

// The scenarios both worlds run (tests/flows/chain.rs), here on the embedded runtime.
chain::chain_scenarios!(|replication_delay| Chain::new(replication_delay, vec![]));
// The product notes' Key Vault + App Service runbook (tests/flows/azure.rs), on the same world.
azure::azure_scenarios!(|replication_delay| Chain::new(replication_delay, vec![]));
// The Kubernetes step's scenarios (tests/flows/kubernetes.rs), on the same world.
kubernetes::kubernetes_scenarios!(|_| Chain::new(Duration::ZERO, vec![]));

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
            // No step that publishes the secret runs yet: the chain's worlds deliver by hand.
            manual_delivery: true,
            steps: rollout_steps,
            ..RotationPolicy::with_defaults(PolicyId::parse("default").unwrap())
        };
        let services = App {
            store: store.clone(),
            queue: queue.clone(),
            clock: dyn_clock,
            directories: Arc::new(directories),
            disabled: Arc::new(Default::default()),
            policies: Arc::new(PolicySet::new(vec![(policy, vec![])])),
            sinks: Arc::new(vec![]),
            keys: keys.clone(),
            rollout: Arc::new(azure::rollout(&sim, &integration)),
            settings: RotationSettings {
                verify_budget: Duration::from_secs(120),
                orphan_safety_delay: Duration::from_secs(600),
                ..RotationSettings::default()
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

/// The rotate, run-step, grace-cleanup and expiry-scan workers, each on its queue.
fn workers(queue: &Arc<FlakyQueue>, services: &App) -> Vec<Worker> {
    let worker = |name: &str, h: Arc<dyn BatchHandler>| {
        Worker::new(queue.clone(), QueueName::new(name), h, WorkerOptions::default())
    };
    vec![
        worker(queues::ROTATE, Arc::new(EnvelopeHandler(RotateHandler(services.clone())))),
        worker(queues::STEP, Arc::new(EnvelopeHandler(StepHandler(services.clone())))),
        worker(queues::CLEANUP, Arc::new(EnvelopeHandler(CleanupHandler(services.clone())))),
        worker(queues::SCAN, Arc::new(EnvelopeHandler(ScanHandler(services.clone())))),
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

    async fn set_plan(&mut self, steps: Vec<StepDefinition>, manual_delivery: bool) {
        let policy = RotationPolicy {
            grace_period: Span::from_secs(GRACE.as_secs()),
            steps,
            manual_delivery,
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

    fn fail_next_send_where(&self, queue: &str, when: fn(&str) -> bool) {
        self.queue.fail_send_where(queue, when);
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

    async fn reconfigure(&mut self, change: impl FnOnce(&mut App)) {
        change(&mut self.services);
        self.workers = workers(&self.queue, &self.services);
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

/// Apps that accept personal Microsoft accounts hold at most two passwords, and Graph's
/// `addPassword` does not say so in advance: the rotation's own preflight refuses before it asks.
#[tokio::test]
async fn an_app_with_no_room_for_another_password_fails_its_rotation_before_graph_is_asked() {
    let c = Chain::new(Duration::ZERO, vec![]).await;
    let app =
        c.sim.tenant().add_app(NewApp::named("Consumer App").sign_in_audience("AzureADandPersonalMicrosoftAccount"));
    let end = c.sim.now() + time::Duration::days(10);
    let first = c.sim.tenant().add_password_to(app.object_id, end).unwrap();
    c.sim.tenant().add_password_to(app.object_id, end).unwrap();
    Syncer {
        directory: c.services.directory(&c.integration).unwrap().as_ref(),
        store: c.store.as_ref(),
        clock: &c.clock,
        progress: &|_| {},
    }
    .sync(&c.integration, SyncMode::Full)
    .await
    .unwrap();
    let credential = CredentialId::parse(&format!("contoso/app/{}/{}", app.object_id, first.key_id)).unwrap();
    c.sim.clear_requests();
    let trigger = Trigger::Manual { by: "alice".into(), reason: None };
    let RotationAccepted::Started { execution } =
        request_rotation(&c.services, &credential, trigger, false).await.unwrap()
    else {
        panic!("not started");
    };
    c.pump(Duration::from_secs(60)).await;
    let e = c.store.get_execution(&execution.id).await.unwrap().unwrap();
    assert_eq!(e.status, ExecutionStatus::Failed, "{e:?}");
    assert!(e.error.clone().unwrap_or_default().contains("room for one more password"), "{e:?}");
    assert!(!c.sim.requests().iter().any(|r| r.path.contains("addPassword")), "Graph was not asked");
    assert_eq!(c.sim.tenant().app_passwords(app.object_id).unwrap().len(), 2);
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
    // The operator of this manual delivery read the secret and confirmed: cleanup would go ahead.
    intervention::reveal(&c.services, e.id, "alice").await.unwrap();
    intervention::confirm_cleanup(&c.services, e.id, "alice").await.unwrap();
    c.advance(Duration::from_secs(3601));
    c.cleanup().await;
    assert!(c.passwords().iter().any(|p| p.key_id == c.old.key_id.as_uuid()), "the last working secret stays");
    let audit = c.store.list_audit(&Default::default()).await.unwrap();
    assert!(audit.iter().any(|a| a.action == "cleanup.refused"));
    let _ = KeyId::from_uuid(Uuid::nil());
}

#[tokio::test]
async fn a_dry_run_changes_nothing_and_warns_of_a_reload_before_its_publish() {
    let mut c = Chain::new(Duration::ZERO, vec![]).await;
    // The vault is the simulated one, so preflight's probe of it is answered here.
    c.sim.azure().create_vault("kv");
    let vault = c.sim.key_vault_url("kv");
    let plan = steps(&format!(
        r#"[{{"type":"spring_actuator_refresh","order":10,"on_failure":"continue","config":{{"url":"https://orders.example.com/actuator/refresh"}}}},
            {{"type":"azure_key_vault","order":20,"on_failure":"abort","config":{{"vault_url":"{vault}","secret_name":"s"}}}}]"#
    ));
    c.set_plan(plan, false).await;
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

/// The plans the crash test runs: between them they cross every kind of boundary a rotation has —
/// verify, a step that is retried, a `continue` step that fails, an `abort` step that fails.
#[derive(Debug, Clone, Copy, PartialEq)]
enum CrashPlan {
    /// Spring refresh, then a webhook that fails once and succeeds on its retry.
    RetriedThenHealthy,
    /// A Spring refresh (`continue`) that keeps failing, then the webhook.
    ContinueFails,
    /// The Spring refresh, then a webhook (`abort`) that keeps failing.
    AbortFails,
}

impl CrashPlan {
    fn expected(self) -> ExecutionStatus {
        match self {
            Self::RetriedThenHealthy => ExecutionStatus::Completed,
            Self::ContinueFails => ExecutionStatus::NeedsAttention,
            Self::AbortFails => ExecutionStatus::Failed,
        }
    }
}

async fn crash_world(plan: CrashPlan) -> (Chain, Arc<Crash>) {
    let mut c = Chain::new(Duration::ZERO, vec![]).await;
    let spring_on_failure = if plan == CrashPlan::ContinueFails { "continue" } else { "abort" };
    let base = c.sim.target_url("/");
    let steps = steps(&format!(
        r#"[{{"type":"spring_actuator_refresh","order":10,"on_failure":"{spring_on_failure}","retries":1,"retry_delay":"1s",
              "config":{{"url":"{base}apps/payroll/actuator/refresh"}}}},
            {{"type":"webhook","order":20,"on_failure":"abort","retries":1,"retry_delay":"1s",
              "config":{{"url":"{base}hooks/ops"}}}}]"#
    ));
    c.set_steps(steps).await;
    match plan {
        CrashPlan::RetriedThenHealthy => c.sim.targets().set_webhook_failures("ops", 1, 503),
        CrashPlan::ContinueFails => c.sim.targets().set_spring_failures("payroll", 1_000_000, 500),
        CrashPlan::AbortFails => c.sim.targets().set_webhook_failures("ops", 1_000_000, 503),
    }
    let crash = Crash::new();
    let flaky = c.use_flaky_store().await;
    flaky.set_crash(crash.clone());
    c.queue.set_crash(crash.clone());
    (c, crash)
}

/// Runs the workers, as a process would, until it crashes or has nothing left to do now.
async fn run_until_crash_or_quiet(c: &Chain, crash: &Crash) {
    for _ in 0..5000 {
        let mut did = 0;
        for w in &c.workers {
            // A dead process's calls fail; it is stopped right after.
            did += w.run_once().await.unwrap_or(0);
            if crash.is_down() {
                return;
            }
        }
        if did == 0 {
            let mut pending = 0;
            for q in [queues::ROTATE, queues::STEP, queues::CLEANUP] {
                let d = c.queue.depth(&QueueName::new(q)).await.unwrap();
                pending += d.delayed + d.in_flight;
            }
            if pending == 0 {
                return;
            }
            c.advance(Duration::from_secs(5));
        }
    }
}

fn is_final(status: ExecutionStatus) -> bool {
    matches!(
        status,
        ExecutionStatus::Completed
            | ExecutionStatus::NeedsAttention
            | ExecutionStatus::Failed
            | ExecutionStatus::Cancelled
    )
}

/// DESIGN §4.9, "Nothing waits for ever": the process stopped right after each durable write of a
/// rotation in turn (a store write or a queue send, acknowledgement or visibility change), then
/// started again, with nobody's help but the chain's own sweeps. Every execution reaches its final
/// state by itself, the credential is never left blocked, no marked secret is left unowned, and the
/// old secret is never removed (no operator confirmed this manual delivery).
#[tokio::test]
async fn a_crash_after_any_durable_write_of_a_rotation_still_ends_in_a_final_state_by_itself() {
    let mut points = 0;
    for plan in [CrashPlan::RetriedThenHealthy, CrashPlan::ContinueFails, CrashPlan::AbortFails] {
        // How many durable writes an undisturbed rotation of this plan makes.
        let total = {
            let (c, crash) = crash_world(plan).await;
            let e = c.request().await;
            run_until_crash_or_quiet(&c, &crash).await;
            assert_eq!(c.execution(&e).await.status, plan.expected(), "{plan:?} undisturbed");
            crash.writes()
        };
        assert!(total > 20, "{plan:?}: {total} writes");
        for n in 1..=total {
            points += 1;
            let (c, crash) = crash_world(plan).await;
            crash.after_writes(n);
            let trigger = Trigger::Manual { by: "alice".into(), reason: None };
            // The request itself may be cut short (the crash at its first write or its send).
            let _ = request_rotation(&c.services, &c.old, trigger, false).await;
            run_until_crash_or_quiet(&c, &crash).await;
            crash.restart();
            // After the restart: held messages come back after their visibility timeout, and each
            // recovery sweep (with grace cleanup, on its timer) resumes what lost its message.
            for _ in 0..8 {
                run_until_crash_or_quiet(&c, &crash).await;
                let all = c.store.list_executions(&c.old).await.unwrap();
                if !all.is_empty() && all.iter().all(|e| is_final(e.status)) {
                    break;
                }
                c.advance(Duration::from_secs(700));
                c.cleanup().await;
            }
            let all = c.store.list_executions(&c.old).await.unwrap();
            let at = format!("{plan:?}, crash after write {n} of {total}");
            assert_eq!(all.len(), 1, "{at}: one execution: {all:?}");
            let e = &all[0];
            assert_eq!(e.status, plan.expected(), "{at}: {e:?}");
            assert!(c.passwords().iter().any(|p| p.key_id == c.old.key_id.as_uuid()), "{at}: the old secret stays");
            // The credential is not left blocked: a failed one is cancelled (nothing published its
            // secret), and then — as after any other end — a new rotation starts.
            if e.status == ExecutionStatus::Failed {
                intervention::cancel(&c.services, e.id, "alice").await.unwrap();
            }
            let fresh = Execution::new(
                c.old.clone(),
                e.app,
                e.policy.clone(),
                Trigger::Manual { by: "alice".into(), reason: None },
                vec![],
                c.clock.now(),
            );
            let free = c.store.create_execution(&fresh).await.unwrap();
            assert_eq!(free, entra_rotator::ports::Claim::Created, "{at}: the credential is free");
            // After the orphan sweep, every marked secret is owned by an execution that recorded it.
            c.advance(Duration::from_secs(3600));
            c.cleanup().await;
            let owned: Vec<Uuid> = c
                .store
                .list_executions(&c.old)
                .await
                .unwrap()
                .iter()
                .filter(|e| e.status != ExecutionStatus::Cancelled)
                .filter_map(|e| e.new_key_id.map(|k| k.as_uuid()))
                .collect();
            for m in c.marked() {
                assert!(owned.contains(&m.key_id), "{at}: marked secret {} is owned by nobody", m.key_id);
            }
        }
    }
    assert!(points > 60, "{points} crash points");
}

/// The bounds `config check` accepts run through a whole rotation without a panic: the longest
/// grace period and secret lifetime it allows, then the shortest lifetime.
#[tokio::test]
async fn the_longest_grace_period_and_lifetime_config_check_accepts_complete_a_rotation() {
    use entra_rotator::config::{MAX_GRACE_PERIOD, MAX_SECRET_LIFETIME, MIN_SECRET_LIFETIME};
    for lifetime in [MAX_SECRET_LIFETIME, MIN_SECRET_LIFETIME] {
        let mut c = Chain::new(Duration::ZERO, vec![]).await;
        let policy = RotationPolicy {
            grace_period: MAX_GRACE_PERIOD,
            secret_lifetime: lifetime,
            manual_delivery: true,
            ..RotationPolicy::with_defaults(PolicyId::parse("default").unwrap())
        };
        c.services.policies = Arc::new(PolicySet::new(vec![(policy, vec![])]));
        c.workers = workers(&c.queue, &c.services);
        let e = c.request().await;
        let done = c.run_until_status(&e, ExecutionStatus::Completed).await;
        let grace = done.grace_until.unwrap() - done.finished_at.unwrap();
        assert_eq!(grace, time::Duration::days(365), "{lifetime}");
        let end = done.new_secret_end.unwrap() - done.created_at;
        assert!(end <= lifetime.as_time() + time::Duration::seconds(1), "{lifetime}: {end}");
    }
}

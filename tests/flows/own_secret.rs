//! The stored-secret fallback rotating itself (issue 15, item 4), the world both places share:
//! entra-rotator's own app registration, in the simulated tenant, signs in with a secret kept
//! where the deployment keeps it (`client_secret_file` on one machine, `client_secret_arn` in
//! Secrets Manager on AWS); a policy for that application runs `rotator_own_secret`, through the
//! embedded runtime's workers and the wiring every entrypoint uses, against the simulated token
//! endpoint over HTTPS. Each place's test file sets the place up and checks it
//! (`shared/tests/own_secret.rs`, `aws/tests/own_secret.rs`); the rest is here.
//!
//! Not a crate: each test file includes it with `#[path = "../../tests/flows/own_secret.rs"] mod own;`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use entra_rotator::adapters::aws_identity::AwsSigning;
use entra_rotator::adapters::sealing::key_file::LocalKeyRing;
use entra_rotator::adapters::sqlite::{SqliteQueue, SqliteStore};
use entra_rotator::config::Config;
use entra_rotator::domain::address::AddressPolicy;
use entra_rotator::domain::execution::{Execution, ExecutionStatus, Trigger};
use entra_rotator::domain::ids::{ClientId, CredentialId, IntegrationId};
use entra_rotator::domain::secret::SecretValue;
use entra_rotator::domain::steps::parse_steps_with;
use entra_rotator::inbound::batch::{BatchHandler, EnvelopeHandler};
use entra_rotator::inbound::handlers::{CleanupHandler, RotateHandler, StepHandler};
use entra_rotator::inbound::runtime::{Worker, WorkerOptions};
use entra_rotator::messages::{Message, default_queue_specs, queues};
use entra_rotator::ports::step_runner::{StepContext, StepFailure};
use entra_rotator::ports::{Clock, Queue, QueueName, Store};
use entra_rotator::testing::fakes::ManualClock;
use entra_rotator::testing::faults::FlakyQueue;
use entra_rotator::usecases::app::{App, RotationSettings};
use entra_rotator::usecases::intervention::cancel;
use entra_rotator::usecases::rotation::{RotationAccepted, request_rotation};
use entra_rotator::usecases::sync::{SyncMode, Syncer};
use entra_sim::{Fault, FaultKind, GraphRole, Match, NewApp, Sim, SimOptions};
use uuid::Uuid;

pub const GRACE_DAYS: u64 = 2;

/// The configuration file as an operator writes it, the secret where its place keeps it, the
/// embedded store and queue, the workers pumped by hand on a manual clock.
pub struct OwnWorld {
    pub sim: Sim,
    pub dir: tempfile::TempDir,
    pub clock: ManualClock,
    pub store: Arc<SqliteStore>,
    pub queue: Arc<FlakyQueue>,
    pub services: App,
    pub workers: Vec<Worker>,
    pub integration: IntegrationId,
    /// The rotator's own application in the tenant: object id, client id, its first secret.
    pub app: Uuid,
    pub client_id: Uuid,
    pub old_key: Uuid,
    pub old_secret: String,
}

impl OwnWorld {
    /// `place(dir, first secret)` keeps the first secret in its place and returns the
    /// integration's configuration line that names it; `aws` is the deployment's own AWS identity
    /// and endpoint, as the Lambdas hand them to the wiring.
    pub async fn new(place: impl AsyncFnOnce(&Path, &str) -> String, aws: Option<AwsSigning>) -> Self {
        let sim = Sim::start(SimOptions { apps: 2, seed: 15, replication_delay: Duration::ZERO, ..Default::default() })
            .await
            .unwrap();
        // entra-rotator's own app registration: an application like any other, whose secret signs
        // in, allowed to manage applications.
        let own = sim.tenant().add_app(NewApp::named("entra-rotator"));
        let added = sim.tenant().add_password_to(own.object_id, sim.now() + time::Duration::days(20)).unwrap();
        sim.permissions().grant(own.app_id, &[GraphRole::ApplicationReadWriteAll]);

        let dir = tempfile::tempdir().unwrap();
        let place_line = place(dir.path(), &added.secret_text).await;
        let config_path = dir.path().join("rotator.toml");
        let text = format!(
            r#"
[outbound]
allow = ["127.0.0.1"]

[integrations.own]
tenant_id = "{tenant}"
client_id = "{client}"
auth = "client_secret"
{place_line}
authority_host = "{authority}"
graph_base_url = "{graph}"
ca_certificate = "{ca}"

[policies.self]
applications = ["{client}"]
grace_period = "{GRACE_DAYS}d"

[[policies.self.steps]]
type = "rotator_own_secret"
order = 10
config = {{ integration = "own" }}
"#,
            tenant = sim.tenant_id(),
            client = own.app_id,
            authority = sim.authority_host(),
            graph = sim.graph_base_url(),
            ca = sim.ca_path().display(),
        );
        std::fs::write(&config_path, &text).unwrap();
        let config = Config::load(&config_path, &BTreeMap::<String, String>::new()).unwrap();

        let clock = ManualClock::new(sim.now());
        let dyn_clock: Arc<dyn Clock> = Arc::new(clock.clone());
        let store = Arc::new(SqliteStore::in_memory(dyn_clock.clone()).unwrap());
        let queue = Arc::new(FlakyQueue::new(Arc::new(
            SqliteQueue::in_memory(default_queue_specs(), dyn_clock.clone()).unwrap(),
        )));
        let keys = Arc::new(LocalKeyRing::fixed("k1", [5; 32]));
        let mut services =
            entra_rotator::wiring::services_with_aws(&config, store.clone(), queue.clone(), dyn_clock, keys, aws)
                .unwrap();
        services.settings = RotationSettings { verify_budget: Duration::from_secs(120), ..RotationSettings::default() };
        let workers = workers(&queue, &services);
        let integration = IntegrationId::parse("own").unwrap();
        let world = Self {
            sim,
            dir,
            clock,
            store,
            queue,
            services,
            workers,
            integration,
            app: own.object_id,
            client_id: own.app_id,
            old_key: added.key_id,
            old_secret: added.secret_text,
        };
        world.sync().await;
        world
    }

    /// A full sync, signing in as the integration does (its secret read from its place).
    pub async fn sync(&self) {
        Syncer {
            directory: self.services.directory(&self.integration).unwrap().as_ref(),
            store: self.store.as_ref(),
            clock: &self.clock,
            progress: &|_| {},
        }
        .sync(&self.integration, SyncMode::Full)
        .await
        .unwrap();
    }

    pub fn old_credential(&self) -> CredentialId {
        CredentialId::parse(&format!("own/app/{}/{}", self.app, self.old_key)).unwrap()
    }

    pub async fn request(&self) -> Execution {
        let trigger = Trigger::Manual { by: "ops".into(), reason: Some("own secret".into()) };
        match request_rotation(&self.services, &self.old_credential(), trigger, false).await.unwrap() {
            RotationAccepted::Started { execution } => *execution,
            other => panic!("not started: {other:?}"),
        }
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
        self.sim.advance_clock(by);
    }

    /// Lets the policy's grace period pass.
    pub fn pass_grace(&self) {
        self.advance(Duration::from_secs(GRACE_DAYS * 86_400 + 60));
    }

    /// Runs the workers until `e` is settled (completed, failed, or anything terminal), letting
    /// time pass for delayed messages; `between` runs after each round with the execution as it
    /// is then (to take the place away at the right moment).
    pub async fn run_with(&self, e: &Execution, mut between: impl AsyncFnMut(&Execution)) -> Execution {
        for _ in 0..2000 {
            let mut did = 0;
            for w in &self.workers {
                did += w.run_once().await.unwrap();
            }
            let now = self.store.get_execution(&e.id).await.unwrap().unwrap();
            between(&now).await;
            if did == 0 && (now.status.is_terminal() || now.status == ExecutionStatus::Failed) {
                return now;
            }
            if did == 0 {
                self.advance(Duration::from_secs(5));
            }
        }
        panic!("the chain did not settle");
    }

    pub async fn run(&self, e: &Execution) -> Execution {
        self.run_with(e, async |_| {}).await
    }

    pub async fn cleanup(&self) {
        let m = Message::CleanupRequested { integration: None }.envelope(format!("cleanup:{}", Uuid::new_v4()));
        self.queue.send(&QueueName::new(queues::CLEANUP), m.to_outgoing(Duration::ZERO).unwrap()).await.unwrap();
        for _ in 0..50 {
            let mut did = 0;
            for w in &self.workers {
                did += w.run_once().await.unwrap();
            }
            if did == 0 {
                return;
            }
        }
    }

    /// The key ids of the own application's passwords in the tenant, sorted.
    pub fn tenant_keys(&self) -> Vec<Uuid> {
        let mut keys: Vec<Uuid> =
            self.sim.tenant().app_passwords(self.app).unwrap().into_iter().map(|p| p.key_id).collect();
        keys.sort();
        keys
    }

    /// The key ids that signed in as the own application since sign-in number `since`.
    pub fn own_sign_ins_since(&self, since: usize) -> Vec<Option<Uuid>> {
        self.sim.secret_sign_ins()[since..].iter().filter(|s| s.client_id == self.client_id).map(|s| s.key_id).collect()
    }

    /// The key ids the next sync signs in with.
    pub async fn sign_ins_of_a_sync(&self) -> Vec<Option<Uuid>> {
        let before = self.sim.secret_sign_ins().len();
        self.sync().await;
        self.own_sign_ins_since(before)
    }

    /// Runs the step of `done` again with `secret` in hand, as a redelivery would, for the
    /// application `client_id` (the own one unless another is given).
    pub async fn run_step_again(
        &self,
        done: &Execution,
        secret: &str,
        client_id: Option<ClientId>,
    ) -> Result<(), StepFailure> {
        let step = parse_steps_with(
            r#"[{"type": "rotator_own_secret", "order": 10, "config": {"integration": "own"}}]"#,
            &AddressPolicy::default(),
        )
        .unwrap()
        .steps
        .remove(0);
        let secret = SecretValue::new(secret.to_owned());
        let new_key = done.new_key_id.unwrap();
        let credential = CredentialId::parse(&format!("own/app/{}/{new_key}", self.app)).unwrap();
        let ctx = StepContext {
            execution: done.id,
            step_index: 1,
            credential: &credential,
            app: done.app,
            client_id: client_id.unwrap_or_else(|| ClientId::parse(&self.client_id.to_string()).unwrap()),
            new_key_id: new_key,
            new_secret_end: done.new_secret_end,
            secret: &secret,
            now: self.clock.now(),
            attempt: 1,
        };
        self.services.rollout.run(&step, &ctx).await
    }

    /// The new and the old secret are nowhere but their place: not in `logs`, the store, the
    /// execution `after`, or any message sent.
    pub async fn assert_secrets_nowhere(&self, logs: &LogBuffer, after: &Execution, new_secret: &str) {
        let log_text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
        let mut haystacks = vec![
            ("logs", log_text),
            ("store", self.store.contents_as_text().await.unwrap()),
            ("execution", serde_json::to_string(after).unwrap()),
        ];
        for body in self.queue.sent() {
            haystacks.push(("queue message", body));
        }
        for (what, text) in &haystacks {
            assert!(!text.is_empty(), "the {what} were searched");
            assert!(!text.contains(new_secret), "the new secret appeared in the {what}");
            assert!(!text.contains(&self.old_secret), "the old secret appeared in the {what}");
        }
        assert!(haystacks.iter().any(|(what, _)| *what == "queue message"));
    }
}

/// What the token endpoint answers a secret it does not accept.
pub fn invalid_client() -> FaultKind {
    FaultKind::Refused {
        code: "invalid_client".into(),
        message: "AADSTS7000215: Invalid client secret provided.".into(),
    }
}

/// Runs a rotation whose step meets the token endpoint refusing (every sign-in after the
/// rollout's `verify` passed, `times` of them); `first` is what the first refusal does instead
/// (`Late`, to act while the step waits for it), and `meanwhile` runs while the step waits.
pub async fn run_refused(w: &OwnWorld, first: FaultKind, meanwhile: impl FnOnce() + Send + 'static) -> Execution {
    let e = w.request().await;
    let token = || Match::path("/oauth2/v2.0/token");
    let mut meanwhile = Some(meanwhile);
    let failed = w
        .run_with(&e, async |now| {
            if now.current_step == 1
                && let Some(meanwhile) = meanwhile.take()
            {
                // The new secret passed `verify`; from here on the token endpoint refuses.
                w.sim.faults().push(Fault::new(token(), first.clone()));
                w.sim.faults().push(Fault::new(token(), invalid_client()).times(100));
                let faults = w.sim.faults();
                tokio::spawn(async move {
                    while faults.pending() > 100 {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    meanwhile();
                });
            }
        })
        .await;
    w.sim.faults().clear();
    assert!(meanwhile.is_none(), "the rollout reached the step");
    assert_eq!(failed.status, ExecutionStatus::Failed, "{failed:?}");
    failed
}

/// A new secret that is written but does not sign in is not left where the rotator reads its
/// own: the step puts the previous one back in its place (read by `place_holds`) and fails, a
/// cancel removes the new one from Entra, and the rotator goes on signing in with the old one.
pub async fn a_new_secret_that_does_not_sign_in_is_put_back_and_a_cancel_removes_it(
    w: &OwnWorld,
    place_holds: impl AsyncFn() -> String,
) {
    let failed = run_refused(w, invalid_client(), || {}).await;
    let error = failed.error.clone().unwrap_or_default();
    assert!(error.contains("does not sign in") && error.contains("previous secret was put back"), "{error}");
    assert_eq!(place_holds().await.trim_end(), w.old_secret, "the place holds the old secret again");
    let new_key = failed.new_key_id.unwrap().as_uuid();
    assert!(w.tenant_keys().contains(&new_key));

    let cancelled = cancel(&w.services, failed.id, "ops").await.unwrap();
    assert_eq!(cancelled.status, ExecutionStatus::Cancelled);
    assert_eq!(w.tenant_keys(), vec![w.old_key], "the new secret was removed, the old one stays");
    // The next sync signs in as before: the token it holds was asked with the old secret, and
    // any it asks for is asked with the old secret too (the only one the place holds).
    assert!(w.sign_ins_of_a_sync().await.iter().all(|k| *k == Some(w.old_key)));
}

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

/// Every log line of the test, at every level, kept to be searched.
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    /// Captures the test's logs (TRACE and up) for as long as the guard lives.
    pub fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
        let logs = Self::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }
}

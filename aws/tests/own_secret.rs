//! The stored-secret fallback rotating itself on AWS (issue 15, item 4): entra-rotator's own app
//! registration, in the simulated tenant, signs in with a secret kept in a Secrets Manager secret
//! (`client_secret_arn`, in the moto server); a policy for that application runs
//! `rotator_own_secret`, which puts the new secret there (a new `AWSCURRENT` version) and signs in
//! with it before the old one is removed. The chain runs through the embedded runtime's workers and
//! the wiring the Lambdas use (`services_with_aws`, the deployment's AWS identity and endpoint).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use entra_rotator::adapters::aws_identity::AwsSigning;
use entra_rotator::adapters::sealing::key_file::LocalKeyRing;
use entra_rotator::adapters::sqlite::{SqliteQueue, SqliteStore};
use entra_rotator::config::Config;
use entra_rotator::domain::address::AddressPolicy;
use entra_rotator::domain::execution::{Cleanup, Execution, ExecutionStatus, Trigger};
use entra_rotator::domain::ids::{ClientId, CredentialId, IntegrationId};
use entra_rotator::domain::secret::SecretValue;
use entra_rotator::domain::steps::parse_steps_with;
use entra_rotator::inbound::batch::{BatchHandler, EnvelopeHandler};
use entra_rotator::inbound::handlers::{CleanupHandler, RotateHandler, StepHandler};
use entra_rotator::inbound::runtime::{Worker, WorkerOptions};
use entra_rotator::messages::{Message, default_queue_specs, queues};
use entra_rotator::ports::step_runner::StepContext;
use entra_rotator::ports::{Clock, Queue, QueueName, Store};
use entra_rotator::testing::fakes::ManualClock;
use entra_rotator::testing::faults::FlakyQueue;
use entra_rotator::usecases::app::{App, RotationSettings};
use entra_rotator::usecases::rotation::{RotationAccepted, request_rotation};
use entra_rotator::usecases::sync::{SyncMode, Syncer};
use entra_rotator_aws::testing::{endpoint, sdk_config, unique};
use entra_sim::{GraphRole, NewApp, Sim, SimOptions};
use uuid::Uuid;

const GRACE_DAYS: u64 = 2;

/// The configuration file as an operator writes it, the secret in Secrets Manager (moto), the
/// embedded store and queue, the workers pumped by hand on a manual clock.
struct OwnWorld {
    sim: Sim,
    _dir: tempfile::TempDir,
    secrets: aws_sdk_secretsmanager::Client,
    arn: String,
    clock: ManualClock,
    store: Arc<SqliteStore>,
    queue: Arc<FlakyQueue>,
    services: App,
    workers: Vec<Worker>,
    integration: IntegrationId,
    /// The rotator's own application in the tenant: object id, client id, its first secret.
    app: Uuid,
    client_id: Uuid,
    old_key: Uuid,
    old_secret: String,
}

impl OwnWorld {
    async fn new() -> Self {
        let sim = Sim::start(SimOptions { apps: 2, seed: 15, replication_delay: Duration::ZERO, ..Default::default() })
            .await
            .unwrap();
        // entra-rotator's own app registration: an application like any other, whose secret signs
        // in, allowed to manage applications.
        let own = sim.tenant().add_app(NewApp::named("entra-rotator"));
        let added = sim.tenant().add_password_to(own.object_id, sim.now() + time::Duration::days(20)).unwrap();
        sim.permissions().grant(own.app_id, &[GraphRole::ApplicationReadWriteAll]);

        let dir = tempfile::tempdir().unwrap();
        let secrets = aws_sdk_secretsmanager::Client::new(&sdk_config().await);
        let created = secrets
            .create_secret()
            .name(unique("entra-client-secret"))
            .secret_string(&added.secret_text)
            .send()
            .await
            .unwrap();
        let arn = created.arn().unwrap().to_owned();
        let config_path = dir.path().join("rotator.toml");
        let text = format!(
            r#"
[outbound]
allow = ["127.0.0.1"]

[integrations.own]
tenant_id = "{tenant}"
client_id = "{client}"
auth = "client_secret"
client_secret_arn = "{arn}"
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
        // The deployment's own AWS identity and endpoint, as the Lambdas hand them to the wiring.
        let aws = AwsSigning::from_keys("testing", "testing", None, Some("us-east-1")).with_endpoint_url(endpoint());
        let mut services =
            entra_rotator::wiring::services_with_aws(&config, store.clone(), queue.clone(), dyn_clock, keys, Some(aws))
                .unwrap();
        services.settings = RotationSettings { verify_budget: Duration::from_secs(120), ..RotationSettings::default() };
        let workers = workers(&queue, &services);
        let integration = IntegrationId::parse("own").unwrap();
        let world = Self {
            sim,
            _dir: dir,
            secrets,
            arn,
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

    /// A full sync, signing in as the integration does (its secret read from the file).
    async fn sync(&self) {
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

    fn old_credential(&self) -> CredentialId {
        CredentialId::parse(&format!("own/app/{}/{}", self.app, self.old_key)).unwrap()
    }

    async fn request(&self) -> Execution {
        let trigger = Trigger::Manual { by: "ops".into(), reason: Some("own secret".into()) };
        match request_rotation(&self.services, &self.old_credential(), trigger, false).await.unwrap() {
            RotationAccepted::Started { execution } => *execution,
            other => panic!("not started: {other:?}"),
        }
    }

    fn advance(&self, by: Duration) {
        self.clock.advance(by);
        self.sim.advance_clock(by);
    }

    /// Runs the workers until `e` is settled (completed, failed, or anything terminal), letting
    /// time pass for delayed messages.
    async fn run(&self, e: &Execution) -> Execution {
        for _ in 0..2000 {
            let mut did = 0;
            for w in &self.workers {
                did += w.run_once().await.unwrap();
            }
            let now = self.store.get_execution(&e.id).await.unwrap().unwrap();
            if did == 0 && (now.status.is_terminal() || now.status == ExecutionStatus::Failed) {
                return now;
            }
            if did == 0 {
                self.advance(Duration::from_secs(5));
            }
        }
        panic!("the chain did not settle");
    }

    async fn cleanup(&self) {
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

    /// The secret's `AWSCURRENT` value.
    async fn current(&self) -> String {
        let got = self.secrets.get_secret_value().secret_id(&self.arn).send().await.unwrap();
        got.secret_string().unwrap().to_owned()
    }

    /// The secret's versions and their staging labels.
    async fn versions(&self) -> Vec<(String, Vec<String>)> {
        let listed =
            self.secrets.list_secret_version_ids().secret_id(&self.arn).include_deprecated(true).send().await.unwrap();
        listed
            .versions()
            .iter()
            .map(|v| (v.version_id().unwrap_or_default().to_owned(), v.version_stages().to_vec()))
            .collect()
    }

    /// The key ids of the own application's passwords in the tenant.
    fn tenant_keys(&self) -> Vec<Uuid> {
        self.sim.tenant().app_passwords(self.app).unwrap().into_iter().map(|p| p.key_id).collect()
    }

    /// The key ids that signed in as the own application since sign-in number `since`.
    fn own_sign_ins_since(&self, since: usize) -> Vec<Option<Uuid>> {
        self.sim.secret_sign_ins()[since..].iter().filter(|s| s.client_id == self.client_id).map(|s| s.key_id).collect()
    }
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

#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_rotator_rotates_its_own_secrets_manager_secret_signs_in_with_the_new_one_and_removes_the_old_after_grace()
{
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber =
        tracing_subscriber::fmt().with_max_level(tracing::Level::TRACE).with_writer(move || writer.clone()).finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let w = OwnWorld::new().await;
    assert_eq!(
        w.own_sign_ins_since(0).last(),
        Some(&Some(w.old_key)),
        "the first sync signed in with the stored secret"
    );
    assert_eq!(w.versions().await.len(), 1);

    let e = w.request().await;
    let done = w.run(&e).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{done:?}");
    let new_key = done.new_key_id.unwrap().as_uuid();

    // (a) Secrets Manager holds the new secret as AWSCURRENT, the old one as AWSPREVIOUS.
    let new_secret = w.current().await;
    assert_ne!(new_secret, w.old_secret);
    assert!(new_secret.len() > 10);
    let versions = w.versions().await;
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert!(versions.iter().any(|(_, stages)| stages.contains(&"AWSPREVIOUS".to_owned())), "{versions:?}");
    let mut keys = w.tenant_keys();
    keys.sort();
    let mut both = vec![w.old_key, new_key];
    both.sort();
    assert_eq!(keys, both, "both secrets stay valid through the grace period");

    // (b) the next Graph token is asked with the new secret, with no restart.
    let before = w.sim.secret_sign_ins().len();
    w.sync().await;
    assert_eq!(w.own_sign_ins_since(before), vec![Some(new_key)], "one token, asked with the new secret");

    // A redelivered step whose value is already in place writes no second version.
    let step = parse_steps_with(
        r#"[{"type": "rotator_own_secret", "order": 10, "config": {"integration": "own"}}]"#,
        &AddressPolicy::default(),
    )
    .unwrap()
    .steps
    .remove(0);
    let secret = SecretValue::new(new_secret.clone());
    let credential = CredentialId::parse(&format!("own/app/{}/{new_key}", w.app)).unwrap();
    let ctx = StepContext {
        execution: done.id,
        step_index: 1,
        credential: &credential,
        app: done.app,
        client_id: ClientId::parse(&w.client_id.to_string()).unwrap(),
        new_key_id: done.new_key_id.unwrap(),
        new_secret_end: done.new_secret_end,
        secret: &secret,
        now: w.clock.now(),
    };
    w.services.rollout.run(&step, &ctx).await.unwrap();
    assert_eq!(w.versions().await.len(), 2);

    // (c) after the grace period the old secret is removed, and signing in still works.
    w.advance(Duration::from_secs(GRACE_DAYS * 86_400 + 60));
    w.cleanup().await;
    let after = w.store.get_execution(&e.id).await.unwrap().unwrap();
    assert!(matches!(after.cleanup, Cleanup::Done { .. }), "{:?}", after.cleanup);
    assert_eq!(w.tenant_keys(), vec![new_key]);
    w.sync().await;

    // (d) the new secret is in Secrets Manager and nowhere else: no log line, store item or message.
    let log_text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    let mut haystacks = vec![
        ("logs", log_text),
        ("store", w.store.contents_as_text().await.unwrap()),
        ("execution", serde_json::to_string(&after).unwrap()),
    ];
    for body in w.queue.sent() {
        haystacks.push(("queue message", body));
    }
    for (what, text) in &haystacks {
        assert!(!text.is_empty(), "the {what} were searched");
        assert!(!text.contains(&new_secret), "the new secret appeared in the {what}");
        assert!(!text.contains(&w.old_secret), "the old secret appeared in the {what}");
    }
}

#[tokio::test]
async fn a_secret_the_rotator_may_not_write_fails_the_step_and_the_old_secret_stays() {
    let w = OwnWorld::new().await;
    let e = w.request().await;
    let mut failed = None;
    let mut deleted = false;
    for _ in 0..2000 {
        for worker in &w.workers {
            worker.run_once().await.unwrap();
        }
        let now = w.store.get_execution(&e.id).await.unwrap().unwrap();
        if now.new_key_id.is_some() && !deleted {
            // After preflight and the new secret: the secret is scheduled for deletion, so
            // PutSecretValue is refused (InvalidRequestException).
            w.secrets.delete_secret().secret_id(&w.arn).recovery_window_in_days(7).send().await.unwrap();
            deleted = true;
        }
        if now.status == ExecutionStatus::Failed || now.status.is_terminal() {
            failed = Some(now);
            break;
        }
        w.advance(Duration::from_secs(5));
    }
    let failed = failed.expect("the execution settled");
    assert_eq!(failed.status, ExecutionStatus::Failed, "{failed:?}");
    assert!(failed.new_key_id.is_some(), "it failed at the step, after the new secret was created");
    assert!(failed.error.clone().unwrap_or_default().contains("Secrets Manager"), "{:?}", failed.error);
    w.advance(Duration::from_secs(GRACE_DAYS * 86_400 + 60));
    w.cleanup().await;
    assert!(w.tenant_keys().contains(&w.old_key), "the old secret is never removed after a failed rollout");
}

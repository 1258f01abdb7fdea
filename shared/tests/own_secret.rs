//! The stored-secret fallback rotating itself on one machine (issue 15, item 4): entra-rotator's own
//! app registration, in the simulated tenant, signs in with a secret kept in `client_secret_file`;
//! a policy for that application runs `rotator_own_secret`, through the embedded runtime's workers
//! and the wiring every entrypoint uses, against the simulated token endpoint over HTTPS.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
use entra_sim::{GraphRole, NewApp, Sim, SimOptions};
use uuid::Uuid;

const GRACE_DAYS: u64 = 2;

/// One machine: the configuration file as an operator writes it, the secret file beside it, the
/// embedded store and queue, the workers pumped by hand on a manual clock.
struct OwnWorld {
    sim: Sim,
    _dir: tempfile::TempDir,
    secret_file: PathBuf,
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

fn write_private(path: &Path, text: &str) {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).unwrap().write_all(text.as_bytes()).unwrap();
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
        let secret_file = dir.path().join("secrets/entra-client-secret");
        std::fs::create_dir(dir.path().join("secrets")).unwrap();
        write_private(&secret_file, &format!("{}\n", added.secret_text));
        let config_path = dir.path().join("rotator.toml");
        let text = format!(
            r#"
[outbound]
allow = ["127.0.0.1"]

[integrations.own]
tenant_id = "{tenant}"
client_id = "{client}"
auth = "client_secret"
client_secret_file = "secrets/entra-client-secret"
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
            entra_rotator::wiring::services(&config, store.clone(), queue.clone(), dyn_clock, keys).unwrap();
        services.settings = RotationSettings { verify_budget: Duration::from_secs(120), ..RotationSettings::default() };
        let workers = workers(&queue, &services);
        let integration = IntegrationId::parse("own").unwrap();
        let world = Self {
            sim,
            _dir: dir,
            secret_file,
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

    fn file_text(&self) -> String {
        std::fs::read_to_string(&self.secret_file).unwrap()
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
async fn the_rotator_rotates_its_own_secret_file_signs_in_with_the_new_one_and_removes_the_old_after_grace() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber =
        tracing_subscriber::fmt().with_max_level(tracing::Level::TRACE).with_writer(move || writer.clone()).finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let w = OwnWorld::new().await;
    assert_eq!(
        w.own_sign_ins_since(0).last(),
        Some(&Some(w.old_key)),
        "the first sync signed in with the file's secret"
    );

    let e = w.request().await;
    let done = w.run(&e).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{done:?}");
    let new_key = done.new_key_id.unwrap().as_uuid();

    // (a) the file holds the new secret, privately, in the form it was read in.
    let stored = w.file_text();
    let new_secret = stored.strip_suffix('\n').unwrap().to_owned();
    assert_ne!(new_secret, w.old_secret);
    assert!(new_secret.len() > 10);
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&w.secret_file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let mut keys = w.tenant_keys();
    keys.sort();
    let mut both = vec![w.old_key, new_key];
    both.sort();
    assert_eq!(keys, both, "both secrets stay valid through the grace period");

    // (b) the next Graph token is asked with the new secret, with no restart.
    let before = w.sim.secret_sign_ins().len();
    w.sync().await;
    assert_eq!(w.own_sign_ins_since(before), vec![Some(new_key)], "one token, asked with the new secret");

    // A redelivered step whose value is already in place changes nothing (and still verifies).
    let modified = std::fs::metadata(&w.secret_file).unwrap().modified().unwrap();
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
    assert_eq!(std::fs::metadata(&w.secret_file).unwrap().modified().unwrap(), modified);
    // Run for another application, the step refuses: it stores only the integration's own secret.
    let other = ClientId::parse(&Uuid::new_v4().to_string()).unwrap();
    let refused = w.services.rollout.run(&step, &StepContext { client_id: other, ..ctx }).await.unwrap_err();
    assert!(!refused.retryable && refused.message.contains("own secret"), "{refused:?}");
    assert_eq!(w.file_text(), stored);

    // (c) after the grace period the old secret is removed, and signing in still works.
    w.cleanup().await;
    assert_eq!(w.tenant_keys().len(), 2, "not before the grace period ends");
    w.advance(Duration::from_secs(GRACE_DAYS * 86_400 + 60));
    w.cleanup().await;
    let after = w.store.get_execution(&e.id).await.unwrap().unwrap();
    assert!(matches!(after.cleanup, Cleanup::Done { .. }), "{:?}", after.cleanup);
    assert_eq!(w.tenant_keys(), vec![new_key]);
    let before = w.sim.secret_sign_ins().len();
    w.sync().await;
    assert!(w.own_sign_ins_since(before).iter().all(|k| *k == Some(new_key)));

    // (d) the new secret is in the file and nowhere else: no log line, store item or message.
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
    assert!(haystacks.iter().any(|(what, _)| *what == "queue message"));
}

#[tokio::test]
async fn a_secret_file_that_cannot_be_written_is_refused_by_preflight_or_fails_the_step_and_nothing_is_removed() {
    let w = OwnWorld::new().await;
    let folder = w.secret_file.parent().unwrap().to_path_buf();
    let moved = folder.with_file_name("moved-away");

    // Preflight: the folder is gone, so no secret is created.
    std::fs::rename(&folder, &moved).unwrap();
    let e = w.request().await;
    let refused = w.run(&e).await;
    assert_eq!(refused.status, ExecutionStatus::Failed, "{refused:?}");
    assert!(refused.new_key_id.is_none(), "refused before any secret was created");
    assert!(refused.error.unwrap_or_default().contains("entra-client-secret"));
    assert_eq!(w.tenant_keys(), vec![w.old_key]);

    // The step: the folder goes after preflight passed; the step fails, the old secret stays.
    std::fs::rename(&moved, &folder).unwrap();
    let e = w.request().await;
    let mut failed = None;
    for _ in 0..2000 {
        for worker in &w.workers {
            worker.run_once().await.unwrap();
        }
        let now = w.store.get_execution(&e.id).await.unwrap().unwrap();
        if now.new_key_id.is_some() && folder.exists() {
            // The new secret exists in the tenant: take the folder away before the step runs.
            std::fs::rename(&folder, &moved).unwrap();
        }
        if now.status == ExecutionStatus::Failed || now.status.is_terminal() {
            failed = Some(now);
            break;
        }
        w.advance(Duration::from_secs(5));
    }
    let failed = failed.expect("the execution settled");
    assert_eq!(failed.status, ExecutionStatus::Failed, "{failed:?}");
    assert!(failed.new_key_id.is_some(), "this time it failed at the step, after the new secret was created");
    assert!(failed.error.clone().unwrap_or_default().contains("entra-client-secret"), "{:?}", failed.error);
    w.advance(Duration::from_secs(GRACE_DAYS * 86_400 + 60));
    w.cleanup().await;
    assert!(w.tenant_keys().contains(&w.old_key), "the old secret is never removed after a failed rollout");
    // The secret the rotator signs in with is still the old one, and it still works.
    std::fs::rename(&moved, &folder).unwrap();
    assert_eq!(w.file_text().trim_end(), w.old_secret);
    let before = w.sim.secret_sign_ins().len();
    w.sync().await;
    assert!(w.own_sign_ins_since(before).iter().all(|k| *k == Some(w.old_key)));
}

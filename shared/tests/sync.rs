//! The sync use case and handler against the simulated tenant, through the real Graph adapter.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use entra_rotator::adapters::graph::{GraphClient, RetryPolicy, TokenSource};
use entra_rotator::adapters::sqlite::{SqliteQueue, SqliteStore};
use entra_rotator::domain::execution::{Execution, ExecutionStatus, Trigger};
use entra_rotator::domain::ids::{ClientId, IntegrationId, OwnerKind, PolicyId, TenantId};
use entra_rotator::domain::inventory::CredentialKind;
use entra_rotator::domain::secret::SecretValue;
use entra_rotator::inbound::batch::{BatchHandler, EnvelopeHandler};
use entra_rotator::inbound::handlers::SyncHandler;
use entra_rotator::inbound::runtime::{Worker, WorkerOptions};
use entra_rotator::messages::{Envelope, Message, default_queue_specs, queues};
use entra_rotator::ports::{Clock, Queue, QueueName, Store};
use entra_rotator::testing::fakes::ManualClock;
use entra_rotator::usecases::app::App;
use entra_rotator::usecases::sync::{SyncKind, SyncMode, SyncReport, Syncer};
use entra_sim::{NewApp, Sim, SimOptions};

struct World {
    sim: Sim,
    graph: Arc<GraphClient>,
    store: Arc<SqliteStore>,
    clock: ManualClock,
    integration: IntegrationId,
}

impl World {
    async fn new(apps: usize) -> Self {
        let sim = Sim::start(SimOptions { apps, seed: 5, ..Default::default() }).await.unwrap();
        let source = TokenSource::ClientSecret {
            client_id: ClientId::parse(&sim.management_client_id()).unwrap(),
            secret: SecretValue::new(sim.management_secret()),
        };
        let retry = RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            budget: Duration::from_secs(5),
        };
        let graph = GraphClient::new(
            sim.graph_base_url(),
            sim.authority_host(),
            TenantId::parse(&sim.tenant_id()).unwrap(),
            source,
            Some(sim.ca_pem().as_bytes()),
            retry,
        )
        .unwrap();
        let clock = ManualClock::new(sim.now());
        Self {
            store: Arc::new(SqliteStore::in_memory(Arc::new(clock.clone())).unwrap()),
            graph: Arc::new(graph),
            clock,
            sim,
            integration: IntegrationId::parse("contoso").unwrap(),
        }
    }

    async fn sync(&self, mode: SyncMode) -> SyncReport {
        Syncer { directory: self.graph.as_ref(), store: self.store.as_ref(), clock: &self.clock, progress: &|_| {} }
            .sync(&self.integration, mode)
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn a_full_sync_stores_every_credential_once_with_certificates_deduplicated_by_thumbprint() {
    let w = World::new(300).await;
    let report = w.sync(SyncMode::Auto).await;
    assert_eq!(report.kind, SyncKind::Full);
    let truth = w.sim.truth(w.clock.now());
    assert_eq!(report.applications_seen, truth.applications);
    assert_eq!(report.service_principals_seen, truth.service_principals);
    let creds = w.store.list_credentials(Some(&w.integration)).await.unwrap();
    let certs = creds.iter().filter(|c| c.kind == CredentialKind::Certificate).count();
    let passwords = creds.iter().filter(|c| c.kind == CredentialKind::Password).count();
    assert_eq!(certs, truth.certificates, "a Sign/Verify pair is one certificate");
    assert_eq!(passwords, truth.password_credentials);
    assert!(w.store.get_sync_state(&w.integration).await.unwrap().unwrap().applications_delta_link.is_some());
}

#[tokio::test]
async fn a_removed_application_takes_its_rotation_entries_with_it() {
    let w = World::new(50).await;
    w.sync(SyncMode::Auto).await;
    let creds = w.store.list_credentials(Some(&w.integration)).await.unwrap();
    let victim = creds.iter().find(|c| c.kind == CredentialKind::Password && c.app.is_some()).unwrap().clone();
    let app = victim.app.unwrap();
    let mut running = Execution::new(
        victim.id.clone(),
        app,
        PolicyId::parse("default").unwrap(),
        Trigger::Manual { by: "ops".into(), reason: None },
        vec![],
        w.clock.now(),
    );
    running.status = ExecutionStatus::Running;
    w.store.create_execution(&running).await.unwrap();

    w.sim.tenant().remove_app(app.as_uuid()).unwrap();
    let report = w.sync(SyncMode::Auto).await;
    assert_eq!(report.kind, SyncKind::Delta);
    assert_eq!(report.owners_removed, 1);
    assert_eq!(w.store.get_credential(&victim.id).await.unwrap(), None);
    assert!(w.store.get_application(&w.integration, &app).await.unwrap().is_none());
    let e = w.store.get_execution(&running.id).await.unwrap().unwrap();
    assert_eq!(e.status, ExecutionStatus::Cancelled, "its rotation stops, and the claim is released");
}

#[tokio::test]
async fn a_full_sync_also_finds_what_vanished_without_a_delta_link() {
    let w = World::new(40).await;
    w.sync(SyncMode::Full).await;
    let gone = w.sim.tenant().app_object_ids()[7];
    w.sim.tenant().remove_app(gone).unwrap();
    let report = w.sync(SyncMode::Full).await;
    // The application, and its service principal when it had one.
    assert!((1..=2).contains(&report.owners_removed), "{report:?}");
    assert!(!w.store.owner_ids(&w.integration, OwnerKind::Application).await.unwrap().contains(&gone));
}

#[tokio::test]
async fn an_expired_delta_link_falls_back_to_a_full_sync() {
    let w = World::new(30).await;
    w.sync(SyncMode::Auto).await;
    w.sim.advance_clock(Duration::from_secs(8 * 86_400));
    let report = w.sync(SyncMode::Auto).await;
    assert_eq!(report.kind, SyncKind::Full);
    assert!(report.fell_back_to_full);
    assert_eq!(report.applications_seen, 30);
    // The fresh links work again.
    let again = w.sync(SyncMode::Auto).await;
    assert_eq!(again.kind, SyncKind::Delta);
}

#[tokio::test]
async fn a_redelivered_sync_message_asks_for_one_scan() {
    let w = World::new(10).await;
    let clock: Arc<dyn Clock> = Arc::new(w.clock.clone());
    let queue = Arc::new(SqliteQueue::in_memory(default_queue_specs(), clock.clone()).unwrap());
    let services = App::test_at(w.clock.clone())
        .with_store(w.store.clone())
        .with_queue(queue.clone())
        .with_directory(w.integration.clone(), w.graph.clone());
    let sync_q = QueueName::new(queues::SYNC);
    let envelope = Message::SyncRequested { integration: w.integration.clone(), full: false }.envelope("timer:sync:1");
    queue.send(&sync_q, envelope.to_outgoing(Duration::ZERO).unwrap()).await.unwrap();
    let handler = Arc::new(EnvelopeHandler(SyncHandler(services)));
    // The first delivery does the work but is never acknowledged (a crash): it comes back.
    let first = queue.receive(&sync_q, 1, Some(Duration::ZERO)).await.unwrap();
    assert!(handler.handle(&first).await.is_empty());
    let worker = Worker::new(queue.clone(), sync_q.clone(), handler, WorkerOptions::default());
    assert_eq!(worker.run_once().await.unwrap(), 1);
    let scans = queue.receive(&QueueName::new(queues::SCAN), 10, None).await.unwrap();
    assert_eq!(scans.len(), 1, "one ScanRequested for one sync message");
    assert!(matches!(Envelope::parse(&scans[0].body).unwrap().message, Message::ScanRequested { .. }));
}

#[tokio::test]
async fn a_full_sync_makes_exactly_one_listing_request_per_page_of_999() {
    let w = World::new(2500).await;
    w.sim.clear_requests();
    let report = w.sync(SyncMode::Full).await;
    let listing = w
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.is_graph() && !r.query.as_deref().unwrap_or("").contains("deltatoken=latest"))
        .count();
    let minimum = 2500usize.div_ceil(999) + report.service_principals_seen.div_ceil(999);
    assert_eq!(listing, minimum);
    assert_eq!(report.pages, minimum);
}

#[tokio::test]
async fn a_password_and_a_certificate_sharing_a_key_id_both_stay_in_the_inventory() {
    let w = World::new(5).await;
    let app = w.sim.tenant().add_app(NewApp::named("SAML sign-on").with_service_principal());
    let sp = app.service_principal_id.unwrap();
    let end = w.clock.now() + time::Duration::days(365);
    let key = w.sim.tenant().add_token_signing_certificate_to(sp, end).unwrap();

    let full = w.sync(SyncMode::Full).await;
    // A second sync compares against what the first one stored; a delta one after a change.
    let _ = w.sim.tenant().touch_app(app.object_id);
    let delta = w.sync(SyncMode::Auto).await;
    assert_eq!((full.kind, delta.kind), (SyncKind::Full, SyncKind::Delta));
    let full_again = w.sync(SyncMode::Full).await;
    assert_eq!(full_again.kind, SyncKind::Full);

    let mut sharing: Vec<_> = w
        .store
        .list_credentials(Some(&w.integration))
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.id.key_id.as_uuid() == key)
        .collect();
    sharing.sort_by_key(|c| c.kind == CredentialKind::Certificate);
    let kinds: Vec<_> = sharing.iter().map(|c| (c.kind, c.id.owner_kind, c.id.owner)).collect();
    assert_eq!(
        kinds,
        vec![
            (CredentialKind::Password, OwnerKind::ServicePrincipal, sp),
            (CredentialKind::Certificate, OwnerKind::ServicePrincipal, sp)
        ],
        "the password and the certificate are two credentials"
    );
    assert!(sharing[1].thumbprint.is_some());
    assert_ne!(sharing[0].id, sharing[1].id);
    for c in &sharing {
        assert_eq!(w.store.get_credential(&c.id).await.unwrap().as_ref(), Some(c));
    }
}

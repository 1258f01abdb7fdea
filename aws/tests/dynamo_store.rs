//! `DynamoStore` on the moto server: the store contract every store keeps (once with DynamoDB's own
//! page size, once with pages of two items so every listing crosses page boundaries), and what only
//! a DynamoDB store can get wrong: many pages, batches past their limits, races on the claim.
//! Each test has a table of its own. Run with `scripts/with-moto.sh cargo test -p entra-rotator-aws`.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use entra_rotator::domain::execution::{Execution, ExecutionStatus};
use entra_rotator::domain::ids::CredentialId;
use entra_rotator::domain::inventory::Credential;
use entra_rotator::domain::lifecycle::AlertThreshold;
use entra_rotator::ports::{AlertKey, AuditEvent, AuditQuery, Claim, Owner, OwnerSnapshot, Store};
use entra_rotator::testing::contract::store::{NOW, app, execution, password};
use entra_rotator::testing::fakes::ManualClock;
use entra_rotator::{Error, Result};
use entra_rotator_aws::DynamoStore;
use entra_rotator_aws::testing::{sdk_config, unique};

async fn client() -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&sdk_config().await)
}

/// A store on a new table; `page` items per Query page when given.
async fn dynamo(page: Option<u16>) -> Arc<DynamoStore> {
    let client = client().await;
    let table = unique("rotator-store");
    DynamoStore::create_table(&client, &table).await.expect("creating the table on moto");
    let store = DynamoStore::new(client, table, Arc::new(ManualClock::new(NOW)));
    Arc::new(match page {
        Some(p) => store.with_page_size(p),
        None => store,
    })
}

async fn store() -> Arc<dyn Store> {
    dynamo(None).await
}

async fn store_in_small_pages() -> Arc<dyn Store> {
    dynamo(Some(2)).await
}

mod contract {
    use super::*;
    entra_rotator::store_contract_tests!(store());
}

mod contract_in_pages_of_two_items {
    use super::*;
    entra_rotator::store_contract_tests!(store_in_small_pages());
}

#[tokio::test]
async fn listings_spanning_many_pages_return_every_record() {
    let s = dynamo(Some(7)).await;
    let a = app("contoso");
    let mut want: Vec<CredentialId> = Vec::new();
    for d in 0..60 {
        let c = password(&a, d);
        want.push(c.id.clone());
        s.put_credential(&c).await.unwrap();
    }
    let listed: Vec<_> = s.list_credentials(Some(&a.integration)).await.unwrap().into_iter().map(|c| c.id).collect();
    assert_eq!(listed, want, "all 60, soonest end first");
    assert_eq!(s.list_credentials(None).await.unwrap().len(), 60);

    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = s.credentials_page(after.as_ref(), 25).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        paged.extend(page.into_iter().map(|c| c.id));
    }
    want.sort_by_key(ToString::to_string);
    assert_eq!(paged, want);

    let c = password(&a, 1);
    for i in 0..30 {
        s.append_audit(&AuditEvent {
            at: NOW + time::Duration::seconds(i),
            action: format!("step.{i}"),
            actor: "scheduler".into(),
            execution: None,
            credential: Some(c.id.clone()),
            detail: String::new(),
        })
        .await
        .unwrap();
    }
    let all = s.list_audit(&AuditQuery { credential: Some(c.id.clone()), ..Default::default() }).await.unwrap();
    assert_eq!(all.len(), 30);
    assert_eq!(all[0].action, "step.29", "newest first");
    let some = s.list_audit(&AuditQuery { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(
        some.iter().map(|e| e.action.clone()).collect::<Vec<_>>(),
        (20..30).rev().map(|i| format!("step.{i}")).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn credentials_are_paged_in_id_order_across_integrations() {
    // `contoso-x/…` sorts before `contoso/…` ('-' < '/'), though the name `contoso` is shorter.
    let s = dynamo(Some(3)).await;
    let mut want = Vec::new();
    for name in ["contoso", "contoso-x", "a", "zeta_1"] {
        let a = app(name);
        for d in 0..4 {
            let c = password(&a, d);
            want.push(c.id.clone());
            s.put_credential(&c).await.unwrap();
        }
    }
    want.sort_by_key(ToString::to_string);
    for size in [1, 3, 5, 16, 100] {
        let mut seen = Vec::new();
        let mut after: Option<CredentialId> = None;
        loop {
            let page = s.credentials_page(after.as_ref(), size).await.unwrap();
            assert!(page.len() <= size);
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            seen.extend(page.into_iter().map(|c| c.id));
        }
        assert_eq!(seen, want, "pages of {size}");
    }
    assert!(s.credentials_page(None, 0).await.unwrap().is_empty());
}

#[tokio::test]
async fn batches_larger_than_dynamodb_allows_are_split_and_duplicates_written_once() {
    let s = dynamo(None).await;
    let keys: Vec<String> = (0..260).map(|i| format!("rotate:{i}")).collect();
    let mut twice = keys[..150].to_vec();
    twice.extend(keys[..30].iter().cloned());
    s.mark(&twice, NOW).await.unwrap();
    let marked = s.marked(&keys).await.unwrap();
    assert_eq!(marked.iter().filter(|m| **m).count(), 150);
    assert!(marked[..150].iter().all(|m| *m) && marked[150..].iter().all(|m| !*m));

    let c = password(&app("contoso"), 10);
    let alerts: Vec<AlertKey> = (0..120)
        .map(|d| AlertKey {
            credential: c.id.clone(),
            end: NOW + time::Duration::days(d),
            threshold: AlertThreshold::Expired,
        })
        .collect();
    s.record_alerts(&alerts, NOW).await.unwrap();
    let mut asked = alerts.clone();
    asked.push(alerts[0].clone());
    let recorded = s.alerts_recorded(&asked).await.unwrap();
    assert_eq!(recorded.len(), 121);
    assert!(recorded.iter().all(|r| *r));

    // A sync with more credentials than one batch write takes.
    let a = app("contoso");
    let many: Vec<Credential> = (0..40).map(|d| password(&a, d)).collect();
    let snapshot = OwnerSnapshot { owner: Owner::Application(a.clone()), passwords: Some(many), certificates: None };
    let counts = s.sync_owners(&a.integration, &[snapshot]).await.unwrap();
    assert_eq!((counts.owners, counts.credentials_written), (1, 40));
    assert_eq!(s.list_credentials(Some(&a.integration)).await.unwrap().len(), 40);
    assert_eq!(
        s.remove_owner(&a.integration, entra_rotator::domain::ids::OwnerKind::Application, a.object_id.as_uuid())
            .await
            .unwrap(),
        40
    );
    assert!(s.list_credentials(None).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_for_one_credential_give_exactly_one_created() {
    let s = dynamo(None).await;
    let c = password(&app("contoso"), 10);
    let executions: Vec<Execution> = (0..8).map(|_| execution(&c)).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for e in executions.clone() {
        let s = s.clone();
        tasks.spawn(async move { (e.id, s.create_execution(&e).await) });
    }
    let mut created = Vec::new();
    let mut holders = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined.unwrap() {
            (id, Ok(Claim::Created)) => created.push(id),
            (_, Ok(Claim::AlreadyActive(holder))) => holders.push(holder.id),
            (id, Err(e)) => panic!("create {id} failed: {e}"),
        }
    }
    assert_eq!(created.len(), 1, "exactly one claim wins");
    assert!(holders.iter().all(|h| *h == created[0]), "the others are shown the winner");
    assert_eq!(s.list_executions(&c.id).await.unwrap().len(), 1, "the losers wrote nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_updates_of_one_version_give_exactly_one_winner() {
    let s = dynamo(None).await;
    let c = password(&app("contoso"), 10);
    let e = execution(&c);
    s.create_execution(&e).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..6 {
        let (s, mut mine) = (s.clone(), e.clone());
        mine.status = if i % 2 == 0 { ExecutionStatus::Running } else { ExecutionStatus::Completed };
        mine.summary = Some(format!("writer {i}"));
        tasks.spawn(async move { s.update_execution(&mine).await });
    }
    let mut wins = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined.unwrap() {
            Ok(v) => {
                assert_eq!(v, e.version + 1);
                wins += 1;
            }
            Err(Error::Conflict { .. }) => {}
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!(wins, 1);
    let stored = s.get_execution(&e.id).await.unwrap().unwrap();
    assert_eq!(stored.version, e.version + 1);
    // The claim matches the winner: held while running, free once it completed.
    let next = execution(&c);
    let claim = s.create_execution(&next).await.unwrap();
    assert_eq!(matches!(claim, Claim::Created), stored.status.is_terminal());
}

#[tokio::test]
async fn removing_a_credential_cancels_its_execution_and_frees_the_claim() {
    let s = dynamo(None).await;
    let a = app("contoso");
    let c = password(&a, 10);
    s.put_credential(&c).await.unwrap();
    let mut e = execution(&c);
    s.create_execution(&e).await.unwrap();
    e.status = ExecutionStatus::Running;
    e.version = s.update_execution(&e).await.unwrap();

    s.remove_credential(&c.id).await.unwrap();

    let cancelled = s.get_execution(&e.id).await.unwrap().unwrap();
    assert_eq!(cancelled.status, ExecutionStatus::Cancelled);
    assert_eq!(cancelled.version, e.version + 1);
    assert_eq!(cancelled.finished_at, Some(NOW));
    assert_eq!(cancelled.updated_at, NOW);
    assert_eq!(cancelled.error.as_deref(), Some("the credential was removed from the tenant"));
    assert!(s.list_open_executions().await.unwrap().is_empty());
    assert!(matches!(s.update_execution(&e).await, Err(Error::Conflict { .. })), "the old version is stale");
    assert_eq!(s.create_execution(&execution(&c)).await.unwrap(), Claim::Created, "the claim is free");
    s.remove_credential(&c.id).await.unwrap();
}

#[tokio::test]
async fn updating_a_finished_execution_leaves_the_next_ones_claim_alone() {
    let s = dynamo(None).await;
    let c = password(&app("contoso"), 10);
    let mut first = execution(&c);
    s.create_execution(&first).await.unwrap();
    first.status = ExecutionStatus::Completed;
    first.version = s.update_execution(&first).await.unwrap();
    let second = execution(&c);
    assert_eq!(s.create_execution(&second).await.unwrap(), Claim::Created);

    // The grace-period cleanup later writes the first execution again.
    first.summary = Some("old secret removed".into());
    first.version = s.update_execution(&first).await.unwrap();
    assert_eq!(s.get_execution(&first.id).await.unwrap().unwrap().summary.as_deref(), Some("old secret removed"));
    match s.create_execution(&execution(&c)).await.unwrap() {
        Claim::AlreadyActive(holder) => assert_eq!(holder.id, second.id),
        Claim::Created => panic!("the second execution lost its claim"),
    }
    // A terminal execution cannot take the claim back by going non-terminal.
    first.status = ExecutionStatus::Running;
    assert!(matches!(s.update_execution(&first).await, Err(Error::Conflict { .. })));
}

#[tokio::test]
async fn creating_the_table_again_leaves_it_usable() -> Result<()> {
    let client = client().await;
    let table = unique("rotator-store");
    DynamoStore::create_table(&client, &table).await?;
    let s = DynamoStore::new(client.clone(), table.clone(), Arc::new(ManualClock::new(NOW)));
    s.mark(&["kept".into()], NOW).await?;
    DynamoStore::create_table(&client, &table).await?;
    assert_eq!(s.marked(&["kept".into()]).await?, vec![true]);
    let ttl = client.describe_time_to_live().table_name(&table).send().await.unwrap();
    assert_eq!(ttl.time_to_live_description().and_then(|d| d.attribute_name()), Some("expires_at"));
    Ok(())
}

mod migration {
    use std::collections::HashMap;

    use aws_sdk_dynamodb::types::AttributeValue;
    use entra_rotator::domain::ids::{CredentialKind, IntegrationId};
    use entra_rotator_aws::dynamo::{Migrated, SCHEMA_VERSION};
    use time::macros::datetime;

    use super::*;

    const SP: &str = "5b4e0a6c-1d2e-4f3a-8b9c-0d1e2f3a4b5c";
    const APP: &str = "7c6d5e4f-3a2b-4c1d-9e8f-7a6b5c4d3e2f";
    const CLIENT: &str = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
    const SHARED_KEY: &str = "11111111-2222-4333-8444-555555555555";
    const APP_PASSWORD_KEY: &str = "22222222-3333-4444-8555-666666666666";
    const APP_CERT_KEY: &str = "33333333-4444-4555-8666-777777777777";
    /// A certificate a migration had copied to its new key but not yet deleted from its old one
    /// when it stopped.
    const HALF_MOVED_KEY: &str = "44444444-5555-4666-8777-888888888888";

    fn s(v: impl Into<String>) -> AttributeValue {
        AttributeValue::S(v.into())
    }

    /// A credential's document exactly as entra-rotator wrote it before schema version 1.
    fn v0_doc(id: &str, kind: &str, thumbprint: Option<&str>) -> String {
        let thumbprint = thumbprint.map_or("null".to_owned(), |t| format!("\"{t}\""));
        format!(
            r#"{{"id":"{id}","kind":"{kind}","app":null,"client_id":"{CLIENT}","display_name":"CN=sso","hint":null,"start":"2026-01-01T00:00:00Z","end":"2027-01-01T00:00:00Z","thumbprint":{thumbprint},"removed_at":null}}"#
        )
    }

    async fn put(client: &aws_sdk_dynamodb::Client, table: &str, item: Vec<(&str, AttributeValue)>) {
        let item: HashMap<String, AttributeValue> = item.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        client.put_item().table_name(table).set_item(Some(item)).send().await.unwrap();
    }

    /// A table as entra-rotator left it before schema version 1 (no schema item), written with raw
    /// PutItem calls in that code's key format. The service principal's password and certificate
    /// shared a key id, so they were one item: the certificate's.
    async fn write_v0_table(client: &aws_sdk_dynamodb::Client, table: &str) {
        put(client, table, vec![("pk", s("INTEGRATIONS")), ("sk", s("contoso"))]).await;
        let credentials = [
            (format!("contoso/sp/{SP}/{SHARED_KEY}"), "certificate", Some("q83vEjRWeJq83vEjRWeJq83vEjQ=")),
            (format!("contoso/app/{APP}/{APP_PASSWORD_KEY}"), "password", None),
            (format!("contoso/app/{APP}/{APP_CERT_KEY}"), "certificate", Some("3q2+7w==")),
            (format!("contoso/app/{APP}/{HALF_MOVED_KEY}"), "certificate", Some("AAAA")),
        ];
        for (id, kind, thumbprint) in credentials {
            put(
                client,
                table,
                vec![("pk", s("CRED#contoso")), ("sk", s(id.clone())), ("doc", s(v0_doc(&id, kind, thumbprint)))],
            )
            .await;
        }
        let half_moved = format!("contoso/app/{APP}/cert/{HALF_MOVED_KEY}");
        put(
            client,
            table,
            vec![
                ("pk", s("CRED#contoso")),
                ("sk", s(half_moved.clone())),
                ("doc", s(v0_doc(&half_moved, "certificate", Some("AAAA")))),
            ],
        )
        .await;
        put(
            client,
            table,
            vec![
                ("pk", s(format!("ALERT#contoso/app/{APP}/{APP_CERT_KEY}"))),
                ("sk", s("1798761600#30d")),
                ("at", AttributeValue::N("1".into())),
            ],
        )
        .await;
        let state = r#"{"integration":"contoso","applications_delta_link":"https://graph/apps?$deltatoken=a","service_principals_delta_link":"https://graph/sps?$deltatoken=s","last_full_sync":"2026-11-01T00:00:00Z","last_delta_sync":null}"#;
        put(client, table, vec![("pk", s("SYNC#contoso")), ("sk", s("SYNC")), ("doc", s(state))]).await;
    }

    fn id(s: &str) -> CredentialId {
        CredentialId::parse(s).unwrap()
    }

    #[tokio::test]
    async fn a_table_from_before_schema_versions_gives_certificates_their_own_keys() {
        let client = client().await;
        let table = unique("rotator-store");
        DynamoStore::create_table(&client, &table).await.unwrap();
        write_v0_table(&client, &table).await;
        // Small pages, so the migration's listings cross page boundaries.
        let store = DynamoStore::new(client.clone(), table.clone(), Arc::new(ManualClock::new(NOW))).with_page_size(2);

        // The first credential call migrates.
        let i = IntegrationId::parse("contoso").unwrap();
        let listed = store.list_credentials(Some(&i)).await.unwrap();
        let mut found: Vec<(String, CredentialKind)> = listed.iter().map(|c| (c.id.to_string(), c.kind)).collect();
        found.sort();
        let mut want = vec![
            (format!("contoso/app/{APP}/{APP_PASSWORD_KEY}"), CredentialKind::Password),
            (format!("contoso/app/{APP}/cert/{APP_CERT_KEY}"), CredentialKind::Certificate),
            (format!("contoso/app/{APP}/cert/{HALF_MOVED_KEY}"), CredentialKind::Certificate),
            (format!("contoso/sp/{SP}/cert/{SHARED_KEY}"), CredentialKind::Certificate),
        ];
        want.sort();
        assert_eq!(found, want, "nothing lost, every certificate under its own key, once");
        assert!(listed.iter().all(|c| c.id.kind == c.kind));

        // The certificate's alert moved with it, so it is not sent again.
        let alert = AlertKey {
            credential: id(&format!("contoso/app/{APP}/cert/{APP_CERT_KEY}")),
            end: datetime!(2027-01-01 00:00 UTC),
            threshold: AlertThreshold::DaysBefore(30),
        };
        assert_eq!(store.alerts_recorded(&[alert]).await.unwrap(), vec![true]);
        let old_alerts = client
            .get_item()
            .table_name(&table)
            .key("pk", s(format!("ALERT#contoso/app/{APP}/{APP_CERT_KEY}")))
            .key("sk", s("1798761600#30d"))
            .send()
            .await
            .unwrap();
        assert!(old_alerts.item.is_none(), "the old alert key is gone");

        // The next sync is full, to bring back the password the certificate overwrote.
        let state = store.get_sync_state(&i).await.unwrap().unwrap();
        assert_eq!((state.applications_delta_link, state.service_principals_delta_link), (None, None));
        assert_eq!(state.last_full_sync, Some(datetime!(2026-11-01 00:00 UTC)));

        // It does: the password and the certificate are two credentials now.
        let mut sp_certificate =
            store.get_credential(&id(&format!("contoso/sp/{SP}/cert/{SHARED_KEY}"))).await.unwrap().unwrap();
        let mut sp_password = sp_certificate.clone();
        sp_password.id = sp_password.id.with_kind(CredentialKind::Password);
        sp_password.kind = CredentialKind::Password;
        sp_password.thumbprint = None;
        sp_certificate.display_name = Some("CN=sso (renewed)".into());
        let sp = entra_rotator::domain::inventory::ServicePrincipal {
            integration: i.clone(),
            object_id: entra_rotator::domain::ids::ServicePrincipalId::parse(SP).unwrap(),
            client_id: sp_certificate.client_id,
            display_name: "SAML app".into(),
        };
        let snapshot = OwnerSnapshot {
            owner: Owner::ServicePrincipal(sp),
            passwords: Some(vec![sp_password.clone()]),
            certificates: Some(vec![sp_certificate.clone()]),
        };
        assert_eq!(store.sync_owners(&i, &[snapshot]).await.unwrap().credentials_removed, 0);
        assert_eq!(store.get_credential(&sp_password.id).await.unwrap(), Some(sp_password));
        assert_eq!(store.get_credential(&sp_certificate.id).await.unwrap(), Some(sp_certificate));
        assert_eq!(store.list_credentials(Some(&i)).await.unwrap().len(), 5);

        // The version is recorded: another process finds nothing to do.
        let another = DynamoStore::new(client, table, Arc::new(ManualClock::new(NOW)));
        assert_eq!(another.migrate().await.unwrap(), Migrated { from: SCHEMA_VERSION, certificates: 0 });
        assert_eq!(another.list_credentials(Some(&i)).await.unwrap().len(), 5);
    }

    #[tokio::test]
    async fn a_table_of_a_newer_schema_version_is_refused() {
        let client = client().await;
        let table = unique("rotator-store");
        DynamoStore::create_table(&client, &table).await.unwrap();
        let newer = AttributeValue::N((SCHEMA_VERSION + 1).to_string());
        put(&client, &table, vec![("pk", s("SCHEMA")), ("sk", s("SCHEMA")), ("version", newer)]).await;
        let store = DynamoStore::new(client, table, Arc::new(ManualClock::new(NOW)));
        let refused = store.list_credentials(None).await.unwrap_err();
        assert!(matches!(refused, Error::Store { transient: false, .. }), "{refused}");
        assert!(refused.to_string().contains("schema version"), "{refused}");
    }
}

/// Sync against the simulated tenant into this store: what the embedded runtime's sync test does
/// with SQLite (`shared/tests/sync.rs`), for the finding both runtimes had.
#[tokio::test]
async fn syncing_a_password_and_a_certificate_sharing_a_key_id_keeps_both() {
    use std::time::Duration;

    use entra_rotator::adapters::graph::{GraphClient, RetryPolicy, TokenSource};
    use entra_rotator::domain::ids::{ClientId, IntegrationId, OwnerKind, TenantId};
    use entra_rotator::domain::inventory::CredentialKind;
    use entra_rotator::domain::secret::SecretValue;
    use entra_rotator::usecases::sync::{SyncMode, Syncer};
    use entra_sim::{NewApp, Sim, SimOptions};

    let sim = Sim::start(SimOptions { apps: 3, seed: 5, ..Default::default() }).await.unwrap();
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
    let app = sim.tenant().add_app(NewApp::named("SAML sign-on").with_service_principal());
    let sp = app.service_principal_id.unwrap();
    let key = sim.tenant().add_token_signing_certificate_to(sp, sim.now() + time::Duration::days(365)).unwrap();

    let s = dynamo(Some(5)).await;
    let clock = ManualClock::new(sim.now());
    let integration = IntegrationId::parse("contoso").unwrap();
    let syncer = Syncer { directory: &graph, store: s.as_ref(), clock: &clock, progress: &|_| {} };
    for mode in [SyncMode::Full, SyncMode::Full] {
        syncer.sync(&integration, mode).await.unwrap();
    }

    let mut sharing: Vec<Credential> = s
        .list_credentials(Some(&integration))
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
    for c in &sharing {
        assert_eq!(s.get_credential(&c.id).await.unwrap().as_ref(), Some(c));
    }
}

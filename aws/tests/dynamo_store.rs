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

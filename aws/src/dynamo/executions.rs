//! Executions and their step records, and the claim that lets one execution at a time rotate a
//! credential: taken when the execution is created, kept or released by each of its updates, and
//! cancelled with it when the credential leaves the inventory.

use std::collections::HashMap;

use entra_rotator::domain::execution::{Execution, StepRecord};
use entra_rotator::domain::ids::{CredentialId, ExecutionId};
use entra_rotator::ports::Claim;
use entra_rotator::{Error, Result};

use super::DynamoStore;
use super::items::{Item, doc_item, from_items, key_of, n, s, text_attribute};
use super::keys::{
    CLAIM_SK, EXEC_SK, GSI1_PK, GSI1_SK, GSI2_PK, GSI2_SK, Index, OPEN, PK, SK, STEP_PREFIX, VERSION, claim_pk,
    execution_pk, sealed_by_execution, time_key,
};
use super::requests::{Condition, MAX_ATTEMPTS};
use crate::error;

fn execution_item(e: &Execution) -> Result<Item> {
    let mut item = doc_item(execution_pk(&e.id), EXEC_SK, e)?;
    let order = format!("{}#{}", time_key(e.created_at), e.id);
    item.insert(VERSION.into(), n(e.version));
    item.insert(GSI1_PK.into(), s(format!("EXECS#{}", e.credential)));
    item.insert(GSI1_SK.into(), s(order.clone()));
    // Sparse: only open executions are in the index the sweeps read.
    if e.is_open() {
        item.insert(GSI2_PK.into(), s(OPEN));
        item.insert(GSI2_SK.into(), s(order));
    }
    Ok(item)
}

fn claim_item(credential: &CredentialId, holder: &ExecutionId) -> Item {
    HashMap::from([
        (PK.to_owned(), s(claim_pk(credential))),
        (SK.to_owned(), s(CLAIM_SK)),
        ("execution".to_owned(), s(holder.to_string())),
    ])
}

pub(super) async fn create_execution(store: &DynamoStore, execution: &Execution) -> Result<Claim> {
    let e = execution;
    let item = execution_item(e)?;
    if !e.holds_claim() {
        // No claim is involved; only the id must be new.
        return match store.put_new("create execution", item).await? {
            true => Ok(Claim::Created),
            false => Err(Error::conflict("execution", e.id, "already exists")),
        };
    }
    for _ in 0..MAX_ATTEMPTS {
        let claim = store.put_action(claim_item(&e.credential, &e.id), Some(Condition::absent()))?;
        let create = store.put_action(item.clone(), Some(Condition::absent()))?;
        match store.transact("create execution", vec![claim, create]).await? {
            Ok(()) => return Ok(Claim::Created),
            Err(refused) if refused.failed(0) => {
                if let Some(holder) = claim_holder(store, &e.credential).await? {
                    return Ok(Claim::AlreadyActive(Box::new(holder)));
                }
                // The holder finished between the two requests: try to claim again.
            }
            Err(_) => return Err(Error::conflict("execution", e.id, "already exists")),
        }
    }
    Err(Error::Store {
        context: format!("create execution {}", e.id),
        transient: true,
        source: "the claim kept changing hands".into(),
    })
}

pub(super) async fn get_execution(store: &DynamoStore, id: &ExecutionId) -> Result<Option<Execution>> {
    store.get_doc("get execution", (execution_pk(id), EXEC_SK.to_owned())).await
}

pub(super) async fn update_execution(store: &DynamoStore, execution: &Execution) -> Result<u64> {
    let expected = execution.version;
    let mut e = execution.clone();
    e.version += 1;
    let stale = || Error::conflict("execution", e.id, format!("version {expected} is no longer current"));
    let item = execution_item(&e)?;
    let write = store.put_action(item.clone(), Some(Condition::version(expected)))?;
    let claim = (claim_pk(&e.credential), CLAIM_SK.to_owned());
    if e.holds_claim() {
        // Still running: it keeps (or takes back) the claim in the same write.
        let hold = store.put_action(claim_item(&e.credential, &e.id), Some(Condition::claim_free_or_held_by(&e.id)))?;
        return match store.transact("update execution", vec![write, hold]).await? {
            Ok(()) => Ok(e.version),
            Err(refused) if refused.failed(0) => Err(stale()),
            Err(_) => Err(Error::conflict("execution", e.id, "another execution holds the credential")),
        };
    }
    // Terminal: the claim is released with the write, unless it is not this execution's to
    // release (it was released before and someone else has claimed since).
    let release = store.delete_action(claim, Condition::claim_free_or_held_by(&e.id))?;
    match store.transact("update execution", vec![write, release]).await? {
        Ok(()) => Ok(e.version),
        Err(refused) if refused.failed(0) => Err(stale()),
        Err(_) => {
            let alone = store.put_action(item, Some(Condition::version(expected)))?;
            match store.transact("update execution", vec![alone]).await? {
                Ok(()) => Ok(e.version),
                Err(_) => Err(stale()),
            }
        }
    }
}

pub(super) async fn list_executions(store: &DynamoStore, credential: &CredentialId) -> Result<Vec<Execution>> {
    // Newest first: the index sort key is the creation time, then the id.
    let q = store.index_partition(Index::Gsi1, format!("EXECS#{credential}"), false);
    from_items(&store.collect("list executions", q, None).await?)
}

pub(super) async fn list_open_executions(store: &DynamoStore) -> Result<Vec<Execution>> {
    let q = store.index_partition(Index::Gsi2, OPEN, true);
    from_items(&store.collect("list open executions", q, None).await?)
}

pub(super) async fn put_step_record(store: &DynamoStore, record: &StepRecord) -> Result<()> {
    let item = doc_item(execution_pk(&record.execution), format!("{STEP_PREFIX}{:010}", record.index), record)?;
    store.put("put step record", item).await
}

pub(super) async fn list_step_records(store: &DynamoStore, execution: &ExecutionId) -> Result<Vec<StepRecord>> {
    let q = store.partition(execution_pk(execution), Some(STEP_PREFIX));
    from_items(&store.collect("list step records", q, None).await?)
}

/// The execution holding the claim on `credential`, if any.
async fn claim_holder(store: &DynamoStore, credential: &CredentialId) -> Result<Option<Execution>> {
    let Some(claim) = store.get("read claim", (claim_pk(credential), CLAIM_SK.to_owned())).await? else {
        return Ok(None);
    };
    let holder = text_attribute(&claim, "execution")
        .ok_or_else(|| error::decode("decoding claim", "no execution"))
        .and_then(|t| ExecutionId::parse(t).map_err(|e| error::decode("decoding claim", e)))?;
    match get_execution(store, &holder).await? {
        Some(e) => Ok(Some(e)),
        None => Err(error::decode(
            "reading claim",
            format!("the claim on {credential} names execution {holder}, which is not stored"),
        )),
    }
}

/// Cancels the execution holding the claim on `credential` and releases the claim, in one
/// transaction, then deletes that execution's sealed records.
pub(super) async fn cancel_claim(store: &DynamoStore, credential: &CredentialId) -> Result<()> {
    for _ in 0..MAX_ATTEMPTS {
        let Some(mut e) = claim_holder(store, credential).await? else { return Ok(()) };
        let claim = (claim_pk(credential), CLAIM_SK.to_owned());
        let release = store.delete_action(claim, Condition::claim_held_by(&e.id))?;
        let mut actions = vec![release];
        // A terminal holder cannot be (its update released the claim); if a table was edited by
        // hand, release the claim without rewriting its history.
        if e.holds_claim() {
            let expected = e.version;
            e.cancel_for_removed_credential(store.clock.now());
            actions.push(store.put_action(execution_item(&e)?, Some(Condition::version(expected)))?);
        }
        if store.transact("cancel execution", actions).await?.is_ok() {
            let sealed = store.index_partition(Index::Gsi1, sealed_by_execution(&e.id), true);
            let items = store.collect("remove sealed records", sealed, None).await?;
            return store.batch_delete("remove sealed records", items.iter().filter_map(key_of).collect()).await;
        }
        // The execution moved on (or the claim changed hands) since it was read: look again.
    }
    Err(Error::Store {
        context: format!("cancel the execution rotating {credential}"),
        transient: true,
        source: "the execution kept changing".into(),
    })
}

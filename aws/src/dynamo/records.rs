//! The records beside the inventory and the executions: alerts sent, once-only marks, the audit
//! trail, sealed values, agents, and each integration's sync progress.

use std::collections::HashMap;

use entra_rotator::Result;
use entra_rotator::domain::ids::{AgentId, IntegrationId};
use entra_rotator::ports::{AgentRecord, AlertKey, AuditEvent, AuditQuery, SealedRecord, SyncState};
use time::OffsetDateTime;

use super::DynamoStore;
use super::items::{Item, doc_item, from_items, n, s, text_attribute};
use super::keys::{
    AGENTS, AUDIT_ALL, GSI1_PK, GSI1_SK, PK, SK, TTL_ATTRIBUTE, alert_key, mark_key, millis, once_key, scan_key,
    sealed_by_execution, sealed_key, sync_key, time_key,
};
use crate::error;

pub(super) async fn record_alert(store: &DynamoStore, key: &AlertKey, at: OffsetDateTime) -> Result<bool> {
    store.put_new("record alert", marker_item(alert_key(key), at)).await
}

pub(super) async fn alerts_recorded(store: &DynamoStore, keys: &[AlertKey]) -> Result<Vec<bool>> {
    let keys: Vec<_> = keys.iter().map(alert_key).collect();
    let found = store.existing("alerts recorded", &keys).await?;
    Ok(keys.iter().map(|k| found.contains(k)).collect())
}

pub(super) async fn record_alerts(store: &DynamoStore, keys: &[AlertKey], at: OffsetDateTime) -> Result<()> {
    // Unconditional puts: recording an alert again only refreshes its time.
    let items = keys.iter().map(|k| marker_item(alert_key(k), at)).collect();
    store.batch_put("record alerts", items).await
}

pub(super) async fn marked(store: &DynamoStore, keys: &[String]) -> Result<Vec<bool>> {
    let keys: Vec<_> = keys.iter().map(|k| mark_key(k)).collect();
    let found = store.existing("marked", &keys).await?;
    Ok(keys.iter().map(|k| found.contains(k)).collect())
}

pub(super) async fn mark(store: &DynamoStore, keys: &[String], at: OffsetDateTime) -> Result<()> {
    let items = keys.iter().map(|k| marker_item(mark_key(k), at)).collect();
    store.batch_put("mark", items).await
}

pub(super) async fn mark_once(
    store: &DynamoStore,
    key: &str,
    at: OffsetDateTime,
    forget_at: OffsetDateTime,
) -> Result<bool> {
    let mut item = marker_item(once_key(key), at);
    item.insert(TTL_ATTRIBUTE.to_owned(), n(forget_at.unix_timestamp()));
    store.put_unless_live("mark once", item, store.clock.now()).await
}

pub(super) async fn append_audit(store: &DynamoStore, event: &AuditEvent) -> Result<()> {
    // Events at the same time keep the order they were written in, across processes as far as
    // their clocks agree; the UUID keeps the key unique.
    let written = store.clock.now().unix_timestamp_nanos().max(0);
    let sk = format!("{}#{written:020}#{}", time_key(event.at), uuid::Uuid::new_v4().simple());
    let mut partitions = vec![AUDIT_ALL.to_owned()];
    partitions.extend(event.credential.as_ref().map(|c| format!("AUDIT#CRED#{c}")));
    partitions.extend(event.execution.map(|e| format!("AUDIT#EXEC#{e}")));
    // One transaction, so a listing by credential or execution never misses an event that the
    // full trail has; the SDK's idempotency token makes its own retries write once.
    let actions = partitions
        .into_iter()
        .map(|pk| store.put_action(doc_item(pk, sk.clone(), event)?, None))
        .collect::<Result<Vec<_>>>()?;
    match store.transact("append audit", actions).await? {
        Ok(()) => Ok(()),
        Err(_) => Err(error::decode("append audit", "an unconditional write was refused")),
    }
}

pub(super) async fn list_audit(store: &DynamoStore, query: &AuditQuery) -> Result<Vec<AuditEvent>> {
    let max = (query.limit > 0).then_some(query.limit);
    // The narrowest partition that holds every match; both filters: the execution's, with
    // the credential checked here.
    let (pk, also_credential) = match (&query.execution, &query.credential) {
        (Some(e), c) => (format!("AUDIT#EXEC#{e}"), c.as_ref()),
        (None, Some(c)) => (format!("AUDIT#CRED#{c}"), None),
        (None, None) => (AUDIT_ALL.to_owned(), None),
    };
    let q = store.partition(pk, None).scan_index_forward(false);
    let Some(credential) = also_credential else {
        return from_items(&store.collect("list audit", q, max).await?);
    };
    let mut events: Vec<AuditEvent> = from_items(&store.collect("list audit", q, None).await?)?;
    events.retain(|e| e.credential.as_ref() == Some(credential));
    events.truncate(max.unwrap_or(usize::MAX));
    Ok(events)
}

pub(super) async fn put_sealed(store: &DynamoStore, record: &SealedRecord) -> Result<()> {
    let (pk, sk) = sealed_key(&record.record_id);
    let mut item = doc_item(pk, sk, record)?;
    if let Some(e) = &record.execution {
        item.insert(GSI1_PK.into(), s(sealed_by_execution(e)));
        item.insert(GSI1_SK.into(), s(record.record_id.clone()));
    }
    store.put("put sealed", item).await
}

pub(super) async fn get_sealed(store: &DynamoStore, record_id: &str) -> Result<Option<SealedRecord>> {
    store.get_doc("get sealed", sealed_key(record_id)).await
}

pub(super) async fn delete_sealed(store: &DynamoStore, record_id: &str) -> Result<()> {
    store.delete("delete sealed", sealed_key(record_id)).await
}

pub(super) async fn put_agent(store: &DynamoStore, agent: &AgentRecord) -> Result<()> {
    store.put("put agent", doc_item(AGENTS.to_owned(), agent.id.to_string(), agent)?).await
}

pub(super) async fn get_agent(store: &DynamoStore, id: &AgentId) -> Result<Option<AgentRecord>> {
    store.get_doc("get agent", (AGENTS.to_owned(), id.to_string())).await
}

pub(super) async fn list_agents(store: &DynamoStore) -> Result<Vec<AgentRecord>> {
    from_items(&store.collect("list agents", store.partition(AGENTS, None), None).await?)
}

pub(super) async fn get_sync_state(store: &DynamoStore, integration: &IntegrationId) -> Result<Option<SyncState>> {
    store.get_doc("get sync state", sync_key(integration)).await
}

pub(super) async fn put_sync_state(store: &DynamoStore, state: &SyncState) -> Result<()> {
    let (pk, sk) = sync_key(&state.integration);
    store.put("put sync state", doc_item(pk, sk, state)?).await
}

pub(super) async fn scan_fingerprint(store: &DynamoStore) -> Result<Option<String>> {
    let item = store.get("get scan fingerprint", scan_key()).await?;
    Ok(item.as_ref().and_then(|i| text_attribute(i, FINGERPRINT)).map(str::to_owned))
}

pub(super) async fn put_scan_fingerprint(store: &DynamoStore, fingerprint: &str) -> Result<()> {
    let (pk, sk) = scan_key();
    let item =
        HashMap::from([(PK.to_owned(), s(pk)), (SK.to_owned(), s(sk)), (FINGERPRINT.to_owned(), s(fingerprint))]);
    store.put("put scan fingerprint", item).await
}

/// The attribute of the scan fingerprint item.
const FINGERPRINT: &str = "fingerprint";

/// An alert or mark: its key and when it was recorded (milliseconds).
fn marker_item((pk, sk): (String, String), at: OffsetDateTime) -> Item {
    HashMap::from([(PK.to_owned(), s(pk)), (SK.to_owned(), s(sk)), ("at".to_owned(), n(millis(at)))])
}

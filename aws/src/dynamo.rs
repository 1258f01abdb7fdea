//! The store on DynamoDB: every record in one table, each as a JSON document (`doc`) next to the key
//! and index attributes its queries need, as the SQLite adapter keeps them in columns.
//!
//! # Table
//!
//! Partition key `pk` (S), sort key `sk` (S), on-demand billing; GSI `gsi1` on `gsi1pk`/`gsi1sk`
//! and GSI `gsi2` on `gsi2pk`/`gsi2sk`, both projecting all attributes; TTL on `expires_at` (unix
//! seconds; no store record sets it). [`DynamoStore::create_table`] creates exactly this. The `pk`
//! prefix `QNOTE#` is reserved for the SQS adapter's failure notes, which share the table.
//!
//! # Items
//!
//! | record | `pk` | `sk` | `gsi1pk` / `gsi1sk` | `gsi2pk` / `gsi2sk` |
//! |---|---|---|---|---|
//! | integration seen | `INTEGRATIONS` | `<integration>` | | |
//! | application | `APP#<integration>` | `<object-id>` | | |
//! | service principal | `SP#<integration>` | `<object-id>` | | |
//! | credential | `CRED#<integration>` | `<credential-id>` | | |
//! | execution | `EXEC#<execution-id>` | `EXEC` | `EXECS#<credential-id>` / `<created-ms>#<execution-id>` | `OPEN` / `<created-ms>#<execution-id>`, only while open |
//! | step record | `EXEC#<execution-id>` | `STEP#<index, 10 digits>` | | |
//! | claim | `CLAIM#<credential-id>` | `CLAIM` | | |
//! | alert sent | `ALERT#<credential-id>` | `<end, unix s>#<threshold>` | | |
//! | once-only mark | `MARK#<key>` | `MARK` | | |
//! | audit event | `AUDIT`, and `AUDIT#CRED#<credential-id>`, `AUDIT#EXEC#<execution-id>` when it names them | `<at-ms>#<written-ns>#<uuid>` | | |
//! | sealed record | `SEALED#<record-id>` | `SEALED` | `EXEC_SEALED#<execution-id>` / `<record-id>`, when it names one | |
//! | agent | `AGENTS` | `<agent-id>` | | |
//! | sync progress | `SYNC#<integration>` | `SYNC` | | |
//!
//! A credential id reads `<integration>/app/<object-id>/<key-id>` (or `/sp/`), so one owner's
//! credentials are a `begins_with` query in their integration's partition, and the `INTEGRATIONS`
//! partition lists the credential partitions, for listings across integrations without a Scan.
//! `<created-ms>` and `<at-ms>` are milliseconds since 1970, zero-padded to 15 digits so that text
//! order is time order. Besides `doc`, an execution has `version` (N, the condition of every
//! update), a claim `execution` (S, the holder's id), alerts and marks `at` (N, milliseconds).
//! Record ids, keys and names are never secret; the only secret material is the sealed value
//! inside a sealed record's `doc`, as the key ring sealed it.
//!
//! # Consistency
//!
//! What must not race is conditional: a claim is written in one transaction with its execution
//! (`attribute_not_exists`), every execution update is conditional on `version` and keeps or
//! releases the claim in the same transaction, alerts are put only if absent. Reads of the table
//! itself are strongly consistent. Reads of the indexes (executions by credential, open
//! executions, sealed records by execution) are eventually consistent, like any GSI: a listing may
//! lag a write by a moment, which the history views and the scheduler's sweeps tolerate. What the
//! SQLite store does in one transaction over many records (syncing owners, removing credentials)
//! is a sequence of idempotent writes here, the credential itself deleted last, so a retry after a
//! failure part-way finishes the job.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::BuildError;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, Delete, DeleteRequest, GlobalSecondaryIndex, IndexStatus,
    KeySchemaElement, KeyType, KeysAndAttributes, Projection, ProjectionType, Put, PutRequest, ScalarAttributeType,
    TableStatus, TimeToLiveSpecification, TimeToLiveStatus, TransactWriteItem, WriteRequest,
};
use entra_rotator::domain::execution::{Execution, StepRecord};
use entra_rotator::domain::ids::{AgentId, AppObjectId, CredentialId, ExecutionId, IntegrationId, OwnerKind};
use entra_rotator::domain::inventory::{Application, Credential, CredentialKind, ServicePrincipal};
use entra_rotator::ports::{
    AgentRecord, AlertKey, AuditEvent, AuditQuery, Claim, Clock, Owner, OwnerSnapshot, SealedRecord, Store, SyncCounts,
    SyncState,
};
use entra_rotator::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use crate::error;

/// One item as the SDK has it.
type Item = HashMap<String, AttributeValue>;

const PK: &str = "pk";
const SK: &str = "sk";
const GSI1: &str = "gsi1";
const GSI1_PK: &str = "gsi1pk";
const GSI1_SK: &str = "gsi1sk";
const GSI2: &str = "gsi2";
const GSI2_PK: &str = "gsi2pk";
const GSI2_SK: &str = "gsi2sk";
const DOC: &str = "doc";
const VERSION: &str = "version";
const TTL_ATTRIBUTE: &str = "expires_at";

const INTEGRATIONS: &str = "INTEGRATIONS";
const AGENTS: &str = "AGENTS";
const OPEN: &str = "OPEN";
const AUDIT_ALL: &str = "AUDIT";
const EXEC_SK: &str = "EXEC";
const STEP_PREFIX: &str = "STEP#";

/// DynamoDB's limits per BatchWriteItem and BatchGetItem request.
const BATCH_WRITE_MAX: usize = 25;
const BATCH_GET_MAX: usize = 100;
/// How often a batch's unprocessed part, or a transaction that lost a race with another
/// transaction, is tried again before the caller gets a transient error.
const MAX_ATTEMPTS: u32 = 8;

/// The store in one DynamoDB table (layout in the module documentation).
pub struct DynamoStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    clock: Arc<dyn Clock>,
    /// Integrations this instance has already written to the `INTEGRATIONS` registry, so a
    /// credential write costs one registry write per integration and process, not one each.
    /// Registry entries are never removed, so a stale cache cannot hide one.
    registered: Mutex<HashSet<IntegrationId>>,
    /// The page size asked of every Query; `None` leaves it to DynamoDB (1 MB pages).
    page_size: Option<i32>,
}

impl DynamoStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>, clock: Arc<dyn Clock>) -> Self {
        Self { client, table: table.into(), clock, registered: Mutex::new(HashSet::new()), page_size: None }
    }

    /// Asks for at most `items` items per Query page (at least 1), so that tests with a handful of
    /// records cross page boundaries the way a large table does with DynamoDB's 1 MB pages.
    pub fn with_page_size(mut self, items: u16) -> Self {
        self.page_size = Some(i32::from(items.max(1)));
        self
    }

    /// Creates the table as the module documentation describes and waits until it and its
    /// indexes are active, with TTL enabled on `expires_at`. A table of that name that exists
    /// already is left as it is, only waited for; for tests and local emulators (on AWS the SAM
    /// template creates the table).
    pub async fn create_table(client: &aws_sdk_dynamodb::Client, table: &str) -> Result<()> {
        let string_attribute = |name: &str| {
            AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build()
        };
        let key = |name: &str, kind: KeyType| KeySchemaElement::builder().attribute_name(name).key_type(kind).build();
        let index = |name: &str, pk: &str, sk: &str| -> Result<GlobalSecondaryIndex> {
            GlobalSecondaryIndex::builder()
                .index_name(name)
                .key_schema(key(pk, KeyType::Hash).map_err(request)?)
                .key_schema(key(sk, KeyType::Range).map_err(request)?)
                .projection(Projection::builder().projection_type(ProjectionType::All).build())
                .build()
                .map_err(request)
        };
        let attributes = [PK, SK, GSI1_PK, GSI1_SK, GSI2_PK, GSI2_SK]
            .into_iter()
            .map(string_attribute)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(request)?;
        let created = client
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .set_attribute_definitions(Some(attributes))
            .key_schema(key(PK, KeyType::Hash).map_err(request)?)
            .key_schema(key(SK, KeyType::Range).map_err(request)?)
            .global_secondary_indexes(index(GSI1, GSI1_PK, GSI1_SK)?)
            .global_secondary_indexes(index(GSI2, GSI2_PK, GSI2_SK)?)
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => {}
            Err(e) => return Err(error::store(format!("creating table {table}"), e)),
        }

        // About two minutes; a new on-demand table is usually active within seconds.
        let mut active = false;
        for _ in 0..240 {
            let described = client
                .describe_table()
                .table_name(table)
                .send()
                .await
                .map_err(|e| error::store(format!("describing table {table}"), e))?;
            if let Some(t) = described.table() {
                active = t.table_status() == Some(&TableStatus::Active)
                    && t.global_secondary_indexes().iter().all(|i| i.index_status() == Some(&IndexStatus::Active));
            }
            if active {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if !active {
            return Err(Error::Store {
                context: format!("creating table {table}"),
                transient: true,
                source: "the table did not become active in time".into(),
            });
        }

        // Enabling TTL twice is refused, so look first.
        let ttl = client
            .describe_time_to_live()
            .table_name(table)
            .send()
            .await
            .map_err(|e| error::store(format!("describing the TTL of table {table}"), e))?;
        let enabled = ttl.time_to_live_description().is_some_and(|d| {
            matches!(d.time_to_live_status(), Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling))
        });
        if !enabled {
            let spec = TimeToLiveSpecification::builder()
                .attribute_name(TTL_ATTRIBUTE)
                .enabled(true)
                .build()
                .map_err(request)?;
            client
                .update_time_to_live()
                .table_name(table)
                .time_to_live_specification(spec)
                .send()
                .await
                .map_err(|e| error::store(format!("enabling TTL on table {table}"), e))?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Keys and attributes

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn millis(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// Milliseconds as fixed-width text, so that text order is time order. Times before 1970 (which
/// no record has) would sort as 1970.
fn time_key(t: OffsetDateTime) -> String {
    format!("{:015}", millis(t).max(0))
}

fn owner_kind_text(kind: OwnerKind) -> &'static str {
    match kind {
        OwnerKind::Application => "app",
        OwnerKind::ServicePrincipal => "sp",
    }
}

fn owner_pk(integration: &IntegrationId, kind: OwnerKind) -> String {
    match kind {
        OwnerKind::Application => format!("APP#{integration}"),
        OwnerKind::ServicePrincipal => format!("SP#{integration}"),
    }
}

fn credential_pk(integration: &IntegrationId) -> String {
    format!("CRED#{integration}")
}

/// The start of every credential id of one owner, for `begins_with`.
fn owner_credentials_prefix(integration: &IntegrationId, kind: OwnerKind, owner: uuid::Uuid) -> String {
    format!("{integration}/{}/{}/", owner_kind_text(kind), owner.hyphenated())
}

fn execution_pk(id: &ExecutionId) -> String {
    format!("EXEC#{id}")
}

fn claim_pk(credential: &CredentialId) -> String {
    format!("CLAIM#{credential}")
}

const CLAIM_SK: &str = "CLAIM";

fn alert_pk(credential: &CredentialId) -> String {
    format!("ALERT#{credential}")
}

fn alert_key(key: &AlertKey) -> (String, String) {
    (alert_pk(&key.credential), format!("{}#{}", key.end.unix_timestamp(), key.threshold.key()))
}

fn mark_key(key: &str) -> (String, String) {
    (format!("MARK#{key}"), "MARK".to_owned())
}

fn sealed_key(record_id: &str) -> (String, String) {
    (format!("SEALED#{record_id}"), "SEALED".to_owned())
}

fn sealed_by_execution(id: &ExecutionId) -> String {
    format!("EXEC_SEALED#{id}")
}

fn sync_key(integration: &IntegrationId) -> (String, String) {
    (format!("SYNC#{integration}"), "SYNC".to_owned())
}

fn to_doc<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| error::decode("encoding record", e))
}

fn from_item<T: DeserializeOwned>(item: &Item) -> Result<T> {
    let doc = item.get(DOC).and_then(|v| v.as_s().ok()).ok_or_else(|| error::decode("decoding record", "no doc"))?;
    serde_json::from_str(doc).map_err(|e| error::decode("decoding record", e))
}

fn from_items<T: DeserializeOwned>(items: &[Item]) -> Result<Vec<T>> {
    items.iter().map(from_item).collect()
}

fn text_attribute<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str)
}

/// An item with its key and document.
fn doc_item<T: Serialize>(pk: String, sk: impl Into<String>, v: &T) -> Result<Item> {
    Ok(HashMap::from([(PK.to_owned(), s(pk)), (SK.to_owned(), s(sk)), (DOC.to_owned(), s(to_doc(v)?))]))
}

fn key_of(item: &Item) -> Option<(String, String)> {
    Some((text_attribute(item, PK)?.to_owned(), text_attribute(item, SK)?.to_owned()))
}

/// A request the SDK refused to build: a bug here, never worth retrying.
fn request(e: BuildError) -> Error {
    Error::Store { context: "building a DynamoDB request".into(), transient: false, source: Box::new(e) }
}

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

fn credential_sort_key(c: &Credential) -> (bool, Option<i64>, String) {
    // Soonest end first, no end date last, then by id: as the SQLite store orders them.
    (c.end.is_none(), c.end.map(millis), c.id.to_string())
}

/// A short wait before trying again: exponential, half of it random, so that competing writers
/// spread out. The jitter comes from a random UUID, the one source of randomness at hand.
async fn backoff(attempt: u32) {
    let ceiling = 20u64.saturating_mul(1 << attempt.min(6)).min(1_000);
    let random = (uuid::Uuid::new_v4().as_u128() & u128::from(u64::MAX)) as u64;
    tokio::time::sleep(Duration::from_millis(ceiling / 2 + random % (ceiling / 2 + 1))).await;
}

/// The table's global secondary indexes.
#[derive(Clone, Copy)]
enum Index {
    /// Executions by credential; sealed records by execution.
    Gsi1,
    /// Open executions.
    Gsi2,
}

/// A transaction not written because conditions failed: which of its actions (by position).
struct Refused(Vec<bool>);

impl Refused {
    fn failed(&self, action: usize) -> bool {
        self.0.get(action).copied().unwrap_or(false)
    }
}

// ---------------------------------------------------------------------------------------------
// Requests

impl DynamoStore {
    fn query(&self) -> QueryFluentBuilder {
        self.client.query().table_name(&self.table)
    }

    /// The items of one partition of the table, optionally only sort keys starting with
    /// `sk_prefix`, in sort key order; strongly consistent.
    fn partition(&self, pk: impl Into<String>, sk_prefix: Option<&str>) -> QueryFluentBuilder {
        let q = self.query().consistent_read(true).expression_attribute_values(":pk", s(pk));
        match sk_prefix {
            Some(prefix) => q
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":prefix", s(prefix)),
            None => q.key_condition_expression("pk = :pk"),
        }
    }

    /// The items of one partition of an index, in sort key order (`forward`) or reversed.
    fn index_partition(&self, index: Index, pk: impl Into<String>, forward: bool) -> QueryFluentBuilder {
        let (name, key) = match index {
            Index::Gsi1 => (GSI1, GSI1_PK),
            Index::Gsi2 => (GSI2, GSI2_PK),
        };
        self.query()
            .index_name(name)
            .key_condition_expression("#ipk = :pk")
            .expression_attribute_names("#ipk", key)
            .expression_attribute_values(":pk", s(pk))
            .scan_index_forward(forward)
    }

    /// Runs a query to the end (following `LastEvaluatedKey`), or until `max` items.
    async fn collect(&self, context: &'static str, q: QueryFluentBuilder, max: Option<usize>) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        if max == Some(0) {
            return Ok(items);
        }
        let mut start: Option<Item> = None;
        loop {
            let mut page = q.clone().set_exclusive_start_key(start.take());
            let remaining = max.map(|m| i32::try_from(m - items.len()).unwrap_or(i32::MAX));
            let limit = match (self.page_size, remaining) {
                (Some(p), Some(r)) => Some(p.min(r)),
                (p, r) => p.or(r),
            };
            if let Some(limit) = limit {
                page = page.limit(limit);
            }
            let out = page.send().await.map_err(|e| error::store(context, e))?;
            items.extend(out.items.unwrap_or_default());
            if let Some(m) = max
                && items.len() >= m
            {
                items.truncate(m);
                break;
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(items)
    }

    async fn get(&self, context: &'static str, (pk, sk): (String, String)) -> Result<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(pk))
            .key(SK, s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| error::store(context, e))?;
        Ok(out.item)
    }

    async fn get_doc<T: DeserializeOwned>(&self, context: &'static str, key: (String, String)) -> Result<Option<T>> {
        self.get(context, key).await?.as_ref().map(from_item).transpose()
    }

    async fn put(&self, context: &'static str, item: Item) -> Result<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| error::store(context, e))?;
        Ok(())
    }

    /// Puts the item unless one with its key exists; false if one did.
    async fn put_new(&self, context: &'static str, item: Item) -> Result<bool> {
        let written = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match written {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(error::store(context, e)),
        }
    }

    async fn delete(&self, context: &'static str, (pk, sk): (String, String)) -> Result<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(pk))
            .key(SK, s(sk))
            .send()
            .await
            .map_err(|e| error::store(context, e))?;
        Ok(())
    }

    /// Writes all of `actions` or none. `Err(Refused)` inside `Ok` says which conditions failed;
    /// a race with another transaction on the same items is tried again after a pause.
    async fn transact(
        &self,
        context: &'static str,
        actions: Vec<TransactWriteItem>,
    ) -> Result<std::result::Result<(), Refused>> {
        let mut attempt = 0;
        loop {
            let sent = self.client.transact_write_items().set_transact_items(Some(actions.clone())).send().await;
            let e = match sent {
                Ok(_) => return Ok(Ok(())),
                Err(e) => e,
            };
            if let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) = e.as_service_error() {
                let codes: Vec<&str> =
                    cancelled.cancellation_reasons().iter().map(|r| r.code().unwrap_or("")).collect();
                if codes.contains(&"ConditionalCheckFailed") {
                    return Ok(Err(Refused(codes.iter().map(|c| *c == "ConditionalCheckFailed").collect())));
                }
                let raced = codes.iter().any(|c| {
                    matches!(
                        *c,
                        "TransactionConflict"
                            | "ThrottlingError"
                            | "ProvisionedThroughputExceeded"
                            | "RequestLimitExceeded"
                    )
                });
                if raced {
                    attempt += 1;
                    if attempt < MAX_ATTEMPTS {
                        backoff(attempt).await;
                        continue;
                    }
                    return Err(Error::Store {
                        context: context.into(),
                        transient: true,
                        source: format!("the transaction kept conflicting with others ({})", codes.join(", ")).into(),
                    });
                }
            }
            return Err(error::store(context, e));
        }
    }

    /// Writes the requests in batches of 25, trying the unprocessed part of each again until it
    /// is written. A key named twice is written once (the last request for it), as DynamoDB
    /// refuses duplicate keys in one batch.
    async fn batch_write(&self, context: &'static str, requests: Vec<WriteRequest>) -> Result<()> {
        let mut unique: Vec<WriteRequest> = Vec::with_capacity(requests.len());
        let mut position: HashMap<(String, String), usize> = HashMap::new();
        for r in requests {
            let key =
                r.put_request().map(|p| p.item()).or_else(|| r.delete_request().map(|d| d.key())).and_then(key_of);
            match key {
                Some(k) => match position.get(&k) {
                    Some(&at) => unique[at] = r,
                    None => {
                        position.insert(k, unique.len());
                        unique.push(r);
                    }
                },
                None => unique.push(r),
            }
        }
        for chunk in unique.chunks(BATCH_WRITE_MAX) {
            let mut pending = chunk.to_vec();
            let mut attempt = 0;
            while !pending.is_empty() {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(|e| error::store(context, e))?;
                pending = out.unprocessed_items.and_then(|mut u| u.remove(&self.table)).unwrap_or_default();
                if !pending.is_empty() {
                    attempt += 1;
                    if attempt >= MAX_ATTEMPTS {
                        return Err(Error::Store {
                            context: context.into(),
                            transient: true,
                            source: format!("{} items still unprocessed after {attempt} tries", pending.len()).into(),
                        });
                    }
                    backoff(attempt).await;
                }
            }
        }
        Ok(())
    }

    async fn batch_put(&self, context: &'static str, items: Vec<Item>) -> Result<()> {
        let requests = items
            .into_iter()
            .map(|item| {
                let put = PutRequest::builder().set_item(Some(item)).build().map_err(request)?;
                Ok(WriteRequest::builder().put_request(put).build())
            })
            .collect::<Result<Vec<_>>>()?;
        self.batch_write(context, requests).await
    }

    async fn batch_delete(&self, context: &'static str, keys: Vec<(String, String)>) -> Result<()> {
        let requests = keys
            .into_iter()
            .map(|(pk, sk)| {
                let delete = DeleteRequest::builder().key(PK, s(pk)).key(SK, s(sk)).build().map_err(request)?;
                Ok(WriteRequest::builder().delete_request(delete).build())
            })
            .collect::<Result<Vec<_>>>()?;
        self.batch_write(context, requests).await
    }

    /// Which of `keys` exist, read in batches of 100 (strongly consistent), trying unprocessed
    /// keys again.
    async fn existing(&self, context: &'static str, keys: &[(String, String)]) -> Result<HashSet<(String, String)>> {
        let unique: Vec<&(String, String)> = {
            let mut seen = HashSet::new();
            keys.iter().filter(|k| seen.insert(*k)).collect()
        };
        let mut found = HashSet::new();
        for chunk in unique.chunks(BATCH_GET_MAX) {
            let keys: Vec<Item> =
                chunk.iter().map(|(pk, sk)| HashMap::from([(PK.to_owned(), s(pk)), (SK.to_owned(), s(sk))])).collect();
            let mut pending = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .projection_expression("pk, sk")
                    .build()
                    .map_err(request)?,
            );
            let mut attempt = 0;
            while let Some(request) = pending.take() {
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| error::store(context, e))?;
                let items = out.responses.and_then(|mut r| r.remove(&self.table)).unwrap_or_default();
                found.extend(items.iter().filter_map(key_of));
                pending = out.unprocessed_keys.and_then(|mut u| u.remove(&self.table)).filter(|k| !k.keys().is_empty());
                if pending.is_some() {
                    attempt += 1;
                    if attempt >= MAX_ATTEMPTS {
                        return Err(Error::Store {
                            context: context.into(),
                            transient: true,
                            source: format!("keys still unprocessed after {attempt} tries").into(),
                        });
                    }
                    backoff(attempt).await;
                }
            }
        }
        Ok(found)
    }
}

/// The condition of one action in a transaction.
struct Condition {
    expression: &'static str,
    names: Vec<(&'static str, &'static str)>,
    values: Vec<(&'static str, AttributeValue)>,
}

impl Condition {
    /// No item with this key exists yet.
    fn absent() -> Self {
        Self { expression: "attribute_not_exists(pk)", names: vec![], values: vec![] }
    }

    /// The stored execution has this version (so it exists).
    fn version(expected: u64) -> Self {
        Self {
            expression: "#version = :expected",
            names: vec![("#version", VERSION)],
            values: vec![(":expected", n(expected))],
        }
    }

    /// The claim is free, or held by this execution already.
    fn claim_free_or_held_by(id: &ExecutionId) -> Self {
        Self {
            expression: "attribute_not_exists(pk) OR #execution = :me",
            names: vec![("#execution", "execution")],
            values: vec![(":me", s(id.to_string()))],
        }
    }

    /// The claim is held by this execution.
    fn claim_held_by(id: &ExecutionId) -> Self {
        Self {
            expression: "#execution = :me",
            names: vec![("#execution", "execution")],
            values: vec![(":me", s(id.to_string()))],
        }
    }
}

fn claim_item(credential: &CredentialId, holder: &ExecutionId) -> Item {
    HashMap::from([
        (PK.to_owned(), s(claim_pk(credential))),
        (SK.to_owned(), s(CLAIM_SK)),
        ("execution".to_owned(), s(holder.to_string())),
    ])
}

impl DynamoStore {
    fn put_action(&self, item: Item, condition: Option<Condition>) -> Result<TransactWriteItem> {
        let mut put = Put::builder().table_name(&self.table).set_item(Some(item));
        if let Some(c) = condition {
            put = put.condition_expression(c.expression);
            for (k, v) in c.names {
                put = put.expression_attribute_names(k, v);
            }
            for (k, v) in c.values {
                put = put.expression_attribute_values(k, v);
            }
        }
        Ok(TransactWriteItem::builder().put(put.build().map_err(request)?).build())
    }

    fn delete_action(&self, (pk, sk): (String, String), condition: Condition) -> Result<TransactWriteItem> {
        let mut delete = Delete::builder()
            .table_name(&self.table)
            .key(PK, s(pk))
            .key(SK, s(sk))
            .condition_expression(condition.expression);
        for (k, v) in condition.names {
            delete = delete.expression_attribute_names(k, v);
        }
        for (k, v) in condition.values {
            delete = delete.expression_attribute_values(k, v);
        }
        Ok(TransactWriteItem::builder().delete(delete.build().map_err(request)?).build())
    }

    /// Adds the integration to the registry that listings across integrations read, once per
    /// process. Called before its credentials are written, so none is ever unlisted.
    async fn register(&self, integration: &IntegrationId) -> Result<()> {
        let known = self.registered.lock().unwrap_or_else(|p| p.into_inner()).contains(integration);
        if known {
            return Ok(());
        }
        let item = HashMap::from([(PK.to_owned(), s(INTEGRATIONS)), (SK.to_owned(), s(integration.to_string()))]);
        self.put("register integration", item).await?;
        self.registered.lock().unwrap_or_else(|p| p.into_inner()).insert(integration.clone());
        Ok(())
    }

    /// Every integration that has had credentials, in the order of their credential ids (an id
    /// starts with `<integration>/`, so `contoso-x/…` comes before `contoso/…`).
    async fn integrations(&self) -> Result<Vec<IntegrationId>> {
        let items = self.collect("list integrations", self.partition(INTEGRATIONS, None), None).await?;
        let mut out = items
            .iter()
            .map(|i| {
                let name = text_attribute(i, SK).unwrap_or_default();
                IntegrationId::parse(name).map_err(|e| error::decode("decoding integration", e))
            })
            .collect::<Result<Vec<_>>>()?;
        out.sort_by_cached_key(|i| format!("{i}/"));
        Ok(out)
    }

    fn credential_item(c: &Credential) -> Result<Item> {
        doc_item(credential_pk(&c.id.integration), c.id.to_string(), c)
    }

    async fn owner_credentials(
        &self,
        integration: &IntegrationId,
        kind: OwnerKind,
        owner: uuid::Uuid,
    ) -> Result<Vec<Credential>> {
        let prefix = owner_credentials_prefix(integration, kind, owner);
        let q = self.partition(credential_pk(integration), Some(&prefix));
        from_items(&self.collect("list owner credentials", q, None).await?)
    }

    /// The execution holding the claim on `credential`, if any.
    async fn claim_holder(&self, credential: &CredentialId) -> Result<Option<Execution>> {
        let Some(claim) = self.get("read claim", (claim_pk(credential), CLAIM_SK.to_owned())).await? else {
            return Ok(None);
        };
        let holder = text_attribute(&claim, "execution")
            .ok_or_else(|| error::decode("decoding claim", "no execution"))
            .and_then(|t| ExecutionId::parse(t).map_err(|e| error::decode("decoding claim", e)))?;
        match self.get_execution(&holder).await? {
            Some(e) => Ok(Some(e)),
            None => Err(error::decode(
                "reading claim",
                format!("the claim on {credential} names execution {holder}, which is not stored"),
            )),
        }
    }

    /// Removes what hangs off credentials that leave the inventory: their alerts, the claim of
    /// any execution still rotating them (cancelled, since its target is gone) with that
    /// execution's sealed copies, and then the credentials themselves, last, so that a retry
    /// after a failure part-way finds them again.
    async fn remove_credentials(&self, ids: &[CredentialId]) -> Result<()> {
        for id in ids {
            let alerts = self.partition(alert_pk(id), None).projection_expression("pk, sk");
            let keys =
                self.collect("remove credential alerts", alerts, None).await?.iter().filter_map(key_of).collect();
            self.batch_delete("remove credential alerts", keys).await?;
            self.cancel_claim(id).await?;
            self.delete("remove credential", (credential_pk(&id.integration), id.to_string())).await?;
        }
        Ok(())
    }

    /// Cancels the execution holding the claim on `credential` and releases the claim, in one
    /// transaction, then deletes that execution's sealed records.
    async fn cancel_claim(&self, credential: &CredentialId) -> Result<()> {
        for _ in 0..MAX_ATTEMPTS {
            let Some(mut e) = self.claim_holder(credential).await? else { return Ok(()) };
            let claim = (claim_pk(credential), CLAIM_SK.to_owned());
            let release = self.delete_action(claim, Condition::claim_held_by(&e.id))?;
            let mut actions = vec![release];
            // A terminal holder cannot be (its update released the claim); if a table was edited by
            // hand, release the claim without rewriting its history.
            if !e.status.is_terminal() {
                let expected = e.version;
                e.cancel_for_removed_credential(self.clock.now());
                actions.push(self.put_action(execution_item(&e)?, Some(Condition::version(expected)))?);
            }
            if self.transact("cancel execution", actions).await?.is_ok() {
                let sealed = self.index_partition(Index::Gsi1, sealed_by_execution(&e.id), true);
                let items = self.collect("remove sealed records", sealed, None).await?;
                return self.batch_delete("remove sealed records", items.iter().filter_map(key_of).collect()).await;
            }
            // The execution moved on (or the claim changed hands) since it was read: look again.
        }
        Err(Error::Store {
            context: format!("cancel the execution rotating {credential}"),
            transient: true,
            source: "the execution kept changing".into(),
        })
    }
}

#[async_trait]
impl Store for DynamoStore {
    async fn put_application(&self, app: &Application) -> Result<()> {
        let item = doc_item(owner_pk(&app.integration, OwnerKind::Application), app.object_id.to_string(), app)?;
        self.put("put application", item).await
    }

    async fn get_application(&self, integration: &IntegrationId, id: &AppObjectId) -> Result<Option<Application>> {
        self.get_doc("get application", (owner_pk(integration, OwnerKind::Application), id.to_string())).await
    }

    async fn list_applications(&self, integration: &IntegrationId) -> Result<Vec<Application>> {
        let q = self.partition(owner_pk(integration, OwnerKind::Application), None);
        from_items(&self.collect("list applications", q, None).await?)
    }

    async fn put_service_principal(&self, sp: &ServicePrincipal) -> Result<()> {
        let item = doc_item(owner_pk(&sp.integration, OwnerKind::ServicePrincipal), sp.object_id.to_string(), sp)?;
        self.put("put service principal", item).await
    }

    async fn list_service_principals(&self, integration: &IntegrationId) -> Result<Vec<ServicePrincipal>> {
        let q = self.partition(owner_pk(integration, OwnerKind::ServicePrincipal), None);
        from_items(&self.collect("list service principals", q, None).await?)
    }

    async fn put_credential(&self, credential: &Credential) -> Result<()> {
        self.register(&credential.id.integration).await?;
        self.put("put credential", Self::credential_item(credential)?).await
    }

    async fn get_credential(&self, id: &CredentialId) -> Result<Option<Credential>> {
        self.get_doc("get credential", (credential_pk(&id.integration), id.to_string())).await
    }

    async fn list_credentials(&self, integration: Option<&IntegrationId>) -> Result<Vec<Credential>> {
        let integrations = match integration {
            Some(i) => vec![i.clone()],
            None => self.integrations().await?,
        };
        let mut out: Vec<Credential> = Vec::new();
        for i in &integrations {
            out.extend(from_items(
                &self.collect("list credentials", self.partition(credential_pk(i), None), None).await?,
            )?);
        }
        out.sort_by_cached_key(credential_sort_key);
        Ok(out)
    }

    async fn remove_credential(&self, id: &CredentialId) -> Result<()> {
        self.remove_credentials(std::slice::from_ref(id)).await
    }

    async fn sync_owners(&self, integration: &IntegrationId, owners: &[OwnerSnapshot]) -> Result<SyncCounts> {
        let mut counts = SyncCounts::default();
        for snap in owners {
            let kind = snap.owner.kind();
            let mut items = vec![match &snap.owner {
                Owner::Application(a) => doc_item(owner_pk(integration, kind), a.object_id.to_string(), a)?,
                Owner::ServicePrincipal(p) => doc_item(owner_pk(integration, kind), p.object_id.to_string(), p)?,
            }];
            counts.owners += 1;
            let lists =
                [(CredentialKind::Password, &snap.passwords), (CredentialKind::Certificate, &snap.certificates)];
            if lists.iter().any(|(_, l)| l.is_some()) {
                // Read before anything of this owner is written, as the SQLite store compares
                // against what was stored.
                let stored = self.owner_credentials(integration, kind, snap.owner.id()).await?;
                for (cred_kind, list) in lists {
                    let Some(list) = list else { continue };
                    let keep: HashSet<&CredentialId> = list.iter().map(|c| &c.id).collect();
                    // Credentials entra-rotator removed itself (Cleaned Up) stay as records.
                    let gone: Vec<CredentialId> = stored
                        .iter()
                        .filter(|c| c.kind == cred_kind && c.removed_at.is_none() && !keep.contains(&c.id))
                        .map(|c| c.id.clone())
                        .collect();
                    counts.credentials_removed += gone.len();
                    self.remove_credentials(&gone).await?;
                    for c in list {
                        self.register(&c.id.integration).await?;
                        items.push(Self::credential_item(c)?);
                        counts.credentials_written += 1;
                    }
                }
            }
            self.batch_put("sync owners", items).await?;
        }
        Ok(counts)
    }

    async fn remove_owner(&self, integration: &IntegrationId, kind: OwnerKind, id: uuid::Uuid) -> Result<usize> {
        let ids: Vec<CredentialId> =
            self.owner_credentials(integration, kind, id).await?.into_iter().map(|c| c.id).collect();
        self.remove_credentials(&ids).await?;
        self.delete("remove owner", (owner_pk(integration, kind), id.hyphenated().to_string())).await?;
        Ok(ids.len())
    }

    async fn owner_ids(&self, integration: &IntegrationId, kind: OwnerKind) -> Result<Vec<uuid::Uuid>> {
        let q = self.partition(owner_pk(integration, kind), None).projection_expression("sk");
        let items = self.collect("owner ids", q, None).await?;
        items
            .iter()
            .map(|i| {
                uuid::Uuid::parse_str(text_attribute(i, SK).unwrap_or_default())
                    .map_err(|e| error::decode("decoding owner id", e))
            })
            .collect()
    }

    async fn credentials_page(&self, after: Option<&CredentialId>, limit: usize) -> Result<Vec<Credential>> {
        let after = after.map(ToString::to_string);
        let mut out: Vec<Credential> = Vec::new();
        for i in self.integrations().await? {
            if out.len() >= limit {
                break;
            }
            // Every id of this integration starts with `prefix`, and the integrations come in
            // that prefix's order, so the page continues in the integration `after` is in (or
            // the first one past it).
            let prefix = format!("{i}/");
            let q = match &after {
                Some(a) if a.starts_with(&prefix) => self
                    .query()
                    .consistent_read(true)
                    .key_condition_expression("pk = :pk AND sk > :after")
                    .expression_attribute_values(":pk", s(credential_pk(&i)))
                    .expression_attribute_values(":after", s(a)),
                Some(a) if prefix.as_str() < a.as_str() => continue,
                _ => self.partition(credential_pk(&i), None),
            };
            let items = self.collect("credentials page", q, Some(limit - out.len())).await?;
            out.extend(from_items::<Credential>(&items)?);
        }
        Ok(out)
    }

    async fn create_execution(&self, execution: &Execution) -> Result<Claim> {
        let e = execution;
        let item = execution_item(e)?;
        if e.status.is_terminal() {
            // No claim is involved; only the id must be new.
            return match self.put_new("create execution", item).await? {
                true => Ok(Claim::Created),
                false => Err(Error::conflict("execution", e.id, "already exists")),
            };
        }
        for _ in 0..MAX_ATTEMPTS {
            let claim = self.put_action(claim_item(&e.credential, &e.id), Some(Condition::absent()))?;
            let create = self.put_action(item.clone(), Some(Condition::absent()))?;
            match self.transact("create execution", vec![claim, create]).await? {
                Ok(()) => return Ok(Claim::Created),
                Err(refused) if refused.failed(0) => {
                    if let Some(holder) = self.claim_holder(&e.credential).await? {
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

    async fn get_execution(&self, id: &ExecutionId) -> Result<Option<Execution>> {
        self.get_doc("get execution", (execution_pk(id), EXEC_SK.to_owned())).await
    }

    async fn update_execution(&self, execution: &Execution) -> Result<u64> {
        let expected = execution.version;
        let mut e = execution.clone();
        e.version += 1;
        let stale = || Error::conflict("execution", e.id, format!("version {expected} is no longer current"));
        let item = execution_item(&e)?;
        let write = self.put_action(item.clone(), Some(Condition::version(expected)))?;
        let claim = (claim_pk(&e.credential), CLAIM_SK.to_owned());
        if !e.status.is_terminal() {
            // Still running: it keeps (or takes back) the claim in the same write.
            let hold =
                self.put_action(claim_item(&e.credential, &e.id), Some(Condition::claim_free_or_held_by(&e.id)))?;
            return match self.transact("update execution", vec![write, hold]).await? {
                Ok(()) => Ok(e.version),
                Err(refused) if refused.failed(0) => Err(stale()),
                Err(_) => Err(Error::conflict("execution", e.id, "another execution holds the credential")),
            };
        }
        // Terminal: the claim is released with the write, unless it is not this execution's to
        // release (it was released before and someone else has claimed since).
        let release = self.delete_action(claim, Condition::claim_free_or_held_by(&e.id))?;
        match self.transact("update execution", vec![write, release]).await? {
            Ok(()) => Ok(e.version),
            Err(refused) if refused.failed(0) => Err(stale()),
            Err(_) => {
                let alone = self.put_action(item, Some(Condition::version(expected)))?;
                match self.transact("update execution", vec![alone]).await? {
                    Ok(()) => Ok(e.version),
                    Err(_) => Err(stale()),
                }
            }
        }
    }

    async fn list_executions(&self, credential: &CredentialId) -> Result<Vec<Execution>> {
        // Newest first: the index sort key is the creation time, then the id.
        let q = self.index_partition(Index::Gsi1, format!("EXECS#{credential}"), false);
        from_items(&self.collect("list executions", q, None).await?)
    }

    async fn list_open_executions(&self) -> Result<Vec<Execution>> {
        let q = self.index_partition(Index::Gsi2, OPEN, true);
        from_items(&self.collect("list open executions", q, None).await?)
    }

    async fn put_step_record(&self, record: &StepRecord) -> Result<()> {
        let item = doc_item(execution_pk(&record.execution), format!("{STEP_PREFIX}{:010}", record.index), record)?;
        self.put("put step record", item).await
    }

    async fn list_step_records(&self, execution: &ExecutionId) -> Result<Vec<StepRecord>> {
        let q = self.partition(execution_pk(execution), Some(STEP_PREFIX));
        from_items(&self.collect("list step records", q, None).await?)
    }

    async fn record_alert(&self, key: &AlertKey, at: OffsetDateTime) -> Result<bool> {
        self.put_new("record alert", marker_item(alert_key(key), at)).await
    }

    async fn alerts_recorded(&self, keys: &[AlertKey]) -> Result<Vec<bool>> {
        let keys: Vec<_> = keys.iter().map(alert_key).collect();
        let found = self.existing("alerts recorded", &keys).await?;
        Ok(keys.iter().map(|k| found.contains(k)).collect())
    }

    async fn record_alerts(&self, keys: &[AlertKey], at: OffsetDateTime) -> Result<()> {
        // Unconditional puts: recording an alert again only refreshes its time.
        let items = keys.iter().map(|k| marker_item(alert_key(k), at)).collect();
        self.batch_put("record alerts", items).await
    }

    async fn marked(&self, keys: &[String]) -> Result<Vec<bool>> {
        let keys: Vec<_> = keys.iter().map(|k| mark_key(k)).collect();
        let found = self.existing("marked", &keys).await?;
        Ok(keys.iter().map(|k| found.contains(k)).collect())
    }

    async fn mark(&self, keys: &[String], at: OffsetDateTime) -> Result<()> {
        let items = keys.iter().map(|k| marker_item(mark_key(k), at)).collect();
        self.batch_put("mark", items).await
    }

    async fn append_audit(&self, event: &AuditEvent) -> Result<()> {
        // Events at the same time keep the order they were written in, across processes as far as
        // their clocks agree; the UUID keeps the key unique.
        let written = self.clock.now().unix_timestamp_nanos().max(0);
        let sk = format!("{}#{written:020}#{}", time_key(event.at), uuid::Uuid::new_v4().simple());
        let mut partitions = vec![AUDIT_ALL.to_owned()];
        partitions.extend(event.credential.as_ref().map(|c| format!("AUDIT#CRED#{c}")));
        partitions.extend(event.execution.map(|e| format!("AUDIT#EXEC#{e}")));
        // One transaction, so a listing by credential or execution never misses an event that the
        // full trail has; the SDK's idempotency token makes its own retries write once.
        let actions = partitions
            .into_iter()
            .map(|pk| self.put_action(doc_item(pk, sk.clone(), event)?, None))
            .collect::<Result<Vec<_>>>()?;
        match self.transact("append audit", actions).await? {
            Ok(()) => Ok(()),
            Err(_) => Err(error::decode("append audit", "an unconditional write was refused")),
        }
    }

    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>> {
        let max = (query.limit > 0).then_some(query.limit);
        // The narrowest partition that holds every match; both filters: the execution's, with
        // the credential checked here.
        let (pk, also_credential) = match (&query.execution, &query.credential) {
            (Some(e), c) => (format!("AUDIT#EXEC#{e}"), c.as_ref()),
            (None, Some(c)) => (format!("AUDIT#CRED#{c}"), None),
            (None, None) => (AUDIT_ALL.to_owned(), None),
        };
        let q = self.partition(pk, None).scan_index_forward(false);
        let Some(credential) = also_credential else {
            return from_items(&self.collect("list audit", q, max).await?);
        };
        let mut events: Vec<AuditEvent> = from_items(&self.collect("list audit", q, None).await?)?;
        events.retain(|e| e.credential.as_ref() == Some(credential));
        events.truncate(max.unwrap_or(usize::MAX));
        Ok(events)
    }

    async fn put_sealed(&self, record: &SealedRecord) -> Result<()> {
        let (pk, sk) = sealed_key(&record.record_id);
        let mut item = doc_item(pk, sk, record)?;
        if let Some(e) = &record.execution {
            item.insert(GSI1_PK.into(), s(sealed_by_execution(e)));
            item.insert(GSI1_SK.into(), s(record.record_id.clone()));
        }
        self.put("put sealed", item).await
    }

    async fn get_sealed(&self, record_id: &str) -> Result<Option<SealedRecord>> {
        self.get_doc("get sealed", sealed_key(record_id)).await
    }

    async fn delete_sealed(&self, record_id: &str) -> Result<()> {
        self.delete("delete sealed", sealed_key(record_id)).await
    }

    async fn put_agent(&self, agent: &AgentRecord) -> Result<()> {
        self.put("put agent", doc_item(AGENTS.to_owned(), agent.id.to_string(), agent)?).await
    }

    async fn get_agent(&self, id: &AgentId) -> Result<Option<AgentRecord>> {
        self.get_doc("get agent", (AGENTS.to_owned(), id.to_string())).await
    }

    async fn list_agents(&self) -> Result<Vec<AgentRecord>> {
        from_items(&self.collect("list agents", self.partition(AGENTS, None), None).await?)
    }

    async fn get_sync_state(&self, integration: &IntegrationId) -> Result<Option<SyncState>> {
        self.get_doc("get sync state", sync_key(integration)).await
    }

    async fn put_sync_state(&self, state: &SyncState) -> Result<()> {
        let (pk, sk) = sync_key(&state.integration);
        self.put("put sync state", doc_item(pk, sk, state)?).await
    }
}

/// An alert or mark: its key and when it was recorded (milliseconds).
fn marker_item((pk, sk): (String, String), at: OffsetDateTime) -> Item {
    HashMap::from([(PK.to_owned(), s(pk)), (SK.to_owned(), s(sk)), ("at".to_owned(), n(millis(at)))])
}

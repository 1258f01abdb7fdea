//! The DynamoDB requests every record is read and written with: single items, queries followed
//! page by page, batches cut to DynamoDB's sizes, and all-or-nothing transactions with their
//! conditions. What DynamoDB leaves unprocessed, or a race lost to another transaction, is tried
//! again after a pause.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aws_sdk_dynamodb::error::BuildError;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, DeleteRequest, KeysAndAttributes, Put, PutRequest, TransactWriteItem, WriteRequest,
};
use entra_rotator::domain::ids::ExecutionId;
use entra_rotator::{Error, Result};
use serde::de::DeserializeOwned;

use super::DynamoStore;
use super::items::{Item, from_item, key_of, n, s};
use super::keys::{DOC, GSI1, GSI1_PK, GSI2, GSI2_PK, GSI2_SK, Index, PK, SK, TTL_ATTRIBUTE, VERSION};
use crate::error;
use time::OffsetDateTime;

/// DynamoDB's limits per BatchWriteItem and BatchGetItem request.
const BATCH_WRITE_MAX: usize = 25;
const BATCH_GET_MAX: usize = 100;
/// How often a batch's unprocessed part, or a transaction that lost a race with another
/// transaction, is tried again before the caller gets a transient error.
pub(super) const MAX_ATTEMPTS: u32 = 8;

/// A request the SDK refused to build: a bug here, never worth retrying.
pub(super) fn request(e: BuildError) -> Error {
    Error::Store { context: "building a DynamoDB request".into(), transient: false, source: Box::new(e) }
}

/// A short wait before trying again: exponential, half of it random, so that competing writers
/// spread out. The jitter comes from a random UUID, the one source of randomness at hand.
async fn backoff(attempt: u32) {
    let ceiling = 20u64.saturating_mul(1 << attempt.min(6)).min(1_000);
    let random = (uuid::Uuid::new_v4().as_u128() & u128::from(u64::MAX)) as u64;
    tokio::time::sleep(Duration::from_millis(ceiling / 2 + random % (ceiling / 2 + 1))).await;
}

/// A transaction not written because conditions failed: which of its actions (by position).
pub(super) struct Refused(Vec<bool>);

impl Refused {
    pub(super) fn failed(&self, action: usize) -> bool {
        self.0.get(action).copied().unwrap_or(false)
    }
}

impl DynamoStore {
    pub(super) fn query(&self) -> QueryFluentBuilder {
        self.client.query().table_name(&self.table)
    }

    /// The items of one partition of the table, optionally only sort keys starting with
    /// `sk_prefix`, in sort key order; strongly consistent.
    pub(super) fn partition(&self, pk: impl Into<String>, sk_prefix: Option<&str>) -> QueryFluentBuilder {
        let q = self.query().consistent_read(true).expression_attribute_values(":pk", s(pk));
        match sk_prefix {
            Some(prefix) => q
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":prefix", s(prefix)),
            None => q.key_condition_expression("pk = :pk"),
        }
    }

    /// The items of one partition of an index, in sort key order (`forward`) or reversed.
    pub(super) fn index_partition(&self, index: Index, pk: impl Into<String>, forward: bool) -> QueryFluentBuilder {
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
    pub(super) async fn collect(
        &self,
        context: &'static str,
        q: QueryFluentBuilder,
        max: Option<usize>,
    ) -> Result<Vec<Item>> {
        self.collect_from(context, q, None, max).await
    }

    /// As [`DynamoStore::collect`], starting after the item whose key is `start`.
    pub(super) async fn collect_from(
        &self,
        context: &'static str,
        q: QueryFluentBuilder,
        mut start: Option<Item>,
        max: Option<usize>,
    ) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        if max == Some(0) {
            return Ok(items);
        }
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

    pub(super) async fn get(&self, context: &'static str, (pk, sk): (String, String)) -> Result<Option<Item>> {
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

    pub(super) async fn get_doc<T: DeserializeOwned>(
        &self,
        context: &'static str,
        key: (String, String),
    ) -> Result<Option<T>> {
        self.get(context, key).await?.as_ref().map(from_item).transpose()
    }

    pub(super) async fn put(&self, context: &'static str, item: Item) -> Result<()> {
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
    pub(super) async fn put_new(&self, context: &'static str, item: Item) -> Result<bool> {
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

    /// Puts `item` unless an item with its key is there and not yet expired (TTL deletes expired
    /// items only eventually): true when this call wrote it.
    pub(super) async fn put_unless_live(&self, context: &'static str, item: Item, now: OffsetDateTime) -> Result<bool> {
        let written = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR #ttl <= :now")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":now", n(now.unix_timestamp()))
            .send()
            .await;
        match written {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(error::store(context, e)),
        }
    }

    pub(super) async fn delete(&self, context: &'static str, (pk, sk): (String, String)) -> Result<()> {
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
    pub(super) async fn transact(
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

    pub(super) async fn batch_put(&self, context: &'static str, items: Vec<Item>) -> Result<()> {
        let requests = items
            .into_iter()
            .map(|item| {
                let put = PutRequest::builder().set_item(Some(item)).build().map_err(request)?;
                Ok(WriteRequest::builder().put_request(put).build())
            })
            .collect::<Result<Vec<_>>>()?;
        self.batch_write(context, requests).await
    }

    pub(super) async fn batch_delete(&self, context: &'static str, keys: Vec<(String, String)>) -> Result<()> {
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
    pub(super) async fn existing(
        &self,
        context: &'static str,
        keys: &[(String, String)],
    ) -> Result<HashSet<(String, String)>> {
        Ok(self.get_many(context, keys, Some("pk, sk")).await?.into_keys().collect())
    }

    /// The items of `keys` that exist, by key, read in batches of 100 (strongly consistent),
    /// trying unprocessed keys again; only the `projection` attributes when given.
    pub(super) async fn get_many(
        &self,
        context: &'static str,
        keys: &[(String, String)],
        projection: Option<&str>,
    ) -> Result<HashMap<(String, String), Item>> {
        let unique: Vec<&(String, String)> = {
            let mut seen = HashSet::new();
            keys.iter().filter(|k| seen.insert(*k)).collect()
        };
        let mut found = HashMap::new();
        for chunk in unique.chunks(BATCH_GET_MAX) {
            let keys: Vec<Item> =
                chunk.iter().map(|(pk, sk)| HashMap::from([(PK.to_owned(), s(pk)), (SK.to_owned(), s(sk))])).collect();
            let mut pending = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .set_projection_expression(projection.map(str::to_owned))
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
                found.extend(items.into_iter().filter_map(|i| Some((key_of(&i)?, i))));
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

    /// Sets (or, with `None`, removes) a credential's entry in the due index, only if the stored
    /// item's document is still `doc`. False when it is not (written since, or gone).
    pub(super) async fn set_due_if_unchanged(
        &self,
        context: &'static str,
        (pk, sk): (String, String),
        doc: String,
        due: Option<(String, String)>,
    ) -> Result<bool> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(pk))
            .key(SK, s(sk))
            .condition_expression("#doc = :doc")
            .expression_attribute_names("#doc", DOC)
            .expression_attribute_names("#gpk", GSI2_PK)
            .expression_attribute_names("#gsk", GSI2_SK)
            .expression_attribute_values(":doc", s(doc));
        let update = match due {
            Some((gpk, gsk)) => update
                .update_expression("SET #gpk = :gpk, #gsk = :gsk")
                .expression_attribute_values(":gpk", s(gpk))
                .expression_attribute_values(":gsk", s(gsk)),
            None => update.update_expression("REMOVE #gpk, #gsk"),
        };
        match update.send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(error::store(context, e)),
        }
    }
}

/// The condition of one action in a transaction.
pub(super) struct Condition {
    expression: &'static str,
    names: Vec<(&'static str, &'static str)>,
    values: Vec<(&'static str, AttributeValue)>,
}

impl Condition {
    /// No item with this key exists yet.
    pub(super) fn absent() -> Self {
        Self { expression: "attribute_not_exists(pk)", names: vec![], values: vec![] }
    }

    /// The stored execution has this version (so it exists).
    pub(super) fn version(expected: u64) -> Self {
        Self {
            expression: "#version = :expected",
            names: vec![("#version", VERSION)],
            values: vec![(":expected", n(expected))],
        }
    }

    /// The claim is free, or held by this execution already.
    pub(super) fn claim_free_or_held_by(id: &ExecutionId) -> Self {
        Self {
            expression: "attribute_not_exists(pk) OR #execution = :me",
            names: vec![("#execution", "execution")],
            values: vec![(":me", s(id.to_string()))],
        }
    }

    /// The claim is held by this execution.
    pub(super) fn claim_held_by(id: &ExecutionId) -> Self {
        Self {
            expression: "#execution = :me",
            names: vec![("#execution", "execution")],
            values: vec![(":me", s(id.to_string()))],
        }
    }
}

impl DynamoStore {
    pub(super) fn put_action(&self, item: Item, condition: Option<Condition>) -> Result<TransactWriteItem> {
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

    pub(super) fn delete_action(&self, (pk, sk): (String, String), condition: Condition) -> Result<TransactWriteItem> {
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
}

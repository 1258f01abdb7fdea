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
//! | credential | `CRED#<integration>` | `<credential-id>` | | `DUE#<integration>` / `<due-ms>#<credential-id>`, unless never due |
//! | execution | `EXEC#<execution-id>` | `EXEC` | `EXECS#<credential-id>` / `<created-ms>#<execution-id>` | `OPEN` / `<created-ms>#<execution-id>`, only while open |
//! | step record | `EXEC#<execution-id>` | `STEP#<index, 10 digits>` | | |
//! | claim | `CLAIM#<credential-id>` | `CLAIM` | | |
//! | alert sent | `ALERT#<credential-id>` | `<end, unix s>#<threshold>` | | |
//! | once-only mark | `MARK#<key>` | `MARK` | | |
//! | mark forgotten at `expires_at` | `ONCE#<key>` | `ONCE` | | |
//! | audit event | `AUDIT`, and `AUDIT#CRED#<credential-id>`, `AUDIT#EXEC#<execution-id>` when it names them | `<at-ms>#<written-ns>#<uuid>` | | |
//! | sealed record | `SEALED#<record-id>` | `SEALED` | `EXEC_SEALED#<execution-id>` / `<record-id>`, when it names one | |
//! | agent | `AGENTS` | `<agent-id>` | | |
//! | sync progress | `SYNC#<integration>` | `SYNC` | | |
//! | schema version | `SCHEMA` | `SCHEMA` | | |
//! | scan fingerprint | `SCAN` | `FINGERPRINT` | | |
//!
//! A credential id reads `<integration>/app/<object-id>/<key-id>` (or `/sp/`) for a password and
//! `<integration>/app/<object-id>/cert/<key-id>` for a certificate, so one owner's credentials are
//! a `begins_with` query in their integration's partition, and the `INTEGRATIONS`
//! partition lists the credential partitions, for listings across integrations without a Scan.
//! The due index is the credentials' part of `gsi2`: each credential under its next moment of
//! interest (`<due-ms>`), 0 when written and not yet looked at, no entry once nothing lies
//! ahead; the expiry scan queries each integration's partition for sort keys up to now, and the
//! scan fingerprint item (`fingerprint`, S) says what the moments were computed from. Items
//! written before the index have no entry, and a table without the fingerprint gets a full pass,
//! which indexes them all.
//! `<created-ms>` and `<at-ms>` are milliseconds since 1970, zero-padded to 15 digits so that text
//! order is time order. Besides `doc`, an execution has `version` (N, the condition of every
//! update), a claim `execution` (S, the holder's id), alerts and marks `at` (N, milliseconds).
//! The schema version item has `version` (N): the layout the items follow, which
//! [`DynamoStore::migrate`] brings older items up to, once per process before the first call that
//! reads or writes credentials or alerts (a table without the item is version 0, before a
//! certificate's id had its own form). Record ids, keys and names are never secret; the only secret material is the sealed value
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
//!
//! # Code
//!
//! `keys` names every item as the table above does and `items` turns records into items and back;
//! `requests` makes the DynamoDB calls (paged queries, chunked batches, conditional transactions,
//! tried again where DynamoDB asks for it). `inventory`, `executions` and `records` read and write
//! the port's records with them, and `table` creates the table. The [`Store`] implementation below
//! hands each method to the file of its records.

mod executions;
mod inventory;
mod items;
mod keys;
mod records;
mod requests;
mod schema;
mod table;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use entra_rotator::Result;
use entra_rotator::domain::execution::{Execution, StepRecord};
use entra_rotator::domain::ids::{AgentId, AppObjectId, CredentialId, ExecutionId, IntegrationId, OwnerKind};
use entra_rotator::domain::inventory::{Application, Credential, ServicePrincipal};
use entra_rotator::ports::{
    AgentRecord, AlertKey, AuditEvent, AuditQuery, Claim, Clock, DueCredential, DuePosition, OwnerSnapshot,
    SealedRecord, Store, SyncCounts, SyncState,
};
use time::OffsetDateTime;

pub use schema::{Migrated, SCHEMA_VERSION};

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
    /// Set once this instance has found (or brought) the table at [`SCHEMA_VERSION`].
    schema: tokio::sync::OnceCell<()>,
}

impl DynamoStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>, clock: Arc<dyn Clock>) -> Self {
        Self {
            client,
            table: table.into(),
            clock,
            registered: Mutex::new(HashSet::new()),
            page_size: None,
            schema: tokio::sync::OnceCell::new(),
        }
    }

    /// Asks for at most `items` items per Query page (at least 1), so that tests with a handful of
    /// records cross page boundaries the way a large table does with DynamoDB's 1 MB pages.
    pub fn with_page_size(mut self, items: u16) -> Self {
        self.page_size = Some(i32::from(items.max(1)));
        self
    }
}

#[async_trait]
impl Store for DynamoStore {
    async fn put_application(&self, app: &Application) -> Result<()> {
        inventory::put_application(self, app).await
    }

    async fn get_application(&self, integration: &IntegrationId, id: &AppObjectId) -> Result<Option<Application>> {
        inventory::get_application(self, integration, id).await
    }

    async fn list_applications(&self, integration: &IntegrationId) -> Result<Vec<Application>> {
        inventory::list_applications(self, integration).await
    }

    async fn put_service_principal(&self, sp: &ServicePrincipal) -> Result<()> {
        inventory::put_service_principal(self, sp).await
    }

    async fn list_service_principals(&self, integration: &IntegrationId) -> Result<Vec<ServicePrincipal>> {
        inventory::list_service_principals(self, integration).await
    }

    async fn put_credential(&self, credential: &Credential) -> Result<()> {
        self.ready().await?;
        inventory::put_credential(self, credential).await
    }

    async fn get_credential(&self, id: &CredentialId) -> Result<Option<Credential>> {
        self.ready().await?;
        inventory::get_credential(self, id).await
    }

    async fn list_credentials(&self, integration: Option<&IntegrationId>) -> Result<Vec<Credential>> {
        self.ready().await?;
        inventory::list_credentials(self, integration).await
    }

    async fn remove_credential(&self, id: &CredentialId) -> Result<()> {
        self.ready().await?;
        inventory::remove_credential(self, id).await
    }

    async fn sync_owners(&self, integration: &IntegrationId, owners: &[OwnerSnapshot]) -> Result<SyncCounts> {
        self.ready().await?;
        inventory::sync_owners(self, integration, owners).await
    }

    async fn remove_owner(&self, integration: &IntegrationId, kind: OwnerKind, id: uuid::Uuid) -> Result<usize> {
        self.ready().await?;
        inventory::remove_owner(self, integration, kind, id).await
    }

    async fn owner_ids(&self, integration: &IntegrationId, kind: OwnerKind) -> Result<Vec<uuid::Uuid>> {
        inventory::owner_ids(self, integration, kind).await
    }

    async fn credentials_page(&self, after: Option<&CredentialId>, limit: usize) -> Result<Vec<Credential>> {
        self.ready().await?;
        inventory::credentials_page(self, after, limit).await
    }

    async fn due_credentials(
        &self,
        now: OffsetDateTime,
        after: Option<&DuePosition>,
        limit: usize,
    ) -> Result<Vec<DueCredential>> {
        self.ready().await?;
        inventory::due_credentials(self, now, after, limit).await
    }

    async fn set_next_moments(&self, moments: &[(Credential, Option<OffsetDateTime>)]) -> Result<()> {
        self.ready().await?;
        inventory::set_next_moments(self, moments).await
    }

    async fn scan_fingerprint(&self) -> Result<Option<String>> {
        records::scan_fingerprint(self).await
    }

    async fn put_scan_fingerprint(&self, fingerprint: &str) -> Result<()> {
        records::put_scan_fingerprint(self, fingerprint).await
    }

    async fn create_execution(&self, execution: &Execution) -> Result<Claim> {
        executions::create_execution(self, execution).await
    }

    async fn get_execution(&self, id: &ExecutionId) -> Result<Option<Execution>> {
        executions::get_execution(self, id).await
    }

    async fn update_execution(&self, execution: &Execution) -> Result<u64> {
        executions::update_execution(self, execution).await
    }

    async fn list_executions(&self, credential: &CredentialId) -> Result<Vec<Execution>> {
        executions::list_executions(self, credential).await
    }

    async fn list_open_executions(&self) -> Result<Vec<Execution>> {
        executions::list_open_executions(self).await
    }

    async fn put_step_record(&self, record: &StepRecord) -> Result<()> {
        executions::put_step_record(self, record).await
    }

    async fn list_step_records(&self, execution: &ExecutionId) -> Result<Vec<StepRecord>> {
        executions::list_step_records(self, execution).await
    }

    async fn record_alert(&self, key: &AlertKey, at: OffsetDateTime) -> Result<bool> {
        self.ready().await?;
        records::record_alert(self, key, at).await
    }

    async fn alerts_recorded(&self, keys: &[AlertKey]) -> Result<Vec<bool>> {
        self.ready().await?;
        records::alerts_recorded(self, keys).await
    }

    async fn record_alerts(&self, keys: &[AlertKey], at: OffsetDateTime) -> Result<()> {
        self.ready().await?;
        records::record_alerts(self, keys, at).await
    }

    async fn marked(&self, keys: &[String]) -> Result<Vec<bool>> {
        records::marked(self, keys).await
    }

    async fn mark(&self, keys: &[String], at: OffsetDateTime) -> Result<()> {
        records::mark(self, keys, at).await
    }

    async fn mark_once(&self, key: &str, at: OffsetDateTime, forget_at: OffsetDateTime) -> Result<bool> {
        records::mark_once(self, key, at, forget_at).await
    }

    async fn append_audit(&self, event: &AuditEvent) -> Result<()> {
        records::append_audit(self, event).await
    }

    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>> {
        records::list_audit(self, query).await
    }

    async fn put_sealed(&self, record: &SealedRecord) -> Result<()> {
        records::put_sealed(self, record).await
    }

    async fn get_sealed(&self, record_id: &str) -> Result<Option<SealedRecord>> {
        records::get_sealed(self, record_id).await
    }

    async fn delete_sealed(&self, record_id: &str) -> Result<()> {
        records::delete_sealed(self, record_id).await
    }

    async fn put_agent(&self, agent: &AgentRecord) -> Result<()> {
        records::put_agent(self, agent).await
    }

    async fn get_agent(&self, id: &AgentId) -> Result<Option<AgentRecord>> {
        records::get_agent(self, id).await
    }

    async fn list_agents(&self) -> Result<Vec<AgentRecord>> {
        records::list_agents(self).await
    }

    async fn get_sync_state(&self, integration: &IntegrationId) -> Result<Option<SyncState>> {
        records::get_sync_state(self, integration).await
    }

    async fn put_sync_state(&self, state: &SyncState) -> Result<()> {
        records::put_sync_state(self, state).await
    }
}

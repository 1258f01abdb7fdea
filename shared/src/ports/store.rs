//! The store port: inventory, executions, alerts, the audit trail, sealed secrets and agents.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::Result;
use crate::domain::agent::{AgentKeys, AgentState, Capabilities, Enrollment, Revocation};
use crate::domain::execution::{Execution, StepRecord};
use crate::domain::ids::{AgentId, AppObjectId, CredentialId, ExecutionId, IntegrationId, OwnerKind};
use crate::domain::inventory::{Application, Credential, ServicePrincipal};
use crate::domain::lifecycle::AlertThreshold;
use crate::ports::key_ring::SealedValue;

/// What `create_execution` found.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The execution was written and now holds the credential.
    Created,
    /// Another execution already holds the credential; here it is.
    AlreadyActive(Box<Execution>),
}

/// One line of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What happened, e.g. `rotation.started`, `credential.removed`, `orphan.removed`.
    pub action: String,
    /// Who or what did it: `scheduler`, `operator:alice`, `http:token-name`.
    pub actor: String,
    pub execution: Option<ExecutionId>,
    pub credential: Option<CredentialId>,
    /// Words for a person; never a secret.
    pub detail: String,
}

/// A filter for the audit trail.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub credential: Option<CredentialId>,
    pub execution: Option<ExecutionId>,
    pub limit: usize,
}

/// An alert sent once per credential, expiry date and threshold.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AlertKey {
    pub credential: CredentialId,
    #[serde(with = "time::serde::rfc3339")]
    pub end: OffsetDateTime,
    pub threshold: AlertThreshold,
}

/// A sealed secret and what it is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedRecord {
    /// Unique; also bound into the seal, so a sealed value cannot be moved to another record.
    pub record_id: String,
    pub purpose: String,
    pub execution: Option<ExecutionId>,
    pub sealed: SealedValue,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A host agent: issued an enrollment code, enrolled with its public keys, as last seen, or
/// revoked. Holds no credential of the agent's: only public keys and the code's hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub id: AgentId,
    /// The operator's name for it (`rotator agents enroll web-01`).
    #[serde(default)]
    pub name: String,
    /// The code it may enroll with, until it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment: Option<Enrollment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<AgentKeys>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Revocation>,
    // As its last heartbeat said (at enrollment, until the first).
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub capabilities: Capabilities,
    #[serde(default)]
    pub allowed_roots: Vec<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_heartbeat: Option<OffsetDateTime>,
}

impl AgentRecord {
    pub fn state(&self, now: OffsetDateTime) -> AgentState {
        crate::domain::agent::state(
            self.enrollment.as_ref(),
            self.keys.as_ref(),
            self.revoked.as_ref(),
            self.last_heartbeat,
            now,
        )
    }
}

/// Per-integration sync progress: the delta link Graph gave last time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncState {
    pub integration: IntegrationId,
    pub applications_delta_link: Option<String>,
    pub service_principals_delta_link: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_full_sync: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_delta_sync: Option<OffsetDateTime>,
}

/// An owner of credentials: an application or a service principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    Application(Application),
    ServicePrincipal(ServicePrincipal),
}

impl Owner {
    pub fn kind(&self) -> OwnerKind {
        match self {
            Self::Application(_) => OwnerKind::Application,
            Self::ServicePrincipal(_) => OwnerKind::ServicePrincipal,
        }
    }
    pub fn id(&self) -> uuid::Uuid {
        match self {
            Self::Application(a) => a.object_id.as_uuid(),
            Self::ServicePrincipal(s) => s.object_id.as_uuid(),
        }
    }
}

/// An owner as the directory has it now, with its credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerSnapshot {
    pub owner: Owner,
    /// All its client secrets; `None` leaves the stored ones as they are (a delta page that did
    /// not mention them).
    pub passwords: Option<Vec<Credential>>,
    /// All its certificates, one per thumbprint; `None` as above.
    pub certificates: Option<Vec<Credential>>,
}

/// What one `sync_owners` call changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SyncCounts {
    pub owners: usize,
    /// Credentials new or changed, so written; one stored exactly as listed is left alone.
    pub credentials_written: usize,
    /// Credentials no longer in the directory, removed with their rotation entries.
    pub credentials_removed: usize,
}

impl std::ops::AddAssign for SyncCounts {
    fn add_assign(&mut self, o: Self) {
        self.owners += o.owners;
        self.credentials_written += o.credentials_written;
        self.credentials_removed += o.credentials_removed;
    }
}

/// Where a listing of due credentials continues: after this moment and credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuePosition {
    pub due: OffsetDateTime,
    pub id: CredentialId,
}

/// A credential whose next moment of interest has come, as the due index has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueCredential {
    pub credential: Credential,
    /// The moment it was indexed under; the Unix epoch for one written and not yet looked at.
    pub due: OffsetDateTime,
}

impl DueCredential {
    pub fn position(&self) -> DuePosition {
        DuePosition { due: self.due, id: self.credential.id.clone() }
    }
}

/// Inventory, executions, alerts, the audit trail, sealed secrets and agents.
///
/// Every write that two workers could race on is conditional (`create_execution` claims,
/// `update_execution` checks the version, `record_alert` inserts once), because the queue
/// delivers at least once and nothing makes the store and the queue atomic together.
#[async_trait]
pub trait Store: Send + Sync {
    // Inventory
    async fn put_application(&self, app: &Application) -> Result<()>;
    async fn get_application(&self, integration: &IntegrationId, id: &AppObjectId) -> Result<Option<Application>>;
    async fn list_applications(&self, integration: &IntegrationId) -> Result<Vec<Application>>;
    /// Removes the application, its credentials, and the alerts and rotation entries of those
    /// credentials, in one operation. Executions stay, as history (cancelled if still running).
    async fn remove_application(&self, integration: &IntegrationId, id: &AppObjectId) -> Result<()> {
        self.remove_owner(integration, OwnerKind::Application, id.as_uuid()).await.map(drop)
    }
    async fn put_service_principal(&self, sp: &ServicePrincipal) -> Result<()>;
    async fn list_service_principals(&self, integration: &IntegrationId) -> Result<Vec<ServicePrincipal>>;
    async fn put_credential(&self, credential: &Credential) -> Result<()>;
    async fn get_credential(&self, id: &CredentialId) -> Result<Option<Credential>>;
    /// All credentials, or those of one integration; ordered by end date, soonest first.
    async fn list_credentials(&self, integration: Option<&IntegrationId>) -> Result<Vec<Credential>>;
    /// Removes the credential with its alerts and rotation entries.
    async fn remove_credential(&self, id: &CredentialId) -> Result<()>;
    /// Writes a batch of owners as the directory has them, in one write: each owner is upserted
    /// and, where its credentials are given, those no longer listed are removed with their rotation
    /// entries (credentials entra-rotator itself removed stay, as Cleaned Up records).
    async fn sync_owners(&self, integration: &IntegrationId, owners: &[OwnerSnapshot]) -> Result<SyncCounts>;
    /// Removes an application or service principal with its credentials and their rotation
    /// entries, in one operation. Returns how many credentials went.
    async fn remove_owner(&self, integration: &IntegrationId, kind: OwnerKind, id: uuid::Uuid) -> Result<usize>;
    /// Removes an integration that is no longer configured, in one lifecycle operation: every
    /// application and service principal with their credentials, alerts and rotation entries
    /// (running executions are cancelled; executions and the audit trail stay, as history).
    /// Returns how many credentials went.
    async fn remove_integration(&self, integration: &IntegrationId) -> Result<usize> {
        let mut removed = 0;
        for kind in [OwnerKind::Application, OwnerKind::ServicePrincipal] {
            for id in self.owner_ids(integration, kind).await? {
                removed += self.remove_owner(integration, kind, id).await?;
            }
        }
        // Credentials whose owner was never stored (or is gone already).
        for c in self.list_credentials(Some(integration)).await? {
            self.remove_credential(&c.id).await?;
            removed += 1;
        }
        Ok(removed)
    }
    /// The ids of every stored owner of a kind, to find what vanished after a full listing.
    async fn owner_ids(&self, integration: &IntegrationId, kind: OwnerKind) -> Result<Vec<uuid::Uuid>>;
    /// Up to `limit` credentials ordered by id, after `after`: for scans that must not hold the
    /// whole inventory in memory.
    async fn credentials_page(&self, after: Option<&CredentialId>, limit: usize) -> Result<Vec<Credential>>;

    // The due index: each credential's next moment of interest, so the expiry scan reads only
    // what has come due. Every write of a new or changed credential (`put_credential`,
    // `sync_owners`) indexes it as due at once (the Unix epoch): the scan looks at it and stores
    // its real next moment, so a changed end date is never missed.
    /// Up to `limit` credentials due at `now` (indexed at or before it), in the store's order of
    /// (moment, id) positions, after `after`. Credentials indexed as never due are not listed.
    async fn due_credentials(
        &self,
        now: OffsetDateTime,
        after: Option<&DuePosition>,
        limit: usize,
    ) -> Result<Vec<DueCredential>>;
    /// Indexes each credential under its next moment of interest (`None`: never due again), but
    /// only where the stored credential is still exactly the one given: one written since it was
    /// read keeps its "due at once" and is looked at again.
    async fn set_next_moments(&self, moments: &[(Credential, Option<OffsetDateTime>)]) -> Result<()>;
    /// What the stored moments were computed from (policies, thresholds, disabled integrations),
    /// as the scan last recorded it; `None` before any complete pass.
    async fn scan_fingerprint(&self) -> Result<Option<String>>;
    async fn put_scan_fingerprint(&self, fingerprint: &str) -> Result<()>;

    // Executions
    /// Writes a new execution unless a non-terminal one already holds the same credential.
    async fn create_execution(&self, execution: &Execution) -> Result<Claim>;
    async fn get_execution(&self, id: &ExecutionId) -> Result<Option<Execution>>;
    /// Writes `execution` if the stored version is `execution.version`; the stored copy gets the
    /// next version, which is returned. Otherwise `Error::Conflict`.
    async fn update_execution(&self, execution: &Execution) -> Result<u64>;
    /// Newest first.
    async fn list_executions(&self, credential: &CredentialId) -> Result<Vec<Execution>>;
    /// Executions that are not terminal, or whose cleanup is not done; for the scheduler's sweeps.
    async fn list_open_executions(&self) -> Result<Vec<Execution>>;
    async fn put_step_record(&self, record: &StepRecord) -> Result<()>;
    async fn list_step_records(&self, execution: &ExecutionId) -> Result<Vec<StepRecord>>;

    // Alerts
    /// True when this alert had not been recorded yet (so the caller sends it); false if it had.
    async fn record_alert(&self, key: &AlertKey, at: OffsetDateTime) -> Result<bool>;
    /// For each key, whether it was recorded already.
    async fn alerts_recorded(&self, keys: &[AlertKey]) -> Result<Vec<bool>>;
    /// Records a batch of alerts in one write.
    async fn record_alerts(&self, keys: &[AlertKey], at: OffsetDateTime) -> Result<()>;

    // Once-only markers (for example "rotation requested for this credential and end date")
    /// For each key, whether it was marked already.
    async fn marked(&self, keys: &[String]) -> Result<Vec<bool>>;
    /// Marks a batch of keys in one write; marking twice is not an error.
    async fn mark(&self, keys: &[String], at: OffsetDateTime) -> Result<()>;
    /// Marks one key unless it is marked already, in one conditional write: true when this call
    /// marked it (so of two concurrent calls exactly one is first). The mark is forgotten at
    /// `forget_at` (an agent request's nonce, once its timestamp is too old to be accepted anyway).
    async fn mark_once(&self, key: &str, at: OffsetDateTime, forget_at: OffsetDateTime) -> Result<bool>;

    // Audit trail
    async fn append_audit(&self, event: &AuditEvent) -> Result<()>;
    /// Newest first.
    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>>;

    // Sealed secrets
    async fn put_sealed(&self, record: &SealedRecord) -> Result<()>;
    async fn get_sealed(&self, record_id: &str) -> Result<Option<SealedRecord>>;
    /// Deleting what is not there is not an error.
    async fn delete_sealed(&self, record_id: &str) -> Result<()>;

    // Agents
    async fn put_agent(&self, agent: &AgentRecord) -> Result<()>;
    async fn get_agent(&self, id: &AgentId) -> Result<Option<AgentRecord>>;
    async fn list_agents(&self) -> Result<Vec<AgentRecord>>;

    // Sync progress
    async fn get_sync_state(&self, integration: &IntegrationId) -> Result<Option<SyncState>>;
    async fn put_sync_state(&self, state: &SyncState) -> Result<()>;
}

//! Fault injection for tests: a store that fails chosen calls, standing for a crash right at that
//! point (the call's effect does not happen and the caller sees an error, as after a restart).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::domain::execution::{Execution, StepRecord};
use crate::domain::ids::{AgentId, AppObjectId, CredentialId, ExecutionId, IntegrationId, OwnerKind};
use crate::domain::inventory::{Application, Credential, ServicePrincipal};
use crate::ports::{
    AgentRecord, AlertKey, AuditEvent, AuditQuery, Claim, OwnerSnapshot, SealedRecord, Store, SyncCounts, SyncState,
};
use crate::{Error, Result};

/// How many more calls fail, and which.
type Fault = (u32, Box<dyn Fn(&str) -> bool + Send>);

/// Wraps a store; `fail(method, n, when)` makes the next `n` calls of `method` that satisfy `when`
/// fail before reaching the store.
pub struct FlakyStore {
    inner: Arc<dyn Store>,
    faults: Mutex<HashMap<&'static str, Fault>>,
}

impl FlakyStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self { inner, faults: Mutex::new(HashMap::new()) }
    }

    /// Fails the next `n` calls of `method` whose debug text of the first argument satisfies `when`.
    pub fn fail(&self, method: &'static str, n: u32, when: impl Fn(&str) -> bool + Send + 'static) {
        self.faults.lock().unwrap_or_else(|p| p.into_inner()).insert(method, (n, Box::new(when)));
    }

    fn check(&self, method: &'static str, arg: &str) -> Result<()> {
        let mut faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((n, when)) = faults.get_mut(method)
            && *n > 0
            && when(arg)
        {
            *n -= 1;
            return Err(Error::Store {
                context: format!("injected crash at {method}"),
                transient: true,
                source: "crash".into(),
            });
        }
        Ok(())
    }
}

macro_rules! flaky_store {
    ($( $name:ident ( $first:ident : $fty:ty $(, $arg:ident : $ty:ty)* ) -> $ret:ty; )*
     $( @noargs $nname:ident () -> $nret:ty; )*) => {
        #[async_trait]
        impl Store for FlakyStore {
            $(
                async fn $name(&self, $first: $fty $(, $arg: $ty)*) -> Result<$ret> {
                    self.check(stringify!($name), &format!("{:?}", $first))?;
                    self.inner.$name($first $(, $arg)*).await
                }
            )*
            $(
                async fn $nname(&self) -> Result<$nret> {
                    self.check(stringify!($nname), "")?;
                    self.inner.$nname().await
                }
            )*
        }
    };
}

flaky_store! {
    put_application(app: &Application) -> ();
    get_application(integration: &IntegrationId, id: &AppObjectId) -> Option<Application>;
    list_applications(integration: &IntegrationId) -> Vec<Application>;
    put_service_principal(sp: &ServicePrincipal) -> ();
    list_service_principals(integration: &IntegrationId) -> Vec<ServicePrincipal>;
    put_credential(credential: &Credential) -> ();
    get_credential(id: &CredentialId) -> Option<Credential>;
    list_credentials(integration: Option<&IntegrationId>) -> Vec<Credential>;
    remove_credential(id: &CredentialId) -> ();
    sync_owners(integration: &IntegrationId, owners: &[OwnerSnapshot]) -> SyncCounts;
    remove_owner(integration: &IntegrationId, kind: OwnerKind, id: uuid::Uuid) -> usize;
    owner_ids(integration: &IntegrationId, kind: OwnerKind) -> Vec<uuid::Uuid>;
    credentials_page(after: Option<&CredentialId>, limit: usize) -> Vec<Credential>;
    create_execution(execution: &Execution) -> Claim;
    get_execution(id: &ExecutionId) -> Option<Execution>;
    update_execution(execution: &Execution) -> u64;
    list_executions(credential: &CredentialId) -> Vec<Execution>;
    put_step_record(record: &StepRecord) -> ();
    list_step_records(execution: &ExecutionId) -> Vec<StepRecord>;
    record_alert(key: &AlertKey, at: OffsetDateTime) -> bool;
    alerts_recorded(keys: &[AlertKey]) -> Vec<bool>;
    record_alerts(keys: &[AlertKey], at: OffsetDateTime) -> ();
    marked(keys: &[String]) -> Vec<bool>;
    mark(keys: &[String], at: OffsetDateTime) -> ();
    append_audit(event: &AuditEvent) -> ();
    list_audit(query: &AuditQuery) -> Vec<AuditEvent>;
    put_sealed(record: &SealedRecord) -> ();
    get_sealed(record_id: &str) -> Option<SealedRecord>;
    delete_sealed(record_id: &str) -> ();
    put_agent(agent: &AgentRecord) -> ();
    get_agent(id: &AgentId) -> Option<AgentRecord>;
    get_sync_state(integration: &IntegrationId) -> Option<SyncState>;
    put_sync_state(state: &SyncState) -> ();
    @noargs list_open_executions() -> Vec<Execution>;
    @noargs list_agents() -> Vec<AgentRecord>;
}

/// Wraps a key ring; its next `fail_seals` seals fail, standing for a crash right after Graph
/// answered `addPassword` and before the secret text was sealed and stored.
pub struct FlakyKeyRing {
    inner: Arc<dyn crate::ports::key_ring::KeyRing>,
    pub fail_seals: std::sync::atomic::AtomicU32,
}

impl FlakyKeyRing {
    pub fn new(inner: Arc<dyn crate::ports::key_ring::KeyRing>) -> Self {
        Self { inner, fail_seals: std::sync::atomic::AtomicU32::new(0) }
    }
}

#[async_trait]
impl crate::ports::key_ring::KeyRing for FlakyKeyRing {
    async fn seal(
        &self,
        value: &crate::domain::secret::SecretValue,
        ctx: &crate::ports::key_ring::SealContext,
    ) -> Result<crate::ports::key_ring::SealedValue> {
        use std::sync::atomic::Ordering;
        if self.fail_seals.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(Error::Store {
                context: "injected crash after addPassword".into(),
                transient: true,
                source: "crash".into(),
            });
        }
        self.inner.seal(value, ctx).await
    }
    async fn unseal(
        &self,
        sealed: &crate::ports::key_ring::SealedValue,
        ctx: &crate::ports::key_ring::SealContext,
    ) -> Result<crate::domain::secret::SecretValue> {
        self.inner.unseal(sealed, ctx).await
    }
}

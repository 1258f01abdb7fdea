//! Fault injection for tests: a store, a key ring and a queue that fail chosen calls, standing for
//! a crash right at that point (the call's effect does not happen and the caller sees an error, as
//! after a restart), and a queue that delivers every message twice, as an at-least-once queue may.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::domain::execution::{Execution, StepRecord};
use crate::domain::ids::{AgentId, AppObjectId, CredentialId, ExecutionId, IntegrationId, OwnerKind};
use crate::domain::inventory::{Application, Credential, ServicePrincipal};
use crate::ports::{
    AgentRecord, AlertKey, AuditEvent, AuditQuery, Claim, DeadLetter, DueCredential, DuePosition, MessageId,
    OutgoingMessage, OwnerSnapshot, Queue, QueueDepth, QueueName, ReceiptHandle, ReceivedMessage, SealedRecord, Store,
    SyncCounts, SyncState,
};
use crate::{Error, Result};

/// How many more calls fail, and which.
type Fault = (u32, Box<dyn Fn(&str) -> bool + Send>);

/// A process crash at a chosen durable write, shared by a [`FlakyStore`] and a [`FlakyQueue`]:
/// armed with `n`, the `n`-th write (a store write or a queue send, delete or visibility change)
/// takes effect and then the process is down — every later call of either fails, as nothing of a
/// dead process reaches the store or the queue — until [`Crash::restart`]. Messages a worker held
/// come back after their visibility timeout, as after a real restart.
#[derive(Debug, Default)]
pub struct Crash {
    /// Writes left before the crash; negative when not armed.
    left: std::sync::atomic::AtomicI64,
    down: AtomicBool,
    writes: std::sync::atomic::AtomicU64,
}

impl Crash {
    pub fn new() -> Arc<Self> {
        Arc::new(Self { left: (-1).into(), ..Default::default() })
    }

    /// Crashes right after the `n`-th durable write from now (`n` ≥ 1).
    pub fn after_writes(&self, n: u64) {
        self.left.store(i64::try_from(n).unwrap_or(i64::MAX), Ordering::SeqCst);
    }

    /// The process comes back: calls reach the store and the queue again; nothing is armed.
    pub fn restart(&self) {
        self.left.store(-1, Ordering::SeqCst);
        self.down.store(false, Ordering::SeqCst);
    }

    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::SeqCst)
    }

    /// Durable writes seen so far (those that took effect).
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    fn refuse_if_down(&self) -> Result<()> {
        if self.is_down() {
            return Err(Error::Store {
                context: "the process is down".into(),
                transient: true,
                source: "crash".into(),
            });
        }
        Ok(())
    }

    fn wrote(&self) {
        self.writes.fetch_add(1, Ordering::SeqCst);
        if self.left.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.down.store(true, Ordering::SeqCst);
        }
    }
}

/// Whether a store method writes (so a crash may come right after it).
fn writes(method: &str) -> bool {
    ["put_", "set_", "create_", "update_", "remove_", "sync_", "record_", "mark", "append_", "delete_"]
        .iter()
        .any(|p| method.starts_with(p) && method != "marked")
}

/// Wraps a store; `fail(method, n, when)` makes the next `n` calls of `method` that satisfy `when`
/// fail before reaching the store.
pub struct FlakyStore {
    inner: Arc<dyn Store>,
    faults: Mutex<HashMap<&'static str, Fault>>,
    crash: Mutex<Option<Arc<Crash>>>,
}

impl FlakyStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self { inner, faults: Mutex::new(HashMap::new()), crash: Mutex::new(None) }
    }

    /// Shares a [`Crash`] switch with this store.
    pub fn set_crash(&self, crash: Arc<Crash>) {
        *self.crash.lock().unwrap_or_else(|p| p.into_inner()) = Some(crash);
    }

    fn crash(&self) -> Option<Arc<Crash>> {
        self.crash.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn after(&self, method: &'static str) {
        if writes(method)
            && let Some(c) = self.crash()
        {
            c.wrote();
        }
    }

    /// Fails the next `n` calls of `method` whose debug text of the first argument satisfies `when`.
    pub fn fail(&self, method: &'static str, n: u32, when: impl Fn(&str) -> bool + Send + 'static) {
        self.faults.lock().unwrap_or_else(|p| p.into_inner()).insert(method, (n, Box::new(when)));
    }

    fn check(&self, method: &'static str, arg: &str) -> Result<()> {
        if let Some(c) = self.crash() {
            c.refuse_if_down()?;
        }
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
                    let out = self.inner.$name($first $(, $arg)*).await?;
                    self.after(stringify!($name));
                    Ok(out)
                }
            )*
            $(
                async fn $nname(&self) -> Result<$nret> {
                    self.check(stringify!($nname), "")?;
                    let out = self.inner.$nname().await?;
                    self.after(stringify!($nname));
                    Ok(out)
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
    due_credentials(now: OffsetDateTime, after: Option<&DuePosition>, limit: usize) -> Vec<DueCredential>;
    set_next_moments(moments: &[(Credential, Option<OffsetDateTime>)]) -> ();
    put_scan_fingerprint(fingerprint: &str) -> ();
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
    mark_once(key: &str, at: OffsetDateTime, forget_at: OffsetDateTime) -> bool;
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
    @noargs scan_fingerprint() -> Option<String>;
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

/// Wraps a queue, and records the body of every message sent through it (to search them for
/// secrets). `fail_sends_to(queue, n)` makes the next `n` sends to `queue` fail before reaching the
/// queue, standing for a crash right after the store write that precedes the send;
/// `duplicate_sends(true)` sends every message a second time, as a fresh copy without deduplication
/// id, so the queue delivers it twice (as an at-least-once queue may).
pub struct FlakyQueue {
    inner: Arc<dyn Queue>,
    fail_sends_to: Mutex<Option<(String, u32)>>,
    fail_send_where: Mutex<Option<(String, SendFilter)>>,
    duplicate: AtomicBool,
    sent: Mutex<Vec<String>>,
    crash: Mutex<Option<Arc<Crash>>>,
}

type SendFilter = Box<dyn Fn(&str) -> bool + Send>;

impl FlakyQueue {
    pub fn new(inner: Arc<dyn Queue>) -> Self {
        Self {
            inner,
            fail_sends_to: Mutex::new(None),
            fail_send_where: Mutex::new(None),
            duplicate: AtomicBool::new(false),
            sent: Mutex::new(Vec::new()),
            crash: Mutex::new(None),
        }
    }

    /// Shares a [`Crash`] switch with this queue.
    pub fn set_crash(&self, crash: Arc<Crash>) {
        *self.crash.lock().unwrap_or_else(|p| p.into_inner()) = Some(crash);
    }

    fn crash(&self) -> Option<Arc<Crash>> {
        self.crash.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn down(&self) -> Result<()> {
        match self.crash() {
            Some(c) if c.is_down() => {
                Err(Error::Queue { context: "the process is down".into(), transient: true, source: "crash".into() })
            }
            _ => Ok(()),
        }
    }

    fn wrote(&self) {
        if let Some(c) = self.crash() {
            c.wrote();
        }
    }

    /// Fails the next send to `queue` whose body satisfies `when` (a crash right before it).
    pub fn fail_send_where(&self, queue: &str, when: impl Fn(&str) -> bool + Send + 'static) {
        *self.fail_send_where.lock().unwrap_or_else(|p| p.into_inner()) = Some((queue.to_owned(), Box::new(when)));
    }

    /// Fails the next `n` sends to `queue` (and no longer those to a queue named before).
    pub fn fail_sends_to(&self, queue: &str, n: u32) {
        *self.fail_sends_to.lock().unwrap_or_else(|p| p.into_inner()) = Some((queue.to_owned(), n));
    }

    /// From now on, sends every message twice (`true`) or once (`false`).
    pub fn duplicate_sends(&self, on: bool) {
        self.duplicate.store(on, Ordering::SeqCst);
    }

    /// The body of every message sent so far (a duplicate counts once), oldest first.
    pub fn sent(&self) -> Vec<String> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[async_trait]
impl Queue for FlakyQueue {
    async fn send(&self, queue: &QueueName, message: OutgoingMessage) -> Result<MessageId> {
        self.down()?;
        {
            let mut fail = self.fail_send_where.lock().unwrap_or_else(|p| p.into_inner());
            if fail.as_ref().is_some_and(|(name, when)| name == queue.as_str() && when(&message.body)) {
                *fail = None;
                return Err(Error::Queue {
                    context: "injected crash before the send".into(),
                    transient: true,
                    source: "crash".into(),
                });
            }
        }
        {
            let mut fail = self.fail_sends_to.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((name, n)) = fail.as_mut()
                && name == queue.as_str()
                && *n > 0
            {
                *n -= 1;
                return Err(Error::Queue {
                    context: "injected crash before the send".into(),
                    transient: true,
                    source: "crash".into(),
                });
            }
        }
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).push(message.body.clone());
        let copy = self.duplicate.load(Ordering::SeqCst).then(|| OutgoingMessage {
            body: message.body.clone(),
            group: message.group.clone(),
            ..Default::default()
        });
        let id = self.inner.send(queue, message).await?;
        if let Some(copy) = copy {
            self.inner.send(queue, copy).await?;
        }
        self.wrote();
        Ok(id)
    }
    async fn receive(&self, q: &QueueName, max: usize, v: Option<Duration>) -> Result<Vec<ReceivedMessage>> {
        self.down()?;
        self.inner.receive(q, max, v).await
    }
    async fn delete(&self, q: &QueueName, r: &ReceiptHandle) -> Result<()> {
        self.down()?;
        self.inner.delete(q, r).await?;
        self.wrote();
        Ok(())
    }
    async fn change_visibility(&self, q: &QueueName, r: &ReceiptHandle, t: Duration) -> Result<()> {
        self.down()?;
        self.inner.change_visibility(q, r, t).await?;
        self.wrote();
        Ok(())
    }
    async fn record_failure(&self, q: &QueueName, r: &ReceiptHandle, e: &str) -> Result<()> {
        self.down()?;
        self.inner.record_failure(q, r, e).await?;
        self.wrote();
        Ok(())
    }
    async fn dead_letters(&self, q: &QueueName, limit: usize) -> Result<Vec<DeadLetter>> {
        self.inner.dead_letters(q, limit).await
    }
    async fn dead_letter(&self, id: &MessageId) -> Result<Option<DeadLetter>> {
        self.inner.dead_letter(id).await
    }
    async fn redrive(&self, q: &QueueName, ids: Option<&[MessageId]>) -> Result<usize> {
        self.inner.redrive(q, ids).await
    }
    async fn depth(&self, q: &QueueName) -> Result<QueueDepth> {
        self.inner.depth(q).await
    }
}

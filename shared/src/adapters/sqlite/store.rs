//! The store in SQLite: each record as a JSON document, with the columns its queries need.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{OptionalExtension, TransactionBehavior, params, params_from_iter};
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use super::rows::{
    alert_row, from_doc, opt_text, owner_kind_text, query_doc, query_docs, remove_credentials, s, text, to_doc,
    upsert_credential,
};
use super::{Db, Kind, from_millis, millis, to_error};
use crate::domain::execution::{Execution, StepRecord};
use crate::domain::ids::{AgentId, AppObjectId, CredentialId, ExecutionId, IntegrationId, OwnerKind};
use crate::domain::inventory::{Application, Credential, ServicePrincipal};
use crate::ports::{
    AgentRecord, AlertKey, AuditEvent, AuditQuery, Claim, Clock, DueCredential, DuePosition, Owner, OwnerSnapshot,
    SealedRecord, Store, SyncCounts, SyncState,
};
use crate::{Error, Result};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS applications (
    integration TEXT NOT NULL, object_id TEXT NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (integration, object_id));
CREATE TABLE IF NOT EXISTS service_principals (
    integration TEXT NOT NULL, object_id TEXT NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (integration, object_id));
CREATE TABLE IF NOT EXISTS credentials (
    id TEXT PRIMARY KEY, integration TEXT NOT NULL, owner_kind TEXT NOT NULL, owner TEXT NOT NULL,
    kind TEXT NOT NULL, removed INTEGER NOT NULL, app TEXT, end_at INTEGER, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS credentials_by_integration ON credentials (integration, end_at);
CREATE INDEX IF NOT EXISTS credentials_by_owner ON credentials (integration, owner_kind, owner);
CREATE TABLE IF NOT EXISTS marks (key TEXT PRIMARY KEY, at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS once_marks (key TEXT PRIMARY KEY, at INTEGER NOT NULL, forget_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS once_marks_by_end ON once_marks (forget_at);
CREATE TABLE IF NOT EXISTS executions (
    id TEXT PRIMARY KEY, credential TEXT NOT NULL,
    -- Set while the execution is not terminal: the UNIQUE constraint is the claim.
    active_credential TEXT UNIQUE,
    open INTEGER NOT NULL, created_at INTEGER NOT NULL, version INTEGER NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS executions_by_credential ON executions (credential, created_at);
CREATE INDEX IF NOT EXISTS executions_open ON executions (open);
CREATE TABLE IF NOT EXISTS step_records (
    execution TEXT NOT NULL, idx INTEGER NOT NULL, doc TEXT NOT NULL, PRIMARY KEY (execution, idx));
CREATE TABLE IF NOT EXISTS alerts (
    credential TEXT NOT NULL, end_at TEXT NOT NULL, threshold TEXT NOT NULL, sent_at INTEGER NOT NULL,
    PRIMARY KEY (credential, end_at, threshold));
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, credential TEXT, execution TEXT, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_by_credential ON audit (credential, seq);
CREATE INDEX IF NOT EXISTS audit_by_execution ON audit (execution, seq);
CREATE TABLE IF NOT EXISTS sealed (record_id TEXT PRIMARY KEY, execution TEXT, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS agents (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sync_state (integration TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scan_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
";

/// An owner as listed: written only when it differs from what is stored, so a sync of an
/// unchanged tenant writes nothing.
const UPSERT_APPLICATION: &str = "INSERT INTO applications (integration, object_id, doc) VALUES (?1, ?2, ?3)
    ON CONFLICT (integration, object_id) DO UPDATE SET doc = excluded.doc WHERE applications.doc IS NOT excluded.doc";
const UPSERT_SERVICE_PRINCIPAL: &str =
    "INSERT INTO service_principals (integration, object_id, doc) VALUES (?1, ?2, ?3)
    ON CONFLICT (integration, object_id) DO UPDATE SET doc = excluded.doc
    WHERE service_principals.doc IS NOT excluded.doc";

/// The embedded store. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    db: Db,
    clock: Arc<dyn Clock>,
}

impl SqliteStore {
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> Result<Self> {
        Self::init(Db::open(path, Kind::Store)?, clock)
    }

    pub fn in_memory(clock: Arc<dyn Clock>) -> Result<Self> {
        Self::init(Db::in_memory(Kind::Store)?, clock)
    }

    pub(super) fn init(db: Db, clock: Arc<dyn Clock>) -> Result<Self> {
        {
            let mut conn = db.conn.lock().unwrap_or_else(|p| p.into_inner());
            conn.execute_batch(SCHEMA).map_err(s("creating store tables"))?;
            super::migrate::migrate(&mut conn)?;
        }
        Ok(Self { db, clock })
    }
}

impl SqliteStore {
    /// One statement with owned arguments; returns the rows changed.
    async fn execute(&self, context: &'static str, sql: &'static str, args: Vec<Value>) -> Result<usize> {
        self.db.call(move |c| c.execute(sql, params_from_iter(args)).map_err(s(context))).await
    }

    async fn one<T: DeserializeOwned + Send + 'static>(
        &self,
        sql: &'static str,
        args: Vec<Value>,
    ) -> Result<Option<T>> {
        self.db.call(move |c| query_doc(c, sql, params_from_iter(args))).await
    }

    async fn many<T: DeserializeOwned + Send + 'static>(&self, sql: &'static str, args: Vec<Value>) -> Result<Vec<T>> {
        self.db.call(move |c| query_docs(c, sql, params_from_iter(args))).await
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn put_application(&self, app: &Application) -> Result<()> {
        let sql = "INSERT INTO applications (integration, object_id, doc) VALUES (?1, ?2, ?3)
                   ON CONFLICT (integration, object_id) DO UPDATE SET doc = excluded.doc";
        self.execute(
            "put application",
            sql,
            vec![text(&app.integration), text(app.object_id), Value::Text(to_doc(app)?)],
        )
        .await
        .map(drop)
    }

    async fn get_application(&self, integration: &IntegrationId, id: &AppObjectId) -> Result<Option<Application>> {
        let sql = "SELECT doc FROM applications WHERE integration = ?1 AND object_id = ?2";
        self.one(sql, vec![text(integration), text(id)]).await
    }

    async fn list_applications(&self, integration: &IntegrationId) -> Result<Vec<Application>> {
        let sql = "SELECT doc FROM applications WHERE integration = ?1 ORDER BY object_id";
        self.many(sql, vec![text(integration)]).await
    }

    async fn put_service_principal(&self, sp: &ServicePrincipal) -> Result<()> {
        let sql = "INSERT INTO service_principals (integration, object_id, doc) VALUES (?1, ?2, ?3)
                   ON CONFLICT (integration, object_id) DO UPDATE SET doc = excluded.doc";
        self.execute(
            "put service principal",
            sql,
            vec![text(&sp.integration), text(sp.object_id), Value::Text(to_doc(sp)?)],
        )
        .await
        .map(drop)
    }

    async fn list_service_principals(&self, integration: &IntegrationId) -> Result<Vec<ServicePrincipal>> {
        let sql = "SELECT doc FROM service_principals WHERE integration = ?1 ORDER BY object_id";
        self.many(sql, vec![text(integration)]).await
    }

    async fn put_credential(&self, credential: &Credential) -> Result<()> {
        let c = credential.clone();
        self.db
            .call(move |conn| {
                upsert_credential(conn, &c)?;
                Ok(())
            })
            .await
    }

    async fn get_credential(&self, id: &CredentialId) -> Result<Option<Credential>> {
        self.one("SELECT doc FROM credentials WHERE id = ?1", vec![text(id)]).await
    }

    async fn list_credentials(&self, integration: Option<&IntegrationId>) -> Result<Vec<Credential>> {
        // Credentials without an end date sort last.
        match integration {
            Some(i) => {
                let sql = "SELECT doc FROM credentials WHERE integration = ?1 ORDER BY end_at IS NULL, end_at, id";
                self.many(sql, vec![text(i)]).await
            }
            None => self.many("SELECT doc FROM credentials ORDER BY end_at IS NULL, end_at, id", vec![]).await,
        }
    }

    async fn remove_credential(&self, id: &CredentialId) -> Result<()> {
        let id = id.to_string();
        let now = self.clock.now();
        self.db
            .call(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(s("remove credential"))?;
                remove_credentials(&tx, &[id], now)?;
                tx.commit().map_err(s("remove credential"))?;
                Ok(())
            })
            .await
    }

    async fn sync_owners(&self, integration: &IntegrationId, owners: &[OwnerSnapshot]) -> Result<SyncCounts> {
        let integration = integration.to_string();
        let owners = owners.to_vec();
        let now = self.clock.now();
        self.db
            .call(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(s("sync owners"))?;
                let mut counts = SyncCounts::default();
                for snap in &owners {
                    let (sql, owner_id, doc) = match &snap.owner {
                        Owner::Application(a) => (UPSERT_APPLICATION, a.object_id.to_string(), to_doc(a)?),
                        Owner::ServicePrincipal(p) => (UPSERT_SERVICE_PRINCIPAL, p.object_id.to_string(), to_doc(p)?),
                    };
                    tx.prepare_cached(sql)
                        .and_then(|mut q| q.execute(params![integration, owner_id, doc]))
                        .map_err(s("sync owners"))?;
                    counts.owners += 1;
                    let kind = owner_kind_text(snap.owner.kind());
                    if snap.passwords.is_none() && snap.certificates.is_none() {
                        continue;
                    }
                    // One read of what the owner has, both kinds, before anything of it is written.
                    let stored: Vec<(String, String)> = {
                        let mut stmt = tx
                            .prepare_cached(
                                "SELECT id, kind FROM credentials WHERE integration = ?1 AND owner_kind = ?2
                                 AND owner = ?3 AND removed = 0",
                            )
                            .map_err(s("sync owners"))?;
                        stmt.query_map(params![integration, kind, owner_id], |r| Ok((r.get(0)?, r.get(1)?)))
                            .map_err(s("sync owners"))?
                            .collect::<rusqlite::Result<_>>()
                            .map_err(s("sync owners"))?
                    };
                    for (cred_kind, list) in [("password", &snap.passwords), ("certificate", &snap.certificates)] {
                        let Some(list) = list else { continue };
                        let keep: std::collections::HashSet<String> = list.iter().map(|c| c.id.to_string()).collect();
                        let gone: Vec<String> = stored
                            .iter()
                            .filter(|(id, k)| k == cred_kind && !keep.contains(id))
                            .map(|(id, _)| id.clone())
                            .collect();
                        counts.credentials_removed += gone.len();
                        remove_credentials(&tx, &gone, now)?;
                        for cred in list {
                            if upsert_credential(&tx, cred)? {
                                counts.credentials_written += 1;
                            }
                        }
                    }
                }
                tx.commit().map_err(s("sync owners"))?;
                Ok(counts)
            })
            .await
    }

    async fn remove_owner(&self, integration: &IntegrationId, kind: OwnerKind, id: uuid::Uuid) -> Result<usize> {
        let (i, o) = (integration.to_string(), id.hyphenated().to_string());
        let now = self.clock.now();
        self.db
            .call(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(s("remove owner"))?;
                let creds: Vec<String> = {
                    let mut stmt = tx
                        .prepare("SELECT id FROM credentials WHERE integration = ?1 AND owner_kind = ?2 AND owner = ?3")
                        .map_err(s("remove owner"))?;
                    stmt.query_map(params![i, owner_kind_text(kind), o], |r| r.get(0))
                        .map_err(s("remove owner"))?
                        .collect::<rusqlite::Result<_>>()
                        .map_err(s("remove owner"))?
                };
                remove_credentials(&tx, &creds, now)?;
                let table = match kind {
                    OwnerKind::Application => "applications",
                    OwnerKind::ServicePrincipal => "service_principals",
                };
                tx.execute(&format!("DELETE FROM {table} WHERE integration = ?1 AND object_id = ?2"), params![i, o])
                    .map_err(s("remove owner"))?;
                tx.commit().map_err(s("remove owner"))?;
                Ok(creds.len())
            })
            .await
    }

    async fn owner_ids(&self, integration: &IntegrationId, kind: OwnerKind) -> Result<Vec<uuid::Uuid>> {
        let i = integration.to_string();
        let table = match kind {
            OwnerKind::Application => "applications",
            OwnerKind::ServicePrincipal => "service_principals",
        };
        self.db
            .call(move |c| {
                let mut stmt = c
                    .prepare(&format!("SELECT object_id FROM {table} WHERE integration = ?1"))
                    .map_err(s("owner ids"))?;
                let ids: Vec<String> = stmt
                    .query_map(params![i], |r| r.get(0))
                    .map_err(s("owner ids"))?
                    .collect::<rusqlite::Result<_>>()
                    .map_err(s("owner ids"))?;
                ids.iter()
                    .map(|id| {
                        uuid::Uuid::parse_str(id).map_err(|e| Error::Store {
                            context: "decoding owner id".into(),
                            transient: false,
                            source: Box::new(e),
                        })
                    })
                    .collect()
            })
            .await
    }

    async fn credentials_page(&self, after: Option<&CredentialId>, limit: usize) -> Result<Vec<Credential>> {
        let limit = Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX));
        match after {
            Some(a) => {
                self.many("SELECT doc FROM credentials WHERE id > ?1 ORDER BY id LIMIT ?2", vec![text(a), limit]).await
            }
            None => self.many("SELECT doc FROM credentials ORDER BY id LIMIT ?1", vec![limit]).await,
        }
    }

    async fn due_credentials(
        &self,
        now: OffsetDateTime,
        after: Option<&DuePosition>,
        limit: usize,
    ) -> Result<Vec<DueCredential>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let now = millis(now);
        // Before any position: due at -1 sorts before every moment stored (the epoch is 0).
        let (after_due, after_id) = after.map_or((-1, String::new()), |a| (millis(a.due), a.id.to_string()));
        self.db
            .call(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT due_at, doc FROM credentials WHERE due_at <= ?1 AND (due_at, id) > (?2, ?3)
                         ORDER BY due_at, id LIMIT ?4",
                    )
                    .map_err(s("due credentials"))?;
                let rows: Vec<(i64, String)> = stmt
                    .query_map(params![now, after_due, after_id, limit], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(s("due credentials"))?
                    .collect::<rusqlite::Result<_>>()
                    .map_err(s("due credentials"))?;
                rows.iter()
                    .map(|(due, doc)| Ok(DueCredential { credential: from_doc(doc)?, due: from_millis(*due) }))
                    .collect()
            })
            .await
    }

    async fn set_next_moments(&self, moments: &[(Credential, Option<OffsetDateTime>)]) -> Result<()> {
        let rows = moments
            .iter()
            .map(|(c, due)| Ok((c.id.to_string(), to_doc(c)?, due.map(millis))))
            .collect::<Result<Vec<_>>>()?;
        self.db
            .call(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(s("set next moments"))?;
                {
                    let mut stmt = tx
                        .prepare_cached("UPDATE credentials SET due_at = ?3 WHERE id = ?1 AND doc = ?2")
                        .map_err(s("set next moments"))?;
                    for (id, doc, due) in &rows {
                        stmt.execute(params![id, doc, due]).map_err(s("set next moments"))?;
                    }
                }
                tx.commit().map_err(s("set next moments"))
            })
            .await
    }

    async fn scan_fingerprint(&self) -> Result<Option<String>> {
        self.db
            .call(|c| {
                c.query_row("SELECT value FROM scan_state WHERE key = 'fingerprint'", [], |r| r.get(0))
                    .optional()
                    .map_err(s("scan fingerprint"))
            })
            .await
    }

    async fn put_scan_fingerprint(&self, fingerprint: &str) -> Result<()> {
        let sql = "INSERT INTO scan_state (key, value) VALUES ('fingerprint', ?1)
                   ON CONFLICT (key) DO UPDATE SET value = excluded.value";
        self.execute("put scan fingerprint", sql, vec![text(fingerprint)]).await.map(drop)
    }

    async fn create_execution(&self, execution: &Execution) -> Result<Claim> {
        let e = execution.clone();
        self.db
            .call(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(s("create execution"))?;
                let cred = e.credential.to_string();
                let active = e.holds_claim().then(|| cred.clone());
                if active.is_some() {
                    let holder: Option<Execution> =
                        query_doc(&tx, "SELECT doc FROM executions WHERE active_credential = ?1", params![cred])?;
                    if let Some(holder) = holder {
                        return Ok(Claim::AlreadyActive(Box::new(holder)));
                    }
                }
                let inserted = tx
                    .execute(
                        "INSERT INTO executions (id, credential, active_credential, open, created_at, version, doc)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (id) DO NOTHING",
                        params![
                            e.id.to_string(),
                            cred,
                            active,
                            e.is_open(),
                            millis(e.created_at),
                            e.version as i64,
                            to_doc(&e)?
                        ],
                    )
                    .map_err(s("create execution"))?;
                if inserted == 0 {
                    return Err(Error::conflict("execution", e.id, "already exists"));
                }
                tx.commit().map_err(s("create execution"))?;
                Ok(Claim::Created)
            })
            .await
    }

    async fn get_execution(&self, id: &ExecutionId) -> Result<Option<Execution>> {
        self.one("SELECT doc FROM executions WHERE id = ?1", vec![text(id)]).await
    }

    async fn update_execution(&self, execution: &Execution) -> Result<u64> {
        let mut e = execution.clone();
        self.db
            .call(move |c| {
                let expected = e.version;
                e.version += 1;
                let active = e.holds_claim().then(|| e.credential.to_string());
                let n = c
                    .execute(
                        "UPDATE executions SET active_credential = ?2, open = ?3, version = ?4, doc = ?5
                         WHERE id = ?1 AND version = ?6",
                        params![e.id.to_string(), active, e.is_open(), e.version as i64, to_doc(&e)?, expected as i64],
                    )
                    .map_err(|err| {
                        if err.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) {
                            Error::conflict("execution", e.id, "another execution holds the credential")
                        } else {
                            to_error(Kind::Store, "update execution".into(), err)
                        }
                    })?;
                if n == 0 {
                    return Err(Error::conflict("execution", e.id, format!("version {expected} is no longer current")));
                }
                Ok(e.version)
            })
            .await
    }

    async fn list_executions(&self, credential: &CredentialId) -> Result<Vec<Execution>> {
        let sql = "SELECT doc FROM executions WHERE credential = ?1 ORDER BY created_at DESC, id DESC";
        self.many(sql, vec![text(credential)]).await
    }

    async fn list_open_executions(&self) -> Result<Vec<Execution>> {
        self.many("SELECT doc FROM executions WHERE open = 1 ORDER BY created_at", vec![]).await
    }

    async fn put_step_record(&self, record: &StepRecord) -> Result<()> {
        let sql = "INSERT INTO step_records (execution, idx, doc) VALUES (?1, ?2, ?3)
                   ON CONFLICT (execution, idx) DO UPDATE SET doc = excluded.doc";
        let args = vec![text(record.execution), Value::Integer(record.index.into()), Value::Text(to_doc(record)?)];
        self.execute("put step record", sql, args).await.map(drop)
    }

    async fn list_step_records(&self, execution: &ExecutionId) -> Result<Vec<StepRecord>> {
        self.many("SELECT doc FROM step_records WHERE execution = ?1 ORDER BY idx", vec![text(execution)]).await
    }

    async fn mark_once(&self, key: &str, at: OffsetDateTime, forget_at: OffsetDateTime) -> Result<bool> {
        // Forgotten marks go first (all of them: the index makes it cheap), then the one insert
        // that only the first caller gets to make.
        let now = Value::Integer(millis(self.clock.now()));
        self.execute("forget marks", "DELETE FROM once_marks WHERE forget_at <= ?1", vec![now]).await?;
        let sql = "INSERT INTO once_marks (key, at, forget_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING";
        let args = vec![text(key), Value::Integer(millis(at)), Value::Integer(millis(forget_at))];
        Ok(self.execute("mark once", sql, args).await? == 1)
    }

    async fn record_alert(&self, key: &AlertKey, at: OffsetDateTime) -> Result<bool> {
        let sql = "INSERT INTO alerts (credential, end_at, threshold, sent_at) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING";
        let args = vec![
            text(&key.credential),
            text(key.end.unix_timestamp()),
            text(key.threshold.key()),
            Value::Integer(millis(at)),
        ];
        Ok(self.execute("record alert", sql, args).await? == 1)
    }

    async fn alerts_recorded(&self, keys: &[AlertKey]) -> Result<Vec<bool>> {
        let keys: Vec<_> = keys.iter().map(alert_row).collect();
        self.db
            .call(move |c| {
                let mut stmt = c
                    .prepare_cached("SELECT 1 FROM alerts WHERE credential = ?1 AND end_at = ?2 AND threshold = ?3")
                    .map_err(s("alerts recorded"))?;
                keys.iter()
                    .map(|(cred, end, th)| stmt.exists(params![cred, end, th]).map_err(s("alerts recorded")))
                    .collect()
            })
            .await
    }

    async fn record_alerts(&self, keys: &[AlertKey], at: OffsetDateTime) -> Result<()> {
        let keys: Vec<_> = keys.iter().map(alert_row).collect();
        let at = millis(at);
        self.db
            .call(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(s("record alerts"))?;
                {
                    let mut stmt = tx
                        .prepare_cached(
                            "INSERT INTO alerts (credential, end_at, threshold, sent_at) VALUES (?1, ?2, ?3, ?4)
                             ON CONFLICT DO NOTHING",
                        )
                        .map_err(s("record alerts"))?;
                    for (cred, end, th) in &keys {
                        stmt.execute(params![cred, end, th, at]).map_err(s("record alerts"))?;
                    }
                }
                tx.commit().map_err(s("record alerts"))
            })
            .await
    }

    async fn marked(&self, keys: &[String]) -> Result<Vec<bool>> {
        let keys = keys.to_vec();
        self.db
            .call(move |c| {
                let mut stmt = c.prepare_cached("SELECT 1 FROM marks WHERE key = ?1").map_err(s("marked"))?;
                keys.iter().map(|k| stmt.exists(params![k]).map_err(s("marked"))).collect()
            })
            .await
    }

    async fn mark(&self, keys: &[String], at: OffsetDateTime) -> Result<()> {
        let keys = keys.to_vec();
        let at = millis(at);
        self.db
            .call(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(s("mark"))?;
                {
                    let mut stmt = tx
                        .prepare_cached("INSERT INTO marks (key, at) VALUES (?1, ?2) ON CONFLICT DO NOTHING")
                        .map_err(s("mark"))?;
                    for k in &keys {
                        stmt.execute(params![k, at]).map_err(s("mark"))?;
                    }
                }
                tx.commit().map_err(s("mark"))
            })
            .await
    }

    async fn append_audit(&self, event: &AuditEvent) -> Result<()> {
        let sql = "INSERT INTO audit (at, credential, execution, doc) VALUES (?1, ?2, ?3, ?4)";
        let args = vec![
            Value::Integer(millis(event.at)),
            opt_text(event.credential.as_ref()),
            opt_text(event.execution),
            Value::Text(to_doc(event)?),
        ];
        self.execute("append audit", sql, args).await.map(drop)
    }

    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>> {
        let limit = if query.limit == 0 { i64::MAX } else { i64::try_from(query.limit).unwrap_or(i64::MAX) };
        let sql = "SELECT doc FROM audit WHERE (?1 IS NULL OR credential = ?1) AND (?2 IS NULL OR execution = ?2)
                   ORDER BY seq DESC LIMIT ?3";
        self.many(sql, vec![opt_text(query.credential.as_ref()), opt_text(query.execution), Value::Integer(limit)])
            .await
    }

    async fn put_sealed(&self, record: &SealedRecord) -> Result<()> {
        let sql = "INSERT INTO sealed (record_id, execution, doc) VALUES (?1, ?2, ?3)
                   ON CONFLICT (record_id) DO UPDATE SET execution = excluded.execution, doc = excluded.doc";
        let args = vec![text(&record.record_id), opt_text(record.execution), Value::Text(to_doc(record)?)];
        self.execute("put sealed", sql, args).await.map(drop)
    }

    async fn get_sealed(&self, record_id: &str) -> Result<Option<SealedRecord>> {
        self.one("SELECT doc FROM sealed WHERE record_id = ?1", vec![text(record_id)]).await
    }

    async fn delete_sealed(&self, record_id: &str) -> Result<()> {
        self.execute("delete sealed", "DELETE FROM sealed WHERE record_id = ?1", vec![text(record_id)]).await.map(drop)
    }

    async fn put_agent(&self, agent: &AgentRecord) -> Result<()> {
        let sql = "INSERT INTO agents (id, doc) VALUES (?1, ?2) ON CONFLICT (id) DO UPDATE SET doc = excluded.doc";
        self.execute("put agent", sql, vec![text(agent.id), Value::Text(to_doc(agent)?)]).await.map(drop)
    }

    async fn get_agent(&self, id: &AgentId) -> Result<Option<AgentRecord>> {
        self.one("SELECT doc FROM agents WHERE id = ?1", vec![text(id)]).await
    }

    async fn list_agents(&self) -> Result<Vec<AgentRecord>> {
        self.many("SELECT doc FROM agents ORDER BY id", vec![]).await
    }

    async fn get_sync_state(&self, integration: &IntegrationId) -> Result<Option<SyncState>> {
        self.one("SELECT doc FROM sync_state WHERE integration = ?1", vec![text(integration)]).await
    }

    async fn put_sync_state(&self, state: &SyncState) -> Result<()> {
        let sql = "INSERT INTO sync_state (integration, doc) VALUES (?1, ?2)
                   ON CONFLICT (integration) DO UPDATE SET doc = excluded.doc";
        self.execute("put sync state", sql, vec![text(&state.integration), Value::Text(to_doc(state)?)]).await.map(drop)
    }
}

#[cfg(any(test, feature = "test-support"))]
impl SqliteStore {
    /// Every row of every table, one line each, as text: what a test searches to show that a value
    /// (a secret) is nowhere in the store, as the AWS tests scan the DynamoDB table.
    pub async fn contents_as_text(&self) -> Result<String> {
        self.db
            .call(|conn| {
                let mut out = String::new();
                let tables: Vec<String> = conn
                    .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                    .and_then(|mut q| q.query_map([], |r| r.get(0))?.collect())
                    .map_err(s("listing tables"))?;
                for table in tables {
                    let mut q = conn.prepare(&format!("SELECT * FROM \"{table}\"")).map_err(s("reading a table"))?;
                    let columns = q.column_count();
                    let mut rows = q.query([]).map_err(s("reading a table"))?;
                    while let Some(row) = rows.next().map_err(s("reading a row"))? {
                        let mut line = format!("{table}:");
                        for i in 0..columns {
                            // Text as it is stored, not escaped, so a search finds what was written.
                            match row.get::<_, Value>(i).map_err(s("reading a column"))? {
                                Value::Null => line.push_str(" NULL"),
                                Value::Integer(n) => line.push_str(&format!(" {n}")),
                                Value::Real(x) => line.push_str(&format!(" {x}")),
                                Value::Text(t) => line.push_str(&format!(" {t}")),
                                Value::Blob(b) => line.push_str(&format!(" {}", String::from_utf8_lossy(&b))),
                            }
                        }
                        out.push_str(&line);
                        out.push('\n');
                    }
                }
                Ok(out)
            })
            .await
    }
}

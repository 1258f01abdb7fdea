//! The store's schema version (`PRAGMA user_version`, which belongs to the store: the queue's
//! tables in the same file have none), and the steps that bring a database file an older
//! entra-rotator wrote up to the layout this one writes, each in one transaction with the version
//! it reaches.

use rusqlite::{Connection, TransactionBehavior, params};

use super::rows::{from_doc, query_doc, s, to_doc};
use crate::domain::ids::CredentialKind;
use crate::domain::inventory::Credential;
use crate::ports::SyncState;
use crate::{Error, Result};

/// The layout this code reads and writes. 1: a certificate's id says it is a certificate
/// (`…/cert/<key-id>`), apart from a password with the same key id. 2: each credential's next
/// moment of interest is indexed (`due_at`, milliseconds; NULL never), for the expiry scan.
pub(super) const SCHEMA_VERSION: i64 = 2;

/// Brings the database to [`SCHEMA_VERSION`]. The version is read inside the transaction, so two
/// processes opening one file at once migrate it once. A file of a newer version is refused, so
/// an older entra-rotator never writes an old layout into it.
pub(super) fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(s("migrating the store"))?;
    let version: i64 =
        tx.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(s("reading the schema version"))?;
    if version > SCHEMA_VERSION {
        return Err(Error::Store {
            context: format!("the database has schema version {version}"),
            transient: false,
            source: format!("this entra-rotator reads schema version {SCHEMA_VERSION} and older: upgrade it").into(),
        });
    }
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    let mut moved = 0;
    if version < 1 {
        moved += certificates_get_their_own_ids(&tx)?;
    }
    if version < 2 {
        credentials_get_a_due_index(&tx)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(s("recording the schema version"))?;
    tx.commit().map_err(s("migrating the store"))?;
    tracing::info!(from = version, to = SCHEMA_VERSION, certificates = moved, "store migrated");
    Ok(())
}

/// Version 0 to 1: every certificate stored under a password's id (`…/<key-id>`) moves to its own
/// (`…/cert/<key-id>`), with the alerts sent for it. Before version 1 a certificate that shared a
/// password's key id overwrote the password's row (the document, not the `kind` column), so the
/// document says what the row holds; the password is gone, and only a full sync brings it back:
/// an integration that had any certificate moved drops its delta links.
fn certificates_get_their_own_ids(tx: &rusqlite::Transaction<'_>) -> Result<usize> {
    let rows: Vec<(String, String)> = {
        let mut stmt = tx.prepare("SELECT id, doc FROM credentials ORDER BY id").map_err(s("migrate credentials"))?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(s("migrate credentials"))?
            .collect::<rusqlite::Result<_>>()
            .map_err(s("migrate credentials"))?
    };
    let mut integrations = std::collections::BTreeSet::new();
    let mut moved = 0;
    for (old, doc) in rows {
        let mut c: Credential = from_doc(&doc)?;
        if c.kind != CredentialKind::Certificate || c.id.kind == CredentialKind::Certificate {
            continue;
        }
        c.id = c.id.with_kind(CredentialKind::Certificate);
        let new = c.id.to_string();
        tx.execute(
            "UPDATE credentials SET id = ?2, kind = 'certificate', doc = ?3 WHERE id = ?1",
            params![old, new, to_doc(&c)?],
        )
        .map_err(s("migrate credentials"))?;
        tx.execute("UPDATE alerts SET credential = ?2 WHERE credential = ?1", params![old, new])
            .map_err(s("migrate alerts"))?;
        integrations.insert(c.id.integration.to_string());
        moved += 1;
    }
    for integration in integrations {
        let state: Option<SyncState> =
            query_doc(tx, "SELECT doc FROM sync_state WHERE integration = ?1", params![integration])?;
        if let Some(mut state) = state {
            state.applications_delta_link = None;
            state.service_principals_delta_link = None;
            tx.execute("UPDATE sync_state SET doc = ?2 WHERE integration = ?1", params![integration, to_doc(&state)?])
                .map_err(s("migrate sync state"))?;
        }
    }
    Ok(moved)
}

/// Version 1 to 2: the due index. Every credential starts due, so the first scan looks at each
/// one and stores its real next moment (it would anyway: no scan fingerprint is recorded yet).
fn credentials_get_a_due_index(tx: &rusqlite::Transaction<'_>) -> Result<()> {
    tx.execute_batch(
        "ALTER TABLE credentials ADD COLUMN due_at INTEGER;
         UPDATE credentials SET due_at = 0;
         CREATE INDEX credentials_due ON credentials (due_at, id);",
    )
    .map_err(s("adding the due index"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rusqlite::{Connection, params};
    use time::macros::datetime;

    use super::SCHEMA_VERSION;
    use crate::Error;
    use crate::adapters::sqlite::SqliteStore;
    use crate::domain::ids::{CredentialId, CredentialKind, IntegrationId};
    use crate::domain::lifecycle::AlertThreshold;
    use crate::ports::{AlertKey, Owner, OwnerSnapshot, Store};
    use crate::testing::fakes::ManualClock;

    const SP: &str = "5b4e0a6c-1d2e-4f3a-8b9c-0d1e2f3a4b5c";
    const APP: &str = "7c6d5e4f-3a2b-4c1d-9e8f-7a6b5c4d3e2f";
    const CLIENT: &str = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
    const SHARED_KEY: &str = "11111111-2222-4333-8444-555555555555";
    const APP_PASSWORD_KEY: &str = "22222222-3333-4444-8555-666666666666";
    const APP_CERT_KEY: &str = "33333333-4444-4555-8666-777777777777";

    /// A credential's document exactly as entra-rotator wrote it before schema version 1.
    fn v0_doc(id: &str, kind: &str, thumbprint: Option<&str>) -> String {
        let thumbprint = thumbprint.map_or("null".to_owned(), |t| format!("\"{t}\""));
        format!(
            r#"{{"id":"{id}","kind":"{kind}","app":null,"client_id":"{CLIENT}","display_name":"CN=sso","hint":null,"start":"2026-01-01T00:00:00Z","end":"2027-01-01T00:00:00Z","thumbprint":{thumbprint},"removed_at":null}}"#
        )
    }

    /// A database file as entra-rotator left it before schema version 1 (`user_version` 0): the
    /// tables the migration reads, written by raw SQL as that code wrote them. The service
    /// principal's password and certificate shared a key id, so they were one row: the
    /// certificate's document under the password's `kind` column.
    fn write_v0_database(path: &std::path::Path) {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(
            "CREATE TABLE credentials (
                 id TEXT PRIMARY KEY, integration TEXT NOT NULL, owner_kind TEXT NOT NULL, owner TEXT NOT NULL,
                 kind TEXT NOT NULL, removed INTEGER NOT NULL, app TEXT, end_at INTEGER, doc TEXT NOT NULL);
             CREATE TABLE alerts (
                 credential TEXT NOT NULL, end_at TEXT NOT NULL, threshold TEXT NOT NULL, sent_at INTEGER NOT NULL,
                 PRIMARY KEY (credential, end_at, threshold));
             CREATE TABLE sync_state (integration TEXT PRIMARY KEY, doc TEXT NOT NULL);",
        )
        .unwrap();
        let end_ms = 1_798_761_600_000_i64;
        let rows = [
            (
                format!("contoso/sp/{SP}/{SHARED_KEY}"),
                "sp",
                SP,
                "password",
                v0_doc(&format!("contoso/sp/{SP}/{SHARED_KEY}"), "certificate", Some("q83vEjRWeJq83vEjRWeJq83vEjQ=")),
            ),
            (
                format!("contoso/app/{APP}/{APP_PASSWORD_KEY}"),
                "app",
                APP,
                "password",
                v0_doc(&format!("contoso/app/{APP}/{APP_PASSWORD_KEY}"), "password", None),
            ),
            (
                format!("contoso/app/{APP}/{APP_CERT_KEY}"),
                "app",
                APP,
                "certificate",
                v0_doc(&format!("contoso/app/{APP}/{APP_CERT_KEY}"), "certificate", Some("3q2+7w==")),
            ),
        ];
        for (id, owner_kind, owner, kind, doc) in rows {
            conn.execute(
                "INSERT INTO credentials (id, integration, owner_kind, owner, kind, removed, app, end_at, doc)
                 VALUES (?1, 'contoso', ?2, ?3, ?4, 0, NULL, ?5, ?6)",
                params![id, owner_kind, owner, kind, end_ms, doc],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO alerts (credential, end_at, threshold, sent_at) VALUES (?1, '1798761600', '30d', 1)",
            params![format!("contoso/app/{APP}/{APP_CERT_KEY}")],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO sync_state (integration, doc) VALUES ('contoso', ?1)",
            params![
                r#"{"integration":"contoso","applications_delta_link":"https://graph/apps?$deltatoken=a","service_principals_delta_link":"https://graph/sps?$deltatoken=s","last_full_sync":"2026-11-01T00:00:00Z","last_delta_sync":null}"#
            ],
        )
        .unwrap();
    }

    fn open(path: &std::path::Path) -> crate::Result<SqliteStore> {
        SqliteStore::open(path, Arc::new(ManualClock::new(datetime!(2026-11-22 12:00 UTC))))
    }

    fn id(s: &str) -> CredentialId {
        CredentialId::parse(s).unwrap()
    }

    #[tokio::test]
    async fn opening_a_database_from_before_schema_versions_gives_certificates_their_own_ids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rotator.db");
        write_v0_database(&path);
        let store = open(&path).unwrap();

        let i = IntegrationId::parse("contoso").unwrap();
        let listed = store.list_credentials(Some(&i)).await.unwrap();
        let mut found: Vec<(String, CredentialKind)> = listed.iter().map(|c| (c.id.to_string(), c.kind)).collect();
        found.sort();
        let mut want = vec![
            (format!("contoso/app/{APP}/{APP_PASSWORD_KEY}"), CredentialKind::Password),
            (format!("contoso/app/{APP}/cert/{APP_CERT_KEY}"), CredentialKind::Certificate),
            (format!("contoso/sp/{SP}/cert/{SHARED_KEY}"), CredentialKind::Certificate),
        ];
        want.sort();
        assert_eq!(found, want, "nothing lost, every certificate under its own id");
        assert!(listed.iter().all(|c| c.id.kind == c.kind));
        let password = id(&format!("contoso/app/{APP}/{APP_PASSWORD_KEY}"));
        assert_eq!(
            store.get_credential(&password).await.unwrap().map(|c| c.id),
            Some(password),
            "a password keeps its id"
        );

        // The certificate's alert moved with it, so it is not sent again.
        let certificate = id(&format!("contoso/app/{APP}/cert/{APP_CERT_KEY}"));
        let alert = AlertKey {
            credential: certificate,
            end: datetime!(2027-01-01 00:00 UTC),
            threshold: AlertThreshold::DaysBefore(30),
        };
        assert_eq!(store.alerts_recorded(&[alert]).await.unwrap(), vec![true]);

        // The password the certificate overwrote comes back with the next sync, which is full.
        let state = store.get_sync_state(&i).await.unwrap().unwrap();
        assert_eq!((state.applications_delta_link, state.service_principals_delta_link), (None, None));
        assert_eq!(state.last_full_sync, Some(datetime!(2026-11-01 00:00 UTC)));

        let mut sp_certificate =
            store.get_credential(&id(&format!("contoso/sp/{SP}/cert/{SHARED_KEY}"))).await.unwrap().unwrap();
        let mut sp_password = sp_certificate.clone();
        sp_password.id = sp_password.id.with_kind(CredentialKind::Password);
        sp_password.kind = CredentialKind::Password;
        sp_password.thumbprint = None;
        sp_certificate.display_name = Some("CN=sso (renewed)".into());
        let sp = crate::domain::inventory::ServicePrincipal {
            integration: i.clone(),
            object_id: crate::domain::ids::ServicePrincipalId::parse(SP).unwrap(),
            client_id: sp_certificate.client_id,
            display_name: "SAML app".into(),
        };
        let snapshot = OwnerSnapshot {
            owner: Owner::ServicePrincipal(sp),
            passwords: Some(vec![sp_password.clone()]),
            certificates: Some(vec![sp_certificate.clone()]),
        };
        let counts = store.sync_owners(&i, &[snapshot]).await.unwrap();
        assert_eq!(counts.credentials_removed, 0);
        assert_eq!(store.get_credential(&sp_password.id).await.unwrap(), Some(sp_password));
        assert_eq!(store.get_credential(&sp_certificate.id).await.unwrap(), Some(sp_certificate));
        assert_eq!(store.list_credentials(Some(&i)).await.unwrap().len(), 4);
        drop(store);

        // Opening again migrates nothing twice.
        let again = open(&path).unwrap();
        assert_eq!(again.list_credentials(Some(&i)).await.unwrap().len(), 4);
        let version: i64 = Connection::open(&path).unwrap().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[tokio::test]
    async fn a_database_of_a_newer_schema_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rotator.db");
        Connection::open(&path).unwrap().pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        let refused = open(&path).err().expect("a newer database is refused");
        assert!(matches!(refused, Error::Store { transient: false, .. }));
        assert!(refused.to_string().contains("schema version"), "{refused}");
    }
}

//! How the store's records become rows and back: JSON documents, the columns queries need, and
//! the removals that follow a credential out of the inventory.

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use super::{Kind, millis, to_error};
use crate::domain::execution::Execution;
use crate::domain::ids::OwnerKind;
use crate::domain::inventory::{Credential, CredentialKind};
use crate::ports::AlertKey;
use crate::{Error, Result};

pub(super) fn s(context: &'static str) -> impl Fn(rusqlite::Error) -> Error {
    move |e| to_error(Kind::Store, context.to_owned(), e)
}

pub(super) fn to_doc<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Store {
        context: "encoding record".into(),
        transient: false,
        source: Box::new(e),
    })
}

pub(super) fn from_doc<T: DeserializeOwned>(doc: &str) -> Result<T> {
    serde_json::from_str(doc).map_err(|e| Error::Store {
        context: "decoding record".into(),
        transient: false,
        source: Box::new(e),
    })
}

pub(super) fn query_docs<T: DeserializeOwned>(
    conn: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(s("query"))?;
    let docs: Vec<String> =
        stmt.query_map(args, |r| r.get(0)).map_err(s("query"))?.collect::<rusqlite::Result<_>>().map_err(s("query"))?;
    docs.iter().map(|d| from_doc(d)).collect()
}

pub(super) fn query_doc<T: DeserializeOwned>(
    conn: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
) -> Result<Option<T>> {
    let doc: Option<String> = conn.query_row(sql, args, |r| r.get(0)).optional().map_err(s("query"))?;
    doc.map(|d| from_doc(&d)).transpose()
}

/// Removes what hangs off credentials that leave the inventory: alerts, the claim of any
/// execution still rotating them (cancelled, since its target is gone) and their sealed copies.
pub(super) fn remove_credentials(tx: &rusqlite::Transaction<'_>, ids: &[String], now: OffsetDateTime) -> Result<()> {
    for id in ids {
        tx.execute("DELETE FROM alerts WHERE credential = ?1", params![id]).map_err(s("remove credential"))?;
        let open: Vec<Execution> = query_docs(
            tx,
            "SELECT doc FROM executions WHERE credential = ?1 AND active_credential IS NOT NULL",
            params![id],
        )?;
        for mut e in open {
            e.cancel_for_removed_credential(now);
            tx.execute(
                "UPDATE executions SET active_credential = NULL, open = 0, version = ?2, doc = ?3 WHERE id = ?1",
                params![e.id.to_string(), e.version as i64, to_doc(&e)?],
            )
            .map_err(s("remove credential"))?;
            tx.execute("DELETE FROM sealed WHERE execution = ?1", params![e.id.to_string()])
                .map_err(s("remove credential"))?;
        }
        tx.execute("DELETE FROM credentials WHERE id = ?1", params![id]).map_err(s("remove credential"))?;
    }
    Ok(())
}

pub(super) fn owner_kind_text(kind: OwnerKind) -> &'static str {
    match kind {
        OwnerKind::Application => "app",
        OwnerKind::ServicePrincipal => "sp",
    }
}

pub(super) fn alert_row(key: &AlertKey) -> (String, String, String) {
    (key.credential.to_string(), key.end.unix_timestamp().to_string(), key.threshold.key())
}

/// Writes the credential unless it is stored exactly so already; a new or changed one is indexed
/// as due at once (`due_at` 0), for the next scan to look at. Whether it was written.
pub(super) fn upsert_credential(conn: &Connection, c: &Credential) -> Result<bool> {
    let kind = match c.kind {
        CredentialKind::Password => "password",
        CredentialKind::Certificate => "certificate",
    };
    let changed = conn
        .prepare_cached(
            "INSERT INTO credentials (id, integration, owner_kind, owner, kind, removed, app, end_at, due_at, doc)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9)
             ON CONFLICT (id) DO UPDATE SET removed = excluded.removed, app = excluded.app, end_at = excluded.end_at,
                 due_at = 0, doc = excluded.doc
             WHERE credentials.doc IS NOT excluded.doc",
        )
        .map_err(s("put credential"))?
        .execute(params![
            c.id.to_string(),
            c.id.integration.to_string(),
            owner_kind_text(c.id.owner_kind),
            c.id.owner.hyphenated().to_string(),
            kind,
            c.removed_at.is_some(),
            c.app.map(|a| a.to_string()),
            c.end.map(millis),
            to_doc(c)?
        ])
        .map_err(s("put credential"))?;
    Ok(changed > 0)
}

pub(super) fn text(v: impl ToString) -> Value {
    Value::Text(v.to_string())
}

pub(super) fn opt_text(v: Option<impl ToString>) -> Value {
    v.map(text).unwrap_or(Value::Null)
}

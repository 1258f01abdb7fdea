//! The table's schema version, and the steps that bring items an older entra-rotator wrote up to
//! the layout this one writes. Every step is a sequence of idempotent writes, safe to run from
//! several functions at once and again after a failure part-way; the version is written last.

use std::collections::HashMap;

use entra_rotator::domain::ids::{CredentialKind, IntegrationId};
use entra_rotator::domain::inventory::Credential;
use entra_rotator::ports::SyncState;
use entra_rotator::{Error, Result};

use super::DynamoStore;
use super::items::{Item, doc_item, from_item, key_of, n, s};
use super::keys::{INTEGRATIONS, PK, SK, VERSION, alert_pk, credential_pk, schema_key, sync_key};
use super::records;

/// The layout this code reads and writes. 1: a certificate's id (and so its item's key) says it
/// is a certificate (`…/cert/<key-id>`), apart from a password with the same key id.
pub const SCHEMA_VERSION: u64 = 1;

/// What a migration did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Migrated {
    /// The schema version the table had before.
    pub from: u64,
    /// Certificates moved to their own ids.
    pub certificates: usize,
}

impl DynamoStore {
    /// Brings the table to [`SCHEMA_VERSION`]: what the store's credential and alert calls do once
    /// per process before anything else, and what an operator (or a test) may call directly. A
    /// table of a newer version is refused, so an older entra-rotator never writes an old layout
    /// into it.
    pub async fn migrate(&self) -> Result<Migrated> {
        let from = self.schema_version().await?;
        if from > SCHEMA_VERSION {
            return Err(Error::Store {
                context: format!("table {} has schema version {from}", self.table),
                transient: false,
                source: format!("this entra-rotator reads schema version {SCHEMA_VERSION} and older: upgrade it")
                    .into(),
            });
        }
        let mut migrated = Migrated { from, certificates: 0 };
        if from < 1 {
            migrated.certificates = certificates_get_their_own_ids(self).await?;
        }
        if from < SCHEMA_VERSION {
            let (pk, sk) = schema_key();
            let item = HashMap::from([
                (PK.to_owned(), s(pk)),
                (SK.to_owned(), s(sk)),
                (VERSION.to_owned(), n(SCHEMA_VERSION)),
            ]);
            self.put("record schema version", item).await?;
            tracing::info!(table = %self.table, from, to = SCHEMA_VERSION, certificates = migrated.certificates, "table migrated");
        }
        Ok(migrated)
    }

    async fn schema_version(&self) -> Result<u64> {
        let Some(item) = self.get("read schema version", schema_key()).await? else {
            // No version item: the layout from before versions, or a new table (nothing to move).
            return Ok(0);
        };
        item.get(VERSION)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| crate::error::decode("read schema version", "the version item has no number"))
    }

    /// Runs [`DynamoStore::migrate`] once per process; a failure is returned and tried again by
    /// the next call.
    pub(super) async fn ready(&self) -> Result<()> {
        self.schema.get_or_try_init(|| async { self.migrate().await.map(drop) }).await.map(drop)
    }
}

/// Version 0 to 1: every certificate stored under a password's id (`…/<key-id>`) moves to its own
/// (`…/cert/<key-id>`), with the alerts sent for it; the old item is deleted last, so a retry
/// finds what is left. An integration that had any is synced in full next time (its delta links
/// are dropped): before version 1 a password sharing a certificate's key id was overwritten by it,
/// and only a full sync brings it back.
async fn certificates_get_their_own_ids(store: &DynamoStore) -> Result<usize> {
    let mut moved = 0;
    let registry = store.collect("migrate: list integrations", store.partition(INTEGRATIONS, None), None).await?;
    for entry in &registry {
        let Some(name) = entry.get(SK).and_then(|v| v.as_s().ok()) else { continue };
        let integration = IntegrationId::parse(name).map_err(|e| crate::error::decode("migrate: integration", e))?;
        let items = store
            .collect("migrate: list credentials", store.partition(credential_pk(&integration), None), None)
            .await?;
        let mut in_integration = 0;
        for item in &items {
            let mut c: Credential = from_item(item)?;
            if c.kind != CredentialKind::Certificate || c.id.kind == CredentialKind::Certificate {
                continue;
            }
            let old = c.id.clone();
            c.id = old.clone().with_kind(CredentialKind::Certificate);
            store
                .put("migrate: move certificate", doc_item(credential_pk(&integration), c.id.to_string(), &c)?)
                .await?;
            let alerts = store.collect("migrate: list alerts", store.partition(alert_pk(&old), None), None).await?;
            let renamed: Vec<Item> = alerts
                .iter()
                .cloned()
                .map(|mut a| {
                    a.insert(PK.to_owned(), s(alert_pk(&c.id)));
                    a
                })
                .collect();
            store.batch_put("migrate: move certificate alerts", renamed).await?;
            store.batch_delete("migrate: move certificate alerts", alerts.iter().filter_map(key_of).collect()).await?;
            store.delete("migrate: move certificate", (credential_pk(&integration), old.to_string())).await?;
            in_integration += 1;
        }
        if in_integration > 0 {
            forget_delta_links(store, &integration).await?;
        }
        moved += in_integration;
    }
    Ok(moved)
}

async fn forget_delta_links(store: &DynamoStore, integration: &IntegrationId) -> Result<()> {
    let state: Option<SyncState> = store.get_doc("migrate: read sync state", sync_key(integration)).await?;
    if let Some(mut state) = state {
        state.applications_delta_link = None;
        state.service_principals_delta_link = None;
        records::put_sync_state(store, &state).await?;
    }
    Ok(())
}

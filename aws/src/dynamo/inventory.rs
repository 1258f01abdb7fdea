//! The inventory: applications, service principals and their credentials, kept per integration,
//! and the registry of integrations that listings across integrations read.

use std::collections::{HashMap, HashSet};

use entra_rotator::Result;
use entra_rotator::domain::ids::{AppObjectId, CredentialId, IntegrationId, OwnerKind};
use entra_rotator::domain::inventory::{Application, Credential, CredentialKind, ServicePrincipal};
use entra_rotator::ports::{DueCredential, DuePosition, Owner, OwnerSnapshot, SyncCounts};
use time::OffsetDateTime;

use super::items::{Item, doc_item, from_item, from_items, key_of, s, text_attribute};
use super::keys::{
    DOC, GSI2, GSI2_PK, GSI2_SK, INTEGRATIONS, PK, SK, alert_pk, credential_pk, due_of_sk, due_pk, due_sk, millis,
    owner_credentials_prefix, owner_pk, time_key,
};
use super::{DynamoStore, executions};
use crate::error;

/// Adds the integration to the registry that listings across integrations read, once per
/// process. Called before its credentials are written, so none is ever unlisted.
async fn register(store: &DynamoStore, integration: &IntegrationId) -> Result<()> {
    let known = store.registered.lock().unwrap_or_else(|p| p.into_inner()).contains(integration);
    if known {
        return Ok(());
    }
    let item = HashMap::from([(PK.to_owned(), s(INTEGRATIONS)), (SK.to_owned(), s(integration.to_string()))]);
    store.put("register integration", item).await?;
    store.registered.lock().unwrap_or_else(|p| p.into_inner()).insert(integration.clone());
    Ok(())
}

/// Every integration that has had credentials, in the order of their credential ids (an id
/// starts with `<integration>/`, so `contoso-x/…` comes before `contoso/…`).
async fn integrations(store: &DynamoStore) -> Result<Vec<IntegrationId>> {
    let items = store.collect("list integrations", store.partition(INTEGRATIONS, None), None).await?;
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

/// A credential's item, indexed as due at once (the epoch) in the due index, so the next scan
/// looks at it and indexes it under its real next moment.
fn credential_item(c: &Credential) -> Result<Item> {
    let mut item = doc_item(credential_pk(&c.id.integration), c.id.to_string(), c)?;
    item.insert(GSI2_PK.to_owned(), s(due_pk(&c.id.integration)));
    item.insert(GSI2_SK.to_owned(), s(due_sk(OffsetDateTime::UNIX_EPOCH, &c.id)));
    Ok(item)
}

/// Owners whose stored credentials are read at once while a page is synced.
const OWNER_READS: usize = 8;

async fn owner_credentials(
    store: &DynamoStore,
    integration: &IntegrationId,
    kind: OwnerKind,
    owner: uuid::Uuid,
) -> Result<Vec<Credential>> {
    let prefix = owner_credentials_prefix(integration, kind, owner);
    let q = store.partition(credential_pk(integration), Some(&prefix));
    from_items(&store.collect("list owner credentials", q, None).await?)
}

/// Removes what hangs off credentials that leave the inventory: their alerts, the claim of
/// any execution still rotating them (cancelled, since its target is gone) with that
/// execution's sealed copies, and then the credentials themselves, last, so that a retry
/// after a failure part-way finds them again.
async fn remove_credentials(store: &DynamoStore, ids: &[CredentialId]) -> Result<()> {
    for id in ids {
        let alerts = store.partition(alert_pk(id), None).projection_expression("pk, sk");
        let keys = store.collect("remove credential alerts", alerts, None).await?.iter().filter_map(key_of).collect();
        store.batch_delete("remove credential alerts", keys).await?;
        executions::cancel_claim(store, id).await?;
        store.delete("remove credential", (credential_pk(&id.integration), id.to_string())).await?;
    }
    Ok(())
}

fn credential_sort_key(c: &Credential) -> (bool, Option<i64>, String) {
    // Soonest end first, no end date last, then by id: as the SQLite store orders them.
    (c.end.is_none(), c.end.map(millis), c.id.to_string())
}

pub(super) async fn put_application(store: &DynamoStore, app: &Application) -> Result<()> {
    let item = doc_item(owner_pk(&app.integration, OwnerKind::Application), app.object_id.to_string(), app)?;
    store.put("put application", item).await
}

pub(super) async fn get_application(
    store: &DynamoStore,
    integration: &IntegrationId,
    id: &AppObjectId,
) -> Result<Option<Application>> {
    store.get_doc("get application", (owner_pk(integration, OwnerKind::Application), id.to_string())).await
}

pub(super) async fn list_applications(store: &DynamoStore, integration: &IntegrationId) -> Result<Vec<Application>> {
    let q = store.partition(owner_pk(integration, OwnerKind::Application), None);
    from_items(&store.collect("list applications", q, None).await?)
}

pub(super) async fn put_service_principal(store: &DynamoStore, sp: &ServicePrincipal) -> Result<()> {
    let item = doc_item(owner_pk(&sp.integration, OwnerKind::ServicePrincipal), sp.object_id.to_string(), sp)?;
    store.put("put service principal", item).await
}

pub(super) async fn list_service_principals(
    store: &DynamoStore,
    integration: &IntegrationId,
) -> Result<Vec<ServicePrincipal>> {
    let q = store.partition(owner_pk(integration, OwnerKind::ServicePrincipal), None);
    from_items(&store.collect("list service principals", q, None).await?)
}

pub(super) async fn put_credential(store: &DynamoStore, credential: &Credential) -> Result<()> {
    register(store, &credential.id.integration).await?;
    store.put("put credential", credential_item(credential)?).await
}

pub(super) async fn get_credential(store: &DynamoStore, id: &CredentialId) -> Result<Option<Credential>> {
    store.get_doc("get credential", (credential_pk(&id.integration), id.to_string())).await
}

pub(super) async fn list_credentials(
    store: &DynamoStore,
    integration: Option<&IntegrationId>,
) -> Result<Vec<Credential>> {
    let integrations = match integration {
        Some(i) => vec![i.clone()],
        None => integrations(store).await?,
    };
    let mut out: Vec<Credential> = Vec::new();
    for i in &integrations {
        out.extend(from_items(
            &store.collect("list credentials", store.partition(credential_pk(i), None), None).await?,
        )?);
    }
    out.sort_by_cached_key(credential_sort_key);
    Ok(out)
}

pub(super) async fn remove_credential(store: &DynamoStore, id: &CredentialId) -> Result<()> {
    remove_credentials(store, std::slice::from_ref(id)).await
}

/// One page of owners: what is stored of them is read first (the owners in batches, each one's
/// credentials a few owners at a time), then only what changed is written, in batches of 25.
pub(super) async fn sync_owners(
    store: &DynamoStore,
    integration: &IntegrationId,
    owners: &[OwnerSnapshot],
) -> Result<SyncCounts> {
    let mut counts = SyncCounts::default();
    // Before any of its credentials is written, so none is ever unlisted.
    register(store, integration).await?;
    let owner_items = owners
        .iter()
        .map(|snap| match &snap.owner {
            Owner::Application(a) => doc_item(owner_pk(integration, snap.owner.kind()), a.object_id.to_string(), a),
            Owner::ServicePrincipal(p) => {
                doc_item(owner_pk(integration, snap.owner.kind()), p.object_id.to_string(), p)
            }
        })
        .collect::<Result<Vec<Item>>>()?;
    let owner_keys: Vec<(String, String)> = owner_items.iter().filter_map(key_of).collect();
    let stored_owners = store.get_many("sync owners", &owner_keys, None).await?;
    // Read before anything of these owners is written, as the SQLite store compares against
    // what was stored.
    let mut stored_credentials: Vec<Vec<Item>> = Vec::with_capacity(owners.len());
    for chunk in owners.chunks(OWNER_READS) {
        let reads = chunk.iter().map(|snap| async move {
            if snap.passwords.is_none() && snap.certificates.is_none() {
                return Ok(Vec::new());
            }
            let prefix = owner_credentials_prefix(integration, snap.owner.kind(), snap.owner.id());
            let q = store.partition(credential_pk(integration), Some(&prefix));
            store.collect("list owner credentials", q, None).await
        });
        stored_credentials.extend(futures::future::try_join_all(reads).await?);
    }

    let mut items = Vec::new();
    for ((snap, owner_item), stored) in owners.iter().zip(owner_items).zip(stored_credentials) {
        counts.owners += 1;
        let unchanged = key_of(&owner_item)
            .and_then(|k| stored_owners.get(&k))
            .is_some_and(|old| text_attribute(old, DOC) == text_attribute(&owner_item, DOC));
        if !unchanged {
            items.push(owner_item);
        }
        let stored_docs: HashMap<&str, &str> =
            stored.iter().filter_map(|i| Some((text_attribute(i, SK)?, text_attribute(i, DOC)?))).collect();
        let stored: Vec<Credential> = from_items(&stored)?;
        for (cred_kind, list) in
            [(CredentialKind::Password, &snap.passwords), (CredentialKind::Certificate, &snap.certificates)]
        {
            let Some(list) = list else { continue };
            let keep: HashSet<&CredentialId> = list.iter().map(|c| &c.id).collect();
            // Credentials entra-rotator removed itself (Cleaned Up) stay as records.
            let gone: Vec<CredentialId> = stored
                .iter()
                .filter(|c| c.kind == cred_kind && c.removed_at.is_none() && !keep.contains(&c.id))
                .map(|c| c.id.clone())
                .collect();
            counts.credentials_removed += gone.len();
            remove_credentials(store, &gone).await?;
            for c in list {
                register(store, &c.id.integration).await?;
                let item = credential_item(c)?;
                let id = c.id.to_string();
                if stored_docs.get(id.as_str()).copied() == text_attribute(&item, DOC) {
                    continue;
                }
                items.push(item);
                counts.credentials_written += 1;
            }
        }
    }
    store.batch_put("sync owners", items).await?;
    Ok(counts)
}

pub(super) async fn remove_owner(
    store: &DynamoStore,
    integration: &IntegrationId,
    kind: OwnerKind,
    id: uuid::Uuid,
) -> Result<usize> {
    let ids: Vec<CredentialId> =
        owner_credentials(store, integration, kind, id).await?.into_iter().map(|c| c.id).collect();
    remove_credentials(store, &ids).await?;
    store.delete("remove owner", (owner_pk(integration, kind), id.hyphenated().to_string())).await?;
    Ok(ids.len())
}

pub(super) async fn owner_ids(
    store: &DynamoStore,
    integration: &IntegrationId,
    kind: OwnerKind,
) -> Result<Vec<uuid::Uuid>> {
    let q = store.partition(owner_pk(integration, kind), None).projection_expression("sk");
    let items = store.collect("owner ids", q, None).await?;
    items
        .iter()
        .map(|i| {
            uuid::Uuid::parse_str(text_attribute(i, SK).unwrap_or_default())
                .map_err(|e| error::decode("decoding owner id", e))
        })
        .collect()
}

pub(super) async fn due_credentials(
    store: &DynamoStore,
    now: OffsetDateTime,
    after: Option<&DuePosition>,
    limit: usize,
) -> Result<Vec<DueCredential>> {
    // Everything indexed at or before `now`: sort keys below the next millisecond's.
    let below = time_key(now + time::Duration::milliseconds(1));
    let after_id = after.map(|a| a.id.to_string());
    let mut out: Vec<DueCredential> = Vec::new();
    for i in integrations(store).await? {
        if out.len() >= limit {
            break;
        }
        // As in `credentials_page`: integrations come in the order of their ids' prefix, so the
        // listing continues in the integration of `after` (or the first one past it).
        let prefix = format!("{i}/");
        let start = match (&after_id, after) {
            (Some(id), Some(a)) if id.starts_with(&prefix) => Some(HashMap::from([
                (PK.to_owned(), s(credential_pk(&i))),
                (SK.to_owned(), s(id.clone())),
                (GSI2_PK.to_owned(), s(due_pk(&i))),
                (GSI2_SK.to_owned(), s(due_sk(a.due, &a.id))),
            ])),
            (Some(id), _) if prefix.as_str() < id.as_str() => continue,
            _ => None,
        };
        let q = store
            .query()
            .index_name(GSI2)
            .key_condition_expression("#ipk = :pk AND #isk < :below")
            .expression_attribute_names("#ipk", GSI2_PK)
            .expression_attribute_names("#isk", GSI2_SK)
            .expression_attribute_values(":pk", s(due_pk(&i)))
            .expression_attribute_values(":below", s(below.clone()))
            .projection_expression("pk, sk, #isk");
        let entries = store.collect_from("due credentials", q, start, Some(limit - out.len())).await?;
        // The index is eventually consistent: each credential is read from the table itself, so
        // what the scan decides on is what is stored now.
        let keys: Vec<(String, String)> = entries.iter().filter_map(key_of).collect();
        let items = store.get_many("due credentials", &keys, None).await?;
        for entry in &entries {
            let (Some(key), Some(due)) = (key_of(entry), text_attribute(entry, GSI2_SK).and_then(due_of_sk)) else {
                continue;
            };
            if let Some(item) = items.get(&key) {
                out.push(DueCredential { credential: from_item(item)?, due });
            }
        }
    }
    Ok(out)
}

pub(super) async fn set_next_moments(
    store: &DynamoStore,
    moments: &[(Credential, Option<OffsetDateTime>)],
) -> Result<()> {
    for chunk in moments.chunks(OWNER_READS) {
        let writes = chunk.iter().map(|(c, due)| async move {
            let item = doc_item(credential_pk(&c.id.integration), c.id.to_string(), c)?;
            let doc = text_attribute(&item, DOC).unwrap_or_default().to_owned();
            let due = due.map(|d| (due_pk(&c.id.integration), due_sk(d, &c.id)));
            store
                .set_due_if_unchanged("set next moment", (credential_pk(&c.id.integration), c.id.to_string()), doc, due)
                .await
        });
        futures::future::try_join_all(writes).await?;
    }
    Ok(())
}

pub(super) async fn credentials_page(
    store: &DynamoStore,
    after: Option<&CredentialId>,
    limit: usize,
) -> Result<Vec<Credential>> {
    let after = after.map(ToString::to_string);
    let mut out: Vec<Credential> = Vec::new();
    for i in integrations(store).await? {
        if out.len() >= limit {
            break;
        }
        // Every id of this integration starts with `prefix`, and the integrations come in
        // that prefix's order, so the page continues in the integration `after` is in (or
        // the first one past it).
        let prefix = format!("{i}/");
        let q = match &after {
            Some(a) if a.starts_with(&prefix) => store
                .query()
                .consistent_read(true)
                .key_condition_expression("pk = :pk AND sk > :after")
                .expression_attribute_values(":pk", s(credential_pk(&i)))
                .expression_attribute_values(":after", s(a)),
            Some(a) if prefix.as_str() < a.as_str() => continue,
            _ => store.partition(credential_pk(&i), None),
        };
        let items = store.collect("credentials page", q, Some(limit - out.len())).await?;
        out.extend(from_items::<Credential>(&items)?);
    }
    Ok(out)
}

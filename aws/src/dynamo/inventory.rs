//! The inventory: applications, service principals and their credentials, kept per integration,
//! and the registry of integrations that listings across integrations read.

use std::collections::{HashMap, HashSet};

use entra_rotator::Result;
use entra_rotator::domain::ids::{AppObjectId, CredentialId, IntegrationId, OwnerKind};
use entra_rotator::domain::inventory::{Application, Credential, CredentialKind, ServicePrincipal};
use entra_rotator::ports::{Owner, OwnerSnapshot, SyncCounts};

use super::items::{Item, doc_item, from_items, key_of, s, text_attribute};
use super::keys::{INTEGRATIONS, PK, SK, alert_pk, credential_pk, millis, owner_credentials_prefix, owner_pk};
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

fn credential_item(c: &Credential) -> Result<Item> {
    doc_item(credential_pk(&c.id.integration), c.id.to_string(), c)
}

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

pub(super) async fn sync_owners(
    store: &DynamoStore,
    integration: &IntegrationId,
    owners: &[OwnerSnapshot],
) -> Result<SyncCounts> {
    let mut counts = SyncCounts::default();
    for snap in owners {
        let kind = snap.owner.kind();
        let mut items = vec![match &snap.owner {
            Owner::Application(a) => doc_item(owner_pk(integration, kind), a.object_id.to_string(), a)?,
            Owner::ServicePrincipal(p) => doc_item(owner_pk(integration, kind), p.object_id.to_string(), p)?,
        }];
        counts.owners += 1;
        let lists = [(CredentialKind::Password, &snap.passwords), (CredentialKind::Certificate, &snap.certificates)];
        if lists.iter().any(|(_, l)| l.is_some()) {
            // Read before anything of this owner is written, as the SQLite store compares
            // against what was stored.
            let stored = owner_credentials(store, integration, kind, snap.owner.id()).await?;
            for (cred_kind, list) in lists {
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
                    items.push(credential_item(c)?);
                    counts.credentials_written += 1;
                }
            }
        }
        store.batch_put("sync owners", items).await?;
    }
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

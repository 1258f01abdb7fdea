//! sync: reads one integration's applications and service principals, with their credentials,
//! from the directory and brings the inventory in line — page by page, so memory does not grow with
//! the tenant. Full when asked or when there is no usable delta link; delta otherwise.

use std::collections::HashSet;

use serde::Serialize;
use uuid::Uuid;

use crate::domain::ids::{AppObjectId, ClientId, CredentialId, IntegrationId, KeyId, OwnerKind, ServicePrincipalId};
use crate::domain::inventory::{Application, Credential, CredentialKind, ServicePrincipal};
use crate::ports::directory::{Cursor, Directory, DirectoryObject, KeyCredentialInfo, Page, PasswordCredentialInfo};
use crate::ports::{Clock, Owner, OwnerSnapshot, Store, SyncCounts, SyncState};
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// Delta when a delta link is kept, full otherwise (or when the link has expired).
    Auto,
    Full,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncKind {
    Full,
    Delta,
}

/// What one sync did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    pub integration: IntegrationId,
    pub kind: SyncKind,
    /// The delta link had expired, so a full sync ran instead.
    pub fell_back_to_full: bool,
    pub applications_seen: usize,
    pub service_principals_seen: usize,
    /// Applications and service principals gone from the tenant, removed with their credentials.
    pub owners_removed: usize,
    pub counts: SyncCounts,
    /// Listing requests made (pages read), not counting the one that fetches a delta link.
    pub pages: usize,
}

impl SyncReport {
    fn new(integration: &IntegrationId, kind: SyncKind) -> Self {
        Self {
            integration: integration.clone(),
            kind,
            fell_back_to_full: false,
            applications_seen: 0,
            service_principals_seen: 0,
            owners_removed: 0,
            counts: SyncCounts::default(),
            pages: 0,
        }
    }

    fn log(&self) {
        tracing::info!(
            kind = ?self.kind,
            applications = self.applications_seen,
            service_principals = self.service_principals_seen,
            removed = self.owners_removed,
            pages = self.pages,
            "{} sync done",
            match self.kind {
                SyncKind::Full => "full",
                SyncKind::Delta => "delta",
            }
        );
    }
}

/// What one walk through the pages found.
struct Walked {
    seen: HashSet<Uuid>,
    delta_link: Option<String>,
}

/// The two kinds of owner a sync reads, each from its own listing.
trait Listing: Sized {
    const KIND: OwnerKind;
    async fn page(directory: &dyn Directory, cursor: Cursor) -> Result<Page<DirectoryObject<Self>>>;
    async fn snapshots(
        syncer: &Syncer<'_>,
        integration: &IntegrationId,
        page: Page<DirectoryObject<Self>>,
    ) -> Result<(Vec<OwnerSnapshot>, Vec<Uuid>)>;
}

impl Listing for AppObjectId {
    const KIND: OwnerKind = OwnerKind::Application;
    async fn page(directory: &dyn Directory, cursor: Cursor) -> Result<Page<DirectoryObject<Self>>> {
        directory.applications(cursor).await
    }
    async fn snapshots(
        syncer: &Syncer<'_>,
        integration: &IntegrationId,
        page: Page<DirectoryObject<Self>>,
    ) -> Result<(Vec<OwnerSnapshot>, Vec<Uuid>)> {
        syncer.application_snapshots(integration, page).await
    }
}

impl Listing for ServicePrincipalId {
    const KIND: OwnerKind = OwnerKind::ServicePrincipal;
    async fn page(directory: &dyn Directory, cursor: Cursor) -> Result<Page<DirectoryObject<Self>>> {
        directory.service_principals(cursor).await
    }
    async fn snapshots(
        syncer: &Syncer<'_>,
        integration: &IntegrationId,
        page: Page<DirectoryObject<Self>>,
    ) -> Result<(Vec<OwnerSnapshot>, Vec<Uuid>)> {
        syncer.service_principal_snapshots(integration, page).await
    }
}

/// Progress, for a terminal to show during long syncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncProgress {
    pub kind: SyncKind,
    pub owner: OwnerKind,
    pub pages: usize,
    pub objects: usize,
}

pub struct Syncer<'a> {
    pub directory: &'a dyn Directory,
    pub store: &'a dyn Store,
    pub clock: &'a dyn Clock,
    pub progress: &'a (dyn Fn(SyncProgress) + Send + Sync),
}

impl Syncer<'_> {
    #[tracing::instrument(skip_all, fields(integration = %integration, mode = ?mode))]
    pub async fn sync(&self, integration: &IntegrationId, mode: SyncMode) -> Result<SyncReport> {
        let state = self.store.get_sync_state(integration).await?;
        let links = state
            .as_ref()
            .and_then(|s| Some((s.applications_delta_link.clone()?, s.service_principals_delta_link.clone()?)));
        if let (SyncMode::Auto, Some((apps, sps))) = (mode, links) {
            match self.delta(integration, state.clone(), apps, sps).await {
                Err(Error::DeltaExpired) => {
                    tracing::info!("delta link expired; running a full sync");
                    let mut report = self.full(integration, state).await?;
                    report.fell_back_to_full = true;
                    return Ok(report);
                }
                other => return other,
            }
        }
        self.full(integration, state).await
    }

    async fn full(&self, integration: &IntegrationId, state: Option<SyncState>) -> Result<SyncReport> {
        // Take the delta links first: whatever changes while we enumerate shows up in the next
        // delta round (applying a change twice is harmless), so nothing falls between the two.
        let apps_link = self.directory.applications(Cursor::DeltaLatest).await?.delta_link;
        let sps_link = self.directory.service_principals(Cursor::DeltaLatest).await?.delta_link;
        let mut report = SyncReport::new(integration, SyncKind::Full);
        let seen = self.walk::<AppObjectId>(integration, Cursor::Full, &mut report).await?.seen;
        report.owners_removed += self.remove_unseen(integration, OwnerKind::Application, &seen).await?;
        let seen = self.walk::<ServicePrincipalId>(integration, Cursor::Full, &mut report).await?.seen;
        report.owners_removed += self.remove_unseen(integration, OwnerKind::ServicePrincipal, &seen).await?;

        let now = self.clock.now();
        self.store
            .put_sync_state(&SyncState {
                integration: integration.clone(),
                applications_delta_link: apps_link,
                service_principals_delta_link: sps_link,
                last_full_sync: Some(now),
                last_delta_sync: state.and_then(|s| s.last_delta_sync),
            })
            .await?;
        report.log();
        Ok(report)
    }

    async fn delta(
        &self,
        integration: &IntegrationId,
        state: Option<SyncState>,
        apps_link: String,
        sps_link: String,
    ) -> Result<SyncReport> {
        let mut report = SyncReport::new(integration, SyncKind::Delta);
        // The new links are kept only once both rounds are applied: a crash half-way repeats the
        // round from the old links, which is harmless.
        let apps = self.walk::<AppObjectId>(integration, Cursor::Link(apps_link), &mut report).await?;
        let sps = self.walk::<ServicePrincipalId>(integration, Cursor::Link(sps_link), &mut report).await?;
        let now = self.clock.now();
        let previous = state.unwrap_or_else(|| SyncState {
            integration: integration.clone(),
            applications_delta_link: None,
            service_principals_delta_link: None,
            last_full_sync: None,
            last_delta_sync: None,
        });
        self.store
            .put_sync_state(&SyncState {
                applications_delta_link: apps.delta_link.or(previous.applications_delta_link.clone()),
                service_principals_delta_link: sps.delta_link.or(previous.service_principals_delta_link.clone()),
                last_delta_sync: Some(now),
                ..previous
            })
            .await?;
        report.log();
        Ok(report)
    }

    /// Reads every page from `cursor` on; owners a delta page reports removed are removed with
    /// their credentials. The next page is fetched while the current one is stored, and no
    /// further ahead, so the sync runs at the pace of the slower of the two and holds at most two
    /// pages in memory.
    async fn walk<L: Listing>(
        &self,
        integration: &IntegrationId,
        cursor: Cursor,
        report: &mut SyncReport,
    ) -> Result<Walked> {
        let mut walked = Walked { seen: HashSet::new(), delta_link: None };
        let mut objects = 0;
        let mut page = L::page(self.directory, cursor).await?;
        loop {
            report.pages += 1;
            let (next, delta_link) = (page.next_link.clone(), page.delta_link.clone());
            let fetch = async {
                match &next {
                    Some(link) => L::page(self.directory, Cursor::Link(link.clone())).await.map(Some),
                    None => Ok(None),
                }
            };
            let (stored, fetched) = tokio::join!(self.store_page::<L>(integration, page), fetch);
            let (counts, ids, removed) = stored?;
            objects += ids.len() + removed;
            walked.seen.extend(ids);
            report.counts += counts;
            report.owners_removed += removed;
            (self.progress)(SyncProgress { kind: report.kind, owner: L::KIND, pages: report.pages, objects });
            match fetched? {
                Some(p) => page = p,
                None => {
                    walked.delta_link = delta_link;
                    break;
                }
            }
        }
        match L::KIND {
            OwnerKind::Application => report.applications_seen += objects,
            OwnerKind::ServicePrincipal => report.service_principals_seen += objects,
        }
        Ok(walked)
    }

    /// Writes one page: its owners in one store call, then the removals it reports. Returns what
    /// changed, the ids of the owners listed, and how many owners were removed.
    async fn store_page<L: Listing>(
        &self,
        integration: &IntegrationId,
        page: Page<DirectoryObject<L>>,
    ) -> Result<(SyncCounts, Vec<Uuid>, usize)> {
        let (snapshots, removed) = L::snapshots(self, integration, page).await?;
        let ids = snapshots.iter().map(|s| s.owner.id()).collect();
        let mut counts = self.store.sync_owners(integration, &snapshots).await?;
        for id in &removed {
            counts.credentials_removed += self.store.remove_owner(integration, L::KIND, *id).await?;
        }
        Ok((counts, ids, removed.len()))
    }

    async fn remove_unseen(&self, integration: &IntegrationId, kind: OwnerKind, seen: &HashSet<Uuid>) -> Result<usize> {
        let mut removed = 0;
        for id in self.store.owner_ids(integration, kind).await? {
            if !seen.contains(&id) {
                self.store.remove_owner(integration, kind, id).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Turns a page into snapshots (and the ids of removed objects). A delta item may leave out
    /// properties that did not change; those are taken from what is stored.
    async fn application_snapshots(
        &self,
        integration: &IntegrationId,
        page: Page<DirectoryObject<AppObjectId>>,
    ) -> Result<(Vec<OwnerSnapshot>, Vec<Uuid>)> {
        let mut out = Vec::with_capacity(page.items.len());
        let mut removed = Vec::new();
        for item in page.items {
            if item.removed {
                removed.push(item.id.as_uuid());
                continue;
            }
            let stored = match (&item.client_id, &item.display_name) {
                (Some(_), Some(_)) => None,
                _ => self.store.get_application(integration, &item.id).await?,
            };
            let Some(client_id) = item.client_id.or(stored.as_ref().map(|a| a.client_id)) else {
                tracing::warn!(application = %item.id, "skipping an application without appId");
                continue;
            };
            let app = Application {
                integration: integration.clone(),
                object_id: item.id,
                client_id,
                display_name: item.display_name.or(stored.as_ref().map(|a| a.display_name.clone())).unwrap_or_default(),
                sign_in_audience: item
                    .sign_in_audience
                    .or(stored.as_ref().map(|a| a.sign_in_audience.clone()))
                    .unwrap_or_else(|| "AzureADMyOrg".into()),
            };
            let make_id = |key| CredentialId::for_application(integration.clone(), item.id, key);
            out.push(OwnerSnapshot {
                passwords: item.password_credentials.map(|p| passwords(&p, client_id, Some(item.id), &make_id)),
                certificates: item.key_credentials.map(|k| certificates(&k, client_id, Some(item.id), &make_id)),
                owner: Owner::Application(app),
            });
        }
        Ok((out, removed))
    }

    async fn service_principal_snapshots(
        &self,
        integration: &IntegrationId,
        page: Page<DirectoryObject<ServicePrincipalId>>,
    ) -> Result<(Vec<OwnerSnapshot>, Vec<Uuid>)> {
        let mut out = Vec::with_capacity(page.items.len());
        let mut removed = Vec::new();
        let mut stored_sps = None;
        for item in page.items {
            if item.removed {
                removed.push(item.id.as_uuid());
                continue;
            }
            let stored = match (&item.client_id, &item.display_name) {
                (Some(_), Some(_)) => None,
                _ => {
                    if stored_sps.is_none() {
                        stored_sps = Some(self.store.list_service_principals(integration).await?);
                    }
                    stored_sps.as_ref().and_then(|all| all.iter().find(|s| s.object_id == item.id).cloned())
                }
            };
            let Some(client_id) = item.client_id.or(stored.as_ref().map(|s| s.client_id)) else {
                tracing::warn!(service_principal = %item.id, "skipping a service principal without appId");
                continue;
            };
            let sp = ServicePrincipal {
                integration: integration.clone(),
                object_id: item.id,
                client_id,
                display_name: item.display_name.or(stored.as_ref().map(|s| s.display_name.clone())).unwrap_or_default(),
            };
            let make_id = |key| CredentialId::for_service_principal(integration.clone(), item.id, key);
            out.push(OwnerSnapshot {
                passwords: item.password_credentials.map(|p| passwords(&p, client_id, None, &make_id)),
                certificates: item.key_credentials.map(|k| certificates(&k, client_id, None, &make_id)),
                owner: Owner::ServicePrincipal(sp),
            });
        }
        Ok((out, removed))
    }
}

fn passwords(
    list: &[PasswordCredentialInfo],
    client_id: ClientId,
    app: Option<AppObjectId>,
    make_id: &dyn Fn(KeyId) -> CredentialId,
) -> Vec<Credential> {
    list.iter()
        .map(|p| Credential {
            id: make_id(p.key_id),
            kind: CredentialKind::Password,
            app,
            client_id,
            display_name: p.display_name.clone(),
            hint: p.hint.clone(),
            start: p.start,
            end: p.end,
            thumbprint: None,
            removed_at: None,
        })
        .collect()
}

/// Graph lists each certificate twice (usage Sign and Verify) under one thumbprint: keep one,
/// the one with the smallest key id, so the choice is stable from sync to sync.
fn certificates(
    list: &[KeyCredentialInfo],
    client_id: ClientId,
    app: Option<AppObjectId>,
    make_id: &dyn Fn(KeyId) -> CredentialId,
) -> Vec<Credential> {
    let mut sorted: Vec<&KeyCredentialInfo> = list.iter().collect();
    sorted.sort_by_key(|k| k.key_id);
    let mut thumbprints = HashSet::new();
    sorted
        .into_iter()
        .filter(|k| k.thumbprint.as_ref().is_none_or(|t| thumbprints.insert(t.clone())))
        .map(|k| Credential {
            id: make_id(k.key_id).with_kind(CredentialKind::Certificate),
            kind: CredentialKind::Certificate,
            app,
            client_id,
            display_name: k.display_name.clone(),
            hint: None,
            start: k.start,
            end: k.end,
            thumbprint: k.thumbprint.clone(),
            removed_at: None,
        })
        .collect()
}

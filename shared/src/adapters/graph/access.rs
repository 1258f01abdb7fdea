//! What the integration's own identity may do, asked of Graph without changing anything: a token,
//! the first application of a listing, and the identity's service principal with its Microsoft
//! Graph app role assignments and, for `Application.ReadWrite.OwnedBy`, the applications it owns.
//!
//! Graph cannot say whether `addPassword` would succeed without calling it; what the permissions
//! and the ownership say is the answer Entra itself goes by. The answer is remembered for a few
//! minutes, since preflight asks it before every rotation; a refusal is always asked again.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde::Deserialize;

use super::GraphClient;
use super::failure::Failure;
use super::odata::{self, APPLICATION_FIELDS};
use super::op::Op;
use super::request::parse;
use super::wire;
use crate::domain::ids::{AppObjectId, ClientId, ServicePrincipalId};
use crate::ports::directory::{DirectoryAccess, DirectoryApplication, GraphPermission};
use crate::{Error, Result};

/// How long an answer about the identity's permissions is reused.
pub(super) const ACCESS_TTL: Duration = Duration::from_secs(300);

#[derive(Deserialize)]
struct PrincipalJson {
    id: ServicePrincipalId,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AssignmentJson {
    app_role_id: uuid::Uuid,
    #[serde(default)]
    resource_display_name: Option<String>,
}

#[derive(Deserialize)]
struct ListJson<T> {
    value: Vec<T>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OwnedJson {
    app_id: Option<ClientId>,
}

impl GraphClient {
    pub(super) async fn get_token_now(&self) -> Result<()> {
        self.token().await.map(drop).map_err(Into::into)
    }

    pub(super) async fn list_first_application(&self) -> Result<Option<DirectoryApplication>> {
        let url = format!("{}/applications?$select={APPLICATION_FIELDS}&$top=1", self.graph_base);
        let op = Op::read("list applications".to_owned(), "applications".to_owned());
        let body = self.call(&op, Method::GET, &url, None).await?;
        let page: wire::CollectionPage<AppObjectId> = parse(&op, &body)?;
        let page = page.into_page(false).map_err(|e| super::failure::unreadable(&op, e))?;
        Ok(page.items.into_iter().next())
    }

    pub(super) async fn identity_access(&self, fresh: bool) -> Result<DirectoryAccess> {
        if !fresh
            && let Some((at, known)) =
                self.access_cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
            && at.elapsed() < ACCESS_TTL
        {
            return Ok(known);
        }
        let answer = self.read_access().await?;
        if matches!(answer, DirectoryAccess::Known { .. }) {
            *self.access_cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some((Instant::now(), answer.clone()));
        }
        Ok(answer)
    }

    async fn read_access(&self) -> Result<DirectoryAccess> {
        let Some(client_id) = self.identity else {
            return Ok(DirectoryAccess::Unknown(
                "a system-assigned managed identity's client id is known only to Azure: set client_id to the \
                 identity's client id so its permissions can be read"
                    .into(),
            ));
        };
        // Graph's alternate key: the service principal of this application id.
        let url = format!("{}/servicePrincipals(appId='{client_id}')?$select=id,appId,displayName", self.graph_base);
        let op = Op::read("read the integration's service principal".into(), format!("service principal {client_id}"));
        let principal: PrincipalJson = match self.call(&op, Method::GET, &url, None).await {
            Ok(body) => parse(&op, &body)?,
            Err(f) if f.status == 404 => {
                return Ok(DirectoryAccess::Unknown(format!(
                    "the tenant has no service principal for application {client_id}: the app registration is not \
                     in this tenant, or its enterprise application was deleted"
                )));
            }
            Err(f) if f.status == 403 => return Ok(DirectoryAccess::Unknown(unreadable_permissions())),
            Err(f) => return Err(f.into()),
        };
        let url = format!("{}/servicePrincipals/{}/appRoleAssignments", self.graph_base, principal.id);
        let op = Op::read("read the integration's app role assignments".into(), "app role assignments".into());
        let mut permissions = BTreeSet::new();
        for assignment in match self.read_all::<AssignmentJson>(&op, url).await {
            Ok(all) => all,
            Err(f) if f.status == 403 => return Ok(DirectoryAccess::Unknown(unreadable_permissions())),
            Err(f) => return Err(f.into()),
        } {
            let on_graph = assignment.resource_display_name.as_deref().is_none_or(|n| n == "Microsoft Graph");
            if let Some(p) = GraphPermission::from_app_role_id(assignment.app_role_id).filter(|_| on_graph) {
                permissions.insert(p);
            }
        }
        let owned = if permissions.contains(&GraphPermission::ApplicationReadWriteOwnedBy)
            && !permissions.iter().any(|p| p.writes_every_application())
        {
            let url = format!(
                "{}/servicePrincipals/{}/ownedObjects/microsoft.graph.application?$select=id,appId,displayName",
                self.graph_base, principal.id
            );
            let op = Op::read("list the applications the integration owns".into(), "owned objects".into());
            let owned: Vec<OwnedJson> = self.read_all(&op, url).await.map_err(Error::from)?;
            Some(owned.into_iter().filter_map(|o| o.app_id).collect())
        } else {
            None
        };
        Ok(DirectoryAccess::Known { principal: principal.id, permissions, owned })
    }

    /// Every item of a listing, its `@odata.nextLink`s followed (to the Graph host only).
    async fn read_all<T: serde::de::DeserializeOwned>(&self, op: &Op, first: String) -> Result<Vec<T>, Failure> {
        let mut url = first;
        let mut all = Vec::new();
        loop {
            let body = self.call(op, Method::GET, &url, None).await?;
            let page: ListJson<T> = parse(op, &body).map_err(Failure::plain)?;
            all.extend(page.value);
            match page.next_link {
                Some(next) => {
                    odata::check_link(&next, &self.graph_url).map_err(Failure::plain)?;
                    url = next;
                }
                None => return Ok(all),
            }
        }
    }
}

fn unreadable_permissions() -> String {
    "Graph refused to show the identity's permissions (403): reading its app role assignments needs \
     Application.Read.All"
        .into()
}

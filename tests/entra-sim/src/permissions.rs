//! What an identity may do in Graph: the Microsoft Graph application permissions (app roles) its
//! service principal was granted, and which applications it owns.
//!
//! As Graph decides it for the calls the sim serves:
//! - reading applications and service principals needs `Application.Read.All`,
//!   `Application.ReadWrite.OwnedBy` (which may list every application in the tenant) or
//!   `Application.ReadWrite.All`;
//! - `addPassword` and `removePassword` need `Application.ReadWrite.All`, or
//!   `Application.ReadWrite.OwnedBy` on an application whose owners include the caller's service
//!   principal;
//! - anything else is `403 Authorization_RequestDenied`.
//!
//! The management application holds `Application.ReadWrite.All` until a test says otherwise; every
//! other application holds nothing. An identity that holds a role has a service principal the
//! product can look up (`GET /servicePrincipals(appId='…')`) with its `appRoleAssignments` and its
//! `ownedObjects`; it is not part of the listing (the tenant's generated inventory stays as it was).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::error::GraphError;
use crate::lock;
use crate::server::{AppState, Shared};
use crate::state::Collection;

/// The Microsoft Graph application permissions about applications, with Graph's own role ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GraphRole {
    /// `Application.Read.All`: read every application and service principal.
    ApplicationReadAll,
    /// `Application.ReadWrite.OwnedBy`: read them all, manage those it owns.
    ApplicationReadWriteOwnedBy,
    /// `Application.ReadWrite.All`: read and manage every application.
    ApplicationReadWriteAll,
}

impl GraphRole {
    pub const ALL: [GraphRole; 3] =
        [Self::ApplicationReadAll, Self::ApplicationReadWriteOwnedBy, Self::ApplicationReadWriteAll];

    /// The app role's id in Microsoft Graph's service principal (the same in every tenant).
    pub fn id(self) -> Uuid {
        Uuid::from_u128(match self {
            Self::ApplicationReadAll => 0x9a5d68dd_52b0_4cc2_bd40_abcf44ac3a30,
            Self::ApplicationReadWriteOwnedBy => 0x18a4783c_866b_4cc7_a460_3d5e5662c884,
            Self::ApplicationReadWriteAll => 0x1bfefb4e_e0b5_418b_a88f_73c46d2cc8e9,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::ApplicationReadAll => "Application.Read.All",
            Self::ApplicationReadWriteOwnedBy => "Application.ReadWrite.OwnedBy",
            Self::ApplicationReadWriteAll => "Application.ReadWrite.All",
        }
    }
}

/// One identity's service principal, as the permission model knows it.
#[derive(Debug, Clone)]
pub(crate) struct Principal {
    id: Uuid,
    display_name: String,
    roles: BTreeSet<GraphRole>,
}

#[derive(Debug, Default)]
pub(crate) struct PermissionState {
    /// By the identity's client (application) id.
    principals: HashMap<Uuid, Principal>,
    /// By application object id: the client ids of its owners (service principals).
    owners: HashMap<Uuid, BTreeSet<Uuid>>,
    /// The Microsoft Graph service principal's object id in this tenant.
    graph_principal: Uuid,
}

impl PermissionState {
    pub(crate) fn new(management_client_id: Uuid) -> Self {
        let mut state = Self { graph_principal: Uuid::new_v4(), ..Self::default() };
        state.principals.insert(
            management_client_id,
            Principal {
                id: Uuid::new_v4(),
                display_name: "entra-rotator".to_owned(),
                roles: BTreeSet::from([GraphRole::ApplicationReadWriteAll]),
            },
        );
        state
    }

    fn roles(&self, client_id: Uuid) -> BTreeSet<GraphRole> {
        self.principals.get(&client_id).map(|p| p.roles.clone()).unwrap_or_default()
    }
}

/// May `client_id` read applications and service principals?
pub(crate) fn may_read(shared: &Shared, client_id: Uuid) -> bool {
    !lock(&shared.permissions).roles(client_id).is_empty()
}

/// May `client_id` add or remove passwords on the application `app_object_id`?
pub(crate) fn may_write(shared: &Shared, client_id: Uuid, app_object_id: Uuid) -> bool {
    let state = lock(&shared.permissions);
    let roles = state.roles(client_id);
    roles.contains(&GraphRole::ApplicationReadWriteAll)
        || (roles.contains(&GraphRole::ApplicationReadWriteOwnedBy)
            && state.owners.get(&app_object_id).is_some_and(|o| o.contains(&client_id)))
}

/// The tester's handle on the permission model.
#[derive(Debug, Clone)]
pub struct Permissions {
    pub(crate) shared: Arc<Shared>,
}

impl Permissions {
    /// Replaces the Graph application permissions granted to `client_id` (an empty list revokes
    /// them all). The identity gets a service principal the first time.
    pub fn grant(&self, client_id: Uuid, roles: &[GraphRole]) {
        let mut state = lock(&self.shared.permissions);
        let principal = state.principals.entry(client_id).or_insert_with(|| Principal {
            id: Uuid::new_v4(),
            display_name: format!("identity {client_id}"),
            roles: BTreeSet::new(),
        });
        principal.roles = roles.iter().copied().collect();
    }

    /// Makes `client_id`'s service principal an owner of the application `app_object_id`.
    pub fn add_owner(&self, app_object_id: Uuid, client_id: Uuid) {
        lock(&self.shared.permissions).owners.entry(app_object_id).or_default().insert(client_id);
    }

    /// The service principal object id of `client_id`, if it holds (or held) a role.
    pub fn principal_id(&self, client_id: Uuid) -> Option<Uuid> {
        lock(&self.shared.permissions).principals.get(&client_id).map(|p| p.id)
    }
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        // `servicePrincipals(appId='…')`: Graph's alternate key, one segment.
        .route("/v1.0/{entity}", get(by_alternate_key))
        .route("/v1.0/servicePrincipals/{id}/appRoleAssignments", get(app_role_assignments))
        .route("/v1.0/servicePrincipals/{id}/ownedObjects", get(owned_objects))
        .route("/v1.0/servicePrincipals/{id}/ownedObjects/microsoft.graph.application", get(owned_objects))
}

/// The caller's client id, once its token is a valid Graph token of an identity allowed to read.
fn reader(shared: &Shared, headers: &HeaderMap) -> Result<Uuid, GraphError> {
    let client_id = crate::graph::authenticate(shared, headers)?;
    if may_read(shared, client_id) { Ok(client_id) } else { Err(GraphError::forbidden()) }
}

fn respond(result: Result<Value, GraphError>) -> Response {
    match result {
        Ok(value) => axum::Json(value).into_response(),
        Err(error) => error.into_response(),
    }
}

fn context(shared: &Shared, what: &str) -> String {
    format!("{}/$metadata#{what}", shared.graph_base.as_str().trim_end_matches('/'))
}

async fn by_alternate_key(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(entity): Path<String>,
    RawQuery(_query): RawQuery,
) -> Response {
    let result = (|| {
        let Some(raw) = entity.strip_prefix("servicePrincipals(appId='").and_then(|r| r.strip_suffix("')")) else {
            // What Graph answers for a segment it cannot route (as the router's fallback does).
            return Err(GraphError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("Resource not found for the segment '{entity}'."),
            ));
        };
        reader(&s, &headers)?;
        let not_found = || {
            GraphError::new(
                axum::http::StatusCode::NOT_FOUND,
                "Request_ResourceNotFound",
                format!(
                    "Resource '{raw}' does not exist or one of its queried reference-property objects are not present."
                ),
            )
        };
        let app_id = Uuid::parse_str(raw).map_err(|_| not_found())?;
        let principal = lock(&s.permissions).principals.get(&app_id).cloned().ok_or_else(not_found)?;
        Ok(json!({
            "@odata.context": context(&s, "servicePrincipals/$entity"),
            "id": principal.id,
            "appId": app_id,
            "displayName": principal.display_name,
            "servicePrincipalType": "Application",
        }))
    })();
    respond(result)
}

fn principal_by_id(shared: &Shared, id: &str) -> Result<(Uuid, Principal), GraphError> {
    let not_found = || {
        GraphError::new(
            axum::http::StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            format!("Resource '{id}' does not exist or one of its queried reference-property objects are not present."),
        )
    };
    let id = Uuid::parse_str(id).map_err(|_| GraphError::bad_request(format!("Invalid object identifier '{id}'.")))?;
    let state = lock(&shared.permissions);
    state.principals.iter().find(|(_, p)| p.id == id).map(|(c, p)| (*c, p.clone())).ok_or_else(not_found)
}

/// `GET /servicePrincipals/{id}/appRoleAssignments`: the app roles granted to it, in Graph's shape.
async fn app_role_assignments(State(s): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let result = (|| {
        reader(&s, &headers)?;
        let (_, principal) = principal_by_id(&s, &id)?;
        let graph = lock(&s.permissions).graph_principal;
        let value: Vec<Value> = principal
            .roles
            .iter()
            .map(|role| {
                json!({
                    "id": Uuid::new_v4().to_string(),
                    "appRoleId": role.id(),
                    "principalDisplayName": principal.display_name,
                    "principalId": principal.id,
                    "principalType": "ServicePrincipal",
                    "resourceDisplayName": "Microsoft Graph",
                    "resourceId": graph,
                    "createdDateTime": "2026-01-05T10:00:00Z",
                    "deletedDateTime": null,
                })
            })
            .collect();
        Ok(json!({ "@odata.context": context(&s, "appRoleAssignments"), "value": value }))
    })();
    respond(result)
}

/// `GET /servicePrincipals/{id}/ownedObjects[/microsoft.graph.application]`: the applications it
/// owns (the only owned objects the sim knows).
async fn owned_objects(State(s): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let result = (|| {
        reader(&s, &headers)?;
        let (client_id, _) = principal_by_id(&s, &id)?;
        let owned: Vec<Uuid> = lock(&s.permissions)
            .owners
            .iter()
            .filter(|(_, owners)| owners.contains(&client_id))
            .map(|(app, _)| *app)
            .collect();
        let directory = lock(&s.directory);
        let store = directory.store(Collection::Applications);
        let value: Vec<Value> = owned
            .iter()
            .filter_map(|object_id| store.live.get(object_id))
            .map(|app| {
                json!({
                    "@odata.type": "#microsoft.graph.application",
                    "id": app.id,
                    "appId": app.app_id,
                    "displayName": app.display_name,
                })
            })
            .collect();
        Ok(json!({ "@odata.context": context(&s, "directoryObjects"), "value": value }))
    })();
    respond(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_ids_are_microsoft_graphs() {
        assert_eq!(GraphRole::ApplicationReadWriteAll.id().to_string(), "1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9");
        assert_eq!(GraphRole::ApplicationReadWriteOwnedBy.id().to_string(), "18a4783c-866b-4cc7-a460-3d5e5662c884");
        assert_eq!(GraphRole::ApplicationReadAll.id().to_string(), "9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30");
    }
}

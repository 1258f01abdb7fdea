//! The Directory port: what entra-rotator asks of Microsoft Entra (Graph and the token endpoint).
//! The Graph adapter implements it over HTTPS; the simulated tenant answers the same protocol.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::Result;
use crate::domain::ids::{AppObjectId, ClientId, KeyId, ServicePrincipalId};
use crate::domain::secret::SecretValue;

/// Where a listing starts or continues. Links are followed verbatim, as Graph asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    /// A full listing: `GET /applications?$select=…&$top=999`.
    Full,
    /// The start of a delta round that enumerates everything: `GET /applications/delta?$select=…`.
    DeltaStart,
    /// A delta link for the current state without enumerating: `…/delta?$deltatoken=latest`.
    DeltaLatest,
    /// An `@odata.nextLink` or `@odata.deltaLink` from an earlier page.
    Link(String),
}

/// A password credential as Graph lists it (never with its secret text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordCredentialInfo {
    pub key_id: KeyId,
    pub display_name: Option<String>,
    pub hint: Option<String>,
    pub start: Option<OffsetDateTime>,
    pub end: Option<OffsetDateTime>,
}

/// A key (certificate) credential as Graph lists it. Graph lists a certificate twice (usage `Sign`
/// and `Verify`) with the same thumbprint (`customKeyIdentifier`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyCredentialInfo {
    pub key_id: KeyId,
    pub display_name: Option<String>,
    /// `customKeyIdentifier`: the certificate thumbprint, base64 as Graph gives it.
    pub thumbprint: Option<String>,
    pub usage: Option<String>,
    pub start: Option<OffsetDateTime>,
    pub end: Option<OffsetDateTime>,
}

/// An application or service principal in a listing page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryObject<Id> {
    pub id: Id,
    pub client_id: Option<ClientId>,
    pub display_name: Option<String>,
    pub sign_in_audience: Option<String>,
    /// `None` when a delta page left the property out (unchanged); `Some` is the whole collection.
    pub password_credentials: Option<Vec<PasswordCredentialInfo>>,
    pub key_credentials: Option<Vec<KeyCredentialInfo>>,
    /// In a delta page: the object was deleted (`@removed`).
    pub removed: bool,
}

pub type DirectoryApplication = DirectoryObject<AppObjectId>;
pub type DirectoryServicePrincipal = DirectoryObject<ServicePrincipalId>;

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// `@odata.nextLink`: more pages follow.
    pub next_link: Option<String>,
    /// `@odata.deltaLink`: the last page of a delta round; keep it for the next sync.
    pub delta_link: Option<String>,
}

/// A secret `addPassword` created. Graph returns its text once, in this answer only.
pub struct NewPassword {
    pub key_id: KeyId,
    pub secret: SecretValue,
    pub hint: Option<String>,
    pub display_name: Option<String>,
    pub start: Option<OffsetDateTime>,
    pub end: Option<OffsetDateTime>,
}

/// What `removePassword` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    Removed,
    /// No credential with that key id (already removed): done, not an error.
    AlreadyGone,
}

/// A Microsoft Graph application permission about applications, as granted to the signed-in
/// identity's service principal (an app role assignment on Microsoft Graph).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum GraphPermission {
    /// `Application.Read.All`.
    ApplicationReadAll,
    /// `Application.ReadWrite.OwnedBy`: reads every application, writes those it owns.
    ApplicationReadWriteOwnedBy,
    /// `Application.ReadWrite.All`.
    ApplicationReadWriteAll,
    /// `Directory.Read.All`.
    DirectoryReadAll,
    /// `Directory.ReadWrite.All`: writes applications too.
    DirectoryReadWriteAll,
}

impl GraphPermission {
    pub const ALL: [GraphPermission; 5] = [
        Self::ApplicationReadAll,
        Self::ApplicationReadWriteOwnedBy,
        Self::ApplicationReadWriteAll,
        Self::DirectoryReadAll,
        Self::DirectoryReadWriteAll,
    ];

    /// The app role's id on Microsoft Graph (the same in every tenant).
    pub fn app_role_id(self) -> uuid::Uuid {
        uuid::Uuid::from_u128(match self {
            Self::ApplicationReadAll => 0x9a5d68dd_52b0_4cc2_bd40_abcf44ac3a30,
            Self::ApplicationReadWriteOwnedBy => 0x18a4783c_866b_4cc7_a460_3d5e5662c884,
            Self::ApplicationReadWriteAll => 0x1bfefb4e_e0b5_418b_a88f_73c46d2cc8e9,
            Self::DirectoryReadAll => 0x7ab1d382_f21e_4acd_a863_ba3e13f7da61,
            Self::DirectoryReadWriteAll => 0x19dbc75e_c2e2_444c_a770_ec69d8559fc7,
        })
    }

    pub fn from_app_role_id(id: uuid::Uuid) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.app_role_id() == id)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::ApplicationReadAll => "Application.Read.All",
            Self::ApplicationReadWriteOwnedBy => "Application.ReadWrite.OwnedBy",
            Self::ApplicationReadWriteAll => "Application.ReadWrite.All",
            Self::DirectoryReadAll => "Directory.Read.All",
            Self::DirectoryReadWriteAll => "Directory.ReadWrite.All",
        }
    }

    /// It may add passwords to any application.
    pub fn writes_every_application(self) -> bool {
        matches!(self, Self::ApplicationReadWriteAll | Self::DirectoryReadWriteAll)
    }
}

/// What the signed-in identity may do to applications, as Graph reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectoryAccess {
    /// Its service principal was found and its Graph permissions read.
    Known {
        principal: ServicePrincipalId,
        permissions: std::collections::BTreeSet<GraphPermission>,
        /// The client ids of the applications it owns; read only when it holds
        /// `Application.ReadWrite.OwnedBy` and nothing that writes every application.
        owned: Option<std::collections::BTreeSet<ClientId>>,
    },
    /// It could not be told, and why (no answer is not a refusal).
    Unknown(String),
}

impl DirectoryAccess {
    /// Whether a password may be added to the application `client_id`: `Some(true)` or
    /// `Some(false)` when known.
    pub fn may_add_password(&self, client_id: ClientId) -> Option<bool> {
        match self {
            Self::Unknown(_) => None,
            Self::Known { permissions, owned, .. } => Some(
                permissions.iter().any(|p| p.writes_every_application())
                    || (permissions.contains(&GraphPermission::ApplicationReadWriteOwnedBy)
                        && owned.as_ref().is_some_and(|o| o.contains(&client_id))),
            ),
        }
    }
}

#[async_trait]
pub trait Directory: Send + Sync {
    async fn applications(&self, cursor: Cursor) -> Result<Page<DirectoryApplication>>;
    async fn service_principals(&self, cursor: Cursor) -> Result<Page<DirectoryServicePrincipal>>;
    /// One application, or `None` when it does not exist.
    async fn application(&self, id: AppObjectId) -> Result<Option<DirectoryApplication>>;
    /// Applications whose display name is exactly `name` (`$filter=displayName eq '…'`).
    async fn applications_named(&self, name: &str) -> Result<Vec<DirectoryApplication>>;
    async fn add_password(&self, app: AppObjectId, display_name: &str, end: OffsetDateTime) -> Result<NewPassword>;
    async fn remove_password(&self, app: AppObjectId, key_id: KeyId) -> Result<Removal>;
    /// Whether `secret` signs in as `client_id` now (a token request with it succeeds). New
    /// secrets take a while to replicate, so `false` may turn `true` later.
    async fn secret_signs_in(&self, client_id: ClientId, secret: &SecretValue) -> Result<bool>;
    /// How the integration signs in (`client secret`, `AWS federation`, …), never with what.
    fn sign_in_method(&self) -> &'static str;
    /// The client id the integration signs in as, when the configuration names it (a
    /// system-assigned managed identity's is known only to Azure).
    fn identity(&self) -> Option<ClientId>;
    /// Gets an access token the way every call does: the sign-in works now.
    async fn sign_in(&self) -> Result<()>;
    /// The first application of a listing (`$top=1`), or `None` in an empty tenant: listing works.
    async fn first_application(&self) -> Result<Option<DirectoryApplication>>;
    /// What the signed-in identity may do to applications. `fresh` skips any remembered answer.
    async fn access(&self, fresh: bool) -> Result<DirectoryAccess>;
}

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
}

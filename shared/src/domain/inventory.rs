//! What a tenant holds: applications, service principals and their credentials.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// A credential's kind is part of its id, so it lives with the ids.
pub use crate::domain::ids::CredentialKind;
use crate::domain::ids::{AppObjectId, ClientId, CredentialId, IntegrationId, ServicePrincipalId, TenantId};

/// One tenant and how entra-rotator reaches it (the authentication itself lives in the configuration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Integration {
    pub id: IntegrationId,
    pub tenant: TenantId,
    pub display_name: Option<String>,
}

/// An app registration as Graph describes it, with only the fields entra-rotator uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Application {
    pub integration: IntegrationId,
    pub object_id: AppObjectId,
    pub client_id: ClientId,
    pub display_name: String,
    /// `AzureADMyOrg`, `AzureADMultipleOrgs`, `AzureADandPersonalMicrosoftAccount`, `PersonalMicrosoftAccount`.
    pub sign_in_audience: String,
}

impl Application {
    /// Apps that allow personal Microsoft accounts may hold at most two password credentials.
    pub fn max_passwords(&self) -> Option<usize> {
        password_limit(Some(&self.sign_in_audience))
    }
}

/// How many passwords an application with this `signInAudience` may hold: two when it allows
/// personal Microsoft accounts, otherwise no limit short of Graph's own.
pub fn password_limit(sign_in_audience: Option<&str>) -> Option<usize> {
    sign_in_audience.is_some_and(|a| a.contains("PersonalMicrosoftAccount")).then_some(2)
}

/// Whether one more password fits on an application holding `count`; the reason when not.
pub fn room_for_password(sign_in_audience: Option<&str>, count: usize) -> Result<(), String> {
    match password_limit(sign_in_audience) {
        Some(limit) if count >= limit => {
            Err(format!("the application allows personal accounts, which permits {limit} passwords, and has {count}"))
        }
        _ => Ok(()),
    }
}

/// A service principal: the app's identity in a tenant; its own passwords sign in as the app too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePrincipal {
    pub integration: IntegrationId,
    pub object_id: ServicePrincipalId,
    pub client_id: ClientId,
    pub display_name: String,
}

/// One credential of an application or service principal. Never holds a secret value: Graph only
/// returns `secretText` once, from `addPassword`, and that value is sealed elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    pub id: CredentialId,
    /// The same as `id.kind`; kept beside the id for the code that only reads the kind.
    pub kind: CredentialKind,
    /// The app registration this credential signs in as (for a service principal's own
    /// credential, the application it was created from, when known).
    pub app: Option<AppObjectId>,
    pub client_id: ClientId,
    pub display_name: Option<String>,
    /// The first three characters of a secret, as Graph shows them; not secret.
    pub hint: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub start: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub end: Option<OffsetDateTime>,
    /// Certificates: the thumbprint (`customKeyIdentifier`), used to count a Sign/Verify pair once.
    pub thumbprint: Option<String>,
    /// When entra-rotator removed this credential from the tenant after its grace period; the
    /// inventory keeps the record so its history stays readable.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub removed_at: Option<OffsetDateTime>,
}

#[cfg(any(test, feature = "test-support"))]
impl Credential {
    /// A password credential for tests, ending at `end`.
    pub fn test_password(end: OffsetDateTime) -> Self {
        use uuid::Uuid;
        let integration = IntegrationId::parse("contoso").expect("valid");
        let app = AppObjectId::from_uuid(Uuid::new_v4());
        Self {
            id: CredentialId::for_application(integration, app, crate::domain::ids::KeyId::from_uuid(Uuid::new_v4())),
            kind: CredentialKind::Password,
            app: Some(app),
            client_id: ClientId::from_uuid(Uuid::new_v4()),
            display_name: Some("test secret".into()),
            hint: Some("abc".into()),
            start: Some(end - time::Duration::days(180)),
            end: Some(end),
            thumbprint: None,
            removed_at: None,
        }
    }
}

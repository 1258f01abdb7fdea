//! [`TenantHandle`]: tests change the tenant behind the product's back (someone adds an app in the
//! portal, renames one, deletes one, adds a secret) and look at what it holds. Every change is
//! stamped like a change made through Graph, so delta queries report it.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::TenantError;
use crate::graph::new_secret_text;
use crate::lock;
use crate::server::Shared;
use crate::state::{Collection, DirectoryObject, KeyCredential, KeyUsage, PasswordCredential, StoredSecret};

/// A handle on the simulated tenant's directory. Cheap to clone.
#[derive(Clone)]
pub struct TenantHandle {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for TenantHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantHandle").field("tenant_id", &self.shared.tenant_id).finish()
    }
}

/// An application to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApp {
    pub display_name: String,
    /// `AzureADMyOrg`, `AzureADMultipleOrgs`, `AzureADandPersonalMicrosoftAccount` or
    /// `PersonalMicrosoftAccount`.
    pub sign_in_audience: String,
    /// Also create its service principal in the tenant.
    pub with_service_principal: bool,
}

impl NewApp {
    /// A single-tenant application with this name, no credentials, no service principal.
    pub fn named(display_name: impl Into<String>) -> Self {
        Self {
            display_name: display_name.into(),
            sign_in_audience: "AzureADMyOrg".to_owned(),
            with_service_principal: false,
        }
    }

    pub fn sign_in_audience(mut self, audience: impl Into<String>) -> Self {
        self.sign_in_audience = audience.into();
        self
    }

    pub fn with_service_principal(mut self) -> Self {
        self.with_service_principal = true;
        self
    }
}

/// An application as the tenant holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSummary {
    pub object_id: Uuid,
    /// The application (client) id.
    pub app_id: Uuid,
    pub display_name: String,
    pub sign_in_audience: String,
    /// Password credentials on the application itself.
    pub passwords: usize,
    /// Distinct certificate thumbprints on the application.
    pub certificates: usize,
    /// Its service principal in this tenant, if any.
    pub service_principal_id: Option<Uuid>,
}

/// A password credential as the tenant holds it (never the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordSummary {
    pub key_id: Uuid,
    pub display_name: Option<String>,
    pub hint: Option<String>,
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
    /// Whether the sim created its secret text (and so whether it can sign in).
    pub can_sign_in: bool,
}

/// A password added through [`TenantHandle::add_password_to`], with its secret text.
#[derive(Clone, PartialEq, Eq)]
pub struct AddedPassword {
    pub key_id: Uuid,
    pub secret_text: String,
}

impl fmt::Debug for AddedPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AddedPassword").field("key_id", &self.key_id).field("secret_text", &"<redacted>").finish()
    }
}

fn summary(app: &DirectoryObject, service_principal_id: Option<Uuid>) -> AppSummary {
    AppSummary {
        object_id: app.id,
        app_id: app.app_id,
        display_name: app.display_name.clone(),
        sign_in_audience: app.sign_in_audience.clone().unwrap_or_default(),
        passwords: app.passwords.len(),
        certificates: app.keys.iter().map(|k| k.thumbprint).collect::<HashSet<_>>().len(),
        service_principal_id,
    }
}

impl TenantHandle {
    /// Add an application (and, if asked, its service principal).
    pub fn add_app(&self, app: NewApp) -> AppSummary {
        let object = DirectoryObject {
            id: Uuid::new_v4(),
            app_id: Uuid::new_v4(),
            display_name: app.display_name,
            sign_in_audience: Some(app.sign_in_audience),
            service_principal_type: None,
            passwords: Vec::new(),
            keys: Vec::new(),
            version: 0,
        };
        let mut directory = lock(&self.shared.directory);
        let service_principal_id = app.with_service_principal.then(|| {
            let sp = DirectoryObject {
                id: Uuid::new_v4(),
                sign_in_audience: None,
                service_principal_type: Some("Application".to_owned()),
                ..object.clone()
            };
            let id = sp.id;
            directory.insert(Collection::ServicePrincipals, sp);
            id
        });
        let result = summary(&object, service_principal_id);
        directory.insert(Collection::Applications, object);
        result
    }

    /// Delete an application (and its service principal).
    pub fn remove_app(&self, object_id: Uuid) -> Result<(), TenantError> {
        let removed = lock(&self.shared.directory).remove(Collection::Applications, object_id);
        if removed { Ok(()) } else { Err(TenantError::ApplicationNotFound(object_id)) }
    }

    /// Rename an application.
    pub fn rename_app(&self, object_id: Uuid, display_name: impl Into<String>) -> Result<(), TenantError> {
        let display_name = display_name.into();
        lock(&self.shared.directory)
            .update(Collection::Applications, object_id, |app| app.display_name = display_name)
            .ok_or(TenantError::ApplicationNotFound(object_id))
    }

    /// Change an application's display name (to `… (rev N)`), a change delta queries report. Returns
    /// the new name.
    pub fn touch_app(&self, object_id: Uuid) -> Result<String, TenantError> {
        let mut directory = lock(&self.shared.directory);
        let revision = directory.version() + 1;
        directory
            .update(Collection::Applications, object_id, |app| {
                let base = match app.display_name.rfind(" (rev ") {
                    Some(at) if app.display_name.ends_with(')') => app.display_name[..at].to_owned(),
                    _ => app.display_name.clone(),
                };
                app.display_name = format!("{base} (rev {revision})");
                app.display_name.clone()
            })
            .ok_or(TenantError::ApplicationNotFound(object_id))
    }

    /// Add a password to an application, as someone would in the portal: starting now (sim clock),
    /// subject to the replication delay before it signs in, and — unlike `addPassword` — not limited
    /// for personal-account applications, so tests can set up any state.
    pub fn add_password_to(&self, object_id: Uuid, end: OffsetDateTime) -> Result<AddedPassword, TenantError> {
        let secret_text = new_secret_text();
        let now = self.shared.clock.now();
        let credential = PasswordCredential {
            key_id: Uuid::new_v4(),
            display_name: Some("added by test".to_owned()),
            hint: Some(secret_text.chars().take(3).collect()),
            start: now,
            end,
            secret: Some(StoredSecret { sha256: Sha256::digest(secret_text.as_bytes()).into(), created_at: now }),
        };
        let key_id = credential.key_id;
        lock(&self.shared.directory)
            .update(Collection::Applications, object_id, |app| app.passwords.push(credential))
            .ok_or(TenantError::ApplicationNotFound(object_id))?;
        Ok(AddedPassword { key_id, secret_text })
    }

    /// Remove a password from an application, as someone would in the portal (it stops signing in
    /// at once). `Ok(false)` when the application has no password with that key id.
    pub fn remove_password_from(&self, object_id: Uuid, key_id: Uuid) -> Result<bool, TenantError> {
        lock(&self.shared.directory)
            .update(Collection::Applications, object_id, |app| {
                let before = app.passwords.len();
                app.passwords.retain(|p| p.key_id != key_id);
                app.passwords.len() != before
            })
            .ok_or(TenantError::ApplicationNotFound(object_id))
    }

    /// Give a service principal a SAML token-signing certificate in the shape Graph's
    /// `addTokenSigningCertificate` leaves: a `Sign` and a `Verify` key credential of one
    /// thumbprint, and a password credential (the private key's password) whose key id is the
    /// `Sign` key's. The shared key id is the smaller of the two, so the certificate entra-rotator
    /// keeps of the pair is the one that shares it. Returns the shared key id.
    pub fn add_token_signing_certificate_to(
        &self,
        sp_object_id: Uuid,
        end: OffsetDateTime,
    ) -> Result<Uuid, TenantError> {
        let now = self.shared.clock.now();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let (shared, verify) = (a.min(b), a.max(b));
        let thumbprint: [u8; 20] = Sha256::digest(shared.as_bytes())[..20].try_into().unwrap_or([7; 20]);
        let key = |key_id, usage| KeyCredential {
            key_id,
            display_name: Some("CN=Microsoft Azure Federated SSO Certificate".to_owned()),
            thumbprint,
            usage,
            start: now,
            end,
        };
        let password = PasswordCredential {
            key_id: shared,
            display_name: Some("CN=Microsoft Azure Federated SSO Certificate".to_owned()),
            hint: None,
            start: now,
            end,
            secret: None,
        };
        lock(&self.shared.directory)
            .update(Collection::ServicePrincipals, sp_object_id, |sp| {
                sp.keys.push(key(shared, KeyUsage::Sign));
                sp.keys.push(key(verify, KeyUsage::Verify));
                sp.passwords.push(password);
            })
            .ok_or(TenantError::ServicePrincipalNotFound(sp_object_id))?;
        Ok(shared)
    }

    /// Every application, in object id order (the order Graph pages in).
    pub fn apps(&self) -> Vec<AppSummary> {
        let directory = lock(&self.shared.directory);
        let sps = directory.store(Collection::ServicePrincipals);
        directory
            .store(Collection::Applications)
            .live
            .values()
            .map(|app| summary(app, sps.by_app_id(app.app_id).map(|sp| sp.id)))
            .collect()
    }

    pub fn app(&self, object_id: Uuid) -> Option<AppSummary> {
        let directory = lock(&self.shared.directory);
        let app = directory.get(Collection::Applications, object_id)?;
        let sp = directory.store(Collection::ServicePrincipals).by_app_id(app.app_id).map(|sp| sp.id);
        Some(summary(app, sp))
    }

    /// The application with this application (client) id.
    pub fn app_by_client_id(&self, app_id: Uuid) -> Option<AppSummary> {
        let object_id = lock(&self.shared.directory).store(Collection::Applications).by_app_id(app_id)?.id;
        self.app(object_id)
    }

    /// Every application's object id, in object id order.
    pub fn app_object_ids(&self) -> Vec<Uuid> {
        lock(&self.shared.directory).store(Collection::Applications).live.keys().copied().collect()
    }

    /// An application's password credentials; `None` when it does not exist.
    pub fn app_passwords(&self, object_id: Uuid) -> Option<Vec<PasswordSummary>> {
        let directory = lock(&self.shared.directory);
        let app = directory.get(Collection::Applications, object_id)?;
        Some(
            app.passwords
                .iter()
                .map(|p| PasswordSummary {
                    key_id: p.key_id,
                    display_name: p.display_name.clone(),
                    hint: p.hint.clone(),
                    start: p.start,
                    end: p.end,
                    can_sign_in: p.secret.is_some(),
                })
                .collect(),
        )
    }
}

//! The directory the simulated tenant holds: applications, service principals and their credentials,
//! with the change tracking delta queries need.
//!
//! Every change takes the next value of one tenant-wide counter and stamps it on the object (or on its
//! tombstone when it is removed). A delta link remembers the counter's value when its round began, so
//! "what changed since" is "every object or tombstone stamped later". Objects are kept ordered by
//! object id, which gives listings a stable order to page through.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// The two collections the sim serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) enum Collection {
    #[serde(rename = "a")]
    Applications,
    #[serde(rename = "s")]
    ServicePrincipals,
}

impl Collection {
    /// The Graph entity set name (`/v1.0/{name}`).
    pub(crate) fn segment(self) -> &'static str {
        match self {
            Self::Applications => "applications",
            Self::ServicePrincipals => "servicePrincipals",
        }
    }

    /// The Graph type name, as error messages mention it.
    pub(crate) fn type_name(self) -> &'static str {
        match self {
            Self::Applications => "microsoft.graph.application",
            Self::ServicePrincipals => "microsoft.graph.servicePrincipal",
        }
    }
}

/// What the sim keeps of a secret it generated: a digest, never the text, plus when it was created
/// (on the sim clock) so sign-ins can wait for replication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredSecret {
    pub(crate) sha256: [u8; 32],
    pub(crate) created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PasswordCredential {
    pub(crate) key_id: Uuid,
    pub(crate) display_name: Option<String>,
    /// The first three characters of the secret.
    pub(crate) hint: Option<String>,
    pub(crate) start: OffsetDateTime,
    pub(crate) end: OffsetDateTime,
    /// Only for secrets whose text the sim itself produced (`addPassword`, the tenant handle); the
    /// generated inventory's secrets have no known text and cannot sign in.
    pub(crate) secret: Option<StoredSecret>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyUsage {
    Sign,
    Verify,
}

impl KeyUsage {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Sign => "Sign",
            Self::Verify => "Verify",
        }
    }
}

/// A certificate credential. Graph lists one certificate as two of these (usage `Sign` and `Verify`,
/// two key ids) sharing one thumbprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyCredential {
    pub(crate) key_id: Uuid,
    pub(crate) display_name: Option<String>,
    /// The SHA-1 thumbprint; Graph shows it base64-encoded as `customKeyIdentifier`.
    pub(crate) thumbprint: [u8; 20],
    pub(crate) usage: KeyUsage,
    pub(crate) start: OffsetDateTime,
    pub(crate) end: OffsetDateTime,
}

/// An application or a service principal; the collection it lives in says which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DirectoryObject {
    pub(crate) id: Uuid,
    pub(crate) app_id: Uuid,
    pub(crate) display_name: String,
    /// Applications only.
    pub(crate) sign_in_audience: Option<String>,
    /// Service principals only.
    pub(crate) service_principal_type: Option<String>,
    pub(crate) passwords: Vec<PasswordCredential>,
    pub(crate) keys: Vec<KeyCredential>,
    /// The change counter's value at this object's last change.
    pub(crate) version: u64,
}

/// The audiences whose applications may hold at most two passwords.
pub(crate) fn allows_personal_accounts(sign_in_audience: Option<&str>) -> bool {
    matches!(sign_in_audience, Some("AzureADandPersonalMicrosoftAccount" | "PersonalMicrosoftAccount"))
}

/// The most passwords an application with personal-account sign-in may hold.
pub(crate) const PERSONAL_ACCOUNT_PASSWORD_LIMIT: usize = 2;

/// One collection's objects and tombstones.
#[derive(Debug, Default)]
pub(crate) struct ObjectStore {
    pub(crate) live: BTreeMap<Uuid, DirectoryObject>,
    /// Removed object id → the change counter's value at removal.
    pub(crate) removed: BTreeMap<Uuid, u64>,
    by_app_id: HashMap<Uuid, Uuid>,
}

impl ObjectStore {
    pub(crate) fn by_app_id(&self, app_id: Uuid) -> Option<&DirectoryObject> {
        self.by_app_id.get(&app_id).and_then(|id| self.live.get(id))
    }
}

#[derive(Debug, Default)]
pub(crate) struct Directory {
    applications: ObjectStore,
    service_principals: ObjectStore,
    version: u64,
}

impl Directory {
    pub(crate) fn store(&self, collection: Collection) -> &ObjectStore {
        match collection {
            Collection::Applications => &self.applications,
            Collection::ServicePrincipals => &self.service_principals,
        }
    }

    fn store_mut(&mut self, collection: Collection) -> &mut ObjectStore {
        match collection {
            Collection::Applications => &mut self.applications,
            Collection::ServicePrincipals => &mut self.service_principals,
        }
    }

    /// The change counter's current value: everything stamped later is news to a delta link that
    /// carries this value.
    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    fn next_version(&mut self) -> u64 {
        self.version += 1;
        self.version
    }

    pub(crate) fn get(&self, collection: Collection, id: Uuid) -> Option<&DirectoryObject> {
        self.store(collection).live.get(&id)
    }

    /// Add an object, stamped as changed now.
    pub(crate) fn insert(&mut self, collection: Collection, mut object: DirectoryObject) {
        object.version = self.next_version();
        let store = self.store_mut(collection);
        store.by_app_id.insert(object.app_id, object.id);
        store.removed.remove(&object.id);
        store.live.insert(object.id, object);
    }

    /// Change an object through `change` and stamp it as changed now. `None` when it does not exist.
    pub(crate) fn update<R>(
        &mut self,
        collection: Collection,
        id: Uuid,
        change: impl FnOnce(&mut DirectoryObject) -> R,
    ) -> Option<R> {
        let version = self.version + 1;
        let object = self.store_mut(collection).live.get_mut(&id)?;
        let result = change(object);
        object.version = version;
        self.version = version;
        Some(result)
    }

    /// Remove an object, leaving a tombstone for delta queries. Removing an application also removes
    /// its service principal in this tenant, as Entra does.
    pub(crate) fn remove(&mut self, collection: Collection, id: Uuid) -> bool {
        let Some(object) = self.store_mut(collection).live.remove(&id) else {
            return false;
        };
        let version = self.next_version();
        let store = self.store_mut(collection);
        store.by_app_id.remove(&object.app_id);
        store.removed.insert(id, version);
        if collection == Collection::Applications
            && let Some(sp) = self.service_principals.by_app_id(object.app_id).map(|sp| sp.id)
        {
            self.remove(Collection::ServicePrincipals, sp);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(app_id: Uuid) -> DirectoryObject {
        DirectoryObject {
            id: Uuid::new_v4(),
            app_id,
            display_name: "x".to_owned(),
            sign_in_audience: None,
            service_principal_type: None,
            passwords: vec![],
            keys: vec![],
            version: 0,
        }
    }

    #[test]
    fn every_change_is_stamped_with_a_later_version_and_removals_leave_tombstones() {
        let mut dir = Directory::default();
        let app_id = Uuid::new_v4();
        let app = object(app_id);
        let sp = object(app_id);
        let (app_oid, sp_oid) = (app.id, sp.id);
        dir.insert(Collection::Applications, app);
        dir.insert(Collection::ServicePrincipals, sp);
        let before = dir.version();
        dir.update(Collection::Applications, app_oid, |o| o.display_name = "y".to_owned());
        assert!(dir.get(Collection::Applications, app_oid).unwrap().version > before);

        assert!(dir.remove(Collection::Applications, app_oid));
        assert!(dir.get(Collection::ServicePrincipals, sp_oid).is_none(), "the app's service principal goes too");
        assert!(dir.store(Collection::Applications).removed[&app_oid] > before);
        assert!(dir.store(Collection::ServicePrincipals).removed.contains_key(&sp_oid));
        assert!(!dir.remove(Collection::Applications, app_oid));
    }

    #[test]
    fn personal_account_audiences_are_recognised() {
        assert!(allows_personal_accounts(Some("PersonalMicrosoftAccount")));
        assert!(allows_personal_accounts(Some("AzureADandPersonalMicrosoftAccount")));
        assert!(!allows_personal_accounts(Some("AzureADMyOrg")));
    }
}

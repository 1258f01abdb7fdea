//! Identifiers as types: parsed once at the edge, never bare strings crossing a boundary.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a string was refused as an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} must be {expected}, got {got:?}")]
pub struct IdError {
    pub kind: &'static str,
    pub expected: &'static str,
    pub got: String,
}

/// `FromStr`, and the `String` conversions serde uses, for a type with `parse` and `Display`.
macro_rules! text_form {
    ($name:ident) => {
        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }
        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::parse(&s)
            }
        }
        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.to_string()
            }
        }
    };
}

/// Identifiers that Entra (or we) issue as GUIDs: stored lower-case, hyphenated.
macro_rules! guid_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Uuid);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, IdError> {
                Uuid::parse_str(s.trim()).map(Self).map_err(|_| IdError {
                    kind: $kind,
                    expected: "a GUID such as 11111111-1111-1111-1111-111111111111",
                    got: s.chars().take(64).collect(),
                })
            }
            pub fn from_uuid(u: Uuid) -> Self {
                Self(u)
            }
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
        text_form!($name);
    };
}

guid_id!(
    /// A Microsoft Entra tenant (directory) id.
    TenantId,
    "tenant id"
);
guid_id!(
    /// The object id of an application registration (what Graph's `/applications/{id}` takes).
    AppObjectId,
    "application object id"
);
guid_id!(
    /// The application (client) id, shared by an app registration and its service principals.
    ClientId,
    "application (client) id"
);
guid_id!(
    /// The object id of a service principal.
    ServicePrincipalId,
    "service principal object id"
);
guid_id!(
    /// The key id of one password or key credential.
    KeyId,
    "credential key id"
);
guid_id!(
    /// A host agent that writes files and recycles IIS app pools.
    AgentId,
    "agent id"
);

/// One rotation of one credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ExecutionId(Uuid);

impl ExecutionId {
    /// A fresh, random execution id.
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let raw = s.trim().strip_prefix("exe-").unwrap_or(s.trim());
        Uuid::parse_str(raw).map(Self).map_err(|_| IdError {
            kind: "execution id",
            expected: "exe-<GUID>",
            got: s.chars().take(64).collect(),
        })
    }
    pub fn from_uuid(u: Uuid) -> Self {
        Self(u)
    }
    /// The short marker written into the display name of a secret this execution created, so an
    /// orphaned secret can be found again in the tenant.
    pub fn marker(&self) -> String {
        format!("{MARKER_PREFIX}{}", self.0.simple())
    }

    /// The execution whose marker a secret's display name carries, if any: the inverse of
    /// [`ExecutionId::marker`], for finding the secrets a rotation created.
    pub fn from_marker(display_name: &str) -> Option<Self> {
        let at = display_name.find(MARKER_PREFIX)?;
        let hex: String = display_name[at + MARKER_PREFIX.len()..].chars().take(32).collect();
        if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        Uuid::parse_str(&hex).ok().map(Self)
    }
}

/// What precedes an execution's id in the display name of a secret it created.
const MARKER_PREFIX: &str = "rotator:";
impl Default for ExecutionId {
    fn default() -> Self {
        Self::new()
    }
}
impl fmt::Display for ExecutionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exe-{}", self.0.hyphenated())
    }
}
text_form!(ExecutionId);

/// A short name chosen by the operator, such as an integration or policy name: `[a-z0-9_-]{1,64}`
/// so it is safe in keys, file names and queue attributes.
macro_rules! slug_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, IdError> {
                let ok = !s.is_empty()
                    && s.len() <= 64
                    && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
                if ok {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(IdError {
                        kind: $kind,
                        expected: "1 to 64 characters of a-z, 0-9, '-' and '_'",
                        got: s.chars().take(64).collect(),
                    })
                }
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        text_form!($name);
    };
}

slug_id!(
    /// An integration: one tenant and the way entra-rotator authenticates to it.
    IntegrationId,
    "integration name"
);
slug_id!(
    /// A rotation policy, named in the configuration.
    PolicyId,
    "policy name"
);

/// Who owns a credential: the app registration or one of its service principals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnerKind {
    Application,
    ServicePrincipal,
}

/// What a credential is: a password (client secret) or a certificate. Part of a credential's
/// identity, because Graph gives a service principal's SAML signing certificate and that
/// certificate's password one key id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// A client secret (`passwordCredentials`): the kind entra-rotator rotates.
    Password,
    /// A certificate (`keyCredentials`): watched for expiry, not rotated.
    Certificate,
}

/// A credential in the inventory: its integration, its owner object, its key id and its kind.
/// Written `<integration>/app/<object-id>/<key-id>` for a password (or `/sp/` for a service
/// principal's) and `<integration>/app/<object-id>/cert/<key-id>` for a certificate: a password's
/// text form is the one it has always had, so records and commands that name one stay valid.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CredentialId {
    pub integration: IntegrationId,
    pub owner_kind: OwnerKind,
    pub owner: Uuid,
    pub key_id: KeyId,
    pub kind: CredentialKind,
}

/// The path segment that marks a certificate's id.
const CERTIFICATE_SEGMENT: &str = "cert";

impl CredentialId {
    /// A password of an app registration.
    pub fn for_application(integration: IntegrationId, app: AppObjectId, key_id: KeyId) -> Self {
        Self {
            integration,
            owner_kind: OwnerKind::Application,
            owner: app.as_uuid(),
            key_id,
            kind: CredentialKind::Password,
        }
    }
    /// A password of a service principal.
    pub fn for_service_principal(integration: IntegrationId, sp: ServicePrincipalId, key_id: KeyId) -> Self {
        Self {
            integration,
            owner_kind: OwnerKind::ServicePrincipal,
            owner: sp.as_uuid(),
            key_id,
            kind: CredentialKind::Password,
        }
    }
    /// The credential of the same owner and key id, of `kind`.
    pub fn with_kind(self, kind: CredentialKind) -> Self {
        Self { kind, ..self }
    }
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let err = || IdError {
            kind: "credential id",
            expected: "<integration>/app/<object-id>/<key-id> or <integration>/sp/<object-id>/<key-id>, \
                       with cert/ before the key id for a certificate",
            got: s.chars().take(160).collect(),
        };
        let parts: Vec<&str> = s.trim().split('/').collect();
        let (integration, owner_kind, owner, kind, key) = match parts.as_slice() {
            [i, o, owner, key] => (i, o, owner, CredentialKind::Password, key),
            [i, o, owner, CERTIFICATE_SEGMENT, key] => (i, o, owner, CredentialKind::Certificate, key),
            _ => return Err(err()),
        };
        let owner_kind = match *owner_kind {
            "app" => OwnerKind::Application,
            "sp" => OwnerKind::ServicePrincipal,
            _ => return Err(err()),
        };
        Ok(Self {
            integration: IntegrationId::parse(integration).map_err(|_| err())?,
            owner_kind,
            owner: Uuid::parse_str(owner).map_err(|_| err())?,
            key_id: KeyId::parse(key).map_err(|_| err())?,
            kind,
        })
    }
}
impl fmt::Display for CredentialId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let owner_kind = match self.owner_kind {
            OwnerKind::Application => "app",
            OwnerKind::ServicePrincipal => "sp",
        };
        write!(f, "{}/{}/{}/", self.integration, owner_kind, self.owner.hyphenated())?;
        if self.kind == CredentialKind::Certificate {
            write!(f, "{CERTIFICATE_SEGMENT}/")?;
        }
        write!(f, "{}", self.key_id)
    }
}
text_form!(CredentialId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_ids_are_normalised_to_lower_case() {
        let id = AgentId::parse("11111111-AAAA-1111-1111-111111111111").unwrap();
        assert_eq!(id.to_string(), "11111111-aaaa-1111-1111-111111111111");
    }

    #[test]
    fn credential_id_round_trips_through_its_text_form() {
        let s = "contoso/app/11111111-1111-1111-1111-111111111111/22222222-2222-2222-2222-222222222222";
        let id = CredentialId::parse(s).unwrap();
        assert_eq!(id.owner_kind, OwnerKind::Application);
        assert_eq!(id.to_string(), s);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<CredentialId>(&json).unwrap(), id);
    }

    #[test]
    fn a_certificate_and_a_password_with_one_key_id_are_two_ids() {
        let password: CredentialId =
            "contoso/sp/11111111-1111-1111-1111-111111111111/22222222-2222-2222-2222-222222222222".parse().unwrap();
        assert_eq!(password.kind, CredentialKind::Password);
        let certificate = password.clone().with_kind(CredentialKind::Certificate);
        assert_ne!(certificate, password);
        let text = certificate.to_string();
        assert_eq!(text, "contoso/sp/11111111-1111-1111-1111-111111111111/cert/22222222-2222-2222-2222-222222222222");
        assert_eq!(CredentialId::parse(&text).unwrap(), certificate);
        let json = serde_json::to_string(&certificate).unwrap();
        assert_eq!(serde_json::from_str::<CredentialId>(&json).unwrap(), certificate);
        assert!(CredentialId::parse(&text.replace("/cert/", "/key/")).is_err());
        assert!(CredentialId::parse(&format!("{text}/x")).is_err());
    }

    #[test]
    fn malformed_ids_are_refused_with_what_was_expected() {
        assert!(CredentialId::parse("contoso/app/not-a-guid/x").is_err());
        assert!(
            CredentialId::parse("contoso/vm/11111111-1111-1111-1111-111111111111/22222222-2222-2222-2222-222222222222")
                .is_err()
        );
        let err = IntegrationId::parse("Contoso Prod").unwrap_err();
        assert!(err.to_string().contains("integration name"));
    }

    #[test]
    fn execution_id_marker_is_stable_and_findable() {
        let id = ExecutionId::parse("exe-11111111-1111-1111-1111-111111111111").unwrap();
        assert_eq!(id.marker(), "rotator:11111111111111111111111111111111");
        assert_eq!(ExecutionId::from_marker(&format!("entra-rotator {}", id.marker())), Some(id));
        assert_eq!(ExecutionId::from_marker("entra-rotator rotator:1234"), None);
        assert_eq!(ExecutionId::from_marker("prod secret"), None);
        assert_eq!(ExecutionId::parse(&id.to_string()).unwrap(), id);
    }
}

//! An integration: one Entra tenant entra-rotator reads and writes, as one app registration, and how
//! that registration signs in.

use std::path::PathBuf;

use serde::Deserialize;

use crate::domain::ids::{ClientId, IntegrationId, TenantId};
use crate::domain::secret::SecretValue;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    ClientSecret,
    ClientCertificate,
    WorkloadIdentity,
    ManagedIdentity,
    AwsFederation,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecret => "client_secret",
            Self::ClientCertificate => "client_certificate",
            Self::WorkloadIdentity => "workload_identity",
            Self::ManagedIdentity => "managed_identity",
            Self::AwsFederation => "aws_federation",
        }
    }
}

/// The audience Entra expects in a federated identity assertion.
pub const ENTRA_TOKEN_EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";

/// Where a deployment keeps its integration's client secret when entra-rotator may rotate it
/// (the stored-secret fallback): read at every token request, written by the
/// `rotator_own_secret` step. Names a place, never holds the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretPlace {
    /// A file on this machine holding the secret alone (a trailing newline is trimmed), readable
    /// by its owner only.
    File(PathBuf),
    /// An AWS Secrets Manager secret, its `SecretString` the secret alone.
    SecretsManager(SecretArn),
}

impl SecretPlace {
    /// Says where, never what.
    pub fn describe(&self) -> String {
        match self {
            Self::File(path) => format!("the file {}", path.display()),
            Self::SecretsManager(arn) => format!("the Secrets Manager secret {arn}"),
        }
    }
}

/// The ARN of a Secrets Manager secret, `arn:<partition>:secretsmanager:<region>:<account>:secret:<name>`,
/// parsed once: its region is the one to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretArn {
    text: String,
    region: String,
}

impl SecretArn {
    /// `text` if it is the ARN of a Secrets Manager secret.
    pub fn parse(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.splitn(7, ':').collect();
        let refuse = || {
            "expected the ARN of a Secrets Manager secret, arn:aws:secretsmanager:<region>:<account>:secret:<name>"
                .to_owned()
        };
        match parts.as_slice() {
            ["arn", partition, "secretsmanager", region, account, "secret", name]
                if !partition.is_empty()
                    && !region.is_empty()
                    && region.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && account.len() == 12
                    && account.chars().all(|c| c.is_ascii_digit())
                    && !name.is_empty() =>
            {
                Ok(Self { text: text.to_owned(), region: (*region).to_owned() })
            }
            _ => Err(refuse()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The region the secret lives in.
    pub fn region(&self) -> &str {
        &self.region
    }
}

impl std::fmt::Display for SecretArn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// How an integration signs in to Entra. Holds secrets, so it has no `Debug`.
pub enum Credentials {
    ClientSecret {
        secret: SecretValue,
        source: String,
    },
    /// A client secret kept in a place the deployment reads it from at every token request, so
    /// that the `rotator_own_secret` step can replace it without a restart.
    StoredClientSecret {
        place: SecretPlace,
    },
    ClientCertificate {
        path: PathBuf,
        password: Option<SecretValue>,
    },
    WorkloadIdentity {
        token_file: PathBuf,
    },
    ManagedIdentity {
        client_id: Option<ClientId>,
    },
    /// AWS outbound identity federation: a web identity token from STS `GetWebIdentityToken`
    /// (signed by the AWS account's issuer, about the rotator's own role), presented to Entra as a
    /// client assertion for an app registration with a federated identity credential trusting it.
    AwsFederation {
        audience: String,
        region: Option<String>,
        sts_endpoint: Option<String>,
    },
}

impl Credentials {
    /// Says how, never what.
    pub fn describe(&self) -> String {
        match self {
            Self::ClientSecret { source, .. } => format!("client secret (set, from {source})"),
            Self::StoredClientSecret { place } => format!("client secret (read from {})", place.describe()),
            Self::ClientCertificate { path, password } => format!(
                "client certificate {}{}",
                path.display(),
                if password.is_some() { " (password set)" } else { "" }
            ),
            Self::WorkloadIdentity { token_file } => format!("workload identity, token file {}", token_file.display()),
            Self::ManagedIdentity { client_id: Some(id) } => format!("managed identity (user-assigned {id})"),
            Self::ManagedIdentity { client_id: None } => "managed identity (system-assigned)".into(),
            Self::AwsFederation { audience, .. } => {
                format!("AWS outbound identity federation (STS web identity token for {audience})")
            }
        }
    }
}

pub struct IntegrationConfig {
    pub id: IntegrationId,
    pub tenant: TenantId,
    pub client_id: ClientId,
    pub display_name: Option<String>,
    pub enabled: bool,
    pub credentials: Credentials,
    pub authority_host: url::Url,
    pub graph_base_url: url::Url,
    /// Azure Resource Manager (`https://management.azure.com`, or a sovereign cloud's), for the
    /// steps that sign in as this integration.
    pub resource_manager_url: url::Url,
    pub ca_certificate: Option<PathBuf>,
}

impl IntegrationConfig {
    /// Where the deployment keeps this integration's client secret, when entra-rotator may rotate it.
    pub fn secret_place(&self) -> Option<&SecretPlace> {
        match &self.credentials {
            Credentials::StoredClientSecret { place } => Some(place),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_arn_gives_its_region_and_anything_else_is_refused() {
        let arn =
            SecretArn::parse("arn:aws:secretsmanager:eu-west-1:123456789012:secret:rotator/entra-AbCdEf").unwrap();
        assert_eq!(arn.region(), "eu-west-1");
        for wrong in [
            "arn:aws:ssm:eu-west-1:123456789012:parameter/x",
            "arn:aws:secretsmanager:eu-west-1:1234:secret:x",
            "arn:aws:secretsmanager::123456789012:secret:x",
            "rotator/entra",
        ] {
            assert!(SecretArn::parse(wrong).is_err(), "{wrong}");
        }
    }
}

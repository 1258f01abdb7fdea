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

/// How an integration signs in to Entra. Holds secrets, so it has no `Debug`.
pub enum Credentials {
    ClientSecret {
        secret: SecretValue,
        source: String,
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

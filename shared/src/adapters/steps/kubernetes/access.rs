//! Reaching the cluster: a `kube` client from a kubeconfig (and context) or the in-cluster service
//! account, signed in as the kubeconfig's user or, for AKS with Microsoft Entra authentication, with
//! a token for the AKS server application from an integration's Entra identity (what `kubelogin`
//! does), or for EKS with a token signed by the rotator's own AWS role (what `aws eks get-token`
//! does, see [`super::eks`]). The API server's address is checked against the outbound address policy, as every URL a
//! step calls is; the client trusts the CA the kubeconfig names.
//!
//! Errors are turned into words here ([`Cluster::failure`]), retryable unless the server refused
//! for good.

use std::time::Duration;

use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use super::super::{Azure, http};
use crate::domain::ids::CredentialId;
use crate::domain::steps::{ClusterAuth, KubernetesSecretConfig};
use crate::ports::step_runner::StepFailure;

/// The AKS server application (the same in every tenant), whose token AKS with Microsoft Entra
/// authentication accepts.
pub const AKS_SERVER_SCOPE: &str = "6dae42f8-4368-4678-94ff-3960e28e3630/.default";

/// A client for one cluster, and who it is there, in words.
pub(in crate::adapters::steps) struct Cluster {
    pub(super) client: Client,
    pub(super) who: String,
    server: String,
}

pub(in crate::adapters::steps) async fn connect(
    azure: &Azure,
    cfg: &KubernetesSecretConfig,
    credential: &CredentialId,
) -> Result<Cluster, StepFailure> {
    let (mut config, mut who) = if cfg.in_cluster {
        let config = Config::incluster().map_err(|_| {
            StepFailure::permanent(
                "in_cluster is set, but the rotator does not run in a Kubernetes pod with a service account \
                 (no KUBERNETES_SERVICE_HOST, or no token under /var/run/secrets/kubernetes.io/serviceaccount)",
            )
        })?;
        (config, "the rotator's in-cluster service account".to_owned())
    } else {
        let file = cfg.kubeconfig.as_deref().unwrap_or("the default kubeconfig ($KUBECONFIG or ~/.kube/config)");
        let kubeconfig = match &cfg.kubeconfig {
            Some(path) => Kubeconfig::read_from(path),
            None => Kubeconfig::read(),
        }
        // The file may hold tokens: the parser's words (which may quote it) are not repeated.
        .map_err(|_| {
            StepFailure::permanent(format!("cannot read the kubeconfig {file}: missing or not a kubeconfig"))
        })?;
        let options = KubeConfigOptions { context: cfg.context.clone(), ..Default::default() };
        let context = cfg.context.clone().or_else(|| kubeconfig.current_context.clone()).unwrap_or_default();
        let config = Config::from_custom_kubeconfig(kubeconfig, &options).await.map_err(|_| {
            StepFailure::permanent(format!(
                "the kubeconfig {file} has no usable context {context:?} (its cluster, server or user is missing)"
            ))
        })?;
        (config, format!("the kubeconfig user of context {context:?}"))
    };
    let server = config.cluster_url.to_string();
    check_address(azure, &server).await?;
    match &cfg.auth {
        ClusterAuth::Kubeconfig => {}
        ClusterAuth::Aks { identity } => {
            let identity = azure.identities.for_step(identity.as_ref(), credential)?;
            let token = identity.credential.get_token(&[AKS_SERVER_SCOPE], None).await.map_err(|_| {
                StepFailure::retryable(format!(
                    "{} could not get a token for the AKS server application",
                    identity.describe()
                ))
            })?;
            config.auth_info = AuthInfo { token: Some(token.token.secret().to_owned().into()), ..Default::default() };
            who = format!("{} (AKS, Microsoft Entra authentication)", identity.describe());
        }
        ClusterAuth::Eks { cluster_name, region } => {
            let token = azure.aws.eks_token(cluster_name, region.as_deref()).await?;
            config.auth_info = AuthInfo { token: Some(token.into()), ..Default::default() };
            who = format!("the rotator's own AWS role (EKS cluster {cluster_name})");
        }
    }
    // kube's own retry of 429/503/504 backs off for minutes; the step's retries (and the queue's
    // redelivery) are the one place that decides how long a step keeps trying.
    config.default_retry = false;
    config.connect_timeout = Some(Duration::from_secs(10));
    config.read_timeout = Some(Duration::from_secs(30));
    config.write_timeout = Some(Duration::from_secs(30));
    let client = Client::try_from(config).map_err(|_| {
        StepFailure::permanent(format!("cannot build a Kubernetes client for {server} (its CA or client certificate)"))
    })?;
    Ok(Cluster { client, who, server })
}

/// The outbound address policy on the API server's address, and on what its name resolves to.
async fn check_address(azure: &Azure, server: &str) -> Result<(), StepFailure> {
    let url = url::Url::parse(server)
        .map_err(|_| StepFailure::permanent(format!("the API server address {server} is not a valid URL")))?;
    azure.http.check_url(&url)?;
    if let Some(url::Host::Domain(name)) = url.host() {
        let port = url.port_or_known_default().unwrap_or(443);
        let addresses = tokio::net::lookup_host((name, port))
            .await
            .map_err(|_| StepFailure::retryable(format!("cannot resolve the API server {name}")))?;
        for address in addresses {
            azure.http.check_ip(address.ip())?;
        }
    }
    Ok(())
}

impl Cluster {
    /// A `kube` error in words: the API server's code, reason and message (a `Status` never holds a
    /// Secret's data), or that it could not be reached.
    pub(in crate::adapters::steps) fn failure(&self, e: &kube::Error, action: &str, what: &str) -> StepFailure {
        match e {
            kube::Error::Api(status) => {
                let message = http::first_line(&status.message);
                let reason = if status.reason.is_empty() { String::new() } else { format!(" {}", status.reason) };
                match status.code {
                    401 => StepFailure::permanent(format!(
                        "the API server {} did not accept {} (401{reason}): its token or certificate is not valid there",
                        self.server, self.who
                    )),
                    403 => {
                        StepFailure::permanent(format!("{} may not {action} {what} (403{reason}): {message}", self.who))
                    }
                    404 => StepFailure::permanent(format!("{what} was not found (404{reason}): {message}")),
                    code @ (409 | 429 | 408 | 500..=599) => {
                        StepFailure::retryable(format!("could not {action} {what} ({code}{reason}): {message}"))
                    }
                    code => StepFailure::permanent(format!("could not {action} {what} ({code}{reason}): {message}")),
                }
            }
            kube::Error::Auth(_) => {
                StepFailure::retryable(format!("{} could not sign in to the API server {}", self.who, self.server))
            }
            _ => StepFailure::retryable(format!("could not reach the API server {} to {action} {what}", self.server)),
        }
    }
}

#[cfg(test)]
impl Cluster {
    /// A client for an address nothing listens on, to turn errors into words.
    pub(super) fn for_tests() -> Self {
        let config = Config::new("https://127.0.0.1:9".parse().expect("a valid URI"));
        let client = Client::try_from(config).expect("a client");
        Cluster { client, who: "the test identity".to_owned(), server: "https://127.0.0.1:9/".to_owned() }
    }
}

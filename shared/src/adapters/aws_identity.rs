//! The rotator's own AWS identity, for what it signs or asks of AWS outside the AWS adapters: EKS
//! tokens (`kubernetes_secret` with `"auth": "eks"`) and the web identity tokens of AWS outbound
//! identity federation (an integration with `auth = "aws_federation"`). On AWS that is the
//! function's role; on one machine, whatever aws-config's default chain finds.

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;

/// Where the rotator's AWS credentials come from: given (tests, or a caller with its own), else
/// aws-config's default chain (environment, web identity, the Lambda's or container's role),
/// loaded once, when first needed.
#[derive(Default, Debug)]
pub(crate) struct AwsCredentialsSource {
    given: Option<AwsSigning>,
    default_chain: tokio::sync::OnceCell<Option<AwsSigning>>,
}

/// Credentials and, when known, the rotator's own region.
#[derive(Clone, Debug)]
pub struct AwsSigning {
    pub credentials: SharedCredentialsProvider,
    pub region: Option<String>,
    /// The deployment's endpoint for every AWS service (`ROTATOR_AWS_ENDPOINT`: a local emulator),
    /// used by the Secrets Manager client of the stored-secret fallback; `None` is AWS itself.
    pub endpoint_url: Option<String>,
}

impl AwsSigning {
    /// Fixed keys (and a session token, as a role's credentials have), for a caller that holds
    /// them itself; the rotator's own wiring uses the default chain instead.
    pub fn from_keys(
        access_key_id: &str,
        secret_access_key: &str,
        session_token: Option<&str>,
        region: Option<&str>,
    ) -> Self {
        let credentials =
            Credentials::new(access_key_id, secret_access_key, session_token.map(str::to_owned), None, "given keys");
        Self {
            credentials: SharedCredentialsProvider::new(credentials),
            region: region.map(str::to_owned),
            endpoint_url: None,
        }
    }

    /// As it is, AWS services asked at `endpoint` (a local emulator) instead.
    #[must_use]
    pub fn with_endpoint_url(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint_url = Some(endpoint.into());
        self
    }
}

impl AwsCredentialsSource {
    pub(crate) fn given(signing: AwsSigning) -> Self {
        Self { given: Some(signing), default_chain: tokio::sync::OnceCell::new() }
    }

    /// The given credentials, else the default chain's; `None` when aws-config finds no provider.
    pub(crate) async fn signing(&self) -> Option<AwsSigning> {
        if let Some(given) = &self.given {
            return Some(given.clone());
        }
        let signing = self
            .default_chain
            .get_or_init(|| async {
                let config = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
                let region = config.region().map(ToString::to_string);
                config.credentials_provider().map(|credentials| AwsSigning { credentials, region, endpoint_url: None })
            })
            .await;
        signing.clone()
    }
}

//! The EKS token, made as `aws eks get-token` makes it: a SigV4-presigned STS `GetCallerIdentity`
//! URL whose signature covers the `x-k8s-aws-id` header (the cluster's name), base64url-encoded
//! without padding behind `k8s-aws-v1.`. The API server's authenticator sends that request to STS,
//! learns the caller's role, and maps it to a Kubernetes user (an access entry).
//!
//! The token is signed locally with the rotator's own credentials: the Lambda function's role (or
//! whatever aws-config's default chain finds on one machine). Nothing is called to make it, no
//! cluster credential is stored, and presigning `GetCallerIdentity` needs no IAM permission.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::adapters::aws_identity::AwsCredentialsSource;
pub use crate::adapters::aws_identity::AwsSigning;
use crate::ports::step_runner::StepFailure;

/// What `aws eks get-token` puts before the encoded URL.
pub const EKS_TOKEN_PREFIX: &str = "k8s-aws-v1.";
/// The header whose signed value names the cluster the token is for.
pub const EKS_CLUSTER_HEADER: &str = "x-k8s-aws-id";
/// How long the presigned URL is valid, as `aws eks get-token` signs it (the authenticator accepts
/// a token for 15 minutes after its signing time whatever this says).
const EXPIRES_IN: Duration = Duration::from_secs(60);

impl AwsCredentialsSource {
    /// A token for `cluster`, signed for STS in `region` (else the rotator's own region).
    pub(in crate::adapters::steps) async fn eks_token(
        &self,
        cluster: &str,
        region: Option<&str>,
    ) -> Result<String, StepFailure> {
        let signing = self.signing().await.ok_or_else(|| {
            StepFailure::permanent(
                "the rotator has no AWS credentials to sign an EKS token with (aws-config found none)",
            )
        })?;
        let region = region.map(str::to_owned).or(signing.region).ok_or_else(|| {
            StepFailure::permanent(format!(
                "the EKS step for cluster {cluster} names no region and the rotator has none (AWS_REGION): \
                 give \"region\" in the step"
            ))
        })?;
        // The provider's words may name a file or a profile, never a key; they are still not
        // repeated, as they can be long and say little to an operator.
        let credentials = signing.credentials.provide_credentials().await.map_err(|_| {
            StepFailure::retryable(format!(
                "could not get the rotator's own AWS credentials to sign an EKS token for cluster {cluster} \
                 (the Lambda function's role, or the default chain on one machine)"
            ))
        })?;
        token(&credentials, &region, cluster, SystemTime::now())
            .map_err(|_| StepFailure::permanent(format!("could not sign an EKS token for cluster {cluster}")))
    }
}

type SignError = Box<dyn std::error::Error + Send + Sync>;

/// The STS endpoint of `region`, as `aws eks get-token` uses it (regional; `.com.cn` in China).
pub(super) fn sts_host(region: &str) -> String {
    if region.starts_with("cn-") {
        format!("sts.{region}.amazonaws.com.cn")
    } else {
        format!("sts.{region}.amazonaws.com")
    }
}

/// The bearer token for `cluster`, signed at `at`.
pub(super) fn token(
    credentials: &Credentials,
    region: &str,
    cluster: &str,
    at: SystemTime,
) -> Result<String, SignError> {
    let url = presigned_url(&sts_host(region), credentials, region, cluster, at, EXPIRES_IN)?;
    Ok(format!("{EKS_TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(url)))
}

/// `GET https://<host>/?Action=GetCallerIdentity&Version=2011-06-15`, presigned with the cluster
/// header signed.
fn presigned_url(
    host: &str,
    credentials: &Credentials,
    region: &str,
    cluster: &str,
    at: SystemTime,
    expires_in: Duration,
) -> Result<String, SignError> {
    let identity: Identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(expires_in);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(at)
        .settings(settings)
        .build()?
        .into();
    let base = format!("https://{host}/?Action=GetCallerIdentity&Version=2011-06-15");
    let headers = [("host", host), (EKS_CLUSTER_HEADER, cluster)];
    let request = SignableRequest::new("GET", &base, headers.into_iter(), SignableBody::Bytes(&[]))?;
    let (instructions, _signature) = sign(request, &params)?.into_parts();
    let mut url = base;
    for (name, value) in instructions.params() {
        url.push('&');
        url.push_str(name);
        url.push('=');
        url.extend(percent_encoding::utf8_percent_encode(value, QUERY_VALUE));
    }
    Ok(url)
}

/// What SigV4 leaves unencoded in a query value: RFC 3986's unreserved characters.
const QUERY_VALUE: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

#[cfg(test)]
mod tests {
    use aws_credential_types::provider::SharedCredentialsProvider;

    use super::*;

    fn example_credentials() -> Credentials {
        Credentials::new("akid", "secret", None, None, "test")
    }

    /// The AWS SDK for Ruby's published example of this very URL (its test of
    /// `get_caller_identity_presigned_url` with the `X-K8s-Aws-Id` header): same key, region,
    /// time, lifetime and cluster, same signature.
    #[test]
    fn the_presigned_url_matches_the_aws_sdks_published_example() {
        let at = time::macros::datetime!(2018-08-05 00:00:00 UTC).into();
        let url = presigned_url(
            "sts.amazonaws.com",
            &example_credentials(),
            "us-west-2",
            "my-eks-cluster",
            at,
            Duration::from_secs(59),
        )
        .unwrap();
        assert_eq!(
            url,
            "https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=akid%2F20180805%2Fus-west-2%2Fsts%2Faws4_request&X-Amz-Date=20180805T000000Z\
             &X-Amz-Expires=59&X-Amz-SignedHeaders=host%3Bx-k8s-aws-id\
             &X-Amz-Signature=d1f6551aafc0f5c57971fe161a12cbe0539fc1681698ea4a4c0fde5abc51e32e"
        );
    }

    #[test]
    fn the_token_is_the_regional_url_base64url_encoded_without_padding() {
        let at = time::macros::datetime!(2026-12-02 06:00:00 UTC).into();
        let credentials = Credentials::new("AKIDEXAMPLE", "secret", Some("session/token+=".into()), None, "test");
        let token = token(&credentials, "eu-west-1", "orders", at).unwrap();
        let encoded = token.strip_prefix(EKS_TOKEN_PREFIX).unwrap();
        assert!(!encoded.contains('='), "no padding: {encoded}");
        let url = String::from_utf8(URL_SAFE_NO_PAD.decode(encoded).unwrap()).unwrap();
        assert!(url.starts_with("https://sts.eu-west-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&"));
        assert!(url.contains("X-Amz-Expires=60"), "{url}");
        assert!(url.contains("X-Amz-Security-Token=session%2Ftoken%2B%3D"), "{url}");
        assert!(!url.contains("secret"), "the secret key never leaves the signer");
        assert_eq!(sts_host("cn-north-1"), "sts.cn-north-1.amazonaws.com.cn");
    }

    #[tokio::test]
    async fn a_step_without_a_region_anywhere_is_refused_in_words() {
        let source = AwsCredentialsSource::given(AwsSigning {
            credentials: SharedCredentialsProvider::new(example_credentials()),
            region: None,
            endpoint_url: None,
        });
        let e = source.eks_token("orders", None).await.unwrap_err();
        assert!(!e.retryable && e.message.contains("names no region"), "{e:?}");
        assert!(source.eks_token("orders", Some("eu-west-1")).await.unwrap().starts_with(EKS_TOKEN_PREFIX));
    }
}

//! How the Graph adapter gets its access tokens: one `azure_identity` credential per integration,
//! chosen by the configured method, with the adapter's own HTTP client (and so its trusted CA) as the
//! credential pipeline's transport.
//!
//! Client certificates: `azure_identity` 1.x has a `ClientCertificateCredential`, but only behind its
//! `client_certificate` feature, which links OpenSSL and reads PKCS#12. Linking OpenSSL would put a
//! second TLS/crypto stack into the Lambda builds, so entra-rotator signs the client assertion itself
//! (RS256 with aws-lc-rs, the provider rustls already uses) and hands it to `azure_identity`'s
//! `ClientAssertionCredential`. The certificate file is PEM: the certificate and its unencrypted RSA
//! private key (PKCS#8 or PKCS#1).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::{
    AsyncRawResponse, ClientMethodOptions, ClientOptions, ExponentialRetryOptions, HttpClient, Request, RetryOptions,
    Transport,
};
use azure_identity::{
    ClientAssertion, ClientAssertionCredential, ClientAssertionCredentialOptions, ClientSecretCredential,
    ClientSecretCredentialOptions, ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
    WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::adapters::aws_identity::AwsCredentialsSource;
use crate::adapters::stored_secret::StoredSecret;
use crate::adapters::system_clock::SystemClock;
use crate::domain::ids::{ClientId, TenantId};
use crate::domain::integration::Credentials;
use crate::domain::secret::{SecretBytes, SecretValue};
use crate::ports::Clock;
use crate::{Error, Result};

use super::RetryPolicy;

/// How long a signed client assertion is valid. Entra accepts up to 10 minutes; the credential asks
/// for a fresh one with every token request, so a short life costs nothing.
const ASSERTION_LIFETIME_SECS: i64 = 300;

/// How the integration's own app signs in to get Graph tokens. Holds secrets, so its `Debug` shows the
/// method only.
pub enum TokenSource {
    /// A client secret of the integration's app registration.
    ClientSecret { client_id: ClientId, secret: SecretValue },
    /// A client secret read from where the deployment keeps it (a file, Secrets Manager) at every
    /// token request, so the one the `rotator_own_secret` step wrote is used without a restart.
    StoredClientSecret { client_id: ClientId, stored: Arc<StoredSecret> },
    /// A PEM file's contents: the certificate registered on the app and its RSA private key.
    ClientCertificate { client_id: ClientId, pem: SecretBytes },
    /// A federated token (Kubernetes workload identity) read from this file at every token request.
    WorkloadIdentity { client_id: ClientId, token_file: PathBuf },
    /// The Azure managed identity of the host: system-assigned, or the user-assigned one with this id.
    ManagedIdentity { client_id: Option<ClientId> },
    /// AWS outbound identity federation: each token request first asks STS `GetWebIdentityToken`
    /// (as the rotator's own AWS identity) for a JWT for `audience`, and presents it as the client
    /// assertion. `aws` replaces aws-config's default chain (and region) when given.
    AwsFederation {
        client_id: ClientId,
        audience: String,
        region: Option<String>,
        sts_endpoint: Option<String>,
        aws: Option<crate::adapters::aws_identity::AwsSigning>,
        /// A CA (PEM) STS is trusted by besides the system's roots: the integration's
        /// `ca_certificate`, as for the token endpoint.
        extra_ca_pem: Option<Vec<u8>>,
    },
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ClientSecret { client_id, .. } => write!(f, "ClientSecret({client_id})"),
            Self::StoredClientSecret { client_id, stored } => {
                write!(f, "StoredClientSecret({client_id}, {})", stored.describe())
            }
            Self::ClientCertificate { client_id, .. } => write!(f, "ClientCertificate({client_id})"),
            Self::WorkloadIdentity { client_id, token_file } => {
                write!(f, "WorkloadIdentity({client_id}, {})", token_file.display())
            }
            Self::ManagedIdentity { client_id: Some(id) } => write!(f, "ManagedIdentity({id})"),
            Self::ManagedIdentity { client_id: None } => f.write_str("ManagedIdentity(system-assigned)"),
            Self::AwsFederation { client_id, audience, .. } => write!(f, "AwsFederation({client_id}, {audience})"),
        }
    }
}

impl TokenSource {
    /// The token source an integration's configuration describes. Reads the certificate file.
    pub fn from_credentials(client_id: ClientId, credentials: &Credentials) -> Result<Self> {
        Ok(match credentials {
            Credentials::ClientSecret { secret, .. } => Self::ClientSecret { client_id, secret: secret.clone() },
            Credentials::StoredClientSecret { place } => {
                Self::StoredClientSecret { client_id, stored: Arc::new(StoredSecret::new(place, None)) }
            }
            Credentials::ClientCertificate { path, password } => {
                if password.is_some() {
                    return Err(Error::Config(format!(
                        "{}: password-protected certificates (PKCS#12) are not supported; export the certificate \
                         and its key as PEM (openssl pkcs12 -in cert.pfx -nodes -out cert.pem), protect the file, \
                         and drop certificate_password_env",
                        path.display()
                    )));
                }
                let pem = std::fs::read(path)
                    .map_err(|e| Error::Config(format!("cannot read certificate {}: {e}", path.display())))?;
                Self::ClientCertificate { client_id, pem: SecretBytes::new(pem) }
            }
            Credentials::WorkloadIdentity { token_file } => {
                Self::WorkloadIdentity { client_id, token_file: token_file.clone() }
            }
            Credentials::ManagedIdentity { client_id: user_assigned } => {
                Self::ManagedIdentity { client_id: *user_assigned }
            }
            Credentials::AwsFederation { audience, region, sts_endpoint } => Self::AwsFederation {
                client_id,
                audience: audience.clone(),
                region: region.clone(),
                sts_endpoint: sts_endpoint.clone(),
                aws: None,
                extra_ca_pem: None,
            },
        })
    }

    /// For AWS federation, the AWS identity to ask STS as (the Lambda deployment's own), instead
    /// of aws-config's default chain; other sources are returned as they are.
    #[must_use]
    pub fn with_aws_identity(mut self, identity: Option<&crate::adapters::aws_identity::AwsSigning>) -> Self {
        match (&mut self, identity) {
            (Self::AwsFederation { aws, .. }, Some(given)) => *aws = Some(given.clone()),
            (Self::StoredClientSecret { stored, .. }, Some(given)) => {
                *stored = Arc::new(StoredSecret::new(stored.place(), Some(given)));
            }
            _ => {}
        }
        self
    }

    /// The client id of the application (or managed identity) that signs in; none for a
    /// system-assigned managed identity, whose id only Azure knows.
    pub fn client_id(&self) -> Option<ClientId> {
        match self {
            Self::ClientSecret { client_id, .. }
            | Self::StoredClientSecret { client_id, .. }
            | Self::ClientCertificate { client_id, .. }
            | Self::WorkloadIdentity { client_id, .. }
            | Self::AwsFederation { client_id, .. } => Some(*client_id),
            Self::ManagedIdentity { client_id } => *client_id,
        }
    }

    /// Says how, never what.
    pub fn method(&self) -> &'static str {
        match self {
            Self::ClientSecret { .. } => "client secret",
            Self::StoredClientSecret { .. } => "stored client secret",
            Self::ClientCertificate { .. } => "client certificate",
            Self::WorkloadIdentity { .. } => "workload identity",
            Self::ManagedIdentity { .. } => "managed identity",
            Self::AwsFederation { .. } => "AWS federation",
        }
    }
}

/// The `azure_identity` credential for `source`, talking to `authority` through `http`. Token
/// requests are retried by the credential's own pipeline, within the same limits as Graph calls.
pub(super) fn credential(
    source: TokenSource,
    tenant: TenantId,
    authority: &url::Url,
    http: reqwest::Client,
    retry: RetryPolicy,
) -> Result<Arc<dyn TokenCredential>> {
    token_credential(source, tenant, authority, Transport::new(Arc::new(TlsAwareTransport(http))), retry)
}

/// The `azure_identity` credential for `source`, its token requests sent through `transport`
/// (the Azure steps' client, for the identities they sign in as).
pub(crate) fn token_credential(
    source: TokenSource,
    tenant: TenantId,
    authority: &url::Url,
    transport: Transport,
    retry: RetryPolicy,
) -> Result<Arc<dyn TokenCredential>> {
    let duration =
        |d: std::time::Duration| azure_core::time::Duration::try_from(d).unwrap_or(azure_core::time::Duration::MAX);
    let retry_options = ExponentialRetryOptions {
        initial_delay: duration(retry.base_delay),
        max_retries: retry.max_attempts.saturating_sub(1),
        max_total_elapsed: duration(retry.budget),
        max_delay: duration(retry.max_delay),
    };
    let client_options = || {
        let mut cloud = CustomConfiguration::default();
        cloud.authority_host = authority.as_str().trim_end_matches('/').to_owned();
        ClientOptions {
            // Our client: it trusts the configured CA and speaks rustls with aws-lc-rs only.
            transport: Some(transport.clone()),
            cloud: Some(Arc::new(CloudConfiguration::Custom(cloud))),
            retry: RetryOptions::exponential(retry_options.clone()),
            ..Default::default()
        }
    };
    let config_error = |what: &str, e: azure_core::Error| Error::Config(format!("{what}: {e}"));
    let tenant_text = tenant.to_string();
    let credential: Arc<dyn TokenCredential> = match source {
        TokenSource::ClientSecret { client_id, secret } => {
            // azure_identity keeps its own copy of the secret in its `Secret` type.
            let secret = Secret::new(secret.expose().to_owned());
            ClientSecretCredential::new(
                &tenant_text,
                client_id.to_string(),
                secret,
                Some(ClientSecretCredentialOptions { client_options: client_options() }),
            )
            .map_err(|e| config_error("client secret credential", e))?
        }
        TokenSource::StoredClientSecret { client_id, stored } => Arc::new(StoredSecretCredential {
            client_id,
            tenant: tenant_text,
            stored,
            client_options: client_options(),
            current: tokio::sync::Mutex::new(None),
        }),
        TokenSource::ClientCertificate { client_id, pem } => {
            let assertion = CertificateAssertion::from_pem(
                client_id,
                pem.expose(),
                token_endpoint(authority, tenant),
                Arc::new(SystemClock),
            )?;
            ClientAssertionCredential::new(
                tenant_text,
                client_id.to_string(),
                assertion,
                Some(ClientAssertionCredentialOptions { client_options: client_options() }),
            )
            .map_err(|e| config_error("client certificate credential", e))?
        }
        TokenSource::WorkloadIdentity { client_id, token_file } => {
            WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
                credential_options: ClientAssertionCredentialOptions { client_options: client_options() },
                client_id: Some(client_id.to_string()),
                tenant_id: Some(tenant_text),
                token_file_path: Some(token_file),
            }))
            .map_err(|e| config_error("workload identity credential", e))?
        }
        TokenSource::AwsFederation { client_id, audience, region, sts_endpoint, aws, extra_ca_pem } => {
            let assertion = StsWebIdentity {
                audience,
                region,
                sts_endpoint,
                extra_ca_pem,
                aws: aws.map(AwsCredentialsSource::given).unwrap_or_default(),
                client: tokio::sync::OnceCell::new(),
            };
            ClientAssertionCredential::new(
                tenant_text,
                client_id.to_string(),
                assertion,
                Some(ClientAssertionCredentialOptions { client_options: client_options() }),
            )
            .map_err(|e| config_error("AWS federation credential", e))?
        }
        TokenSource::ManagedIdentity { client_id } => {
            // The managed identity endpoint (IMDS or App Service) is local to the host; the authority
            // host does not apply.
            ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                user_assigned_id: client_id.map(|id| UserAssignedId::ClientId(id.to_string())),
                client_options: client_options(),
            }))
            .map_err(|e| config_error("managed identity credential", e))?
        }
    };
    Ok(credential)
}

/// A client secret credential over the secret kept in a place: at every token request the place is
/// read (a file afresh, Secrets Manager at most once a minute), and when its value changed the
/// `azure_identity` credential (and its token cache) is built anew with it, so the next token is
/// asked with the secret the `rotator_own_secret` step wrote.
struct StoredSecretCredential {
    client_id: ClientId,
    tenant: String,
    stored: Arc<StoredSecret>,
    client_options: ClientOptions,
    current: tokio::sync::Mutex<Option<(SecretValue, Arc<ClientSecretCredential>)>>,
}

impl fmt::Debug for StoredSecretCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredSecretCredential")
            .field("client_id", &self.client_id)
            .field("place", &self.stored.describe())
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl TokenCredential for StoredSecretCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
    ) -> azure_core::Result<azure_core::credentials::AccessToken> {
        let secret = self.stored.read().await.map_err(|f| {
            azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                format!("the stored client secret: {}", f.message),
            )
        })?;
        let credential = {
            let mut current = self.current.lock().await;
            match current.as_ref() {
                Some((held, credential)) if *held == secret => credential.clone(),
                _ => {
                    let credential = ClientSecretCredential::new(
                        &self.tenant,
                        self.client_id.to_string(),
                        Secret::new(secret.expose().to_owned()),
                        Some(ClientSecretCredentialOptions { client_options: self.client_options.clone() }),
                    )?;
                    *current = Some((secret, credential.clone()));
                    credential
                }
            }
        };
        credential.get_token(scopes, options).await
    }
}

/// How long the web identity token asked of STS is valid (its minimum is 60 s, its default 300 s):
/// it is used at once, for one token request.
const WEB_IDENTITY_TOKEN_SECS: i32 = 300;

/// The client assertion of AWS outbound identity federation: a fresh STS web identity token, asked
/// as the rotator's own AWS identity (the function's role on Lambda).
#[derive(Debug)]
struct StsWebIdentity {
    audience: String,
    region: Option<String>,
    sts_endpoint: Option<String>,
    extra_ca_pem: Option<Vec<u8>>,
    aws: AwsCredentialsSource,
    client: tokio::sync::OnceCell<aws_sdk_sts::Client>,
}

impl StsWebIdentity {
    fn failure(message: String) -> azure_core::Error {
        azure_core::Error::with_message(azure_core::error::ErrorKind::Credential, message)
    }

    async fn client(&self) -> azure_core::Result<&aws_sdk_sts::Client> {
        self.client
            .get_or_try_init(|| async {
                let signing = self.aws.signing().await.ok_or_else(|| {
                    Self::failure("AWS federation: the rotator has no AWS credentials (aws-config found none)".into())
                })?;
                let region = self.region.clone().or(signing.region).ok_or_else(|| {
                    Self::failure("AWS federation: no STS region (set aws_region, or AWS_REGION)".into())
                })?;
                let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .credentials_provider(signing.credentials)
                    .region(aws_config::Region::new(region))
                    .load()
                    .await;
                let mut config = aws_sdk_sts::config::Builder::from(&sdk);
                if let Some(endpoint) = &self.sts_endpoint {
                    config = config.endpoint_url(endpoint);
                }
                if let Some(pem) = &self.extra_ca_pem {
                    use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
                    let trust = TrustStore::default().with_native_roots(true).with_pem_certificate(pem.clone());
                    let context = TlsContext::builder().with_trust_store(trust).build().map_err(|_| {
                        Self::failure(
                            "AWS federation: the integration's ca_certificate is not a PEM certificate".into(),
                        )
                    })?;
                    let http = aws_smithy_http_client::Builder::new()
                        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
                        .tls_context(context)
                        .build_https();
                    config = config.http_client(http);
                }
                Ok(aws_sdk_sts::Client::from_conf(config.build()))
            })
            .await
    }
}

#[async_trait::async_trait]
impl ClientAssertion for StsWebIdentity {
    async fn secret(&self, _options: Option<ClientMethodOptions<'_>>) -> azure_core::Result<String> {
        let answer = self
            .client()
            .await?
            .get_web_identity_token()
            .audience(&self.audience)
            .signing_algorithm("RS256")
            .duration_seconds(WEB_IDENTITY_TOKEN_SECS)
            .send()
            .await
            .map_err(|e| {
                azure_core::Error::new(azure_core::error::ErrorKind::Credential, super::sts::StsFailure::of(&e))
            })?;
        answer
            .web_identity_token()
            .map(str::to_owned)
            .ok_or_else(|| Self::failure("AWS federation: STS answered without a web identity token".into()))
    }
}

/// The adapter's reqwest client as the credential pipeline's transport. A TLS failure (an untrusted
/// certificate) is reported as a non-transport error, which the pipeline does not retry: trying again
/// cannot fix a missing `ca_certificate`, and the error says so at once.
#[derive(Debug)]
struct TlsAwareTransport(reqwest::Client);

#[async_trait::async_trait]
impl HttpClient for TlsAwareTransport {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        match self.0.execute_request(request).await {
            Err(e) if super::failure::tls_problem(&e).is_some() => Err(azure_core::Error::with_error(
                azure_core::error::ErrorKind::Other,
                e,
                "TLS with the token endpoint failed",
            )),
            other => other,
        }
    }
}

/// `{authority}/{tenant}/oauth2/v2.0/token`, built as `azure_identity` builds it (the authority's
/// path is replaced), so the assertion's audience matches the endpoint it is sent to.
pub(super) fn token_endpoint(authority: &url::Url, tenant: TenantId) -> String {
    authority
        .join(&format!("/{tenant}/oauth2/v2.0/token"))
        .map(|u| u.to_string())
        .unwrap_or_else(|_| format!("{}/{tenant}/oauth2/v2.0/token", authority.as_str().trim_end_matches('/')))
}

/// Signs client assertions (RFC 7523 JWTs) with a certificate's private key, as Entra's certificate
/// credentials expect: `RS256`, header `x5t` = the base64url SHA-1 thumbprint of the certificate.
pub(super) struct CertificateAssertion {
    client_id: ClientId,
    audience: String,
    key: RsaKeyPair,
    /// The encoded JWT header; fixed for a certificate.
    header: String,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for CertificateAssertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAssertion")
            .field("client_id", &self.client_id)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl CertificateAssertion {
    pub(super) fn from_pem(client_id: ClientId, pem: &[u8], audience: String, clock: Arc<dyn Clock>) -> Result<Self> {
        let refuse = |reason: &str| Error::Config(format!("client certificate: {reason}"));
        let certificate = CertificateDer::pem_slice_iter(pem)
            .next()
            .ok_or_else(|| refuse("no CERTIFICATE block in the PEM file"))?
            .map_err(|_| refuse("the CERTIFICATE block is not valid PEM"))?;
        let key = PrivateKeyDer::from_pem_slice(pem)
            .map_err(|_| refuse("no unencrypted PRIVATE KEY (PKCS#8) or RSA PRIVATE KEY (PKCS#1) block"))?;
        let key = match &key {
            PrivateKeyDer::Pkcs8(der) => RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(der) => RsaKeyPair::from_der(der.secret_pkcs1_der()),
            _ => return Err(refuse("the private key must be RSA: Entra signs client assertions with RS256")),
        }
        .map_err(|e| refuse(&format!("the private key cannot be used: {e}")))?;
        let thumbprint = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, certificate.as_ref());
        let header = serde_json::json!({
            "alg": "RS256",
            "typ": "JWT",
            "x5t": URL_SAFE_NO_PAD.encode(thumbprint.as_ref()),
        });
        Ok(Self { client_id, audience, key, header: URL_SAFE_NO_PAD.encode(header.to_string()), clock })
    }

    /// A signed assertion valid from now for [`ASSERTION_LIFETIME_SECS`].
    pub(super) fn sign(&self) -> Result<String> {
        let now = self.clock.now().unix_timestamp();
        let claims = serde_json::json!({
            "aud": self.audience,
            "iss": self.client_id.to_string(),
            "sub": self.client_id.to_string(),
            "jti": uuid::Uuid::new_v4().to_string(),
            "nbf": now,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
        });
        let signing_input = format!("{}.{}", self.header, URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), signing_input.as_bytes(), &mut signature)
            .map_err(|_| Error::Config("client certificate: signing the client assertion failed".into()))?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

#[async_trait::async_trait]
impl ClientAssertion for CertificateAssertion {
    async fn secret(&self, _options: Option<ClientMethodOptions<'_>>) -> azure_core::Result<String> {
        self.sign()
            .map_err(|e| azure_core::Error::with_message(azure_core::error::ErrorKind::Credential, e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
    use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
    use base64::engine::general_purpose::STANDARD;
    use time::macros::datetime;

    use crate::testing::fakes::ManualClock;

    fn pem(label: &str, der: &[u8]) -> String {
        format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", STANDARD.encode(der))
    }

    #[test]
    fn the_assertion_is_an_rs256_jwt_with_the_thumbprint_and_a_verifiable_signature() {
        let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let pkcs8: Pkcs8V1Der<'_> = key.as_der().unwrap();
        let certificate = b"certificate der";
        let text = format!("{}{}", pem("CERTIFICATE", certificate), pem("PRIVATE KEY", pkcs8.as_ref()));
        let client = ClientId::parse("cccccccc-0000-0000-0000-000000000003").unwrap();
        let clock = Arc::new(ManualClock::new(datetime!(2030-01-01 00:00 UTC)));
        let audience = "https://login.example/t/oauth2/v2.0/token".to_owned();

        let jwt =
            CertificateAssertion::from_pem(client, text.as_bytes(), audience.clone(), clock).unwrap().sign().unwrap();

        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(header["alg"], "RS256");
        let sha1 = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, certificate);
        assert_eq!(header["x5t"], URL_SAFE_NO_PAD.encode(sha1.as_ref()));
        assert_eq!(claims["aud"], audience);
        assert_eq!(claims["iss"], client.to_string());
        assert_eq!(claims["sub"], client.to_string());
        assert_eq!(claims["nbf"], 1_893_456_000);
        assert_eq!(claims["exp"], 1_893_456_000 + ASSERTION_LIFETIME_SECS);
        let public = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key.public_key().as_ref());
        let signed = format!("{}.{}", parts[0], parts[1]);
        public.verify(signed.as_bytes(), &URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).unwrap();
    }

    #[test]
    fn a_pem_without_a_key_or_with_a_password_is_a_configuration_error() {
        let client = ClientId::parse("cccccccc-0000-0000-0000-000000000003").unwrap();
        let only_cert = pem("CERTIFICATE", b"x");
        let e = CertificateAssertion::from_pem(client, only_cert.as_bytes(), "aud".into(), Arc::new(SystemClock))
            .err()
            .unwrap();
        assert!(e.to_string().contains("PRIVATE KEY"), "{e}");
        let protected =
            Credentials::ClientCertificate { path: "cert.pfx".into(), password: Some(SecretValue::new("pw")) };
        let e = TokenSource::from_credentials(client, &protected).err().unwrap();
        assert!(e.to_string().contains("PEM"), "{e}");
    }

    #[test]
    fn a_token_source_shows_its_method_but_not_its_secret() {
        let client = ClientId::parse("cccccccc-0000-0000-0000-000000000003").unwrap();
        let source = TokenSource::ClientSecret { client_id: client, secret: SecretValue::new("hunter2") };
        assert!(!format!("{source:?}").contains("hunter2"));
        assert_eq!(source.method(), "client secret");
    }
}

//! The Secrets Manager secret of an AWS deployment: `GetSecretValue` (its `AWSCURRENT` version's
//! `SecretString`) and `PutSecretValue`, which moves `AWSCURRENT` to the new version (and
//! `AWSPREVIOUS` to the one before); its `ClientRequestToken` is derived from the execution and
//! step, so a redelivered write is the same version, not a second one.

use std::time::Duration;

use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};

use super::PlaceFailure;
use crate::adapters::aws_identity::{AwsCredentialsSource, AwsSigning};
use crate::domain::integration::SecretArn;
use crate::domain::secret::SecretValue;

/// How long a value read from Secrets Manager is used before it is asked again: a replaced secret
/// reaches every function within this, while the old one stays valid for the whole grace period.
pub const SECRETS_MANAGER_CACHE: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub(super) struct SecretsManagerSecret {
    arn: SecretArn,
    aws: AwsCredentialsSource,
    endpoint: Option<String>,
    client: tokio::sync::OnceCell<aws_sdk_secretsmanager::Client>,
}

impl SecretsManagerSecret {
    pub(super) fn new(arn: SecretArn, aws: Option<AwsSigning>) -> Self {
        let endpoint = aws.as_ref().and_then(|a| a.endpoint_url.clone());
        Self {
            arn,
            aws: aws.map(AwsCredentialsSource::given).unwrap_or_default(),
            endpoint,
            client: tokio::sync::OnceCell::new(),
        }
    }

    async fn client(&self) -> Result<&aws_sdk_secretsmanager::Client, PlaceFailure> {
        self.client
            .get_or_try_init(|| async {
                let signing = self.aws.signing().await.ok_or_else(|| {
                    PlaceFailure::permanent(format!(
                        "cannot ask Secrets Manager for {}: the rotator has no AWS credentials",
                        self.arn
                    ))
                })?;
                let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .credentials_provider(signing.credentials)
                    .region(aws_config::Region::new(self.arn.region().to_owned()));
                if let Some(endpoint) = &self.endpoint {
                    loader = loader.endpoint_url(endpoint);
                }
                Ok(aws_sdk_secretsmanager::Client::new(&loader.load().await))
            })
            .await
    }

    pub(super) async fn read(&self) -> Result<SecretValue, PlaceFailure> {
        let answer = self
            .client()
            .await?
            .get_secret_value()
            .secret_id(self.arn.as_str())
            .send()
            .await
            .map_err(|e| failure("GetSecretValue", &self.arn, &e))?;
        answer.secret_string().map(SecretValue::new).ok_or_else(|| {
            PlaceFailure::permanent(format!("the Secrets Manager secret {} has no SecretString", self.arn))
        })
    }

    pub(super) async fn write(&self, value: &SecretValue, request_token: &str) -> Result<(), PlaceFailure> {
        self.client()
            .await?
            .put_secret_value()
            .secret_id(self.arn.as_str())
            .client_request_token(request_token)
            .secret_string(value.expose())
            .send()
            .await
            .map_err(|e| failure("PutSecretValue", &self.arn, &e))?;
        Ok(())
    }
}

/// A Secrets Manager refusal in words: its code and message (which name a permission or the
/// secret, never its value); throttling, server errors and the network are worth retrying.
fn failure<E: ProvideErrorMetadata, R>(call: &str, arn: &SecretArn, e: &SdkError<E, R>) -> PlaceFailure {
    let (why, retryable) = match e {
        SdkError::ServiceError(service) => {
            let err = service.err();
            let code = err.code().unwrap_or("an error");
            let retryable = matches!(code, "InternalServiceError" | "ThrottlingException" | "RequestLimitExceeded");
            let why = match err.message() {
                Some(message) => format!("{code}: {message}"),
                None => code.to_owned(),
            };
            (why, retryable)
        }
        SdkError::TimeoutError(_) => ("timed out".to_owned(), true),
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            ("Secrets Manager could not be reached".to_owned(), true)
        }
        _ => ("the request could not be built".to_owned(), false),
    };
    let message = format!("Secrets Manager {call} on {arn} failed ({why})");
    if retryable { PlaceFailure::retryable(message) } else { PlaceFailure::permanent(message) }
}

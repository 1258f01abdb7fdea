//! What STS said when it refused or failed `GetWebIdentityToken`: made by the federated token
//! source (`auth`), read by the failure classification (`failure`).

/// STS refused or failed `GetWebIdentityToken` (after the SDK's own retries). It travels inside the
/// credential's error to [`super::failure::token_error`], which reports it as STS's, transient or
/// not as decided here. STS's code and message name the missing permission or the disabled feature;
/// they never hold a credential.
#[derive(Debug, thiserror::Error)]
#[error("AWS federation: STS GetWebIdentityToken failed: {} ({code}: {message})", self.words())]
pub(super) struct StsFailure {
    /// STS's HTTP status; 0 when no answer came.
    pub(super) status: u16,
    pub(super) code: String,
    pub(super) message: String,
    /// Throttled, failing or unreachable: the same request may succeed later.
    pub(super) transient: bool,
}

/// The codes AWS services throttle with (the SDK's own list of throttling errors).
const STS_THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

impl StsFailure {
    pub(super) fn of(
        e: &aws_sdk_sts::error::SdkError<
            aws_sdk_sts::operation::get_web_identity_token::GetWebIdentityTokenError,
            aws_smithy_runtime_api::client::orchestrator::HttpResponse,
        >,
    ) -> Self {
        use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
        let status = e.raw_response().map_or(0, |r| r.status().as_u16());
        let unanswered = match e {
            SdkError::ServiceError(_) | SdkError::ResponseError(_) => None,
            SdkError::TimeoutError(_) => Some("Timeout"),
            SdkError::DispatchFailure(_) => Some("NetworkError"),
            _ => Some("RequestNotSent"),
        };
        let code = e.code().or(unanswered).unwrap_or("UnknownError").to_owned();
        let message = match (e.message(), unanswered) {
            (Some(message), _) => message.to_owned(),
            (None, Some("RequestNotSent")) => "the request could not be built".to_owned(),
            (None, Some(_)) => "no answer came".to_owned(),
            (None, None) => format!("STS answered {status} without a message"),
        };
        let transient = matches!(unanswered, Some("Timeout" | "NetworkError"))
            || status == 429
            || status >= 500
            || STS_THROTTLING.contains(&code.as_str());
        Self { status, code, message, transient }
    }

    /// What the code means for the operator, in words.
    pub(super) fn words(&self) -> &'static str {
        match self.code.as_str() {
            "AccessDenied" | "AccessDeniedException" => {
                "the rotator's AWS identity is not allowed sts:GetWebIdentityToken (its IAM policy, a permissions \
                 boundary or an SCP denies it)"
            }
            "InvalidClientTokenId" => {
                "STS does not recognise the rotator's AWS access key or session token (deleted, inactive, or of \
                 another account or partition)"
            }
            "SignatureDoesNotMatch" => {
                "STS could not verify the request's signature (a wrong secret access key, or this machine's clock \
                 more than 5 minutes off)"
            }
            "ExpiredToken" | "ExpiredTokenException" => "the rotator's AWS session credentials have expired",
            "OutboundWebIdentityFederationDisabledException" => {
                "outbound identity federation is not enabled for the AWS account (aws iam \
                 enable-outbound-web-identity-federation)"
            }
            code if STS_THROTTLING.contains(&code) || self.status == 429 => "STS is throttling the rotator's requests",
            "Timeout" | "NetworkError" => "STS could not be reached",
            _ if self.status >= 500 => "STS failed to answer",
            _ => "STS refused the request",
        }
    }
}

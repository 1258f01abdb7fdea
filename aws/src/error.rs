//! Turning SDK errors into the library's error: transient or permanent is decided here, at the
//! adapter boundary, and drives the queue's retries.

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use entra_rotator::Error;

/// Service error codes that a later try may get past.
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
    "TransactionConflictException",
    "KMSInternalException",
    "KMS.InternalException",
    "KMS.ThrottlingException",
    "AWS.SimpleQueueService.RequestThrottled",
    "RequestThrottled",
    "OverLimit",
];

/// Whether an SDK error is worth trying again: time-outs, connection failures, throttling and the
/// service's own internal errors are; everything else (validation, access denied, missing
/// resources) is not.
pub(crate) fn is_transient<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(s) => s.err().code().is_some_and(|c| TRANSIENT_CODES.contains(&c)),
        _ => false,
    }
}

/// The code and message the service gave, or the SDK's own words; never a request body.
pub(crate) fn describe<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug + 'static>(
    e: &SdkError<E, R>,
) -> String {
    match e {
        SdkError::ServiceError(s) => {
            let err = s.err();
            match (err.code(), err.message()) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.to_owned(),
                _ => err.to_string(),
            }
        }
        other => entra_rotator_error_text(other),
    }
}

fn entra_rotator_error_text(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// A store failure (DynamoDB, or KMS behind the key ring).
pub(crate) fn store<E, R>(context: impl Into<String>, e: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let transient = is_transient(&e);
    let text = describe(&e);
    Error::Store { context: context.into(), transient, source: text.into() }
}

/// A queue failure (SQS).
pub(crate) fn queue<E, R>(context: impl Into<String>, e: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let transient = is_transient(&e);
    let text = describe(&e);
    Error::Queue { context: context.into(), transient, source: text.into() }
}

/// A record that cannot be decoded: permanent.
pub(crate) fn decode(context: impl Into<String>, e: impl std::fmt::Display) -> Error {
    Error::Store { context: context.into(), transient: false, source: e.to_string().into() }
}

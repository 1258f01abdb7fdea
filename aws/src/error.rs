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
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    Error::Store { context: context.into(), transient: is_transient(&e), source: describe(&e).into() }
}

/// A queue failure (SQS).
pub(crate) fn queue<E, R>(context: impl Into<String>, e: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    Error::Queue { context: context.into(), transient: is_transient(&e), source: describe(&e).into() }
}

/// A record that cannot be decoded: permanent.
pub(crate) fn decode(context: impl Into<String>, e: impl std::fmt::Display) -> Error {
    Error::Store { context: context.into(), transient: false, source: e.to_string().into() }
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::error::ErrorMetadata;
    use aws_sdk_dynamodb::operation::get_item::GetItemError;

    use super::*;

    /// The raw response plays no part in the decision, so the unit type stands for it.
    fn service(code: &str) -> SdkError<GetItemError, ()> {
        let err = GetItemError::generic(ErrorMetadata::builder().code(code).message("the service said so").build());
        SdkError::service_error(err, ())
    }

    #[test]
    fn throttling_and_time_outs_are_worth_retrying_and_refusals_are_not() {
        assert!(is_transient(&service("ThrottlingException")));
        assert!(is_transient(&service("ProvisionedThroughputExceededException")));
        assert!(is_transient(&service("TransactionConflictException")));
        assert!(!is_transient(&service("ValidationException")));
        assert!(!is_transient(&service("AccessDeniedException")));
        assert!(!is_transient(&service("ResourceNotFoundException")));
        let timeout: SdkError<GetItemError, ()> = SdkError::timeout_error("no answer in 3.1 s");
        assert!(is_transient(&timeout));
        let unbuildable: SdkError<GetItemError, ()> = SdkError::construction_failure("missing key");
        assert!(!is_transient(&unbuildable));
    }

    #[test]
    fn an_error_says_the_services_code_and_message_and_whether_to_retry() {
        let e = store("DynamoDB GetItem", service("AccessDeniedException"));
        assert!(matches!(e, Error::Store { transient: false, .. }));
        assert_eq!(e.chain(), "store: DynamoDB GetItem: AccessDeniedException: the service said so");
        assert!(queue("SQS SendMessage", service("ThrottlingException")).is_transient());
    }
}

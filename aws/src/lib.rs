//! The AWS adapters of entra-rotator: the store on DynamoDB, the queues on SQS, the key ring on KMS,
//! and (feature `lambda`) the glue that runs the shared handlers as Lambda functions. The use cases
//! are the ones the embedded runtime runs; only the adapters behind the ports differ.

pub mod dynamo;
mod error;
pub mod kms;
pub mod settings;
pub mod sqs;

#[cfg(feature = "lambda")]
pub mod lambda;

#[cfg(any(test, feature = "test-support"))]
pub mod testing;

pub use dynamo::DynamoStore;
pub use kms::KmsKeyRing;
pub use settings::AwsSettings;
pub use sqs::SqsQueue;

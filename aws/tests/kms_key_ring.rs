//! The KMS key ring against the moto server: envelope encryption, context binding, tampering.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use entra_rotator::domain::secret::SecretValue;
use entra_rotator::ports::key_ring::{KeyRing, SealContext};
use entra_rotator_aws::KmsKeyRing;
use entra_rotator_aws::testing::sdk_config;

async fn ring() -> KmsKeyRing {
    let config = sdk_config().await;
    let client = aws_sdk_kms::Client::new(&config);
    let key = client.create_key().description("entra-rotator test").send().await.unwrap();
    let arn = key.key_metadata().unwrap().arn().unwrap().to_owned();
    KmsKeyRing::new(client, arn)
}

#[tokio::test]
async fn a_sealed_value_opens_under_its_own_record_and_purpose() {
    let ring = ring().await;
    let ctx = SealContext::new("exe-1/new-secret", "new-client-secret");
    let sealed = ring.seal(&SecretValue::new("s3cr3t-value"), &ctx).await.unwrap();
    assert!(sealed.encrypted_data_key.is_some(), "the data key is stored wrapped, beside the value");
    assert!(!String::from_utf8_lossy(&sealed.ciphertext).contains("s3cr3t-value"));
    let text = serde_json::to_string(&sealed).unwrap();
    assert!(!text.contains("s3cr3t-value"));
    let opened = ring.unseal(&sealed, &ctx).await.unwrap();
    assert!(opened == SecretValue::new("s3cr3t-value"));
}

#[tokio::test]
async fn each_seal_uses_a_fresh_data_key_and_nonce() {
    let ring = ring().await;
    let ctx = SealContext::new("r", "p");
    let a = ring.seal(&SecretValue::new("same"), &ctx).await.unwrap();
    let b = ring.seal(&SecretValue::new("same"), &ctx).await.unwrap();
    assert_ne!(a.nonce, b.nonce);
    assert_ne!(a.encrypted_data_key, b.encrypted_data_key);
    assert_ne!(a.ciphertext, b.ciphertext);
}

#[tokio::test]
async fn a_value_moved_to_another_record_or_tampered_with_does_not_open() {
    let ring = ring().await;
    let ctx = SealContext::new("exe-1/new-secret", "new-client-secret");
    let sealed = ring.seal(&SecretValue::new("value"), &ctx).await.unwrap();
    let other = SealContext::new("exe-2/new-secret", "new-client-secret");
    assert!(matches!(ring.unseal(&sealed, &other).await, Err(entra_rotator::Error::Seal(_))));
    let mut tampered = sealed.clone();
    tampered.ciphertext[0] ^= 1;
    assert!(matches!(ring.unseal(&tampered, &ctx).await, Err(entra_rotator::Error::Seal(_))));
    let mut no_key = sealed;
    no_key.encrypted_data_key = None;
    assert!(matches!(ring.unseal(&no_key, &ctx).await, Err(entra_rotator::Error::Seal(_))));
}

/// The KeyRing contract every key ring keeps, on KMS as on the key file.
mod contract {
    use super::*;

    entra_rotator::key_ring_contract_tests!(async { Arc::new(ring().await) as Arc<dyn KeyRing> });
}

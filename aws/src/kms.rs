//! The key ring on KMS: envelope encryption. Each seal asks KMS for a fresh AES-256 data key under
//! an encryption context that names the record and purpose, seals the value with it in the format
//! every key ring shares (AES-256-GCM, a random 96-bit nonce, associated data binding key id,
//! purpose and record), keeps KMS's encrypted copy of the data key beside the ciphertext, and wipes
//! the plaintext key. Opening asks KMS to decrypt that data key under the same context, so a sealed
//! value copied to another record cannot be opened, and nothing opens without the KMS key.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use entra_rotator::adapters::sealing::{seal_with_key, unseal_with_key};
use entra_rotator::domain::secret::SecretValue;
use entra_rotator::ports::key_ring::{KeyRing, SealContext, SealedValue};
use entra_rotator::{Error, Result};
use zeroize::Zeroizing;

/// Seals with data keys from one KMS key.
#[derive(Clone)]
pub struct KmsKeyRing {
    client: aws_sdk_kms::Client,
    /// The key id, ARN or alias new seals use.
    key: String,
}

impl KmsKeyRing {
    pub fn new(client: aws_sdk_kms::Client, key: impl Into<String>) -> Self {
        Self { client, key: key.into() }
    }
}

/// The encryption context: KMS binds the data key to it, and CloudTrail shows it (no secret in it).
fn context(ctx: &SealContext) -> HashMap<String, String> {
    HashMap::from([
        ("entra-rotator:record".to_owned(), ctx.record_id.clone()),
        ("entra-rotator:purpose".to_owned(), ctx.purpose.clone()),
    ])
}

/// A data key as KMS returned it, copied into memory that is wiped on drop.
fn data_key(plaintext: Option<Blob>) -> Result<Zeroizing<[u8; 32]>> {
    let bytes = Zeroizing::new(plaintext.ok_or(Error::Seal("KMS returned no data key"))?.into_inner());
    let mut key = Zeroizing::new([0u8; 32]);
    if bytes.len() != key.len() {
        return Err(Error::Seal("KMS returned a data key that is not 256 bits"));
    }
    key.copy_from_slice(&bytes);
    Ok(key)
}

#[async_trait]
impl KeyRing for KmsKeyRing {
    async fn seal(&self, value: &SecretValue, ctx: &SealContext) -> Result<SealedValue> {
        let mut out = self
            .client
            .generate_data_key()
            .key_id(&self.key)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(context(ctx)))
            .send()
            .await
            .map_err(|e| crate::error::store("KMS GenerateDataKey", e))?;
        // The key's ARN, whatever alias was configured: opening pins the same key.
        let key_id = out.key_id.take().unwrap_or_else(|| self.key.clone());
        let encrypted = out.ciphertext_blob.take().ok_or(Error::Seal("KMS returned no encrypted data key"))?;
        let key = data_key(out.plaintext.take())?;
        let mut sealed = seal_with_key(&key, &key_id, value, ctx)?;
        sealed.encrypted_data_key = Some(encrypted.into_inner());
        Ok(sealed)
    }

    async fn unseal(&self, sealed: &SealedValue, ctx: &SealContext) -> Result<SecretValue> {
        let encrypted =
            sealed.encrypted_data_key.clone().ok_or(Error::Seal("no encrypted data key beside the value"))?;
        let out = self
            .client
            .decrypt()
            .key_id(&sealed.key_id)
            .ciphertext_blob(Blob::new(encrypted))
            .set_encryption_context(Some(context(ctx)))
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                // The context or the blob does not match: the value was moved or tampered with.
                Some(s) if s.is_invalid_ciphertext_exception() || s.is_incorrect_key_exception() => {
                    Error::Seal("KMS refused the data key: wrong record, wrong key or tampered data")
                }
                // The envelope names a key KMS does not have (or not for decryption): no retry
                // can open it, so it is a seal failure, not a passing store error.
                Some(s) if s.is_not_found_exception() || s.is_invalid_key_usage_exception() => {
                    Error::Seal("the envelope names a KMS key that cannot open it")
                }
                _ => crate::error::store("KMS Decrypt", e),
            })?;
        let key = data_key(out.plaintext)?;
        unseal_with_key(&key, sealed, ctx)
    }
}

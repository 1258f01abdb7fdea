//! Sealing secrets at rest: AES-256-GCM, a fresh random 96-bit nonce per seal, associated data that
//! binds the record id and purpose, and the key id inside the envelope so keys can be rotated.
//!
//! On one machine the keys live in a key file created on first run (owner-only permissions,
//! [`key_file`]); on AWS a KMS data key wraps each value (the same envelope, with the encrypted
//! data key beside it).

#[cfg(feature = "embedded")]
pub mod key_file;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, Generate, KeyInit, Nonce, Payload};
use zeroize::Zeroizing;

use crate::domain::secret::SecretValue;
use crate::ports::key_ring::{SealContext, SealedValue};
use crate::{Error, Result};

/// AES-256-GCM with a 32-byte key: the seal format every key ring shares.
pub fn seal_with_key(key: &[u8; 32], key_id: &str, value: &SecretValue, ctx: &SealContext) -> Result<SealedValue> {
    let cipher = Aes256Gcm::new(key.into());
    // From the operating system's generator, as `OsRng` was before aes-gcm 0.11.
    let nonce = Nonce::<Aes256Gcm>::generate();
    let aad = ctx.aad(key_id);
    let ciphertext = cipher
        .encrypt(&nonce, Payload { msg: value.expose().as_bytes(), aad: &aad })
        .map_err(|_| Error::Seal("encryption failed"))?;
    Ok(SealedValue { v: 1, key_id: key_id.to_owned(), nonce: nonce.to_vec(), ciphertext, encrypted_data_key: None })
}

pub fn unseal_with_key(key: &[u8; 32], sealed: &SealedValue, ctx: &SealContext) -> Result<SecretValue> {
    if sealed.v != 1 {
        return Err(Error::Seal("unknown seal version"));
    }
    let nonce = <&Nonce<Aes256Gcm>>::try_from(sealed.nonce.as_slice()).map_err(|_| Error::Seal("malformed nonce"))?;
    let cipher = Aes256Gcm::new(key.into());
    let aad = ctx.aad(&sealed.key_id);
    let plain = Zeroizing::new(
        cipher
            .decrypt(nonce, Payload { msg: &sealed.ciphertext, aad: &aad })
            .map_err(|_| Error::Seal("authentication failed: wrong key, wrong record or tampered data"))?,
    );
    let text = std::str::from_utf8(&plain).map_err(|_| Error::Seal("not text"))?;
    Ok(SecretValue::new(text))
}

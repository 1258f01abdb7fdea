//! The key ring port: seals and opens secrets at rest. What a sealed value is bound to and how it is
//! stored are values here; the ciphers are adapters.

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::domain::secret::SecretValue;

/// What a sealed value is bound to: opening it under any other context fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealContext {
    pub record_id: String,
    pub purpose: String,
}

impl SealContext {
    pub fn new(record_id: impl Into<String>, purpose: impl Into<String>) -> Self {
        Self { record_id: record_id.into(), purpose: purpose.into() }
    }
    /// The associated data bound into a seal under `key_id`.
    pub fn aad(&self, key_id: &str) -> Vec<u8> {
        // Length-prefixed so that no two different contexts produce the same bytes.
        let mut out = b"entra-rotator/seal/v1".to_vec();
        for part in [key_id, &self.purpose, &self.record_id] {
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
        out
    }
}

/// A sealed value as stored. Nothing in it is secret on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedValue {
    pub v: u8,
    pub key_id: String,
    #[serde(with = "b64")]
    pub nonce: Vec<u8>,
    #[serde(with = "b64")]
    pub ciphertext: Vec<u8>,
    /// With KMS: the data key, encrypted by KMS under the encryption context.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "b64_opt")]
    pub encrypted_data_key: Option<Vec<u8>>,
}

/// Seals and opens secrets.
#[async_trait]
pub trait KeyRing: Send + Sync {
    async fn seal(&self, value: &SecretValue, ctx: &SealContext) -> Result<SealedValue>;
    async fn unseal(&self, sealed: &SealedValue, ctx: &SealContext) -> Result<SecretValue>;
}

mod b64 {
    use super::B64;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        B64.decode(s).map_err(serde::de::Error::custom)
    }
}

mod b64_opt {
    use super::B64;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&B64.encode(v)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(s) => B64.decode(s).map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

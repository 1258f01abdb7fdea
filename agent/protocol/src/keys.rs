//! The agent's key pairs: Ed25519 to sign its requests, X25519 (HPKE) to receive sealed secrets.

use std::fmt;

use ed25519_dalek::{SigningKey, VerifyingKey};
use hpke::{Deserializable as _, Kem as _, Serializable as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::b64;

/// The HPKE KEM: DHKEM(X25519, HKDF-SHA256).
pub(crate) type SealKem = hpke::kem::X25519HkdfSha256;
type SealSecret = <SealKem as hpke::Kem>::PrivateKey;
pub(crate) type SealPublic = <SealKem as hpke::Kem>::PublicKey;

/// The first byte of [`AgentKeys::to_bytes`], so a later format can be told apart.
const STATE_VERSION: u8 = 1;
const STATE_LEN: usize = 1 + 32 + 32;

/// Why keys could not be read. Never carries key material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("the {what} key is not base64url without padding")]
    NotBase64 { what: &'static str },
    #[error("the {what} key is {got} bytes long, expected 32")]
    WrongLength { what: &'static str, got: usize },
    #[error("the signing key is not a valid Ed25519 point (or is of small order)")]
    InvalidSigningKey,
    #[error("the sealing key is an X25519 point no secret can be agreed with (small order)")]
    InvalidSealingKey,
    #[error("the stored agent keys are {got} bytes long, expected {STATE_LEN}")]
    WrongStateLength { got: usize },
    #[error("the stored agent keys are of format version {got}, this build reads {STATE_VERSION}")]
    UnknownStateVersion { got: u8 },
    #[error("the stored agent keys do not decode")]
    BadState,
    #[error("the system's random number generator failed: {0}")]
    Random(String),
}

/// The agent's private keys. Zeroized on drop (both dalek types zeroize themselves); `Debug`
/// shows only the public half.
pub struct AgentKeys {
    signing: SigningKey,
    sealing: SealSecret,
    public: PublicKeys,
}

impl AgentKeys {
    /// New keys from the system's random number generator.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|e| KeyError::Random(e.to_string()))?;
        let signing = SigningKey::from_bytes(&seed);
        let (sealing, _) = SealKem::gen_keypair();
        Ok(Self::from_parts(signing, sealing))
    }

    fn from_parts(signing: SigningKey, sealing: SealSecret) -> Self {
        let verifying = signing.verifying_key();
        let sealing_public = SealKem::sk_to_pk(&sealing);
        let public = PublicKeys { signing: verifying, sealing: sealing_public };
        AgentKeys { signing, sealing, public }
    }

    /// The form for the agent's state file: a version byte, the Ed25519 seed, the X25519 secret.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(STATE_LEN));
        out.push(STATE_VERSION);
        out.extend_from_slice(self.signing.as_bytes());
        // Through a zeroized buffer: `to_bytes` would leave a copy of the secret on the stack.
        let mut sealing = Zeroizing::new([0u8; 32]);
        self.sealing.write_exact(sealing.as_mut());
        out.extend_from_slice(sealing.as_ref());
        out
    }

    /// Reads what [`AgentKeys::to_bytes`] wrote.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() != STATE_LEN {
            return Err(KeyError::WrongStateLength { got: bytes.len() });
        }
        if bytes[0] != STATE_VERSION {
            return Err(KeyError::UnknownStateVersion { got: bytes[0] });
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(&bytes[1..33]);
        let signing = SigningKey::from_bytes(&seed);
        let sealing = SealSecret::from_bytes(&bytes[33..]).map_err(|_| KeyError::BadState)?;
        Ok(Self::from_parts(signing, sealing))
    }

    /// [`AgentKeys::to_bytes`] as base64url, for a text (JSON or TOML) state file.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(b64::encode(&self.to_bytes()))
    }

    /// Reads what [`AgentKeys::to_base64`] wrote.
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let bytes = Zeroizing::new(b64::decode(text.trim()).ok_or(KeyError::BadState)?);
        Self::from_bytes(&bytes)
    }

    /// The public keys the agent registers at enrollment.
    pub fn public(&self) -> &PublicKeys {
        &self.public
    }

    pub(crate) fn signing(&self) -> &SigningKey {
        &self.signing
    }

    pub(crate) fn sealing(&self) -> &SealSecret {
        &self.sealing
    }
}

impl fmt::Debug for AgentKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentKeys").field("public", &self.public).finish_non_exhaustive()
    }
}

/// An agent's public keys, always valid: on the wire `{"signing": "…", "sealing": "…"}`, each the
/// base64url (no padding) of 32 bytes. Deserializing validates, so a `PublicKeys` in hand is a
/// usable Ed25519 verifying key and a usable X25519 HPKE recipient key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawPublicKeys", into = "RawPublicKeys")]
pub struct PublicKeys {
    signing: VerifyingKey,
    sealing: SealPublic,
}

#[derive(Serialize, Deserialize)]
struct RawPublicKeys {
    signing: String,
    sealing: String,
}

impl TryFrom<RawPublicKeys> for PublicKeys {
    type Error = KeyError;
    fn try_from(raw: RawPublicKeys) -> Result<Self, KeyError> {
        PublicKeys::parse(&raw.signing, &raw.sealing)
    }
}

impl From<PublicKeys> for RawPublicKeys {
    fn from(keys: PublicKeys) -> Self {
        RawPublicKeys { signing: keys.signing_base64(), sealing: keys.sealing_base64() }
    }
}

fn decode_32(what: &'static str, text: &str) -> Result<[u8; 32], KeyError> {
    let bytes = b64::decode(text).ok_or(KeyError::NotBase64 { what })?;
    bytes.as_slice().try_into().map_err(|_| KeyError::WrongLength { what, got: bytes.len() })
}

impl PublicKeys {
    /// Checks both keys: lengths, that the Ed25519 key is a point of large order, and that the
    /// X25519 key is not of small order (found by one trial encapsulation, since an all-zero shared
    /// secret is what such a point gives; tens of microseconds).
    pub fn parse(signing: &str, sealing: &str) -> Result<Self, KeyError> {
        let signing_bytes = decode_32("signing", signing)?;
        let sealing_bytes = decode_32("sealing", sealing)?;
        let signing = VerifyingKey::from_bytes(&signing_bytes).map_err(|_| KeyError::InvalidSigningKey)?;
        if signing.is_weak() {
            return Err(KeyError::InvalidSigningKey);
        }
        let sealing =
            SealPublic::from_bytes(&sealing_bytes).map_err(|_| KeyError::WrongLength { what: "sealing", got: 32 })?;
        if SealKem::encap(&sealing, None).is_err() {
            return Err(KeyError::InvalidSealingKey);
        }
        Ok(PublicKeys { signing, sealing })
    }

    /// The Ed25519 key, base64url.
    pub fn signing_base64(&self) -> String {
        b64::encode(self.signing.as_bytes())
    }

    /// The X25519 key, base64url.
    pub fn sealing_base64(&self) -> String {
        b64::encode(&self.sealing.to_bytes())
    }

    /// A short name for these keys that an operator can compare between the agent's host and the
    /// server: the first 16 hex digits of SHA-256 over the signing then the sealing key, in groups
    /// of four (`a1b2-c3d4-e5f6-0718`).
    pub fn fingerprint(&self) -> String {
        let mut hash = Sha256::new();
        hash.update(self.signing.as_bytes());
        hash.update(self.sealing.to_bytes());
        let digest = hash.finalize();
        let hexed = hex::encode(&digest[..8]);
        (0..16).step_by(4).map(|start| &hexed[start..start + 4]).collect::<Vec<_>>().join("-")
    }

    pub(crate) fn verifying(&self) -> &VerifyingKey {
        &self.signing
    }

    pub(crate) fn sealing(&self) -> &SealPublic {
        &self.sealing
    }
}

impl fmt::Debug for PublicKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKeys")
            .field("signing", &self.signing_base64())
            .field("sealing", &self.sealing_base64())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_survive_the_state_file() {
        let keys = AgentKeys::generate().expect("random");
        let again = AgentKeys::from_bytes(&keys.to_bytes()).expect("read back");
        assert_eq!(keys.public(), again.public());
        let again = AgentKeys::from_base64(&keys.to_base64()).expect("read back");
        assert_eq!(keys.public(), again.public());
    }

    #[test]
    fn a_damaged_state_file_is_refused() {
        let keys = AgentKeys::generate().expect("random");
        let bytes = keys.to_bytes();
        assert!(matches!(AgentKeys::from_bytes(&bytes[..64]), Err(KeyError::WrongStateLength { got: 64 })));
        let mut other = bytes.to_vec();
        other[0] = 9;
        assert!(matches!(AgentKeys::from_bytes(&other), Err(KeyError::UnknownStateVersion { got: 9 })));
    }

    #[test]
    fn debug_shows_only_public_keys() {
        let keys = AgentKeys::generate().expect("random");
        let shown = format!("{keys:?}");
        assert!(shown.contains(&keys.public().signing_base64()));
        let secret = b64::encode(keys.signing.as_bytes());
        assert!(!shown.contains(&secret));
        assert!(!shown.contains(&b64::encode(&keys.sealing.to_bytes())));
    }

    #[test]
    fn public_keys_round_trip_through_json() {
        let keys = AgentKeys::generate().expect("random");
        let json = serde_json::to_string(keys.public()).expect("json");
        let back: PublicKeys = serde_json::from_str(&json).expect("parse");
        assert_eq!(&back, keys.public());
        assert_eq!(back.fingerprint(), keys.public().fingerprint());
        assert_eq!(back.fingerprint().len(), 19);
    }

    #[test]
    fn public_keys_of_wrong_length_or_bad_points_are_refused() {
        let keys = AgentKeys::generate().expect("random");
        let good_signing = keys.public().signing_base64();
        let good_sealing = keys.public().sealing_base64();
        let short = b64::encode(&[7u8; 31]);
        assert!(matches!(
            PublicKeys::parse(&short, &good_sealing),
            Err(KeyError::WrongLength { what: "signing", got: 31 })
        ));
        assert!(matches!(
            PublicKeys::parse(&good_signing, &short),
            Err(KeyError::WrongLength { what: "sealing", got: 31 })
        ));
        assert!(matches!(
            PublicKeys::parse("not base64!", &good_sealing),
            Err(KeyError::NotBase64 { what: "signing" })
        ));
        // The identity point: decodes, but is of small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(PublicKeys::parse(&b64::encode(&identity), &good_sealing), Err(KeyError::InvalidSigningKey));
        // y = 2 is not on the curve.
        let mut off_curve = [0u8; 32];
        off_curve[0] = 2;
        assert_eq!(PublicKeys::parse(&b64::encode(&off_curve), &good_sealing), Err(KeyError::InvalidSigningKey));
        // u = 0 and u = 1 are X25519 points of small order.
        for low in [[0u8; 32], identity] {
            assert_eq!(PublicKeys::parse(&good_signing, &b64::encode(&low)), Err(KeyError::InvalidSealingKey));
        }
    }
}

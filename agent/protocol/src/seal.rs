//! Secrets sealed to one agent's key: HPKE base mode (RFC 9180) with DHKEM(X25519, HKDF-SHA256),
//! HKDF-SHA256 and ChaCha20Poly1305.
//!
//! The server seals a rotated client secret to the agent's registered key, so nothing between
//! (the server's store, its queues, the HTTP traffic) can read it; only that agent can open it.
//! `info` binds the sealed value to its context ([`task_info`]), so it cannot be replayed into
//! another task or agent.

use std::fmt;

use hpke::{Deserializable as _, OpModeR, OpModeS, Serializable as _};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::b64;
use crate::keys::{AgentKeys, PublicKeys, SealKem};

type Aead = hpke::aead::ChaCha20Poly1305;
type Kdf = hpke::kdf::HkdfSha256;

/// The label that starts every task's `info`; a new layout gets a new version.
const TASK_INFO_LABEL: &[u8] = b"entra-rotator agent task v1\0";

/// A sealed value as it travels: the encapsulated key and the ciphertext, both base64url.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    pub enc: String,
    pub ciphertext: String,
}

impl fmt::Debug for Sealed {
    // The ciphertext is harmless but long; its length is what a log needs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed").field("ciphertext_len", &self.ciphertext.len()).finish_non_exhaustive()
    }
}

/// Why sealing failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("HPKE sealing failed: {0}")]
    Hpke(String),
}

/// Why opening failed. Deliberately coarse: the agent learns only that the value is not for it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error("the sealed value is not base64url")]
    NotBase64,
    #[error("the sealed value's encapsulated key is malformed")]
    BadEnc,
    #[error("the sealed value does not open with this agent's key and context (another agent's or task's, or altered)")]
    DoesNotOpen,
}

/// The `info` both sides pass for a task's value: the label, then the agent id, a NUL, the task
/// id. Ids never contain NUL, so no two (agent, task) pairs give the same bytes.
pub fn task_info(agent_id: &str, task_id: &str) -> Vec<u8> {
    let mut info = Vec::with_capacity(TASK_INFO_LABEL.len() + agent_id.len() + 1 + task_id.len());
    info.extend_from_slice(TASK_INFO_LABEL);
    info.extend_from_slice(agent_id.as_bytes());
    info.push(0);
    info.extend_from_slice(task_id.as_bytes());
    info
}

/// Seals `plaintext` to `recipient`'s sealing key, bound to `info`.
pub fn seal(recipient: &PublicKeys, info: &[u8], plaintext: &[u8]) -> Result<Sealed, SealError> {
    let (enc, ciphertext) =
        hpke::single_shot_seal::<Aead, Kdf, SealKem>(&OpModeS::Base, recipient.sealing(), info, plaintext, b"")
            .map_err(|e| SealError::Hpke(e.to_string()))?;
    Ok(Sealed { enc: b64::encode(&enc.to_bytes()), ciphertext: b64::encode(&ciphertext) })
}

/// Opens what [`seal`] made for these keys with the same `info`.
pub fn open(keys: &AgentKeys, info: &[u8], sealed: &Sealed) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    let enc = b64::decode(&sealed.enc).ok_or(OpenError::NotBase64)?;
    let ciphertext = b64::decode(&sealed.ciphertext).ok_or(OpenError::NotBase64)?;
    let enc = <SealKem as hpke::Kem>::EncappedKey::from_bytes(&enc).map_err(|_| OpenError::BadEnc)?;
    hpke::single_shot_open::<Aead, Kdf, SealKem>(&OpModeR::Base, keys.sealing(), &enc, info, &ciphertext, b"")
        .map(Zeroizing::new)
        .map_err(|_| OpenError::DoesNotOpen)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"Xy9~client-secret-value";

    fn sealed_for(keys: &AgentKeys) -> Sealed {
        seal(keys.public(), &task_info("agent-1", "task-1"), SECRET).expect("seal")
    }

    #[test]
    fn the_agent_opens_what_was_sealed_to_it() {
        let keys = AgentKeys::generate().expect("keys");
        let sealed = sealed_for(&keys);
        let opened = open(&keys, &task_info("agent-1", "task-1"), &sealed).expect("open");
        assert_eq!(opened.as_slice(), SECRET);
        assert!(!sealed.ciphertext.contains("client-secret"));
    }

    #[test]
    fn another_task_or_agent_context_does_not_open() {
        let keys = AgentKeys::generate().expect("keys");
        let sealed = sealed_for(&keys);
        for info in [task_info("agent-1", "task-2"), task_info("agent-2", "task-1"), task_info("agent-1task-1", "")] {
            assert_eq!(open(&keys, &info, &sealed), Err(OpenError::DoesNotOpen));
        }
    }

    #[test]
    fn another_agents_keys_do_not_open() {
        let keys = AgentKeys::generate().expect("keys");
        let other = AgentKeys::generate().expect("keys");
        let sealed = sealed_for(&keys);
        assert_eq!(open(&other, &task_info("agent-1", "task-1"), &sealed), Err(OpenError::DoesNotOpen));
    }

    #[test]
    fn a_tampered_ciphertext_or_enc_does_not_open() {
        let keys = AgentKeys::generate().expect("keys");
        let info = task_info("agent-1", "task-1");
        let sealed = sealed_for(&keys);
        let flip = |text: &str| {
            let mut bytes = b64::decode(text).expect("b64");
            bytes[0] ^= 1;
            b64::encode(&bytes)
        };
        let mut bad = sealed.clone();
        bad.ciphertext = flip(&sealed.ciphertext);
        assert_eq!(open(&keys, &info, &bad), Err(OpenError::DoesNotOpen));
        let mut bad = sealed.clone();
        bad.enc = flip(&sealed.enc);
        assert!(open(&keys, &info, &bad).is_err());
        let mut bad = sealed;
        bad.enc = "!!".into();
        assert_eq!(open(&keys, &info, &bad), Err(OpenError::NotBase64));
    }

    #[test]
    fn each_seal_is_fresh() {
        let keys = AgentKeys::generate().expect("keys");
        assert_ne!(sealed_for(&keys), sealed_for(&keys));
    }
}

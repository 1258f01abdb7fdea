//! The KeyRing contract: what every key ring keeps (DESIGN §4 promise 5). A sealed value opens only
//! under the record and purpose it was sealed for, every seal has a fresh nonce, tampering is
//! detected, the envelope names its key, and nothing — the envelope, an error — carries the secret.
//!
//! Run with [`crate::key_ring_contract_tests!`] and an expression that builds an
//! `Arc<dyn KeyRing>` (awaited): the fixed test key, the key file, KMS on the local emulator.

use std::sync::Arc;

use crate::Error;
use crate::domain::secret::SecretValue;
use crate::ports::key_ring::{KeyRing, SealContext};

const SECRET: &str = "Zx9~contract-secret-value.Q";

fn ctx() -> SealContext {
    SealContext::new("exe-contract/new-secret", "new_client_secret")
}

fn seal_error(result: crate::Result<SecretValue>) -> Error {
    match result {
        Err(e) => e,
        Ok(_) => panic!("the value opened, and must not have"),
    }
}

fn assert_no_secret(text: &str) {
    assert!(!text.contains(SECRET), "the secret appears in {text:?}");
}

pub async fn a_sealed_value_opens_under_its_own_record_and_purpose(ring: Arc<dyn KeyRing>) {
    let sealed = ring.seal(&SecretValue::new(SECRET), &ctx()).await.unwrap();
    let opened = ring.unseal(&sealed, &ctx()).await.unwrap();
    assert_eq!(opened.expose(), SECRET);
}

pub async fn the_envelope_names_its_key_and_holds_no_plaintext(ring: Arc<dyn KeyRing>) {
    let sealed = ring.seal(&SecretValue::new(SECRET), &ctx()).await.unwrap();
    assert_eq!(sealed.v, 1);
    assert!(!sealed.key_id.is_empty(), "the key id is in the envelope, so keys can be rotated");
    assert_eq!(sealed.nonce.len(), 12, "a 96-bit nonce");
    assert_no_secret(&String::from_utf8_lossy(&sealed.ciphertext));
    assert_no_secret(&serde_json::to_string(&sealed).unwrap());
    assert_no_secret(&format!("{sealed:?}"));
}

pub async fn every_seal_uses_a_fresh_nonce(ring: Arc<dyn KeyRing>) {
    let a = ring.seal(&SecretValue::new(SECRET), &ctx()).await.unwrap();
    let b = ring.seal(&SecretValue::new(SECRET), &ctx()).await.unwrap();
    assert_ne!(a.nonce, b.nonce);
    assert_ne!(a.ciphertext, b.ciphertext);
}

pub async fn a_value_moved_to_another_record_or_purpose_does_not_open(ring: Arc<dyn KeyRing>) {
    let sealed = ring.seal(&SecretValue::new(SECRET), &ctx()).await.unwrap();
    let other_record = SealContext::new("exe-other/new-secret", "new_client_secret");
    let other_purpose = SealContext::new("exe-contract/new-secret", "agent_task");
    for other in [other_record, other_purpose] {
        let e = seal_error(ring.unseal(&sealed, &other).await);
        assert!(matches!(e, Error::Seal(_)), "{e}");
    }
}

pub async fn a_tampered_value_does_not_open(ring: Arc<dyn KeyRing>) {
    let sealed = ring.seal(&SecretValue::new(SECRET), &ctx()).await.unwrap();
    let mut ciphertext = sealed.clone();
    ciphertext.ciphertext[0] ^= 1;
    let mut nonce = sealed.clone();
    nonce.nonce[0] ^= 1;
    let mut short_nonce = sealed.clone();
    short_nonce.nonce.truncate(4);
    let mut version = sealed.clone();
    version.v = 99;
    let mut key = sealed;
    key.key_id.push_str("-other");
    for tampered in [ciphertext, nonce, short_nonce, version, key] {
        let e = seal_error(ring.unseal(&tampered, &ctx()).await);
        assert!(matches!(e, Error::Seal(_)), "{e}");
    }
}

pub async fn errors_never_quote_the_secret(ring: Arc<dyn KeyRing>) {
    let mut sealed = ring.seal(&SecretValue::new(SECRET), &ctx()).await.unwrap();
    sealed.ciphertext[0] ^= 1;
    let e = seal_error(ring.unseal(&sealed, &ctx()).await);
    assert_no_secret(&e.to_string());
    assert_no_secret(&e.chain());
    assert_no_secret(&format!("{e:?}"));
}

pub async fn an_empty_and_a_long_unicode_value_round_trip(ring: Arc<dyn KeyRing>) {
    for value in [String::new(), "ü€~".repeat(2000)] {
        let sealed = ring.seal(&SecretValue::new(value.clone()), &ctx()).await.unwrap();
        assert_eq!(ring.unseal(&sealed, &ctx()).await.unwrap().expose(), value);
    }
}

/// The KeyRing contract as tests: `key_ring_contract_tests!(async { Arc::new(…) as Arc<dyn KeyRing> });`
#[macro_export]
macro_rules! key_ring_contract_tests {
    ($make:expr) => {
        $crate::key_ring_contract_tests!(@cases $make;
            a_sealed_value_opens_under_its_own_record_and_purpose,
            the_envelope_names_its_key_and_holds_no_plaintext,
            every_seal_uses_a_fresh_nonce,
            a_value_moved_to_another_record_or_purpose_does_not_open,
            a_tampered_value_does_not_open,
            errors_never_quote_the_secret,
            an_empty_and_a_long_unicode_value_round_trip,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let ring = $make.await;
                $crate::testing::contract::key_ring::$case(ring).await;
            }
        )*
    };
}

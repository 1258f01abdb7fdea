//! The KeyRing contract on the embedded key rings: the fixed test key, and the key file as
//! `rotator serve` creates it on first run (and as it reopens it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use entra_rotator::adapters::sealing::key_file::LocalKeyRing;
use entra_rotator::ports::key_ring::KeyRing;

mod fixed_key {
    use super::*;

    entra_rotator::key_ring_contract_tests!(async { Arc::new(LocalKeyRing::fixed("k1", [7; 32])) as Arc<dyn KeyRing> });
}

mod key_file {
    use super::*;

    /// A key file created in a folder of its own, then opened again as a restart would: the
    /// contract runs on the reopened ring, so what was written is what is used.
    async fn reopened() -> Arc<dyn KeyRing> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        LocalKeyRing::open_or_create(&path).unwrap();
        let ring = LocalKeyRing::open_or_create(&path).unwrap();
        // The folder goes when the test ends; the ring holds its keys in memory.
        drop(dir);
        Arc::new(ring)
    }

    entra_rotator::key_ring_contract_tests!(reopened());
}

#[tokio::test]
async fn a_value_sealed_before_a_restart_opens_after_it() {
    use entra_rotator::domain::secret::SecretValue;
    use entra_rotator::ports::key_ring::SealContext;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    let ctx = SealContext::new("exe-1/new-secret", "new_client_secret");
    let sealed = LocalKeyRing::open_or_create(&path).unwrap().seal(&SecretValue::new("v"), &ctx).await.unwrap();
    let reopened = LocalKeyRing::open_or_create(&path).unwrap();
    assert_eq!(reopened.unseal(&sealed, &ctx).await.unwrap().expose(), "v");
}

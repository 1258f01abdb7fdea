//! The embedded key ring: keys in a key file created on first run, readable by its owner only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aes_gcm::aead::Generate;
use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{seal_with_key, unseal_with_key};
use crate::domain::secret::SecretValue;
use crate::ports::key_ring::{KeyRing, SealContext, SealedValue};
use crate::{Error, Result};

/// Keys held in memory, one active for sealing, all usable for opening.
pub struct LocalKeyRing {
    keys: BTreeMap<String, Zeroizing<[u8; 32]>>,
    active: String,
    path: Option<PathBuf>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    active: String,
    keys: BTreeMap<String, String>,
}

impl LocalKeyRing {
    /// A ring with one given key: for tests.
    pub fn fixed(key_id: &str, key: [u8; 32]) -> Self {
        Self { keys: BTreeMap::from([(key_id.to_owned(), Zeroizing::new(key))]), active: key_id.to_owned(), path: None }
    }

    /// Opens the key file, or creates it with one fresh key and owner-only permissions.
    pub fn open_or_create(path: &Path) -> Result<Self> {
        if path.exists() {
            return Self::open(path);
        }
        let mut ring = Self { keys: BTreeMap::new(), active: String::new(), path: Some(path.to_owned()) };
        ring.add_key()?;
        Ok(ring)
    }

    pub fn open(path: &Path) -> Result<Self> {
        check_permissions(path)?;
        let text = Zeroizing::new(
            std::fs::read_to_string(path).map_err(|e| Error::io(format!("reading key file {}", path.display()), e))?,
        );
        let file: KeyFile = serde_json::from_str(&text)
            .map_err(|e| Error::Config(format!("key file {} is malformed: {}", path.display(), e.classify_str())))?;
        let mut keys = BTreeMap::new();
        for (id, b64) in &file.keys {
            let bytes = Zeroizing::new(
                B64.decode(b64).map_err(|_| Error::Config(format!("key {id} in {} is not base64", path.display())))?,
            );
            let key: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| Error::Config(format!("key {id} in {} is not 32 bytes", path.display())))?;
            keys.insert(id.clone(), Zeroizing::new(key));
        }
        if !keys.contains_key(&file.active) {
            return Err(Error::Config(format!("key file {}: active key {} is missing", path.display(), file.active)));
        }
        Ok(Self { keys, active: file.active, path: Some(path.to_owned()) })
    }

    /// Adds a fresh random key and makes it the one new seals use; older keys still open what
    /// they sealed. Saves the key file when there is one.
    pub fn add_key(&mut self) -> Result<String> {
        let key = <[u8; 32]>::generate();
        let id = format!("k{}", self.keys.len() + 1);
        self.keys.insert(id.clone(), Zeroizing::new(key));
        self.active = id.clone();
        if let Some(path) = &self.path {
            self.save(path)?;
        }
        Ok(id)
    }

    pub fn active_key_id(&self) -> &str {
        &self.active
    }

    /// The key ids this ring can open, oldest first.
    pub fn key_ids(&self) -> Vec<String> {
        let mut ids: Vec<_> = self.keys.keys().cloned().collect();
        ids.sort_by_key(|id| (id.len(), id.clone()));
        ids
    }

    fn save(&self, path: &Path) -> Result<()> {
        let file = KeyFile {
            active: self.active.clone(),
            keys: self.keys.iter().map(|(id, k)| (id.clone(), B64.encode(k.as_slice()))).collect(),
        };
        let text = Zeroizing::new(serde_json::to_string_pretty(&file).map_err(|e| Error::Config(e.to_string()))?);
        if let Some(dir) = path.parent() {
            crate::adapters::private_files::create_private_dir(dir)?;
        }
        // Write beside, then rename, so a crash never leaves a half-written key file.
        let tmp = path.with_extension("tmp");
        write_owner_only(&tmp, text.as_bytes())?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(format!("saving key file {}", path.display()), e))
    }
}

#[async_trait]
impl KeyRing for LocalKeyRing {
    async fn seal(&self, value: &SecretValue, ctx: &SealContext) -> Result<SealedValue> {
        let key = self.keys.get(&self.active).ok_or(Error::Seal("no active key"))?;
        seal_with_key(key, &self.active, value, ctx)
    }
    async fn unseal(&self, sealed: &SealedValue, ctx: &SealContext) -> Result<SecretValue> {
        let key = self.keys.get(&sealed.key_id).ok_or(Error::Seal("sealed under a key this ring does not hold"))?;
        unseal_with_key(key, sealed, ctx)
    }
}

#[cfg(unix)]
fn write_owner_only(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(format!("creating key file {}", path.display()), e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(format!("writing key file {}", path.display()), e))
}

#[cfg(not(unix))]
fn write_owner_only(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::io(format!("writing key file {}", path.display()), e))
}

/// A key file others can read is refused: the keys open every sealed secret.
#[cfg(unix)]
fn check_permissions(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| Error::io(format!("reading key file {}", path.display()), e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::Config(format!(
            "key file {} has mode {:o}; it must be readable by its owner only (chmod 600)",
            path.display(),
            mode
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_: &Path) -> Result<()> {
    Ok(())
}

/// serde_json errors may quote input; for key files say only what kind of error it was.
trait Classify {
    fn classify_str(&self) -> String;
}
impl Classify for serde_json::Error {
    fn classify_str(&self) -> String {
        format!("{:?} error at line {} column {}", self.classify(), self.line(), self.column())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> SealContext {
        SealContext::new("exe-1/new-secret", "new_client_secret")
    }

    /// Sealed by aes-gcm 0.10.3 (the release before 0.11) under the fixed test key: what a
    /// deployment stored before the upgrade must still open after it.
    #[tokio::test]
    async fn a_value_sealed_by_the_previous_aes_gcm_release_still_opens() {
        let sealed: SealedValue = serde_json::from_str(
            r#"{"v":1,"key_id":"k1","nonce":"qtgXzZ2BluwfDmnI","ciphertext":"D2MinL8gVaXu8euBq+iKWX82Kddx9ID1pZuUmiyxkYipntCAKiA="}"#,
        )
        .unwrap();
        let ring = LocalKeyRing::fixed("k1", [7; 32]);
        let ctx = SealContext::new("exe-1/new-secret", "new_client_secret");
        assert_eq!(ring.unseal(&sealed, &ctx).await.unwrap().expose(), "sealed-by-aes-gcm-0.10");
    }

    #[tokio::test]
    async fn sealed_value_opens_with_the_same_key_and_context() {
        let ring = LocalKeyRing::fixed("k1", [7; 32]);
        let sealed = ring.seal(&SecretValue::new("s3cr3t~value"), &ctx()).await.unwrap();
        assert_eq!(sealed.key_id, "k1");
        assert!(!String::from_utf8_lossy(&sealed.ciphertext).contains("s3cr3t"));
        assert_eq!(ring.unseal(&sealed, &ctx()).await.unwrap().expose(), "s3cr3t~value");
    }

    #[tokio::test]
    async fn every_seal_uses_a_fresh_nonce() {
        let ring = LocalKeyRing::fixed("k1", [7; 32]);
        let a = ring.seal(&SecretValue::new("same"), &ctx()).await.unwrap();
        let b = ring.seal(&SecretValue::new("same"), &ctx()).await.unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[tokio::test]
    async fn tampered_ciphertext_fails() {
        let ring = LocalKeyRing::fixed("k1", [7; 32]);
        let mut sealed = ring.seal(&SecretValue::new("value"), &ctx()).await.unwrap();
        sealed.ciphertext[0] ^= 1;
        assert!(matches!(ring.unseal(&sealed, &ctx()).await, Err(Error::Seal(_))));
    }

    #[tokio::test]
    async fn wrong_record_or_purpose_fails() {
        let ring = LocalKeyRing::fixed("k1", [7; 32]);
        let sealed = ring.seal(&SecretValue::new("value"), &ctx()).await.unwrap();
        let other_record = SealContext::new("exe-2/new-secret", "new_client_secret");
        let other_purpose = SealContext::new("exe-1/new-secret", "webhook_key");
        assert!(matches!(ring.unseal(&sealed, &other_record).await, Err(Error::Seal(_))));
        assert!(matches!(ring.unseal(&sealed, &other_purpose).await, Err(Error::Seal(_))));
    }

    #[tokio::test]
    async fn wrong_key_fails_and_a_relabelled_key_id_fails() {
        let ring = LocalKeyRing::fixed("k1", [7; 32]);
        let sealed = ring.seal(&SecretValue::new("value"), &ctx()).await.unwrap();
        let other = LocalKeyRing::fixed("k1", [8; 32]);
        assert!(matches!(other.unseal(&sealed, &ctx()).await, Err(Error::Seal(_))));
        let mut relabelled = sealed.clone();
        relabelled.key_id = "k2".into();
        assert!(matches!(ring.unseal(&relabelled, &ctx()).await, Err(Error::Seal(_))));
    }

    #[tokio::test]
    async fn value_sealed_under_an_older_key_opens_after_a_new_key_is_added() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let mut ring = LocalKeyRing::open_or_create(&path).unwrap();
        let old = ring.seal(&SecretValue::new("old value"), &ctx()).await.unwrap();
        let new_id = ring.add_key().unwrap();
        let new = ring.seal(&SecretValue::new("new value"), &ctx()).await.unwrap();
        assert_eq!(new.key_id, new_id);
        assert_ne!(old.key_id, new.key_id);
        // Re-open from disk: both keys survive.
        let reopened = LocalKeyRing::open(&path).unwrap();
        assert_eq!(reopened.unseal(&old, &ctx()).await.unwrap().expose(), "old value");
        assert_eq!(reopened.unseal(&new, &ctx()).await.unwrap().expose(), "new value");
    }

    #[cfg(unix)]
    #[test]
    fn key_file_is_created_owner_only_and_refused_when_others_can_read_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        LocalKeyRing::open_or_create(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(LocalKeyRing::open(&path), Err(Error::Config(_))));
    }

    #[test]
    fn sealed_values_serialise_without_the_plaintext() {
        let sealed = seal_with_key(&[1; 32], "k1", &SecretValue::new("plain-secret"), &ctx()).unwrap();
        let json = serde_json::to_string(&sealed).unwrap();
        assert!(!json.contains("plain-secret"));
        assert_eq!(serde_json::from_str::<SealedValue>(&json).unwrap(), sealed);
    }
}

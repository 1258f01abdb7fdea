//! The stored-secret fallback's place: where a deployment keeps its integration's own client secret
//! (a private file on one machine, a Secrets Manager secret on AWS), read by the token source at
//! every token request and written by the `rotator_own_secret` step. Failures say where and why,
//! never what: no value, and no error text of a library that might quote one.

mod file;
mod secrets_manager;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::adapters::aws_identity::AwsSigning;
use crate::domain::integration::SecretPlace;
use crate::domain::secret::SecretValue;

pub use secrets_manager::SECRETS_MANAGER_CACHE;

/// Why the place could not be read or written, in words, and whether trying again may help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaceFailure {
    pub message: String,
    pub retryable: bool,
}

impl PlaceFailure {
    fn retryable(message: impl Into<String>) -> Self {
        Self { message: message.into(), retryable: true }
    }
    fn permanent(message: impl Into<String>) -> Self {
        Self { message: message.into(), retryable: false }
    }
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The place held the value already (a redelivered step): nothing changed.
    AlreadyThere,
    Replaced,
}

/// One place a client secret is kept. Its `Debug` shows where, never the value.
#[derive(Debug)]
pub struct StoredSecret {
    place: SecretPlace,
    backend: Backend,
    /// The last value read, and when: Secrets Manager is asked at most once per `cache_for`.
    cache: Mutex<Option<(Instant, CachedValue)>>,
    cache_for: Duration,
}

#[derive(Debug)]
enum Backend {
    File(file::SecretFile),
    SecretsManager(Box<secrets_manager::SecretsManagerSecret>),
}

/// A value in the cache, without a `Debug` that could show it.
struct CachedValue(SecretValue);

impl std::fmt::Debug for CachedValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CachedValue(..)")
    }
}

impl StoredSecret {
    /// The place as configured; Secrets Manager is asked as `aws` (the deployment's own AWS
    /// identity) when given, else as aws-config's default chain. A file is read afresh every time;
    /// a Secrets Manager value is kept for [`SECRETS_MANAGER_CACHE`].
    pub fn new(place: &SecretPlace, aws: Option<&AwsSigning>) -> Self {
        let (backend, cache_for) = match place {
            SecretPlace::File(path) => (Backend::File(file::SecretFile::new(path.clone())), Duration::ZERO),
            SecretPlace::SecretsManager(arn) => (
                Backend::SecretsManager(Box::new(secrets_manager::SecretsManagerSecret::new(
                    arn.clone(),
                    aws.cloned(),
                ))),
                SECRETS_MANAGER_CACHE,
            ),
        };
        Self { place: place.clone(), backend, cache: Mutex::new(None), cache_for }
    }

    /// As it is, the value kept for at most `cache_for` (tests: zero, to see a write at once).
    #[must_use]
    pub fn cached_for(mut self, cache_for: Duration) -> Self {
        self.cache_for = cache_for;
        self
    }

    pub fn place(&self) -> &SecretPlace {
        &self.place
    }

    /// Says where, never what.
    pub fn describe(&self) -> String {
        self.place.describe()
    }

    /// The secret kept there now (at most `cache_for` old).
    pub async fn read(&self) -> Result<SecretValue, PlaceFailure> {
        if !self.cache_for.is_zero() {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, CachedValue(value))) = cache.as_ref()
                && at.elapsed() < self.cache_for
            {
                return Ok(value.clone());
            }
        }
        let value = self.read_fresh().await?;
        self.remember(&value);
        Ok(value)
    }

    /// The secret kept there now, never from the cache: what a deployment starting now would read.
    pub async fn read_fresh(&self) -> Result<SecretValue, PlaceFailure> {
        let value = match &self.backend {
            Backend::File(f) => f.read()?,
            Backend::SecretsManager(s) => s.read().await?,
        };
        if value.is_empty() {
            return Err(PlaceFailure::permanent(format!("{} holds no secret", self.describe())));
        }
        Ok(value)
    }

    /// Keeps `value` there, unless it is there already. `request_token` (32 to 64 characters,
    /// the same for every delivery of one step) makes a repeated Secrets Manager write one version.
    pub async fn write(&self, value: &SecretValue, request_token: &str) -> Result<Written, PlaceFailure> {
        if let Ok(current) = self.read_fresh().await
            && current == *value
        {
            return Ok(Written::AlreadyThere);
        }
        match &self.backend {
            Backend::File(f) => f.write(value)?,
            Backend::SecretsManager(s) => s.write(value, request_token).await?,
        }
        self.remember(value);
        Ok(Written::Replaced)
    }

    /// Whether a write could succeed, changing nothing: the file's folder is writable (and the
    /// file, when it exists), or the secret can be read.
    pub async fn check_writable(&self) -> Result<(), PlaceFailure> {
        match &self.backend {
            Backend::File(f) => f.check_writable(),
            Backend::SecretsManager(s) => s.read().await.map(drop),
        }
    }

    fn remember(&self, value: &SecretValue) {
        if !self.cache_for.is_zero() {
            *self.cache.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), CachedValue(value.clone())));
        }
    }
}

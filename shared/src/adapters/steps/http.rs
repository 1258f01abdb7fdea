//! What every HTTP runner shares: the one client (the system's roots, the configured CA), the
//! secrets steps name by environment variable, and turning answers into [`StepFailure`]s without
//! the URL (which may carry a token).

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use crate::domain::secret::SecretValue;
use crate::ports::step_runner::StepFailure;

/// The client and the step secrets, read once at start-up.
pub struct Http {
    client: OnceLock<reqwest::Client>,
    /// The client's recipe until the first step needs it: building a client loads the system's
    /// root certificates, work that a Lambda function running no step (sync, scan, rotate,
    /// cleanup) should not pay for at cold start.
    deferred: Mutex<Option<reqwest::ClientBuilder>>,
    /// Values of the environment variables steps name (`signing_secret_env`, `bearer_token_env`).
    env_secrets: BTreeMap<String, SecretValue>,
}

impl Http {
    pub fn new(client: reqwest::Client, env_secrets: BTreeMap<String, SecretValue>) -> Self {
        Self { client: OnceLock::from(client), deferred: Mutex::new(None), env_secrets }
    }

    /// A client built when the first step runs.
    pub fn deferred(builder: reqwest::ClientBuilder, env_secrets: BTreeMap<String, SecretValue>) -> Self {
        Self { client: OnceLock::new(), deferred: Mutex::new(Some(builder)), env_secrets }
    }

    /// The client, built now if it was deferred. A client that cannot be built (no usable TLS
    /// roots) will not be buildable on a retry either: a permanent failure.
    pub(super) fn client(&self) -> Result<&reqwest::Client, StepFailure> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let mut deferred = self.deferred.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let builder = deferred
            .take()
            .ok_or_else(|| StepFailure::permanent("the HTTPS client of the steps could not be built"))?;
        let client = builder
            .build()
            .map_err(|e| StepFailure::permanent(format!("cannot build the HTTPS client of the steps: {e}")))?;
        Ok(self.client.get_or_init(|| client))
    }

    /// The value of the environment variable a step names; a permanent failure when it is not set.
    pub(super) fn env_secret(&self, name: &str) -> Result<&SecretValue, StepFailure> {
        self.env_secrets
            .get(name)
            .ok_or_else(|| StepFailure::permanent(format!("environment variable {name} is not set")))
    }
}

/// Turns a transport error into words without the URL (which may carry a token).
pub(super) fn transport(e: &reqwest::Error) -> StepFailure {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    StepFailure::retryable(what)
}

pub(super) fn status(status: reqwest::StatusCode, what: &str) -> Result<(), StepFailure> {
    if status.is_success() {
        return Ok(());
    }
    let retryable = status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408;
    Err(StepFailure { message: format!("{what} answered {status}"), retryable })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deferred_client_is_built_once_on_first_use() {
        let http = Http::deferred(reqwest::Client::builder(), BTreeMap::new());
        assert!(http.client.get().is_none(), "nothing is built before a step needs it");
        let first: *const reqwest::Client = http.client().unwrap();
        let second: *const reqwest::Client = http.client().unwrap();
        assert_eq!(first, second);
    }

    #[test]
    fn a_client_that_cannot_be_built_is_a_permanent_failure_every_time() {
        // An unknown preconfigured TLS backend: reqwest refuses to build.
        let http = Http::deferred(reqwest::Client::builder().use_preconfigured_tls(42u8), BTreeMap::new());
        for _ in 0..2 {
            let failure = http.client().unwrap_err();
            assert!(!failure.retryable, "{failure:?}");
        }
    }
}

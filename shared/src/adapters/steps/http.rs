//! What every HTTP runner shares: the one client (the system's roots, the configured CA), the
//! secrets steps name by environment variable, and turning answers into [`StepFailure`]s without
//! the URL (which may carry a token).

use std::collections::BTreeMap;

use crate::domain::secret::SecretValue;
use crate::ports::step_runner::StepFailure;

/// The client and the step secrets, read once at start-up.
pub struct Http {
    pub(super) client: reqwest::Client,
    /// Values of the environment variables steps name (`signing_secret_env`, `bearer_token_env`).
    env_secrets: BTreeMap<String, SecretValue>,
}

impl Http {
    pub fn new(client: reqwest::Client, env_secrets: BTreeMap<String, SecretValue>) -> Self {
        Self { client, env_secrets }
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

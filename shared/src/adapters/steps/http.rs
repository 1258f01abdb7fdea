//! What every HTTP runner shares: the one client (the system's roots, the configured CA, no
//! redirects, the outbound address policy on every resolved address), the secrets steps name by
//! environment variable, and turning answers into [`StepFailure`]s without the URL (which may
//! carry a token).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use url::Url;

use crate::adapters::outbound;
use crate::domain::address::AddressPolicy;
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
    /// Checked on each step's URL before sending; the client's resolver checks what names resolve to.
    policy: Arc<AddressPolicy>,
}

impl Http {
    /// The client of `builder` (hardened: see [`outbound::harden`]), built now.
    ///
    /// # Errors
    ///
    /// When reqwest cannot build the client.
    pub fn new(
        builder: reqwest::ClientBuilder,
        env_secrets: BTreeMap<String, SecretValue>,
        policy: Arc<AddressPolicy>,
    ) -> reqwest::Result<Self> {
        let client = outbound::harden(builder, policy.clone()).build()?;
        Ok(Self { client: OnceLock::from(client), deferred: Mutex::new(None), env_secrets, policy })
    }

    /// As [`Http::new`], the client built when the first step runs.
    pub fn deferred(
        builder: reqwest::ClientBuilder,
        env_secrets: BTreeMap<String, SecretValue>,
        policy: Arc<AddressPolicy>,
    ) -> Self {
        let builder = outbound::harden(builder, policy.clone());
        Self { client: OnceLock::new(), deferred: Mutex::new(Some(builder)), env_secrets, policy }
    }

    /// The client, for a request to `url`, once the policy allows `url`'s host (a literal address
    /// is never resolved, so the resolver would not see it).
    pub(super) fn client_for(&self, url: &Url) -> Result<&reqwest::Client, StepFailure> {
        self.policy.check_url(url).map_err(|r| StepFailure::permanent(r.to_string()))?;
        self.client()
    }

    /// Whether the policy allows `url`'s host, for a client that is not this one (the Kubernetes
    /// client).
    pub(super) fn check_url(&self, url: &Url) -> Result<(), StepFailure> {
        self.policy.check_url(url).map_err(|r| StepFailure::permanent(r.to_string()))
    }

    /// Whether the policy allows an address a name resolved to, for a client that is not this one.
    pub(super) fn check_ip(&self, ip: std::net::IpAddr) -> Result<(), StepFailure> {
        self.policy.check_ip(ip).map_err(|r| StepFailure::permanent(r.to_string()))
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

/// Turns a transport error into words without the URL (which may carry a token). A refusal of
/// the address policy is permanent: retrying resolves to the same forbidden place.
pub(super) fn transport(e: &reqwest::Error) -> StepFailure {
    if let Some(refusal) = outbound::refusal_of(e) {
        return StepFailure::permanent(refusal.to_string());
    }
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    StepFailure::retryable(what)
}

/// The first line of a text, at most 200 characters: enough to name a problem, never a dump.
pub(super) fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().chars().take(200).collect()
}

pub(super) fn status(status: reqwest::StatusCode, what: &str) -> Result<(), StepFailure> {
    if status.is_success() {
        return Ok(());
    }
    if status.is_redirection() {
        return Err(redirect(status, what));
    }
    let retryable = status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408;
    Err(StepFailure { message: format!("{what} answered {status}"), retryable, left_in_place: false })
}

/// A 3xx: redirects are never followed (the request, its token or signature, would go to a host
/// nobody checked), so the step's URL must be the final one. Retrying would not change that.
pub(super) fn redirect(status: reqwest::StatusCode, what: &str) -> StepFailure {
    StepFailure::permanent(format!(
        "{what} answered {status}, a redirect; redirects are not followed: give the final URL in the step"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deferred_client_is_built_once_on_first_use() {
        let http = Http::deferred(reqwest::Client::builder(), BTreeMap::new(), Arc::default());
        assert!(http.client.get().is_none(), "nothing is built before a step needs it");
        let first: *const reqwest::Client = http.client().unwrap();
        let second: *const reqwest::Client = http.client().unwrap();
        assert_eq!(first, second);
    }

    #[test]
    fn a_client_that_cannot_be_built_is_a_permanent_failure_every_time() {
        // An unknown preconfigured TLS backend: reqwest refuses to build.
        let http =
            Http::deferred(reqwest::Client::builder().use_preconfigured_tls(42u8), BTreeMap::new(), Arc::default());
        for _ in 0..2 {
            let failure = http.client().unwrap_err();
            assert!(!failure.retryable, "{failure:?}");
        }
    }
}

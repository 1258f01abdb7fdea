//! How the Graph adapter sends one request ([`Op`] says what it is and how far it may be retried):
//! the access token it carries, the retry loop, and the reading of the answer.
//! Deciding what a refusal means is `failure.rs`'s business.

use std::time::{Duration, Instant};

use azure_core::credentials::Secret;
use reqwest::{Method, header};
use serde::de::DeserializeOwned;

use super::GraphClient;
use super::failure::{Failure, GRAPH, classify, network_failure, token_error, unreadable};
use super::op::Op;
use super::retry::parse_retry_after;
use crate::{Error, Result};

impl GraphClient {
    /// An access token for Graph. `azure_identity` caches it and retries its own transient failures,
    /// so a failure here is reported as it is.
    pub(super) async fn token(&self) -> Result<Secret, Failure> {
        match self.credential.get_token(&[self.scope.as_str()], None).await {
            Ok(token) => Ok(token.token),
            Err(e) => Err(Failure::plain(token_error(&e, self.token_method))),
        }
    }

    /// Sends one logical request, retrying as `op` allows, and returns the successful answer's body.
    pub(super) async fn call(
        &self,
        op: &Op,
        method: Method,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Vec<u8>, Failure> {
        let started = Instant::now();
        if op.hand_back_refusals
            && let Some(wait) = self.write_pause_remaining()
        {
            // Graph asked this integration's writes to wait: no request until then.
            return Err(Failure::plain(Error::Directory {
                service: GRAPH,
                status: 429,
                code: "TooManyRequests".into(),
                message: format!("{} waits: Graph throttled this integration's writes moments ago", op.what),
                transient: true,
                retry_after: Some(self.retry.hand_back_delay(Some(wait))),
            }));
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let failure = match self.attempt(op, method.clone(), url, body).await {
                Ok(body) => return Ok(body),
                Err(failure) => failure,
            };
            if !failure.retry {
                return Err(failure);
            }
            let refused_for_now = failure.status == 429 || matches!(failure.status, 400 | 409);
            if op.hand_back_refusals && refused_for_now {
                return Err(self.hand_back(op, failure));
            }
            let wait = failure.retry_after.unwrap_or_else(|| self.retry.backoff(attempt));
            if attempt >= self.retry.max_attempts || started.elapsed() + wait > self.retry.budget {
                return Err(failure.gave_up(attempt, started.elapsed()));
            }
            tracing::warn!(
                operation = %op.what,
                status = failure.status,
                code = %failure.code,
                attempt,
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                retry_after = failure.retry_after.is_some(),
                "Graph refused for now; trying again"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// The time left before writes may be sent again, if Graph asked them to wait.
    fn write_pause_remaining(&self) -> Option<Duration> {
        let paused = self.writes_paused_until.lock().unwrap_or_else(|p| p.into_inner());
        let left = (*paused)? - self.clock.now();
        Duration::try_from(left).ok().filter(|d| !d.is_zero())
    }

    /// A throttling or concurrency refusal of a write that hands them back: a 429 pauses this
    /// integration's other such writes for its `Retry-After` (so one refusal does not become a storm
    /// of them), and the failure says how long the caller should wait, jittered.
    fn hand_back(&self, op: &Op, mut failure: Failure) -> Failure {
        if failure.status == 429 {
            let pause = failure.retry_after.unwrap_or(self.retry.base_delay);
            let until = self.clock.now() + pause;
            let mut paused = self.writes_paused_until.lock().unwrap_or_else(|p| p.into_inner());
            *paused = Some(paused.map_or(until, |p| p.max(until)));
        }
        let wait = self.retry.hand_back_delay(failure.retry_after);
        tracing::info!(
            operation = %op.what,
            status = failure.status,
            code = %failure.code,
            wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            "Graph refused a write for now; handing it back to be queued again"
        );
        failure.retry_after = Some(wait);
        if let Error::Directory { retry_after, .. } = &mut failure.error {
            *retry_after = Some(wait);
        }
        failure
    }

    /// One try: token, request, answer.
    async fn attempt(
        &self,
        op: &Op,
        method: Method,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Vec<u8>, Failure> {
        let token = self.token().await?;
        let mut request = self
            .http
            .request(method.clone(), url)
            .bearer_auth(token.secret())
            .header(header::ACCEPT, "application/json")
            .timeout(self.request_timeout);
        if let Some(body) = body {
            request = request.json(body);
        }
        drop(token);
        tracing::debug!(operation = %op.what, %method, path = %path_of(url), "Graph request");
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => return Err(network_failure(op, &e)),
        };
        let status = response.status();
        let retry_after = self.retry_after(&response);
        let bytes = match response.bytes().await {
            Ok(bytes) => Vec::from(bytes),
            Err(e) => return Err(network_failure(op, &e)),
        };
        if status.is_success() {
            return Ok(bytes);
        }
        Err(classify(op, status, &bytes, retry_after))
    }

    /// The answer's `Retry-After`, measured against the adapter's clock; `None` when absent or
    /// unreadable.
    pub(super) fn retry_after(&self, response: &reqwest::Response) -> Option<Duration> {
        response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, self.clock.now()))
    }
}

/// A successful answer's body as `T`; an answer that does not read is a permanent error.
pub(super) fn parse<T: DeserializeOwned>(op: &Op, body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| unreadable(op, e.to_string()))
}

/// The path of a URL, for logs: the query may carry a display name and is left out.
fn path_of(url: &str) -> String {
    url::Url::parse(url).map(|u| u.path().to_owned()).unwrap_or_default()
}

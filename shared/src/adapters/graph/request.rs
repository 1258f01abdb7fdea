//! How the Graph adapter sends one request ([`Op`] says what it is and how far it may be retried):
//! the access token it carries, the retry loop, and the reading of the answer.
//! Deciding what a refusal means is `failure.rs`'s business.

use std::time::{Duration, Instant};

use azure_core::credentials::Secret;
use reqwest::{Method, header};
use serde::de::DeserializeOwned;

use super::GraphClient;
use super::failure::{Failure, classify, network_failure, token_error, unreadable};
use super::op::Op;
use super::retry::parse_retry_after;
use crate::Result;

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

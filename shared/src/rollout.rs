//! Rollout steps that run: each step type of DESIGN §5 plugs into the same machinery through
//! [`StepRunner`]. This build ships `webhook` (signed in the Standard Webhooks manner),
//! `spring_actuator_refresh` and `http_health_check`; the other types are known to the planner
//! and refused by preflight until their runners arrive.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::json;
use time::OffsetDateTime;

use crate::domain::steps::{StepConfig, StepDefinition, StepKind};
use crate::ids::{AppObjectId, ClientId, CredentialId, ExecutionId, KeyId};
use crate::secret::SecretValue;

/// What a step may know of the rotation. The new secret is here for the steps that publish it;
/// the steps of this build never send it anywhere.
pub struct StepContext<'a> {
    pub execution: ExecutionId,
    pub step_index: u32,
    pub credential: &'a CredentialId,
    pub app: AppObjectId,
    pub client_id: ClientId,
    pub new_key_id: KeyId,
    pub new_secret_end: Option<OffsetDateTime>,
    pub secret: &'a SecretValue,
    pub now: OffsetDateTime,
}

/// Why a step failed, in words (never a secret), and whether trying again may help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFailure {
    pub message: String,
    pub retryable: bool,
}

impl StepFailure {
    pub fn retryable(message: impl Into<String>) -> Self {
        Self { message: message.into(), retryable: true }
    }
    pub fn permanent(message: impl Into<String>) -> Self {
        Self { message: message.into(), retryable: false }
    }
}

#[async_trait]
pub trait StepRunner: Send + Sync {
    async fn run(&self, step: &StepDefinition, ctx: &StepContext<'_>) -> Result<(), StepFailure>;
}

/// Runs the step types this build supports, over one HTTP client.
pub struct Rollout {
    http: reqwest::Client,
    /// Values of the environment variables steps name (`signing_secret_env`, `bearer_token_env`),
    /// read once at start-up.
    env_secrets: BTreeMap<String, SecretValue>,
}

impl Rollout {
    pub fn new(http: reqwest::Client, env_secrets: BTreeMap<String, SecretValue>) -> Self {
        Self { http, env_secrets }
    }

    /// Whether this build can run steps of `kind`.
    pub fn supports(kind: StepKind) -> bool {
        matches!(kind, StepKind::Webhook | StepKind::SpringActuatorRefresh | StepKind::HttpHealthCheck)
    }

    fn env_secret(&self, name: &str) -> Result<&SecretValue, StepFailure> {
        self.env_secrets
            .get(name)
            .ok_or_else(|| StepFailure::permanent(format!("environment variable {name} is not set")))
    }

    /// Turns a transport error into words without the URL (which may carry a token).
    fn transport(e: &reqwest::Error) -> StepFailure {
        let what = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "could not connect"
        } else {
            "request failed"
        };
        StepFailure::retryable(what)
    }

    fn status(status: reqwest::StatusCode, what: &str) -> Result<(), StepFailure> {
        if status.is_success() {
            return Ok(());
        }
        let retryable = status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408;
        Err(StepFailure { message: format!("{what} answered {status}"), retryable })
    }

    async fn webhook(&self, step: &StepDefinition, ctx: &StepContext<'_>) -> Result<(), StepFailure> {
        let StepConfig::Webhook(cfg) = &step.config else { return Err(StepFailure::permanent("not a webhook")) };
        // The event names what changed; it never holds the secret.
        let body = json!({
            "type": "entra-rotator.secret.rotated",
            "execution": ctx.execution,
            "credential": ctx.credential,
            "application_object_id": ctx.app,
            "client_id": ctx.client_id,
            "new_key_id": ctx.new_key_id,
            "new_secret_end": ctx.new_secret_end.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
            "occurred_at": ctx.now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        })
        .to_string();
        // Stable across retries of this step, so receivers can drop duplicates.
        let id = format!("{}-step-{}", ctx.execution, ctx.step_index);
        let timestamp = ctx.now.unix_timestamp().to_string();
        let mut request = self
            .http
            .post(cfg.url.as_str())
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", &timestamp);
        if let Some(env) = &cfg.signing_secret_env {
            let key = self.env_secret(env)?;
            request = request.header("webhook-signature", standard_webhook_signature(key, &id, &timestamp, &body));
        }
        for (name, value) in &cfg.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request.body(body).send().await.map_err(|e| Self::transport(&e))?;
        Self::status(response.status(), "the webhook")
    }

    async fn spring(&self, step: &StepDefinition) -> Result<(), StepFailure> {
        let StepConfig::SpringActuatorRefresh(cfg) = &step.config else {
            return Err(StepFailure::permanent("not a Spring refresh"));
        };
        let mut request = self.http.post(cfg.url.as_str()).timeout(cfg.timeout.as_duration());
        if let Some(env) = &cfg.bearer_token_env {
            request = request.bearer_auth(self.env_secret(env)?.expose());
        }
        let response = request.send().await.map_err(|e| Self::transport(&e))?;
        Self::status(response.status(), "the actuator refresh endpoint")
    }

    async fn health(&self, step: &StepDefinition) -> Result<(), StepFailure> {
        let StepConfig::HttpHealthCheck(cfg) = &step.config else {
            return Err(StepFailure::permanent("not a health check"));
        };
        let deadline = tokio::time::Instant::now() + cfg.timeout.as_duration();
        loop {
            let attempt = self.http.get(cfg.url.as_str()).timeout(Duration::from_secs(10)).send().await;
            let last = match attempt {
                Ok(r) if r.status().as_u16() == cfg.expected_status => {
                    let Some(needle) = &cfg.contains else { return Ok(()) };
                    let text = r.text().await.unwrap_or_default();
                    if text.contains(needle.as_str()) {
                        return Ok(());
                    }
                    "the answer did not contain the expected text".to_owned()
                }
                Ok(r) => format!("answered {} (expected {})", r.status(), cfg.expected_status),
                Err(e) => Self::transport(&e).message,
            };
            if tokio::time::Instant::now() + cfg.interval.as_duration() > deadline {
                return Err(StepFailure::retryable(format!(
                    "not healthy within {}: {last}",
                    crate::domain::Span(cfg.timeout.as_duration())
                )));
            }
            tokio::time::sleep(cfg.interval.as_duration()).await;
        }
    }
}

#[async_trait]
impl StepRunner for Rollout {
    async fn run(&self, step: &StepDefinition, ctx: &StepContext<'_>) -> Result<(), StepFailure> {
        match step.kind() {
            StepKind::Webhook => self.webhook(step, ctx).await,
            StepKind::SpringActuatorRefresh => self.spring(step).await,
            StepKind::HttpHealthCheck => self.health(step).await,
            other => {
                Err(StepFailure::permanent(format!("{} steps are not supported by this build yet", other.as_str())))
            }
        }
    }
}

/// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, as Standard Webhooks specifies. A key
/// written `whsec_<base64>` is used decoded, as that specification's libraries do.
pub fn standard_webhook_signature(key: &SecretValue, id: &str, timestamp: &str, body: &str) -> String {
    let raw = key.expose();
    let decoded = raw.strip_prefix("whsec_").and_then(|b| B64.decode(b).ok());
    let key_bytes = zeroize::Zeroizing::new(decoded.unwrap_or_else(|| raw.as_bytes().to_vec()));
    let mac_key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key_bytes);
    let tag = aws_lc_rs::hmac::sign(&mac_key, format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", B64.encode(tag.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_follows_standard_webhooks() {
        // The example of the Standard Webhooks specification's reference libraries.
        let key = SecretValue::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let sig =
            standard_webhook_signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", r#"{"test": 2432232314}"#);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}

//! The `webhook` runner: POSTs an event about the rotation (never the secret), signed in the
//! Standard Webhooks manner when the step names a signing key.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::json;
use time::format_description::well_known::Rfc3339;

use super::http::{Http, status, transport};
use crate::domain::secret::SecretValue;
use crate::domain::steps::WebhookConfig;
use crate::ports::step_runner::{StepContext, StepFailure};

pub(super) async fn run(http: &Http, cfg: &WebhookConfig, ctx: &StepContext<'_>) -> Result<(), StepFailure> {
    // The event names what changed; it never holds the secret.
    let body = json!({
        "type": "entra-rotator.secret.rotated",
        "execution": ctx.execution,
        "credential": ctx.credential,
        "application_object_id": ctx.app,
        "client_id": ctx.client_id,
        "new_key_id": ctx.new_key_id,
        "new_secret_end": ctx.new_secret_end.and_then(|t| t.format(&Rfc3339).ok()),
        "occurred_at": ctx.now.format(&Rfc3339).unwrap_or_default(),
    })
    .to_string();
    // Stable across retries of this step, so receivers can drop duplicates.
    let id = format!("{}-step-{}", ctx.execution, ctx.step_index);
    let timestamp = ctx.now.unix_timestamp().to_string();
    let mut request = http
        .client_for(&cfg.url)?
        .post(cfg.url.as_str())
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", &timestamp);
    if let Some(env) = &cfg.signing_secret_env {
        let key = http.env_secret(env)?;
        request = request.header("webhook-signature", standard_webhook_signature(key, &id, &timestamp, &body));
    }
    for (name, value) in &cfg.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = request.body(body).send().await.map_err(|e| transport(&e))?;
    status(response.status(), "the webhook")
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

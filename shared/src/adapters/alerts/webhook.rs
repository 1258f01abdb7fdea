//! Alert webhooks: generic JSON, Slack and Teams incoming-webhook shapes.

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::domain::lifecycle::AlertThreshold;
use crate::domain::secret::SecretValue;
use crate::ports::alerts::{Alert, AlertSink};
use crate::ports::alerts::{WebhookFormat, WebhookSink as WebhookConfig};
use crate::{Error, Result};

/// Posts alerts to a webhook. The URL often holds a token (Slack, Teams), so it is kept as a
/// secret: errors and logs name the host only.
pub struct WebhookAlertSink {
    name: String,
    url: SecretValue,
    host: String,
    format: WebhookFormat,
    client: reqwest::Client,
}

impl WebhookAlertSink {
    pub fn new(config: &WebhookConfig, client: reqwest::Client) -> Self {
        Self {
            name: config.name.clone(),
            url: config.url.clone(),
            host: config.host.clone(),
            format: config.format,
            client,
        }
    }

    /// The request body for `alerts` in this sink's format.
    pub fn body(&self, alerts: &[Alert]) -> Value {
        body(self.format, alerts)
    }
}

pub fn body(format: WebhookFormat, alerts: &[Alert]) -> Value {
    let lines: Vec<String> = alerts.iter().map(|a| format!("{} {}", icon(a), a.summary())).collect();
    let title = match alerts.len() {
        1 => "entra-rotator: 1 credential needs attention".to_owned(),
        n => format!("entra-rotator: {n} credentials need attention"),
    };
    match format {
        WebhookFormat::Json => json!({ "type": "entra-rotator.expiry-alerts", "alerts": alerts }),
        WebhookFormat::Slack => json!({
            "text": format!("{title}\n{}", lines.join("\n")),
            "blocks": [
                { "type": "header", "text": { "type": "plain_text", "text": title } },
                { "type": "section", "text": { "type": "mrkdwn", "text": lines.join("\n") } }
            ]
        }),
        WebhookFormat::Teams => json!({
            "@type": "MessageCard",
            "@context": "https://schema.org/extensions",
            "summary": title,
            "themeColor": if alerts.iter().any(Alert::is_severe) { "D13438" } else { "FFB900" },
            "title": title,
            "text": lines.join("<br>"),
        }),
    }
}

fn icon(a: &Alert) -> &'static str {
    match a.threshold {
        _ if a.problem.is_some() => "🚨",
        Some(AlertThreshold::Expired) => "⛔",
        Some(AlertThreshold::DaysBefore(d)) if d <= 7 => "🔴",
        _ => "🟠",
    }
}

#[async_trait]
impl AlertSink for WebhookAlertSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, alerts: &[Alert]) -> Result<()> {
        if alerts.is_empty() {
            return Ok(());
        }
        let fail = |status: u16, transient: bool, message: String| Error::Directory {
            service: "alert webhook",
            status,
            code: self.host.clone(),
            message,
            transient,
            retry_after: None,
        };
        let response = self
            .client
            .post(self.url.expose())
            .json(&self.body(alerts))
            .send()
            .await
            // reqwest's error text carries the URL; say only what kind of failure it was.
            .map_err(|e| fail(0, true, if e.is_timeout() { "timed out".into() } else { "could not connect".into() }))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        Err(fail(
            status.as_u16(),
            status.is_server_error() || status.as_u16() == 429,
            format!("the webhook refused the alerts ({status})"),
        ))
    }
}

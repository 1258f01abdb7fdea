//! Alert webhooks: generic JSON, Slack and Teams incoming-webhook shapes.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::adapters::outbound;
use crate::domain::address::AddressPolicy;

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
    policy: Arc<AddressPolicy>,
}

impl WebhookAlertSink {
    /// A sink posting over `client`, which should be built with [`client`] (no redirects, the
    /// policy on resolved addresses); the URL's own host is checked against `policy` on each send.
    pub fn new(config: &WebhookConfig, client: reqwest::Client, policy: Arc<AddressPolicy>) -> Self {
        Self {
            name: config.name.clone(),
            url: config.url.clone(),
            host: config.host.clone(),
            format: config.format,
            client,
            policy,
        }
    }

    /// The request body for `alerts` in this sink's format.
    pub fn body(&self, alerts: &[Alert]) -> Value {
        body(self.format, alerts)
    }
}

/// The client alert sinks share: `builder` (with its CA certificates) hardened by
/// [`outbound::harden`], with a timeout so a slow sink cannot hold a scan.
///
/// # Errors
///
/// When reqwest cannot build the client.
pub fn client(builder: reqwest::ClientBuilder, policy: Arc<AddressPolicy>) -> reqwest::Result<reqwest::Client> {
    outbound::harden(builder.timeout(std::time::Duration::from_secs(15)), policy).build()
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
        let url = url::Url::parse(self.url.expose()).map_err(|_| fail(0, false, "not an http(s) URL".into()))?;
        self.policy.check_url(&url).map_err(|r| fail(0, false, r.to_string()))?;
        let response = self
            .client
            .post(url)
            .json(&self.body(alerts))
            .send()
            .await
            // reqwest's error text carries the URL; say only what kind of failure it was.
            .map_err(|e| match outbound::refusal_of(&e) {
                Some(refusal) => fail(0, false, refusal.to_string()),
                None => fail(0, true, if e.is_timeout() { "timed out".into() } else { "could not connect".into() }),
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        if status.is_redirection() {
            // Following it would post the alerts (and whatever the URL carries) to a host nobody checked.
            return Err(fail(
                status.as_u16(),
                false,
                format!("the webhook answered {status}, a redirect; redirects are not followed: give the final URL"),
            ));
        }
        Err(fail(
            status.as_u16(),
            status.is_server_error() || status.as_u16() == 429,
            format!("the webhook refused the alerts ({status})"),
        ))
    }
}

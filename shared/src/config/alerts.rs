//! The `[[alerts.webhooks]]` tables: where alerts are posted. A webhook URL often carries its own
//! token, so it is kept as a secret, may come from the environment, and is never quoted in an error.

use super::Env;
use super::raw::RawWebhookSink;
use crate::domain::address::AddressPolicy;
use crate::domain::secret::SecretValue;
use crate::ports::alerts::WebhookSink;

/// The webhooks as configured, each with an http(s) URL from the file or from `url_env`.
pub(super) fn webhooks(
    written: Vec<RawWebhookSink>,
    env: &dyn Env,
    addresses: &AddressPolicy,
    errors: &mut Vec<String>,
) -> Vec<WebhookSink> {
    let mut webhooks = Vec::new();
    for (i, w) in written.into_iter().enumerate() {
        let at = format!("alerts.webhooks[{i}]");
        let url = match (w.url, w.url_env) {
            (Some(_), Some(_)) => {
                errors.push(format!("{at}: give url or url_env, not both"));
                continue;
            }
            (Some(u), None) => u,
            (None, Some(var)) => match env.var(&var) {
                Some(u) => u,
                None => {
                    errors.push(format!("{at}.url_env: environment variable {var} is not set"));
                    continue;
                }
            },
            (None, None) => {
                errors.push(format!("{at}: url or url_env is required"));
                continue;
            }
        };
        match url::Url::parse(&url) {
            Ok(u) if matches!(u.scheme(), "https" | "http") && u.host_str().is_some() => {
                if let Err(refusal) = addresses.check_url(&u) {
                    errors.push(format!("{at}.url: {refusal}"));
                    continue;
                }
                webhooks.push(WebhookSink {
                    name: w.name.unwrap_or_else(|| format!("webhook-{}", i + 1)),
                    host: u.host_str().unwrap_or_default().to_owned(),
                    url: SecretValue::new(url),
                    format: w.format,
                })
            }
            // The URL may hold a token: say what is wrong without quoting it.
            _ => errors.push(format!("{at}.url: not an http(s) URL")),
        }
    }
    webhooks
}

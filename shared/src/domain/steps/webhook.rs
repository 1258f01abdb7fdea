//! `webhook`: notifies a receiver of the rotation (never the secret) with a POST, signed with HMAC when
//! a signing key is named.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use url::Url;

use super::issues::{Notes, wrong_type};
use super::read::{Need, Obj, Schemes};
use super::{Phase, StepConfig, StepKind, StepType, TypeConfig};

pub(super) const TYPE: StepType = StepType {
    kind: StepKind::Webhook,
    name: "webhook",
    phase: Phase::Notify,
    takes_agent: false,
    config_fields: &["url", "signing_secret_env", "headers", "events"],
    env_field: Some("signing_secret_env"),
    read: |o, _agent, n| read(o, n).map(StepConfig::Webhook),
};

/// `webhook`: POSTs an event about the rotation (never the secret), signed with HMAC when a signing
/// key is named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookConfig {
    #[serde(serialize_with = "super::ser_url")]
    pub url: Url,
    /// The name of the environment variable holding the HMAC signing key, never the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_secret_env: Option<String>,
    /// Extra request headers.
    pub headers: BTreeMap<String, String>,
    /// Which events to send; all when empty.
    pub events: Vec<String>,
}

impl TypeConfig for WebhookConfig {
    /// By the URL's origin only: chat webhooks carry their secret in the path.
    fn describe(&self) -> String {
        format!("Webhook to {}", self.url.origin().ascii_serialization())
    }

    fn urls(&self) -> Vec<(&'static str, &Url)> {
        vec![("config.url", &self.url)]
    }
}

fn read(o: &Obj<'_>, n: &mut Notes) -> Option<WebhookConfig> {
    let url = o.url(n, "url", Need::Required, Schemes::HttpOrHttps);
    let signing_secret_env = o.env_name(n, "signing_secret_env");
    if o.get("signing_secret_env").is_none() {
        n.warn(
            o.path("signing_secret_env"),
            "not set, so events are sent unsigned; name the environment variable holding an HMAC key so the \
             receiver can check them",
        );
    }
    let headers = o.string_map(n, "headers", check_header_name, check_header_value);
    for name in headers.iter().flat_map(|h| h.keys()) {
        if name.eq_ignore_ascii_case("authorization") {
            n.warn(
                format!("{}.{name}", o.path("headers")),
                "a credential in a step definition is readable by anyone who can read the configuration; prefer \
                 signing_secret_env",
            );
        }
    }
    let mut events = Vec::new();
    if let Some(items) = o.array(n, "events") {
        for (i, item) in items.iter().enumerate() {
            let at = format!("{}[{i}]", o.path("events"));
            match item {
                Value::String(s) => match check_event(s) {
                    Ok(()) if events.contains(s) => n.error(at, "listed twice"),
                    Ok(()) => events.push(s.clone()),
                    Err(m) => n.error(at, m),
                },
                other => n.error(at, wrong_type("a string", other)),
            }
        }
    }
    Some(WebhookConfig { url: url?, signing_secret_env, headers: headers.unwrap_or_default(), events })
}

fn check_header_name(s: &str) -> Result<(), String> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if !s.is_empty() && s.chars().all(token) { Ok(()) } else { Err("not a valid HTTP header name".to_owned()) }
}

fn check_header_value(s: &str) -> Result<(), String> {
    if s.chars().any(|c| c.is_control() && c != '\t') {
        Err("a header value must not contain line breaks or control characters".to_owned())
    } else {
        Ok(())
    }
}

fn check_event(s: &str) -> Result<(), String> {
    if s.is_empty() || s.chars().count() > 100 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err("an event name is 1 to 100 characters without spaces".to_owned())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::steps::test_support::*;
    use crate::domain::steps::{Severity, parse_steps};

    #[test]
    fn env_var_fields_take_names_and_never_echo_a_pasted_secret() {
        let json = simple_step("webhook", 1).replace("HOOK_KEY", "whsec_hunter2/abc==");
        let e = parse_steps(&array(&[json])).expect_err("not a name");
        assert!(issue(&e.0, "config.signing_secret_env").message.contains("never the secret itself"));
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let unsigned = simple_step("webhook", 1).replace(", \"signing_secret_env\": \"HOOK_KEY\"", "");
        let p = plan(&array(&[unsigned]));
        assert_eq!(issue(&p.warnings, "config.signing_secret_env").severity, Severity::Warning);
    }

    #[test]
    fn webhook_headers_are_checked_and_an_authorization_header_is_a_warning() {
        let json = simple_step("webhook", 1).replace(
            "\"url\"",
            "\"headers\": {\"Authorization\": \"Bearer x\"}, \"events\": [\"rotation.completed\"], \"url\"",
        );
        let p = plan(&array(&[json]));
        assert_eq!(issue(&p.warnings, "config.headers.Authorization").severity, Severity::Warning);
        let bad = simple_step("webhook", 1).replace(
            "\"url\"",
            "\"headers\": {\"X-A\": \"a\\r\\nX-B: b\", \"Bad Name\": \"v\"}, \"events\": [\"a\", \"a\", 3], \"url\"",
        );
        let e = errors(&array(&[bad]));
        assert!(issue(&e, "config.headers.X-A").message.contains("line breaks"));
        assert!(issue(&e, "config.headers.Bad Name").message.contains("header name"));
        assert!(issue(&e, "config.events[1]").message.contains("twice"));
        assert!(issue(&e, "config.events[2]").message.contains("got a number"));
    }
}

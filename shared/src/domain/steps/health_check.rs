//! `http_health_check`: verifies the rollout by probing a URL until it answers the expected status
//! (and body), or the time is up.

use serde::Serialize;
use url::Url;

use super::issues::Notes;
use super::read::{Need, Obj, Schemes};
use super::{Phase, StepConfig, StepKind, StepType, TypeConfig, url_without_query};
use crate::domain::duration::Span;

/// The status a health check waits for when the definition says nothing.
pub const DEFAULT_EXPECTED_STATUS: u16 = 200;
/// How long a health check waits in all for the expected answer when the definition says nothing.
pub const DEFAULT_HEALTH_TIMEOUT: Span = Span::from_secs(120);
/// The pause between two probes of a health check when the definition says nothing.
pub const DEFAULT_HEALTH_INTERVAL: Span = Span::from_secs(5);

pub(super) const TYPE: StepType = StepType {
    kind: StepKind::HttpHealthCheck,
    name: "http_health_check",
    phase: Phase::Verify,
    takes_agent: false,
    config_fields: &["url", "expected_status", "timeout", "interval", "contains"],
    env_field: None,
    read: |o, _agent, n| read(o, n).map(StepConfig::HttpHealthCheck),
};

/// `http_health_check`: probes a URL until it answers the expected status (and body), or the time is
/// up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpHealthCheckConfig {
    #[serde(serialize_with = "super::ser_url")]
    pub url: Url,
    /// 100 to 599.
    pub expected_status: u16,
    /// The whole wait budget, across probes.
    pub timeout: Span,
    /// Pause between probes; not longer than `timeout`.
    pub interval: Span,
    /// A substring the body must contain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
}

impl TypeConfig for HttpHealthCheckConfig {
    fn describe(&self) -> String {
        format!("Wait for {} to answer {}", url_without_query(&self.url), self.expected_status)
    }

    fn urls(&self) -> Vec<(&'static str, &Url)> {
        vec![("config.url", &self.url)]
    }
}

fn read(o: &Obj<'_>, n: &mut Notes) -> Option<HttpHealthCheckConfig> {
    let url = o.url(n, "url", Need::Required, Schemes::HttpOrHttps);
    let expected_status = o.uint(n, "expected_status", Need::Optional, 599).and_then(|s| {
        let status = u16::try_from(s)
            .ok()
            .filter(|s| *s >= 100)
            .ok_or_else(|| "expected an HTTP status from 100 to 599".to_owned());
        o.checked(n, "expected_status", status)
    });
    let timeout = o.positive_span(n, "timeout").unwrap_or(DEFAULT_HEALTH_TIMEOUT);
    let interval = o.positive_span(n, "interval").unwrap_or(DEFAULT_HEALTH_INTERVAL);
    if interval > timeout {
        n.error(o.path("interval"), format!("{interval} is longer than the whole wait (timeout {timeout})"));
    }
    let contains = match o.str(n, "contains", Need::Optional) {
        Some("") => {
            n.error(o.path("contains"), "must not be empty; leave it out to accept any body");
            None
        }
        other => other.map(str::to_owned),
    };
    Some(HttpHealthCheckConfig {
        url: url?,
        expected_status: expected_status.unwrap_or(DEFAULT_EXPECTED_STATUS),
        timeout,
        interval,
        contains,
    })
}

#[cfg(test)]
mod tests {
    use crate::domain::steps::test_support::*;

    #[test]
    fn health_check_bounds_are_checked() {
        let with = |config: &str| {
            format!(
                r#"[{{"type": "http_health_check", "order": 1, "config": {{"url": "https://a.example.com/h", {config}}}}}]"#
            )
        };
        assert!(issue(&errors(&with(r#""expected_status": 600"#)), "config.expected_status").message.contains("599"));
        assert!(
            issue(&errors(&with(r#""expected_status": 99"#)), "config.expected_status").message.contains("100 to 599")
        );
        assert!(
            issue(&errors(&with(r#""interval": "3m""#)), "config.interval")
                .message
                .contains("longer than the whole wait")
        );
        assert!(issue(&errors(&with(r#""timeout": "0s""#)), "config.timeout").message.contains("longer than 0s"));
        assert!(issue(&errors(&with(r#""contains": """#)), "config.contains").message.contains("empty"));
    }
}

//! The `http_health_check` runner: probes a URL until it answers the expected status (and body),
//! or the step's time is up. A wrong answer is "not healthy yet", never final on its own.

use std::time::Duration;

use super::http::{Http, redirect, transport};
use crate::domain::Span;
use crate::domain::steps::HttpHealthCheckConfig;
use crate::ports::step_runner::StepFailure;

/// The most one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) async fn run(http: &Http, cfg: &HttpHealthCheckConfig) -> Result<(), StepFailure> {
    let deadline = tokio::time::Instant::now() + cfg.timeout.as_duration();
    loop {
        let attempt = http.client_for(&cfg.url)?.get(cfg.url.as_str()).timeout(PROBE_TIMEOUT).send().await;
        let last = match attempt {
            Ok(r) if r.status().as_u16() == cfg.expected_status => {
                let Some(needle) = &cfg.contains else { return Ok(()) };
                let text = r.text().await.unwrap_or_default();
                if text.contains(needle.as_str()) {
                    return Ok(());
                }
                "the answer did not contain the expected text".to_owned()
            }
            // A redirect will not go away by waiting.
            Ok(r) if r.status().is_redirection() => return Err(redirect(r.status(), "the health check URL")),
            Ok(r) => format!("answered {} (expected {})", r.status(), cfg.expected_status),
            Err(e) => {
                let failure = transport(&e);
                if !failure.retryable {
                    return Err(failure);
                }
                failure.message
            }
        };
        if tokio::time::Instant::now() + cfg.interval.as_duration() > deadline {
            return Err(StepFailure::retryable(format!(
                "not healthy within {}: {last}",
                Span(cfg.timeout.as_duration())
            )));
        }
        tokio::time::sleep(cfg.interval.as_duration()).await;
    }
}

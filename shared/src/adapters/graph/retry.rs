//! When and how long the Graph adapter waits before trying a request again: exponential backoff with
//! full jitter, `Retry-After` honoured when Graph sends it, all within a bounded budget so a stuck
//! call hands back to the queue (which has retries of its own) instead of holding a worker.

use std::time::Duration;

use time::OffsetDateTime;

/// How hard the Graph adapter tries before it reports a transient error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included. `1` means no retry.
    pub max_attempts: u32,
    /// The backoff ceiling of the first retry; it doubles with each further retry.
    pub base_delay: Duration,
    /// The largest backoff ceiling. A `Retry-After` from Graph is honoured even when longer.
    pub max_delay: Duration,
    /// The most time one call may spend, waits included. A wait that would end past it is not
    /// started: the call fails (transient) and the caller's own retry takes over.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            budget: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// No retry at all: every failure is reported at once.
    pub fn none() -> Self {
        Self { max_attempts: 1, ..Self::default() }
    }

    /// The wait before retry number `retry` (1 for the first retry) when Graph gave no
    /// `Retry-After`: uniformly random in `[0, min(max_delay, base_delay * 2^(retry-1))]` ("full
    /// jitter"), so that writers refused together do not come back together.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        let ceiling = self.base_delay.saturating_mul(factor).min(self.max_delay);
        ceiling.mul_f64(random_unit())
    }
}

impl RetryPolicy {
    /// How long a refusal handed back to the caller asks it to wait: Graph's `Retry-After` (or, when
    /// absent, the first backoff ceiling) and up to half as much again, drawn at random, so that
    /// writers refused together do not all come back in the same instant.
    pub fn hand_back_delay(&self, retry_after: Option<Duration>) -> Duration {
        let floor = retry_after.unwrap_or(self.base_delay);
        floor + floor.mul_f64(random_unit() * 0.5)
    }
}

/// A random number in `[0, 1]`, from the system's random source (aws-lc-rs, already linked for TLS).
fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        // No randomness: wait the full ceiling, which is the polite choice.
        return 1.0;
    }
    // 53 random bits make every f64 in [0, 1) equally likely.
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

/// A `Retry-After` header: delay-seconds (`120`) or an HTTP date (`Wed, 21 Oct 2015 07:28:00 GMT`),
/// measured from `now`. A date in the past means "now".
pub fn parse_retry_after(value: &str, now: OffsetDateTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let at = OffsetDateTime::from(at);
    Some(Duration::try_from(at - now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn retry_after_in_seconds_and_as_an_http_date_are_both_understood() {
        let now = datetime!(2015-10-21 07:27:30 UTC);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn backoff_stays_within_its_doubling_ceiling_and_the_maximum() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
            budget: Duration::from_secs(5),
        };
        for _ in 0..200 {
            assert!(policy.backoff(1) <= Duration::from_millis(100));
            assert!(policy.backoff(2) <= Duration::from_millis(200));
            assert!(policy.backoff(3) <= Duration::from_millis(400));
            assert!(policy.backoff(9) <= Duration::from_millis(500));
            assert!(policy.backoff(40) <= Duration::from_millis(500));
        }
    }

    #[test]
    fn a_handed_back_refusal_waits_at_least_what_graph_asked_and_at_most_half_as_long_again() {
        let policy = RetryPolicy::default();
        for _ in 0..100 {
            let wait = policy.hand_back_delay(Some(Duration::from_secs(2)));
            assert!((Duration::from_secs(2)..=Duration::from_secs(3)).contains(&wait), "{wait:?}");
            let wait = policy.hand_back_delay(None);
            assert!((policy.base_delay..=policy.base_delay.mul_f64(1.5)).contains(&wait), "{wait:?}");
        }
    }

    #[test]
    fn backoff_is_jittered_rather_than_fixed() {
        let policy = RetryPolicy::default();
        let waits: std::collections::BTreeSet<_> = (0..20).map(|_| policy.backoff(3)).collect();
        assert!(waits.len() > 1, "full jitter draws a different wait each time");
    }
}

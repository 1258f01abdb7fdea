//! Durations as operators write them: `30d`, `12h`, `10s`, `1h 30m`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A duration written in the configuration or a step definition. Parsed by `humantime`, so `30d`,
/// `12h`, `90s`, `500ms` and `1h 30m` all work; shown back in the same style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Span(pub Duration);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{got:?} is not a duration: write it like 30d, 12h, 10m or 10s")]
pub struct SpanError {
    pub got: String,
}

impl Span {
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }
    pub const fn from_days(days: u64) -> Self {
        Self(Duration::from_secs(days * 86_400))
    }
    pub fn as_duration(&self) -> Duration {
        self.0
    }
    pub fn as_time(&self) -> time::Duration {
        time::Duration::try_from(self.0).unwrap_or(time::Duration::MAX)
    }
}

impl FromStr for Span {
    type Err = SpanError;
    fn from_str(s: &str) -> Result<Self, SpanError> {
        let err = || SpanError { got: s.chars().take(40).collect() };
        let trimmed = s.trim();
        // A bare number is ambiguous (seconds? days?), so it is refused rather than guessed.
        if trimmed.is_empty() || trimmed.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        humantime::parse_duration(trimmed).map(Span).map_err(|_| err())
    }
}

impl TryFrom<String> for Span {
    type Error = SpanError;
    fn try_from(s: String) -> Result<Self, SpanError> {
        s.parse()
    }
}

impl From<Span> for String {
    fn from(s: Span) -> String {
        s.to_string()
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_zero() {
            return f.write_str("0s");
        }
        humantime::format_duration(self.0).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_forms_parse() {
        assert_eq!("30d".parse::<Span>().unwrap(), Span::from_days(30));
        assert_eq!("12h".parse::<Span>().unwrap(), Span::from_secs(12 * 3600));
        assert_eq!("10s".parse::<Span>().unwrap(), Span::from_secs(10));
        assert_eq!("1h 30m".parse::<Span>().unwrap(), Span::from_secs(5400));
    }

    #[test]
    fn bare_numbers_and_nonsense_are_refused() {
        assert!("30".parse::<Span>().is_err());
        assert!("thirty days".parse::<Span>().is_err());
        assert!("".parse::<Span>().is_err());
    }

    #[test]
    fn spans_display_the_way_they_are_written() {
        assert_eq!(Span::from_days(30).to_string(), "30days");
        assert_eq!(Span::from_secs(10).to_string(), "10s");
    }
}

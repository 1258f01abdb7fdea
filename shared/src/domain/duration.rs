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
        // The largest whole unit, the way operators write it: 180d, not "5months 27days 19h 12m".
        let d = self.0;
        if d.subsec_nanos() != 0 {
            return humantime::format_duration(d).fmt(f);
        }
        let s = d.as_secs();
        match s {
            0 => f.write_str("0s"),
            s if s % 86_400 == 0 => write!(f, "{}d", s / 86_400),
            s if s % 3_600 == 0 => write!(f, "{}h", s / 3_600),
            s if s % 60 == 0 => write!(f, "{}m", s / 60),
            s => write!(f, "{s}s"),
        }
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
        assert_eq!(Span::from_days(30).to_string(), "30d");
        assert_eq!(Span::from_days(180).to_string(), "180d");
        assert_eq!(Span::from_secs(12 * 3600).to_string(), "12h");
        assert_eq!(Span::from_secs(90).to_string(), "90s");
        assert_eq!(Span::from_secs(600).to_string(), "10m");
        assert_eq!(Span(std::time::Duration::from_millis(1500)).to_string(), "1s 500ms");
        for s in ["30d", "12h", "10m", "90s"] {
            assert_eq!(s.parse::<Span>().unwrap().to_string(), s, "round trip");
        }
    }
}

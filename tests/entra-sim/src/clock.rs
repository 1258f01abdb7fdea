//! The simulated tenant's own clock.
//!
//! It runs with real time from its starting point and can be pushed forward by tests
//! ([`crate::Sim::advance_clock`]), so that a replication delay or the seven-day life of a delta link
//! can be crossed without waiting. Access tokens are the exception: they expire on real time (see
//! `token.rs`), because the product's credential library caches them on real time too.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

/// The wall clock. The workspace forbids reading it outside the product's Clock port; the simulated
/// tenant is a separate system with a clock of its own, and this is the one place it reads the wall.
#[expect(clippy::disallowed_methods, reason = "the simulated tenant is its own system and owns its clock")]
pub(crate) fn wall_clock_now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

#[derive(Debug)]
pub(crate) struct SimClock {
    /// The sim's time when it started.
    base: OffsetDateTime,
    /// Real time elapsed since `base` is added, so the clock moves on its own.
    started: Instant,
    /// Added by `advance`.
    offset: Mutex<Duration>,
}

impl SimClock {
    pub(crate) fn starting_at(base: OffsetDateTime) -> Self {
        Self { base, started: Instant::now(), offset: Mutex::new(Duration::ZERO) }
    }

    pub(crate) fn now(&self) -> OffsetDateTime {
        let offset = *self.offset.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.base + self.started.elapsed() + offset
    }

    pub(crate) fn advance(&self, by: Duration) {
        let mut offset = self.offset.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *offset += by;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn the_clock_starts_where_it_is_told_and_moves_forward_when_advanced() {
        let clock = SimClock::starting_at(datetime!(2030-01-01 00:00 UTC));
        let before = clock.now();
        assert!(before >= datetime!(2030-01-01 00:00 UTC));
        assert!(before < datetime!(2030-01-01 00:01 UTC));
        clock.advance(Duration::from_secs(8 * 24 * 3600));
        assert!(clock.now() >= datetime!(2030-01-09 00:00 UTC));
    }
}

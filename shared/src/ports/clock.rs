//! The clock port: the current time. Only adapters read the wall clock; everything else is handed a
//! `Clock`, so tests move time by hand.

use time::OffsetDateTime;

/// The current time. Only adapters read the wall clock; everything else is handed a `Clock`.
pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
}

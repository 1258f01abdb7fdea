//! The domain: pure types and decisions. No I/O, no clock, no environment; time comes in as a value.

pub mod duration;
pub mod execution;
pub mod inventory;
pub mod lifecycle;
pub mod policy;
pub mod steps;

pub use duration::Span;

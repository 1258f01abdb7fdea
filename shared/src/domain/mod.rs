//! The domain: pure types and decisions. No I/O, no clock, no environment; time comes in as a value.
//!
//! Layer rule: a domain module may import other domain modules and `error` only (and libraries of
//! plain values: serde, time, uuid, url, ipnet); never a port, a use case, an adapter or the inbound side.

pub mod address;
pub mod agent;
pub mod duration;
pub mod execution;
pub mod ids;
pub mod integration;
pub mod inventory;
pub mod lifecycle;
pub mod policy;
pub mod secret;
pub mod steps;

pub use duration::Span;

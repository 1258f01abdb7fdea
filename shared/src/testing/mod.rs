//! Test support for this crate's tests and other crates' (feature `test-support`): the contract
//! suites one per port, fakes named by behaviour, fault injection, and `App::test()`.
//!
//! Layer rule: may import every layer; nothing outside tests and benchmarks imports it.

// Test support: a failed expectation panics with what was expected.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod builders;
pub mod contract;
pub mod fakes;
pub mod faults;

//! Contract test suites, one per port. Every implementation runs the same suite (the embedded
//! SQLite adapters here, the AWS adapters against a local emulator), so an adapter and its
//! stand-in cannot drift apart.
//!
//! Use [`crate::queue_contract_tests!`], [`crate::store_contract_tests!`] and
//! [`crate::key_ring_contract_tests!`], [`crate::step_runner_contract_tests!`] in a test module with an expression that builds the fixture.

// Contract cases are tests: a failed expectation panics with what was expected.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod key_ring;
pub mod queue;
pub mod step_runner;
pub mod store;

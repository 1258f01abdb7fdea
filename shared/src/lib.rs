//! entra-rotator: discovers Entra ID application credentials, watches their expiry and rotates client
//! secrets with overlap. This library holds everything the entrypoints share.
//!
//! The layers, each a folder whose `mod.rs` opens with the rule of what it may import (checked by
//! `tests/layers.rs`), from the bottom up:
//!
//! | layer | holds | may import |
//! |---|---|---|
//! | `error` | the one error type | — |
//! | `domain/` | ids, secrets, inventory, lifecycle, policies, executions, step definitions: pure | `error` |
//! | `ports/` | the traits the use cases need, and their value types | `domain`, `error` |
//! | `messages` | the chain's messages and queues | `domain`, `ports`, `error` |
//! | `usecases/` | the decisions: sync, scan, rotate, run a step, cleanup, preflight, views | the above |
//! | `config/` | the TOML file, parsed once | `domain`, `ports`, `error` |
//! | `adapters/` | the ports on a technology: SQLite, Graph, sealing, alerts, step runners | `domain`, `ports`, `messages`, `error` |
//! | `inbound/` | handlers, batch wrapper, scheduler, embedded runtime, HTTP API | the above but `adapters` |
//! | `wiring` | the one place that knows concrete adapters | everything |
//! | `testing/` | contract suites, fakes, fault injection (feature `test-support`) | everything |
//!
//! Features: `embedded` (default) brings the SQLite store and queue, the key-file key ring and the
//! embedded runtime; `api` (default) the HTTP API on axum. The Lambda functions build with neither
//! (the http-api function with `api`), so no function carries what it does not run.
//!
//! Adding a step type: its definition goes in `domain/steps/<type>.rs`, its runner in
//! `adapters/steps/<type>.rs`, and one line in each of the two registries (`domain/steps/mod.rs`,
//! `adapters/steps/mod.rs`); see those modules' docs.

pub mod adapters;
pub mod config;
pub mod domain;
pub mod error;
pub mod inbound;
pub mod messages;
pub mod ports;
pub mod usecases;
pub mod wiring;

#[cfg(any(test, feature = "test-support"))]
pub mod testing;

pub use error::{Error, Result};

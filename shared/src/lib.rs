//! entra-rotator: discovers Entra ID application credentials, watches their expiry and rotates client
//! secrets with overlap. This library holds everything the entrypoints share: the pure domain, the
//! messages, the ports, the use cases and the adapters.

pub mod adapters;
pub mod alerts;
pub mod api;
pub mod config;
pub mod directory;
pub mod domain;
pub mod error;
pub mod handlers;
pub mod ids;
pub mod messages;
pub mod ports;
pub mod rollout;
pub mod runtime;
pub mod seal;
pub mod secret;
pub mod usecases;
pub mod wiring;

#[cfg(any(test, feature = "test-support"))]
pub mod contract;

pub use error::{Error, Result};

//! The inbound side: what turns the world's requests into use cases. Queue messages reach the
//! handlers through the batch wrapper (on Lambda and in the embedded runtime alike), timers through
//! the scheduler, people through the HTTP API.
//!
//! Layer rule: translate only. Inbound code may import `domain`, `ports`, `messages`, `usecases`,
//! `config` (the API's tokens) and `error`; never an adapter or `wiring`. Decisions live in the use
//! cases, so the CLI, the HTTP API and the Lambdas cannot disagree.

pub mod batch;
pub mod handlers;
pub mod health;
pub mod scheduler;

#[cfg(feature = "api")]
pub mod api;
#[cfg(feature = "embedded")]
pub mod runtime;

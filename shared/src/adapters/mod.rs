//! Adapters: the ports implemented with a technology.
//!
//! Layer rule: an adapter may import `domain`, `ports`, `messages` and `error`; never a use case,
//! the inbound side, `config` (wiring hands each adapter its own settings) or `wiring`.

pub mod alerts;
pub mod aws_identity;
pub mod graph;
pub mod outbound;
pub mod private_files;
pub mod sealing;
#[cfg(feature = "embedded")]
pub mod sqlite;
pub mod steps;
pub mod stored_secret;
pub mod system_clock;

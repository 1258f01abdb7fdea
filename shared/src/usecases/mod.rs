//! Use cases: the decisions the entrypoints (the `rotator` command, the Lambdas, the HTTP API) share.
//!
//! Layer rule: a use case may import `domain`, `ports`, `messages`, other use cases and `error`;
//! never an adapter, the inbound side, `config` or `wiring`. It is handed an [`app::App`].

pub mod agents;
pub mod app;
pub mod cleanup;
pub mod dashboard;
pub mod dead_letters;
pub mod integration_check;
pub mod intervention;
pub mod preflight;
pub mod recovery;
pub mod rotation;
pub mod run_step;
pub mod scan;
pub mod sync;

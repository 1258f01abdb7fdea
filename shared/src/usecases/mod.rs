//! Use cases: the decisions the entrypoints (the `rotator` command, the Lambdas, the HTTP API) share.

pub mod cleanup;
pub mod dashboard;
pub mod preflight;
pub mod rotation;
pub mod scan;
pub mod sync;

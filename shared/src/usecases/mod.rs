//! Use cases: the decisions the entrypoints (the `rotator` command, the Lambdas, the HTTP API) share.

pub mod dashboard;
pub mod scan;
pub mod sync;

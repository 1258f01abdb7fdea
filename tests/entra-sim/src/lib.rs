//! The simulated tenant.

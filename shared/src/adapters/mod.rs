//! Adapters: the ports implemented with a technology.

pub mod sqlite;

//! Adapters: the ports implemented with a technology.

pub mod graph;
pub mod sqlite;
pub mod webhook_alerts;

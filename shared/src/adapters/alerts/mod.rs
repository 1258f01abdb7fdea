//! Alert sinks: the log (always on) and webhooks (generic JSON, Slack, Teams).

pub mod log;
pub mod webhook;

pub use log::LogSink;
pub use webhook::WebhookAlertSink;

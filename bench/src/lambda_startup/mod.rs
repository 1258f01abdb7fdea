//! The pieces of `lambda-startup`: its arguments, the fake Lambda Runtime API each function is started
//! against, the reading of a process's memory from /proc, one measured start, and the report.

pub mod args;
pub mod fake_api;
pub mod measure;
pub mod proc_status;
pub mod report;

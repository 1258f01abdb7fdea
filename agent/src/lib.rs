//! The host agent's file-writing core: given a task from the server (a path, a format, a key and
//! the new secret) and the agent's own allowed roots, it edits one configuration file safely.
//!
//! Safety here means three things. The agent refuses any path outside the roots its host
//! configured, whatever the server asks ([`roots`]). It changes only the one value in the file and
//! keeps every other byte, so comments and layout survive ([`formats`]). And it replaces the file
//! atomically, so a crash leaves either the old file or the new one, never half of each ([`write`]).
//! The secret itself never appears in an error, a log line or a `Debug` output ([`SecretValue`]).

pub mod formats;
pub mod roots;
mod secret;
pub mod write;

pub use formats::{Edit, FormatError};
pub use roots::{AllowedRoots, PathRefusal, ResolvedPath, RootsError};
pub use secret::SecretValue;
pub use write::{FileTask, WriteError, WriteOutcome, write_secret};

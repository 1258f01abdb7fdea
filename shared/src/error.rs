//! The library's one error type. Each variant says when it happens and whether trying again can
//! help; transient versus permanent is decided here, at the adapter boundary, and drives retries.
//!
//! No variant ever carries a secret value: errors reach logs, dead letters and HTTP responses.

pub type Result<T, E = Error> = std::result::Result<T, E>;

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input: a malformed message, definition or request. Retrying cannot help.
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },

    /// The thing asked for does not exist.
    #[error("{what} not found: {id}")]
    NotFound { what: &'static str, id: String },

    /// A conditional write lost: someone else changed or claimed the record first.
    #[error("conflict on {what} {id}: {reason}")]
    Conflict { what: &'static str, id: String, reason: String },

    /// The caller is not who it says, or may no longer ask: an agent request whose signature does
    /// not verify, a replayed one, a revoked agent. The reason is for the caller; it holds no key.
    #[error("refused: {0}")]
    Refused(String),

    /// The configuration cannot be used.
    #[error("configuration: {0}")]
    Config(String),

    /// Sealing or unsealing failed: wrong key, tampered data or wrong record. Never transient.
    #[error("sealed value cannot be opened: {0}")]
    Seal(&'static str),

    /// The store failed. `transient` is true for lock contention and I/O hiccups.
    #[error("store: {context}")]
    Store {
        context: String,
        transient: bool,
        #[source]
        source: Source,
    },

    /// The queue failed. `transient` is true for lock contention and I/O hiccups.
    #[error("queue: {context}")]
    Queue {
        context: String,
        transient: bool,
        #[source]
        source: Source,
    },

    /// Microsoft Entra (Graph or the token endpoint) refused or failed. `status` is the HTTP status
    /// (0 when no answer came); `code` is Graph's error code, such as
    /// `Authorization_RequestDenied`. The message says what permission or object is missing.
    #[error("{service} answered {status} {code}: {message}")]
    Directory {
        service: &'static str,
        status: u16,
        code: String,
        message: String,
        transient: bool,
        /// Graph asked to wait this long first (`Retry-After`).
        retry_after: Option<std::time::Duration>,
    },

    /// A delta link is no longer accepted (expired or unknown): sync again in full.
    #[error("the delta link expired; a full sync is needed")]
    DeltaExpired,

    /// An I/O error on a local file (key file, data directory).
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid { what, reason: reason.into() }
    }
    pub fn not_found(what: &'static str, id: impl ToString) -> Self {
        Self::NotFound { what, id: id.to_string() }
    }
    pub fn conflict(what: &'static str, id: impl ToString, reason: impl Into<String>) -> Self {
        Self::Conflict { what, id: id.to_string(), reason: reason.into() }
    }
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { context: context.into(), source }
    }

    /// Whether the same call may succeed if tried again later.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Store { transient, .. } | Self::Queue { transient, .. } | Self::Directory { transient, .. } => {
                *transient
            }
            Self::DeltaExpired | Self::Refused(_) => false,
            Self::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ),
            Self::Invalid { .. } | Self::NotFound { .. } | Self::Conflict { .. } | Self::Config(_) | Self::Seal(_) => {
                false
            }
        }
    }

    /// The error with its causes, one line, for logs and dead letters.
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(self);
        while let Some(e) = cur {
            out.push_str(": ");
            out.push_str(&e.to_string());
            cur = e.source();
        }
        out
    }
}

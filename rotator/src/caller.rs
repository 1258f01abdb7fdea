//! Who is asking, for the audit trail: the operator running a command on this machine.

/// `cli:<login>` when the shell names its user, else `cli:operator`.
pub(crate) fn operator() -> String {
    // Who asked, for the audit trail: the login name when the shell says it.
    #[allow(clippy::disallowed_methods)] // an operator command's own caller, not configuration
    let user = std::env::var("USER").or_else(|_| std::env::var("USERNAME")).unwrap_or_else(|_| "operator".into());
    format!("cli:{user}")
}

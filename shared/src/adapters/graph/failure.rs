//! How the Graph adapter reads a refusal: Graph's status and error code, and the words of its
//! message, turned into a transient or a permanent [`Error`] (with `Retry-After` kept), and into
//! whether the request may be sent again. Errors name the call and what to fix; none ever quotes a
//! token, a secret or `addPassword`'s answer. Token endpoint and network failures are read here too.

use std::fmt;
use std::time::Duration;

use reqwest::StatusCode;

use super::op::{Access, Op};
use super::wire;
use crate::Error;

/// The services an error names.
pub(super) const GRAPH: &str = "Microsoft Graph";
pub(super) const TOKEN_ENDPOINT: &str = "Entra token endpoint";
/// AWS STS, which AWS federation asks for the web identity token it signs in with.
pub(super) const AWS_STS: &str = "AWS STS";

/// A failed try: the error to report, and what the retry loop needs to know about it.
pub(super) struct Failure {
    pub(super) error: Error,
    pub(super) status: u16,
    pub(super) code: String,
    /// Graph's own message, kept for callers that decide by it (never for `addPassword`).
    pub(super) graph_message: String,
    pub(super) retry: bool,
    pub(super) retry_after: Option<Duration>,
}

impl Failure {
    pub(super) fn plain(error: Error) -> Self {
        let (status, code) = match &error {
            Error::Directory { status, code, .. } => (*status, code.clone()),
            _ => (0, String::new()),
        };
        Self { error, status, code, graph_message: String::new(), retry: false, retry_after: None }
    }

    /// The retries are spent: the error says how many tries it took.
    pub(super) fn gave_up(mut self, attempts: u32, elapsed: Duration) -> Self {
        if let Error::Directory { message, .. } = &mut self.error {
            message.push_str(&format!(" (gave up after {attempts} tries in {:.1}s)", elapsed.as_secs_f64()));
        }
        self
    }
}

impl From<Failure> for Error {
    fn from(f: Failure) -> Self {
        f.error
    }
}

fn directory_error(
    status: u16,
    code: String,
    message: String,
    transient: bool,
    retry_after: Option<Duration>,
) -> Error {
    Error::Directory { service: GRAPH, status, code, message, transient, retry_after }
}

/// Turns a refusal into a verdict: retry, a transient error, a permanent error, or an expired delta.
pub(super) fn classify(op: &Op, status: StatusCode, body: &[u8], retry_after: Option<Duration>) -> Failure {
    let parsed: wire::GraphErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let code = if parsed.error.code.is_empty() { status_text(status) } else { parsed.error.code };
    let graph_message = one_line(&parsed.error.message);
    let n = status.as_u16();
    let concurrency = (n == 409 || n == 400) && is_concurrency(&code, &graph_message);
    let throttled = n == 429;
    let server = status.is_server_error();

    if op.listing && (n == 410 || is_expired_delta(&code, &graph_message)) {
        return Failure { error: Error::DeltaExpired, status: n, code, graph_message, retry: false, retry_after: None };
    }
    // Nothing from the answer to a sensitive call (addPassword) is repeated, not even an error text.
    let said = if graph_message.is_empty() || op.sensitive { String::new() } else { format!(": {graph_message}") };
    let (message, transient, retry) = if throttled {
        (format!("{} was throttled{said}", op.what), true, true)
    } else if concurrency {
        (format!("{} collided with another write to the same object{said}", op.what), true, true)
    } else if server && op.replayable {
        (format!("{} failed on Graph's side{said}", op.what), true, true)
    } else if server {
        (
            format!(
                "{} got {n} from Graph, so whether it took effect is unknown; it is not sent again. A secret it may \
                 have created carries the execution marker and is removed by the orphan sweep",
                op.what
            ),
            true,
            false,
        )
    } else if n == 403 {
        (
            format!(
                "{} was denied: the integration's app needs the Microsoft Graph application permission {} \
                 (admin-consented){}{said}",
                op.what,
                op.permission(),
                if op.access == Access::Write {
                    ", or Application.ReadWrite.OwnedBy as an owner of the app"
                } else {
                    ""
                }
            ),
            false,
            false,
        )
    } else if n == 404 {
        (format!("{} found no {}: it does not exist or was deleted{said}", op.what, op.object), false, false)
    } else if n == 401 {
        (
            format!(
                "{} was refused: Graph did not accept the integration's access token (check the tenant id and that \
                 the app registration exists){said}",
                op.what
            ),
            false,
            false,
        )
    } else if op.sensitive && n == 400 {
        // Graph's own text is not repeated for a sensitive call, so its code is put in words here.
        let why = if code.contains("Lifetime") {
            "the end date breaks the tenant's app management policy on credential lifetimes: give the policy a \
             shorter secret_lifetime"
        } else if code.contains("TooMany") || code.contains("Limit") {
            "the application already holds the most passwords it allows (two when it accepts personal Microsoft \
             accounts): remove one it no longer needs"
        } else {
            "the application may already hold the most passwords it allows (two when it accepts personal Microsoft \
             accounts), or the end date breaks the tenant's credential lifetime policy"
        };
        (format!("{} was refused ({code}): {why}", op.what), false, false)
    } else {
        (format!("{} was refused{said}", op.what), false, false)
    };
    let graph_message = if op.sensitive { String::new() } else { graph_message };
    Failure {
        error: directory_error(n, code.clone(), message, transient, retry_after),
        status: n,
        code,
        graph_message,
        retry,
        retry_after,
    }
}

/// A request that got no answer. A connection that never opened is always safe to retry; anything
/// later is retried only for replayable calls.
pub(super) fn network_failure(op: &Op, e: &reqwest::Error) -> Failure {
    if let Some(tls) = tls_problem(e) {
        return Failure::plain(Error::Config(format!(
            "TLS with Graph failed ({tls}); if Graph is reached through a private CA, set ca_certificate"
        )));
    }
    let never_sent = e.is_connect();
    let kind = if e.is_timeout() {
        "timed out"
    } else if never_sent {
        "could not connect"
    } else {
        "lost its connection"
    };
    let (message, retry) = if never_sent || op.replayable {
        (format!("{} {kind}: {}", op.what, error_chain(e)), true)
    } else {
        (
            format!(
                "{} {kind} after it was sent, so whether it took effect is unknown; it is not sent again. A secret it \
                 may have created carries the execution marker and is removed by the orphan sweep ({})",
                op.what,
                error_chain(e)
            ),
            false,
        )
    };
    let code = if e.is_timeout() { "Timeout" } else { "NetworkError" };
    Failure {
        error: directory_error(0, code.into(), message, true, None),
        status: 0,
        code: code.into(),
        graph_message: String::new(),
        retry,
        retry_after: None,
    }
}

pub(super) fn token_network_error(e: &reqwest::Error) -> Error {
    if let Some(tls) = tls_problem(e) {
        return Error::Config(format!(
            "TLS with the token endpoint failed ({tls}); if it is reached through a private CA, set ca_certificate"
        ));
    }
    Error::Directory {
        service: TOKEN_ENDPOINT,
        status: 0,
        code: if e.is_timeout() { "Timeout".into() } else { "NetworkError".into() },
        message: format!("the token request got no answer: {}", error_chain(e)),
        transient: true,
        retry_after: None,
    }
}

/// A certificate or handshake failure somewhere in the error's causes: permanent, and a matter of
/// configuration, so it is not retried.
pub(super) fn tls_problem(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(tls) = rustls_error(err) {
            return Some(tls.to_string());
        }
        cur = err.source();
    }
    None
}

/// `err` as a rustls error, looking through `io::Error` wrappers, which hide the error they carry
/// from `source()` (the TLS stream nests one inside another).
fn rustls_error<'a>(mut err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    loop {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        let inner = err.downcast_ref::<std::io::Error>()?.get_ref()?;
        err = inner;
    }
}

/// A token acquisition failure: transient when the endpoint was unreachable, busy or failing.
pub(super) fn token_error(e: &azure_core::Error, method: &'static str) -> Error {
    use azure_core::error::ErrorKind;
    if let Some(tls) = tls_problem(e) {
        return Error::Config(format!(
            "the integration could not get a Graph token ({method}): TLS with the token endpoint failed ({tls}); if \
             it is reached through a private CA, set ca_certificate"
        ));
    }
    if let Some(sts) = sts_failure(e) {
        return Error::Directory {
            service: AWS_STS,
            status: sts.status,
            code: sts.code.clone(),
            message: format!(
                "the integration could not get a Graph token ({method}): {}; STS said: {}",
                sts.words(),
                one_line(&sts.message)
            ),
            transient: sts.transient,
            retry_after: None,
        };
    }
    let mut status = 0u16;
    let mut transient = false;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(az) = err.downcast_ref::<azure_core::Error>() {
            match az.kind() {
                ErrorKind::HttpResponse { status: s, .. } => {
                    status = u16::from(*s);
                    transient |= status == 429 || status >= 500;
                }
                ErrorKind::Connection | ErrorKind::Io => transient = true,
                _ => {}
            }
        }
        cur = err.source();
    }
    Error::Directory {
        service: TOKEN_ENDPOINT,
        status,
        code: "TokenUnavailable".into(),
        message: format!("the integration could not get a Graph token ({method}): {}", one_line(&e.to_string())),
        transient,
        retry_after: None,
    }
}

/// The STS failure of AWS federation among the error's causes, if that is what stopped the sign-in.
fn sts_failure<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a super::sts::StsFailure> {
    let mut cur: Option<&'a (dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(sts) = err.downcast_ref::<super::sts::StsFailure>() {
            return Some(sts);
        }
        cur = err.source();
    }
    None
}

/// Graph reports overlapping writes to one object as 409 `Directory_ConcurrencyViolation`, or as a
/// 400 whose message speaks of concurrent requests.
fn is_concurrency(code: &str, message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    code.to_ascii_lowercase().contains("concurrency")
        || message.contains("concurrent request")
        || message.contains("directory_concurrencyviolation")
}

/// Graph answers an expired delta link (7 days for directory objects) with 400 `syncStateNotFound`
/// ("The sync state generation is not found. The delta token is expired…"); other resources use 410
/// Gone with `resyncRequired`. All of them mean: sync again in full.
fn is_expired_delta(code: &str, message: &str) -> bool {
    let code = code.to_ascii_lowercase();
    let message = message.to_ascii_lowercase();
    matches!(code.as_str(), "syncstatenotfound" | "syncstateinvalid" | "resyncrequired")
        || message.contains("delta token is expired")
        || message.contains("sync state generation is not found")
}

/// Whether a 400 from `removePassword` says the key id is not on the application.
pub(super) fn names_missing_key(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    (message.contains("keyid") || message.contains("key id") || message.contains("credential"))
        && (message.contains("not found")
            || message.contains("no password")
            || message.contains("does not exist")
            || message.contains("not exist"))
}

pub(super) fn unreadable(op: &Op, reason: impl fmt::Display) -> Error {
    directory_error(
        200,
        "UnreadableResponse".into(),
        format!("Graph's answer to {} could not be read: {reason}", op.what),
        false,
        None,
    )
}

pub(super) fn status_text(status: StatusCode) -> String {
    status.canonical_reason().unwrap_or("error").replace(' ', "")
}

pub(super) fn one_line(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > 400 { format!("{}…", line.chars().take(400).collect::<String>()) } else { line }
}

pub(super) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        out.push_str(": ");
        out.push_str(&err.to_string());
        cur = err.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_delta_answers_are_recognised_by_code_or_message() {
        assert!(is_expired_delta("syncStateNotFound", ""));
        assert!(is_expired_delta("resyncRequired", ""));
        assert!(is_expired_delta(
            "Request_BadRequest",
            "The sync state generation is not found. The delta token is expired and data must be synchronized again."
        ));
        assert!(!is_expired_delta("Request_BadRequest", "Invalid filter clause"));
    }

    #[test]
    fn concurrency_refusals_are_recognised_as_409_code_or_400_message() {
        assert!(is_concurrency("Directory_ConcurrencyViolation", ""));
        assert!(is_concurrency(
            "Request_BadRequest",
            "Another concurrent request is updating this object. Please retry after a short delay."
        ));
        assert!(!is_concurrency("Request_BadRequest", "Invalid value for endDateTime"));
    }

    #[test]
    fn a_403_names_the_permission_the_call_needs() {
        let write =
            Op::write("addPassword on application x".into(), "application x".into()).not_replayable().sensitive();
        let f = classify(&write, StatusCode::FORBIDDEN, br#"{"error":{"code":"Authorization_RequestDenied"}}"#, None);
        assert!(!f.retry);
        assert!(f.error.to_string().contains("Application.ReadWrite.All"), "{}", f.error);
        let read = Op::read("list applications".into(), "applications".into());
        let f = classify(&read, StatusCode::FORBIDDEN, b"", None);
        assert!(f.error.to_string().contains("Application.Read.All"), "{}", f.error);
        assert!(!f.error.is_transient());
    }

    #[test]
    fn a_5xx_is_retried_for_reads_but_not_for_add_password() {
        let read = Op::read("list applications".into(), "applications".into());
        assert!(classify(&read, StatusCode::SERVICE_UNAVAILABLE, b"", None).retry);
        let add = Op::write("addPassword".into(), "application x".into()).not_replayable();
        let f = classify(&add, StatusCode::SERVICE_UNAVAILABLE, b"", None);
        assert!(!f.retry);
        assert!(f.error.is_transient());
        assert!(f.error.to_string().contains("orphan sweep"), "{}", f.error);
    }

    #[test]
    fn add_password_refusals_do_not_quote_the_answer() {
        let add = Op::write("addPassword".into(), "application x".into()).not_replayable().sensitive();
        let f = classify(
            &add,
            StatusCode::BAD_REQUEST,
            br#"{"error":{"code":"Request_BadRequest","message":"s3cr3t"}}"#,
            None,
        );
        assert!(!f.error.to_string().contains("s3cr3t"));
        assert!(f.graph_message.is_empty());
    }
}

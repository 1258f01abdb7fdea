//! A fake Lambda Runtime API on 127.0.0.1 that never hands out an invocation: it notes the first
//! `GET /2018-06-01/runtime/invocation/next` (when it arrived, and the function's memory read before
//! anything is answered) and holds that request open; it takes `/runtime/init/error` reports, refuses
//! results for invocations it never gave, and answers any other path 404.
//!
//! HTTP/1.1 by hand on tokio (keep-alive, `Content-Length` and chunked bodies): enough for the
//! runtime client of `lambda_runtime`, and every connection ends when the API is dropped.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::proc_status::{self, Memory};

pub const NEXT_PATH: &str = "/2018-06-01/runtime/invocation/next";
pub const INIT_ERROR_PATH: &str = "/2018-06-01/runtime/init/error";
const INVOCATION_PREFIX: &str = "/2018-06-01/runtime/invocation/";
/// Past this a request head is refused (the runtime client's are a few hundred bytes).
const MAX_HEAD: usize = 64 * 1024;
/// Past this a request body is refused.
const MAX_BODY: usize = 6 * 1024 * 1024;

/// What the function did on the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A poll for the next invocation: when its request head had been read, and the function's memory
    /// then.
    Poll { at: Instant, memory: Option<Memory> },
    /// The function reported that its initialisation failed.
    InitError { error_type: Option<String>, body: String },
    /// A request the API refused (status and request line), for the report.
    Refused { status: u16, request: String },
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Next,
    InitError,
    /// A response or error for an invocation: there never is one here, so 400.
    InvocationResult,
    MethodNotAllowed,
    NotFound,
}

/// Routes a request by method and path (a query string is ignored).
pub fn route(method: &str, target: &str) -> Route {
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    let (route, method_wanted) = if path == NEXT_PATH {
        (Route::Next, "GET")
    } else if path == INIT_ERROR_PATH {
        (Route::InitError, "POST")
    } else if path
        .strip_prefix(INVOCATION_PREFIX)
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(id, what)| !id.is_empty() && (what == "response" || what == "error"))
    {
        (Route::InvocationResult, "POST")
    } else {
        return Route::NotFound;
    };
    if method == method_wanted { route } else { Route::MethodNotAllowed }
}

/// A running fake API; dropping it closes every connection.
pub struct FakeRuntimeApi {
    addr: SocketAddr,
    pid: watch::Sender<Option<u32>>,
    events: mpsc::UnboundedReceiver<Event>,
    task: JoinHandle<()>,
}

struct State {
    pid: watch::Receiver<Option<u32>>,
    events: mpsc::UnboundedSender<Event>,
}

impl FakeRuntimeApi {
    /// Listens on a free port of 127.0.0.1.
    pub async fn start() -> io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (pid, pid_rx) = watch::channel(None);
        let (events_tx, events) = mpsc::unbounded_channel();
        let state = Arc::new(State { pid: pid_rx, events: events_tx });
        let task = tokio::spawn(async move {
            // Owned by this task: aborting it drops the set, which aborts every connection.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => {
                            let _ = stream.set_nodelay(true);
                            connections.spawn(serve_connection(stream, state.clone()));
                        }
                        Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
                    },
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        Ok(Self { addr, pid, events, task })
    }

    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The process whose memory a poll reads; a poll that comes first waits for it.
    pub fn set_pid(&self, pid: u32) {
        let _ = self.pid.send(Some(pid));
    }

    /// The next thing the function did on the API.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }
}

impl Drop for FakeRuntimeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_connection(mut stream: TcpStream, state: Arc<State>) {
    let mut buf = Vec::new();
    while let Ok(Some(request)) = read_request(&mut stream, &mut buf).await {
        let at = Instant::now();
        let (status, body) = match route(&request.method, &request.target) {
            Route::Next => {
                let mut pid = state.pid.clone();
                let memory = match pid.wait_for(Option::is_some).await {
                    Ok(pid) => pid.and_then(proc_status::read),
                    Err(_) => None,
                };
                let _ = state.events.send(Event::Poll { at, memory });
                // Never an invocation: the poll stays open until the API is dropped.
                std::future::pending::<()>().await;
                return;
            }
            Route::InitError => {
                let error_type = request.header("lambda-runtime-function-error-type").map(str::to_owned);
                let body = String::from_utf8_lossy(&request.body).into_owned();
                let _ = state.events.send(Event::InitError { error_type, body });
                (202, r#"{"status":"OK"}"#.to_owned())
            }
            Route::InvocationResult => (400, error_json("InvalidRequestID", "no invocation was handed out")),
            Route::MethodNotAllowed => (405, error_json("MethodNotAllowed", "method not allowed on this path")),
            Route::NotFound => (404, error_json("NotFound", "no such path on the Runtime API")),
        };
        if status >= 400 {
            let line = format!("{} {}", request.method, request.target);
            let _ = state.events.send(Event::Refused { status, request: line });
        }
        if write_response(&mut stream, status, &body, request.close).await.is_err() || request.close {
            return;
        }
    }
}

fn error_json(error_type: &str, message: &str) -> String {
    serde_json::json!({ "errorType": error_type, "errorMessage": message }).to_string()
}

/// One HTTP/1.1 request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The client asked to close the connection after this one (or spoke HTTP/1.0).
    pub close: bool,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// Reads the next request of a connection; `buf` keeps what was read past it. `None` at a clean end
/// of the connection.
pub async fn read_request<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut Vec<u8>) -> io::Result<Option<Request>> {
    let head_end = loop {
        if let Some(at) = find(buf, b"\r\n\r\n") {
            break at;
        }
        if buf.len() > MAX_HEAD {
            return Err(invalid("request head too long"));
        }
        if fill(reader, buf).await? == 0 {
            return if buf.is_empty() { Ok(None) } else { Err(io::ErrorKind::UnexpectedEof.into()) };
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    buf.drain(..head_end + 4);
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (request_line.next(), request_line.next(), request_line.next(), request_line.next())
    else {
        return Err(invalid(format!("bad request line in {head:?}")));
    };
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .collect();
    let mut request = Request {
        method: method.to_owned(),
        target: target.to_owned(),
        close: version == "HTTP/1.0",
        headers,
        body: Vec::new(),
    };
    if let Some(connection) = request.header("connection") {
        request.close = connection.eq_ignore_ascii_case("close");
    }
    if request.header("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked")) {
        request.body = read_chunked(reader, buf).await?;
    } else if let Some(length) = request.header("content-length") {
        let length: usize = length.parse().map_err(|_| invalid("bad content-length"))?;
        if length > MAX_BODY {
            return Err(invalid("request body too long"));
        }
        while buf.len() < length {
            if fill(reader, buf).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        request.body = buf.drain(..length).collect();
    }
    Ok(Some(request))
}

async fn read_chunked<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut Vec<u8>) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader, buf).await?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| invalid(format!("bad chunk size {size:?}")))?;
        if size == 0 {
            // Trailers, up to an empty line.
            while !read_line(reader, buf).await?.is_empty() {}
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            return Err(invalid("request body too long"));
        }
        while buf.len() < size + 2 {
            if fill(reader, buf).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        body.extend(buf.drain(..size));
        if buf.drain(..2).as_slice() != b"\r\n" {
            return Err(invalid("chunk not followed by CRLF"));
        }
    }
}

async fn read_line<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut Vec<u8>) -> io::Result<String> {
    loop {
        if let Some(at) = find(buf, b"\r\n") {
            let line = String::from_utf8_lossy(&buf[..at]).into_owned();
            buf.drain(..at + 2);
            return Ok(line);
        }
        if buf.len() > MAX_HEAD {
            return Err(invalid("line too long"));
        }
        if fill(reader, buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

async fn fill<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut chunk = [0u8; 8192];
    let n = reader.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

async fn write_response<W: AsyncWrite + Unpin>(writer: &mut W, status: u16, body: &str, close: bool) -> io::Result<()> {
    let reason = match status {
        202 => "Accepted",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Unknown",
    };
    let connection = if close { "Connection: close\r\n" } else { "" };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{connection}\r\n{body}",
        body.len()
    );
    writer.write_all(response.as_bytes()).await?;
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_the_runtime_paths() {
        assert_eq!(route("GET", NEXT_PATH), Route::Next);
        assert_eq!(route("GET", "/2018-06-01/runtime/invocation/next?x=1"), Route::Next);
        assert_eq!(route("POST", NEXT_PATH), Route::MethodNotAllowed);
        assert_eq!(route("POST", INIT_ERROR_PATH), Route::InitError);
        assert_eq!(route("GET", INIT_ERROR_PATH), Route::MethodNotAllowed);
        assert_eq!(route("POST", "/2018-06-01/runtime/invocation/abc-123/response"), Route::InvocationResult);
        assert_eq!(route("POST", "/2018-06-01/runtime/invocation/abc-123/error"), Route::InvocationResult);
        assert_eq!(route("POST", "/2018-06-01/runtime/invocation//response"), Route::NotFound);
        assert_eq!(route("POST", "/2018-06-01/runtime/invocation/abc/other"), Route::NotFound);
        assert_eq!(route("GET", "/"), Route::NotFound);
        assert_eq!(route("GET", "/2020-01-01/extension/register"), Route::NotFound);
    }

    #[tokio::test]
    async fn parses_requests_with_length_chunked_and_no_body() {
        let wire: &[u8] = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
            POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n\
            GET /c HTTP/1.1\r\nConnection: close\r\n\r\n";
        let mut reader = wire;
        let mut buf = Vec::new();
        let a = read_request(&mut reader, &mut buf).await.unwrap().unwrap();
        assert_eq!(
            (a.method.as_str(), a.target.as_str(), a.body.as_slice(), a.close),
            ("POST", "/a", &b"hello"[..], false)
        );
        assert_eq!(a.header("HOST"), Some("x"));
        let b = read_request(&mut reader, &mut buf).await.unwrap().unwrap();
        assert_eq!((b.target.as_str(), b.body.as_slice()), ("/b", &b"abcde"[..]));
        let c = read_request(&mut reader, &mut buf).await.unwrap().unwrap();
        assert_eq!((c.method.as_str(), c.target.as_str(), c.body.len(), c.close), ("GET", "/c", 0, true));
        assert_eq!(read_request(&mut reader, &mut buf).await.unwrap(), None);
        let mut cut: &[u8] = b"GET /d HTTP/1.1\r\nHost";
        assert!(read_request(&mut cut, &mut Vec::new()).await.is_err());
        let mut garbage: &[u8] = b"nonsense\r\n\r\n";
        assert!(read_request(&mut garbage, &mut Vec::new()).await.is_err());
    }

    /// One request on a connection of its own; the response's status line and body.
    async fn exchange(api: &FakeRuntimeApi, request: &str) -> (String, String) {
        let mut stream = TcpStream::connect(api.addr()).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        (head.lines().next().unwrap().to_owned(), body.to_owned())
    }

    #[tokio::test]
    async fn answers_other_paths_takes_init_errors_and_holds_the_poll() {
        let mut api = FakeRuntimeApi::start().await.unwrap();
        assert!(api.addr().ip().is_loopback());

        let (status, body) = exchange(&api, "GET /nothing HTTP/1.1\r\nConnection: close\r\n\r\n").await;
        assert_eq!(status, "HTTP/1.1 404 Not Found");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["errorType"], "NotFound");
        assert_eq!(api.next_event().await, Some(Event::Refused { status: 404, request: "GET /nothing".into() }));

        let (status, _) = exchange(&api, &format!("POST {NEXT_PATH} HTTP/1.1\r\nConnection: close\r\n\r\n")).await;
        assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
        assert!(matches!(api.next_event().await, Some(Event::Refused { status: 405, .. })));

        let invocation = "POST /2018-06-01/runtime/invocation/r1/response HTTP/1.1\r\nConnection: close\r\n\
            Content-Length: 2\r\n\r\n{}";
        let (status, _) = exchange(&api, invocation).await;
        assert_eq!(status, "HTTP/1.1 400 Bad Request");
        assert!(matches!(api.next_event().await, Some(Event::Refused { status: 400, .. })));

        let report = r#"{"errorType":"Config","errorMessage":"missing ROTATOR_AWS_TABLE"}"#;
        let init_error = format!(
            "POST {INIT_ERROR_PATH} HTTP/1.1\r\nLambda-Runtime-Function-Error-Type: Runtime.Config\r\n\
             Connection: close\r\nContent-Length: {}\r\n\r\n{report}",
            report.len()
        );
        let (status, body) = exchange(&api, &init_error).await;
        assert_eq!(status, "HTTP/1.1 202 Accepted");
        assert_eq!(body, r#"{"status":"OK"}"#);
        assert_eq!(
            api.next_event().await,
            Some(Event::InitError { error_type: Some("Runtime.Config".into()), body: report.into() })
        );

        // The poll: noted with the memory of the process set as the function, and never answered.
        let mut poll = TcpStream::connect(api.addr()).await.unwrap();
        poll.write_all(format!("GET {NEXT_PATH} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
        api.set_pid(std::process::id());
        let Some(Event::Poll { memory, .. }) = api.next_event().await else { panic!("no poll noted") };
        assert!(memory.is_some_and(|m| m.peak_kib > 0));

        // Dropping the API ends the held poll without an answer.
        drop(api);
        let mut rest = Vec::new();
        let read = poll.read_to_end(&mut rest).await;
        assert!(read.is_err() || rest.is_empty(), "the poll was answered: {:?}", String::from_utf8_lossy(&rest));
    }

    #[tokio::test]
    async fn keeps_a_connection_alive_across_requests() {
        let mut api = FakeRuntimeApi::start().await.unwrap();
        let mut stream = TcpStream::connect(api.addr()).await.unwrap();
        stream.write_all(b"GET /one HTTP/1.1\r\n\r\nGET /two HTTP/1.1\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert_eq!(response.matches("HTTP/1.1 404 Not Found").count(), 2, "{response}");
        assert_eq!(api.next_event().await, Some(Event::Refused { status: 404, request: "GET /one".into() }));
        assert_eq!(api.next_event().await, Some(Event::Refused { status: 404, request: "GET /two".into() }));
    }
}

//! One measured start: a fresh fake Runtime API, the function spawned against it with a Lambda-like
//! environment, the time to its first poll and its memory then; then the function killed and reaped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};

use super::fake_api::{Event, FakeRuntimeApi};
use super::proc_status::Memory;

/// How long a killed function gets to be reaped, and its output to be drained.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);
/// How much of a function's output (stdout and stderr together) is kept for a failure's report.
const TAIL_BYTES: usize = 16 * 1024;

/// One function to start.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub path: PathBuf,
}

/// How one start went.
#[derive(Debug, Clone)]
pub enum Outcome {
    Polled { startup: Duration, memory: Option<Memory>, cold_start: Option<ColdStart> },
    Failed(Failure),
}

#[derive(Debug, Clone)]
pub struct Failure {
    pub reason: String,
    /// What the function posted to `/runtime/init/error`, if anything.
    pub init_error: Option<String>,
    /// The end of what it wrote on stdout and stderr.
    pub output_tail: String,
}

/// The environment of every start, before the per-function names and the Runtime API's address:
/// what Lambda sets (dummy credentials; no profile files, no instance metadata, AWS endpoints on a
/// closed local port so nothing can reach AWS), then `passed` (from the bench's own environment),
/// then `extra` (`--env`), each overriding the one before.
pub fn base_env(passed: &[(String, String)], extra: &[(String, String)]) -> Vec<(String, String)> {
    let fixed = [
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "bench-not-an-access-key"),
        ("AWS_SECRET_ACCESS_KEY", "bench-not-a-secret-access-key"),
        ("AWS_SESSION_TOKEN", "bench-not-a-session-token"),
        ("AWS_CONFIG_FILE", "/dev/null"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
        ("ROTATOR_AWS_ENDPOINT", "http://127.0.0.1:9"),
        ("LAMBDA_TASK_ROOT", "/var/task"),
        ("LAMBDA_RUNTIME_DIR", "/var/runtime"),
        ("_HANDLER", "bootstrap"),
        ("TZ", ":UTC"),
        ("LANG", "en_US.UTF-8"),
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
    ];
    let mut env: Vec<(String, String)> = fixed.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    for (key, value) in passed.iter().chain(extra) {
        env.retain(|(k, _)| k != key);
        env.push((key.clone(), value.clone()));
    }
    env
}

/// Which of the bench's own variables a function gets: the rotator's own settings, AWS endpoint
/// overrides and the log filter.
pub fn passes_through(key: &str) -> bool {
    key.starts_with("ROTATOR_") || key.starts_with("AWS_ENDPOINT_URL") || key == "RUST_LOG"
}

/// Where a function's cold start went, from the `cold start` line it logs (fields in microseconds:
/// `sdk_us`, `config_us`, `aws_us`, `services_us`, `total_us`). The baseline logs none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ColdStart {
    pub sdk: Duration,
    pub config: Duration,
    pub aws: Duration,
    pub services: Duration,
    pub total: Duration,
}

impl ColdStart {
    /// The last `cold start` line of `output`, in the text or the JSON log format.
    pub fn parse(output: &str) -> Option<Self> {
        let line = output.lines().rev().find(|l| l.contains("cold start"))?;
        let field = |name: &str| -> Option<Duration> {
            let at = line
                .find(&format!("{name}="))
                .map(|i| i + name.len() + 1)
                .or_else(|| line.find(&format!("\"{name}\":")).map(|i| i + name.len() + 3))?;
            let digits: String =
                line[at..].chars().skip_while(|c| *c == '"').take_while(char::is_ascii_digit).collect();
            digits.parse().ok().map(Duration::from_micros)
        };
        Some(Self {
            sdk: field("sdk_us")?,
            config: field("config_us")?,
            aws: field("aws_us")?,
            services: field("services_us")?,
            total: field("total_us")?,
        })
    }
}

/// Starts `target` once and measures it; a function that exits, or does not poll within `timeout`,
/// is a failure with the end of its output. Every start ends with the function killed and reaped.
pub async fn start_once(target: &Target, env: &[(String, String)], timeout: Duration) -> anyhow::Result<Outcome> {
    let mut api = FakeRuntimeApi::start().await?;
    let mut command = Command::new(&target.path);
    command
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("AWS_LAMBDA_FUNCTION_NAME", &target.name)
        .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{}", target.name))
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/01/01/[$LATEST]00000000000000000000000000bench")
        .env("AWS_LAMBDA_RUNTIME_API", api.addr().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);

    let started = Instant::now();
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return Ok(Outcome::Failed(failure(format!("could not start it: {e}"), None, String::new()))),
    };
    if let Some(pid) = child.id() {
        api.set_pid(pid);
    }
    let tail = Arc::new(Mutex::new(Vec::new()));
    let drains = [
        child.stdout.take().map(|out| tokio::spawn(drain(out, tail.clone()))),
        child.stderr.take().map(|err| tokio::spawn(drain(err, tail.clone()))),
    ];

    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut init_error = None;
    let mut refused = Vec::new();
    let result = loop {
        tokio::select! {
            event = api.next_event() => match event {
                Some(Event::Poll { at, memory }) => break Ok((at.saturating_duration_since(started), memory)),
                Some(Event::InitError { error_type, body }) => {
                    init_error = Some(match error_type {
                        Some(kind) => format!("{kind}: {body}"),
                        None => body,
                    });
                }
                Some(Event::Refused { status, request }) => refused.push(format!("{status} for {request}")),
                None => break Err("the fake Runtime API stopped".to_owned()),
            },
            status = child.wait() => break Err(match status {
                Ok(status) => format!("it exited ({status}) before polling for an invocation"),
                Err(e) => format!("waiting for it failed: {e}"),
            }),
            () = &mut deadline => break Err(format!("no poll for an invocation within {:.0?}", timeout)),
        }
    };
    let reaped = kill_and_reap(&mut child).await;
    for drain in drains.into_iter().flatten() {
        let abort = drain.abort_handle();
        if tokio::time::timeout(REAP_TIMEOUT, drain).await.is_err() {
            abort.abort();
        }
    }
    let output_tail = {
        let tail = tail.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        String::from_utf8_lossy(&tail).into_owned()
    };
    if let Err(e) = reaped {
        return Ok(Outcome::Failed(failure(e, init_error, output_tail)));
    }
    Ok(match result {
        Ok((startup, memory)) => Outcome::Polled { startup, memory, cold_start: ColdStart::parse(&output_tail) },
        Err(mut reason) => {
            if !refused.is_empty() {
                reason.push_str(&format!("; the API refused: {}", refused.join(", ")));
            }
            Outcome::Failed(failure(reason, init_error, output_tail))
        }
    })
}

fn failure(reason: String, init_error: Option<String>, output_tail: String) -> Failure {
    Failure { reason, init_error, output_tail }
}

async fn kill_and_reap(child: &mut Child) -> Result<(), String> {
    // Already reaped (it exited) is fine; start_kill then reports an error we don't need.
    if matches!(child.try_wait(), Ok(Some(_))) {
        return Ok(());
    }
    let _ = child.start_kill();
    match tokio::time::timeout(REAP_TIMEOUT, child.wait()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("reaping it failed: {e}")),
        Err(_) => Err(format!("it was still running {REAP_TIMEOUT:?} after SIGKILL")),
    }
}

async fn drain<R: AsyncRead + Unpin>(mut reader: R, tail: Arc<Mutex<Vec<u8>>>) {
    let mut chunk = [0u8; 4096];
    while let Ok(n @ 1..) = reader.read(&mut chunk).await {
        let mut tail = tail.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        tail.extend_from_slice(&chunk[..n]);
        if tail.len() > TAIL_BYTES {
            let cut = tail.len() - TAIL_BYTES;
            tail.drain(..cut);
        }
    }
}

/// The last `lines` lines of `text`.
pub fn last_lines(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// What a function's package weighs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// `zip`: the bootstrap.zip of cargo-lambda; `zipped`: the binary zipped here as `bootstrap`, as
    /// Lambda receives a package; `binary`: the release binary itself.
    pub kind: &'static str,
    pub path: PathBuf,
    pub bytes: u64,
    /// The unzipped binary.
    pub binary_bytes: u64,
}

/// `target/lambda/<name>/bootstrap.zip` next to `target/release/<name>` when cargo-lambda made one,
/// else the binary zipped here the same way (one entry, `bootstrap`, deflated, mode 755).
pub fn package(binary: &Path, name: &str) -> std::io::Result<Package> {
    let binary_bytes = std::fs::metadata(binary)?.len();
    let zip =
        binary.parent().and_then(Path::parent).map(|target| target.join("lambda").join(name).join("bootstrap.zip"));
    if let Some(zip) = zip.filter(|zip| zip.is_file()) {
        let bytes = std::fs::metadata(&zip)?.len();
        return Ok(Package { kind: "zip", path: zip, bytes, binary_bytes });
    }
    let bytes = zipped_len(&std::fs::read(binary)?)?;
    Ok(Package { kind: "zipped", path: binary.to_owned(), bytes, binary_bytes })
}

/// The size of a Lambda package holding `bootstrap`, built in memory.
pub fn zipped_len(bootstrap: &[u8]) -> std::io::Result<u64> {
    use std::io::Write;
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o755);
    writer.start_file("bootstrap", options).map_err(std::io::Error::other)?;
    writer.write_all(bootstrap)?;
    let cursor = writer.finish().map_err(std::io::Error::other)?;
    Ok(cursor.into_inner().len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_environment_is_lambdas_then_passed_then_flags() {
        let env = base_env(
            &pairs(&[("ROTATOR_AWS_TABLE", "from-env"), ("AWS_REGION", "eu-west-1")]),
            &pairs(&[("ROTATOR_AWS_TABLE", "from-flag")]),
        );
        let get = |key: &str| env.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect::<Vec<_>>();
        assert_eq!(get("ROTATOR_AWS_TABLE"), ["from-flag"]);
        assert_eq!(get("AWS_REGION"), ["eu-west-1"]);
        assert_eq!(get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"), ["256"]);
        assert_eq!(get("AWS_LAMBDA_FUNCTION_VERSION"), ["$LATEST"]);
        assert_eq!(get("AWS_SHARED_CREDENTIALS_FILE"), ["/dev/null"]);
        assert!(get("HOME").is_empty());
    }

    #[test]
    fn only_the_rotators_settings_pass_through() {
        assert!(passes_through("ROTATOR_CONFIG"));
        assert!(passes_through("AWS_ENDPOINT_URL_DYNAMODB"));
        assert!(passes_through("RUST_LOG"));
        assert!(!passes_through("HOME"));
        assert!(!passes_through("AWS_ACCESS_KEY_ID"));
        assert!(!passes_through("AWS_PROFILE"));
    }

    #[test]
    fn the_package_is_the_zip_when_there_is_one() {
        let dir = tempfile::tempdir().unwrap();
        let release = dir.path().join("release");
        std::fs::create_dir_all(&release).unwrap();
        let binary = release.join("sync");
        std::fs::write(&binary, [0u8; 1000]).unwrap();
        let zipped = package(&binary, "sync").unwrap();
        assert_eq!((zipped.kind, zipped.binary_bytes), ("zipped", 1000));
        assert!(zipped.bytes < 1000, "a thousand zeros deflate: {}", zipped.bytes);
        let zip_dir = dir.path().join("lambda").join("sync");
        std::fs::create_dir_all(&zip_dir).unwrap();
        std::fs::write(zip_dir.join("bootstrap.zip"), [0u8; 300]).unwrap();
        let found = package(&binary, "sync").unwrap();
        assert_eq!((found.kind, found.bytes, found.binary_bytes), ("zip", 300, 1000));
        assert!(package(&release.join("absent"), "absent").is_err());
    }

    #[tokio::test]
    async fn a_binary_that_exits_or_is_missing_is_a_failure_with_its_output() {
        let env = base_env(&[], &[]);
        let exits = Target { name: "exits".into(), path: PathBuf::from("/bin/sh") };
        // /bin/sh with no script reads stdin, which is /dev/null: it exits at once, polling nothing.
        let Outcome::Failed(failure) = start_once(&exits, &env, Duration::from_secs(20)).await.unwrap() else {
            panic!("a shell polled the Runtime API");
        };
        assert!(failure.reason.contains("exited"), "{}", failure.reason);
        let missing = Target { name: "missing".into(), path: PathBuf::from("/nonexistent/bootstrap") };
        let Outcome::Failed(failure) = start_once(&missing, &env, Duration::from_secs(20)).await.unwrap() else {
            panic!("a missing binary started");
        };
        assert!(failure.reason.contains("could not start"), "{}", failure.reason);
    }

    #[test]
    fn the_cold_start_line_is_read_in_both_log_formats() {
        let text = "2026-12-01T10:00:00Z  INFO entra_rotator_aws::lambda: cold start sdk_us=1200 config_us=300 \
                    aws_us=40 services_us=2500 total_us=4100\n";
        let want = ColdStart {
            sdk: Duration::from_micros(1200),
            config: Duration::from_micros(300),
            aws: Duration::from_micros(40),
            services: Duration::from_micros(2500),
            total: Duration::from_micros(4100),
        };
        assert_eq!(ColdStart::parse(text), Some(want));
        let json = r#"{"level":"INFO","fields":{"message":"cold start","sdk_us":1200,"config_us":300,"aws_us":40,"services_us":2500,"total_us":4100}}"#;
        assert_eq!(ColdStart::parse(json), Some(want));
        assert_eq!(ColdStart::parse("nothing here"), None);
    }

    #[test]
    fn last_lines_keeps_the_end() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(last_lines("a", 5), "a");
        assert_eq!(last_lines("", 5), "");
    }
}

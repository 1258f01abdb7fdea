//! `lambda-startup [--runs N] [--warmup N] [--timeout SECS] [--env KEY=VALUE]... [--release-dir DIR]
//! [--json] BINARY...`

use std::path::PathBuf;
use std::time::Duration;

pub const USAGE: &str = "\
usage: lambda-startup [--runs N] [--warmup N] [--timeout SECS] [--env KEY=VALUE]... [--release-dir DIR] [--json] BINARY...

Starts each BINARY (the first is the baseline) against a fake Lambda Runtime API on 127.0.0.1, N times,
and measures the time from spawn to its first GET /2018-06-01/runtime/invocation/next and its peak
resident memory (VmHWM) at that moment; prints them, and each binary's package size, next to the
baseline's. A BINARY with no '/' is looked up in --release-dir (default: the directory of this program).

  --runs N          measured starts per binary (default 10)
  --warmup N        unmeasured starts per binary first (default 1)
  --timeout SECS    how long to wait for a start's first poll (default 20)
  --env KEY=VALUE   extra environment for every binary (repeatable; overrides the defaults)
  --release-dir DIR where bare binary names are found
  --json            print the results as JSON instead of a table";

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub runs: usize,
    pub warmup: usize,
    pub timeout: Duration,
    pub env: Vec<(String, String)>,
    pub release_dir: Option<PathBuf>,
    pub json: bool,
    /// The baseline first.
    pub binaries: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            runs: 10,
            warmup: 1,
            timeout: Duration::from_secs(20),
            env: Vec::new(),
            release_dir: None,
            json: false,
            binaries: Vec::new(),
        }
    }
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Run(Options),
    Help,
}

/// Parses the arguments after the program's name. Flags take their value as the next argument or
/// after `=`; `--` ends the flags.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, String> {
    let mut options = Options::default();
    let mut args = args.into_iter();
    let mut only_binaries = false;
    while let Some(arg) = args.next() {
        if only_binaries || !arg.starts_with("--") {
            options.binaries.push(arg);
            continue;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline.clone().or_else(|| args.next()).ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--" => only_binaries = true,
            "--help" => return Ok(Command::Help),
            "--json" => options.json = true,
            "--runs" => options.runs = count("--runs", &value("--runs")?, 1)?,
            "--warmup" => options.warmup = count("--warmup", &value("--warmup")?, 0)?,
            "--timeout" => {
                let text = value("--timeout")?;
                let secs: f64 = text.parse().map_err(|_| format!("--timeout: not a number of seconds: {text:?}"))?;
                if !(secs > 0.0 && secs.is_finite()) {
                    return Err(format!("--timeout must be more than 0 seconds, not {text}"));
                }
                options.timeout = Duration::from_secs_f64(secs);
            }
            "--env" => {
                let text = value("--env")?;
                match text.split_once('=') {
                    Some((key, value)) if !key.is_empty() => options.env.push((key.to_owned(), value.to_owned())),
                    _ => return Err(format!("--env takes KEY=VALUE, not {text:?}")),
                }
            }
            "--release-dir" => options.release_dir = Some(PathBuf::from(value("--release-dir")?)),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if options.binaries.is_empty() {
        return Err("name at least one binary (the first is the baseline)".into());
    }
    Ok(Command::Run(options))
}

fn count(flag: &str, text: &str, min: usize) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(format!("{flag} takes a whole number of at least {min}, not {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Options, String> {
        match parse(args.iter().map(|a| a.to_string()))? {
            Command::Run(options) => Ok(options),
            Command::Help => Err("help".into()),
        }
    }

    #[test]
    fn defaults_with_only_binaries() {
        let options = run(&["minimal-lambda", "target/release/sync"]).unwrap();
        assert_eq!(options.binaries, ["minimal-lambda", "target/release/sync"]);
        assert_eq!((options.runs, options.warmup, options.timeout), (10, 1, Duration::from_secs(20)));
        assert!(!options.json && options.env.is_empty() && options.release_dir.is_none());
    }

    #[test]
    fn every_flag_in_both_spellings() {
        let options = run(&[
            "--runs",
            "3",
            "--warmup=0",
            "--timeout",
            "2.5",
            "--env",
            "ROTATOR_CONFIG=/x/rotator.toml",
            "--env=EMPTY=",
            "--env",
            "URL=http://a/?b=c",
            "--release-dir",
            "/t/release",
            "--json",
            "minimal-lambda",
            "--",
            "--odd-name",
        ])
        .unwrap();
        assert_eq!((options.runs, options.warmup), (3, 0));
        assert_eq!(options.timeout, Duration::from_millis(2500));
        let env: Vec<(&str, &str)> = options.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(env, [("ROTATOR_CONFIG", "/x/rotator.toml"), ("EMPTY", ""), ("URL", "http://a/?b=c")]);
        assert_eq!(options.release_dir, Some(PathBuf::from("/t/release")));
        assert!(options.json);
        assert_eq!(options.binaries, ["minimal-lambda", "--odd-name"]);
    }

    #[test]
    fn mistakes_are_named() {
        assert!(run(&[]).unwrap_err().contains("at least one binary"));
        assert!(run(&["--runs", "0", "b"]).unwrap_err().contains("--runs"));
        assert!(run(&["--runs", "ten", "b"]).unwrap_err().contains("--runs"));
        assert!(run(&["b", "--runs"]).unwrap_err().contains("needs a value"));
        assert!(run(&["--timeout", "0", "b"]).unwrap_err().contains("--timeout"));
        assert!(run(&["--timeout", "nan", "b"]).unwrap_err().contains("--timeout"));
        assert!(run(&["--env", "NOVALUE", "b"]).unwrap_err().contains("KEY=VALUE"));
        assert!(run(&["--env", "=v", "b"]).unwrap_err().contains("KEY=VALUE"));
        assert!(run(&["--fast", "b"]).unwrap_err().contains("unknown flag --fast"));
        assert_eq!(parse(["--help".to_string()]), Ok(Command::Help));
    }
}

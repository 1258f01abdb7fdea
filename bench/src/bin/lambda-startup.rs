//! `lambda-startup` (in `make bench`): each Lambda function's package size, and its start-up time and
//! memory up to its first poll of the Lambda Runtime API, next to a minimal `lambda_runtime` function
//! (`bench/minimal-lambda`, the first binary named) measured in the same run.
//!
//! Every start gets a fresh fake Runtime API on 127.0.0.1 that never hands out an invocation; the
//! time is from spawn to the first `GET /2018-06-01/runtime/invocation/next`, the memory is `VmHWM`
//! read from /proc before that request is answered (it never is: the function is killed and reaped).
//! Starts are interleaved across binaries, round after round, so the noise of a shared machine falls
//! on all alike; ratios to the baseline say more than milliseconds. Nothing here asserts a time.

#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "../lambda_startup/mod.rs"]
mod lambda_startup;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use lambda_startup::args::{self, Command, Options};
use lambda_startup::measure::{self, Outcome, Target};
use lambda_startup::report::{self, Measured};

/// What the functions need at cold start, beneath the bench's own environment and `--env`: the AWS
/// deployment's settings (never reached: every AWS endpoint is a closed local port) and the example
/// configuration, whose one integration (`contoso`) takes its client secret from the environment.
fn function_defaults() -> Vec<(String, String)> {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/rotator.toml");
    [
        ("ROTATOR_AWS_TABLE", "rotator-bench"),
        ("ROTATOR_AWS_KMS_KEY", "alias/rotator-bench"),
        ("ROTATOR_AWS_QUEUE_PREFIX", "rotator-bench-"),
        ("ROTATOR_CONFIG", config),
        ("ROTATOR_CONTOSO_CLIENT_SECRET", "bench-not-a-secret"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let options = match args::parse(std::env::args().skip(1)) {
        Ok(Command::Run(options)) => options,
        Ok(Command::Help) => {
            println!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("lambda-startup: {e}\n\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    match run(options).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("lambda-startup: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Measures and prints; `false` when a binary failed to start.
async fn run(options: Options) -> anyhow::Result<bool> {
    let targets = resolve(&options)?;
    let mut passed = function_defaults();
    passed.extend(std::env::vars_os().filter_map(|(k, v)| {
        let (k, v) = (k.into_string().ok()?, v.into_string().ok()?);
        measure::passes_through(&k).then_some((k, v))
    }));
    let env = measure::base_env(&passed, &options.env);

    let mut measured: Vec<Measured> = targets
        .into_iter()
        .map(|target| Measured {
            package: measure::package(&target.path, &target.name).ok(),
            target,
            startups: Vec::new(),
            memories: Vec::new(),
            cold_starts: Vec::new(),
            failure: None,
        })
        .collect();

    let names: Vec<&str> = measured.iter().map(|m| m.target.name.as_str()).collect();
    eprintln!(
        "lambda-startup: {} ({} warm-up, {} measured start(s) each, interleaved)",
        names.join(", "),
        options.warmup,
        options.runs
    );
    for round in 0..options.warmup + options.runs {
        let counted = round >= options.warmup;
        for m in measured.iter_mut().filter(|m| m.failure.is_none()) {
            match measure::start_once(&m.target, &env, options.timeout).await? {
                Outcome::Polled { startup, memory, cold_start } if counted => {
                    m.startups.push(startup);
                    m.memories.extend(memory);
                    m.cold_starts.extend(cold_start);
                }
                Outcome::Polled { .. } => {}
                Outcome::Failed(failure) => {
                    eprintln!("lambda-startup: {} failed: {}", m.target.name, failure.reason);
                    m.failure = Some(failure);
                }
            }
        }
    }

    let rows = report::rows(&measured);
    if options.json {
        println!("{:#}", report::to_json(&measured, options.runs, options.warmup));
    } else {
        let keys: BTreeSet<&str> = env.iter().map(|(k, _)| k.as_str()).filter(|k| k.starts_with("ROTATOR_")).collect();
        println!(
            "Lambda start-up: spawn to the first GET /2018-06-01/runtime/invocation/next on a local fake Runtime API,\n\
             and peak RSS (VmHWM) then; median of {} start(s) each after {} warm-up, {} cores; ratios (x base) to\n\
             {}, a lambda_runtime function that does nothing, measured in the same run.\n\
             Environment beyond Lambda's: {}.\n\
             Package: cargo-lambda's bootstrap.zip where there is one, else the release binary zipped here as\n\
             Lambda receives it (one entry, bootstrap, deflated).\n",
            options.runs,
            options.warmup,
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            measured.first().map_or("the baseline", |m| m.target.name.as_str()),
            keys.into_iter().collect::<Vec<_>>().join(", ")
        );
        print!("{}", report::table(&rows));
        let breakdown = report::breakdown(&measured);
        if !breakdown.is_empty() {
            println!(
                "\nWhere a function's start-up goes (medians, from its `cold start` log line): the AWS SDK's\n\
                 configuration, the configuration file, the AWS clients, the services (Graph clients, alert sinks,\n\
                 step runners); `rest` is the start-up less those: exec and loading, the runtimes, the first poll.\n"
            );
            print!("{breakdown}");
        }
    }
    let mut ok = true;
    for m in &measured {
        let Some(failure) = &m.failure else { continue };
        ok = false;
        eprintln!("\n{} never polled for an invocation: {}", m.target.name, failure.reason);
        if let Some(init_error) = &failure.init_error {
            eprintln!("  it reported an init error: {init_error}");
        }
        let tail = measure::last_lines(&failure.output_tail, 20);
        if tail.is_empty() {
            eprintln!("  (it wrote nothing on stdout or stderr)");
        } else {
            eprintln!("  the end of its output:");
            for line in tail.lines() {
                eprintln!("  | {line}");
            }
        }
    }
    Ok(ok)
}

/// Each named binary's path: as given when it has a '/', else in the release directory (by default
/// the one this program was built into).
fn resolve(options: &Options) -> anyhow::Result<Vec<Target>> {
    let release_dir = match &options.release_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()?.parent().map(PathBuf::from).unwrap_or_default(),
    };
    let mut seen = BTreeSet::new();
    let mut targets = Vec::new();
    for binary in &options.binaries {
        let path = if binary.contains('/') { PathBuf::from(binary) } else { release_dir.join(binary) };
        anyhow::ensure!(path.is_file(), "no binary at {}", path.display());
        let stem = path.file_name().map_or_else(|| binary.clone(), |n| n.to_string_lossy().into_owned());
        let mut name = stem.clone();
        for n in 2.. {
            if seen.insert(name.clone()) {
                break;
            }
            name = format!("{stem}#{n}");
        }
        targets.push(Target { name, path });
    }
    Ok(targets)
}

//! `rotator`: the embedded runtime (`serve`) and the operator commands of entra-rotator.

mod agents;
mod caller;
mod commands;
mod output;
mod rotate;
mod serve;
mod sync;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "rotator",
    version,
    about = "Rotate Microsoft Entra ID application client secrets with overlap, and roll them out in order."
)]
struct Cli {
    /// The configuration file.
    #[arg(long, short, global = true, env = "ROTATOR_CONFIG", default_value = "rotator.toml")]
    config: PathBuf,
    /// Print JSON for scripts instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every handler, the timers and the HTTP API in this process, on the local database.
    Serve,
    /// Validate configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Validate rollout step definitions (the JSON array format of the product notes).
    #[command(subcommand)]
    Steps(StepsCommand),
    /// Read the integrations from Microsoft Graph now (delta when possible), then scan for expiry.
    Sync {
        /// Only this integration.
        #[arg(long)]
        integration: Option<String>,
        /// A full listing even when a delta link is kept.
        #[arg(long)]
        full: bool,
    },
    /// The dashboard: credentials by lifecycle state, the most urgent, and the queues.
    Status,
    /// Rotate a client secret now: the new one first, rolled out, the old one kept for the grace period.
    Rotate {
        /// The credential: <integration>/app/<object-id>/<key-id> (see `rotator status`).
        credential: String,
        /// Run preflight only and print what it found; nothing changes.
        #[arg(long)]
        dry_run: bool,
        /// Wait until the rotation finishes, showing each step.
        #[arg(long)]
        wait: bool,
        /// Why, for the audit trail.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Confirm that the old secret of a rollout that needs attention may be removed after its grace period.
    Confirm { execution: String },
    /// End an execution that failed, is stuck or needs attention, freeing its credential for a new
    /// rotation. Removes the new secret unless a step published it (then it refuses: confirm or
    /// roll forward instead). The old secret stays.
    Cancel { execution: String },
    /// Print the new secret of a rotation whose policy declares `delivery = "manual"`, once
    /// (audited); put it where it is used, then `rotator confirm`.
    Reveal { execution: String },
    /// Rotations of one credential, newest first, with their steps.
    History(HistoryArgs),
    /// Dead-letter queues: what failed, and sending it back.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// The sealing keys of this machine (key ids only, never key material).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The configured Entra integrations.
    #[command(subcommand)]
    Integrations(IntegrationsCommand),
    /// Host agents (`rotator-agent`): enroll one, list them, revoke one.
    #[command(subcommand)]
    Agents(AgentsCommand),
}

#[derive(Subcommand)]
enum AgentsCommand {
    /// Issue a one-time code a host agent enrolls with (`rotator-agent enroll --code …`).
    Enroll {
        /// The agent's name, e.g. web-01.
        name: String,
        /// How long the code is good for.
        #[arg(long, default_value = "1h")]
        expires_in: entra_rotator::domain::Span,
    },
    /// Every agent: state, last heartbeat, version, what it can write, the steps that use it.
    List,
    /// From now on the agent gets nothing.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum IntegrationsCommand {
    /// Sign in as the background jobs do and ask Entra what they need: listing applications,
    /// reading their credentials, and adding passwords to the applications the policies rotate.
    /// Changes nothing; exits non-zero when a check fails.
    Check {
        /// Only this integration (default: every enabled one).
        name: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// List the key ids and which one seals new values.
    List,
    /// Add a fresh key that seals from now on; values sealed under older keys still open.
    Rotate,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check a configuration file and print what it configures (never a secret).
    Check { file: PathBuf },
}

#[derive(Subcommand)]
enum StepsCommand {
    /// Check a JSON array of step definitions and print the normalised, ordered plan.
    Check { file: PathBuf },
}

#[derive(Args)]
struct HistoryArgs {
    /// The credential: <integration>/app/<object-id>/<key-id>.
    credential: String,
    /// How many executions to show.
    #[arg(long, default_value_t = 20)]
    limit: usize,
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Dead letters of every queue (or one), oldest first.
    List {
        #[arg(long)]
        queue: Option<String>,
    },
    /// One dead letter in full.
    Show { id: String },
    /// Send dead letters back to their queue: all of a queue's, or those named.
    Redrive {
        #[arg(long)]
        queue: Option<String>,
        ids: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let out = output::Output { json: cli.json };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve => serve::run(&cli.config).await,
            Command::Config(ConfigCommand::Check { file }) => commands::config_check(&file, out),
            Command::Steps(StepsCommand::Check { file }) => commands::steps_check(&file, out),
            Command::Sync { integration, full } => sync::run(&cli.config, integration.as_deref(), full, out).await,
            Command::Status => commands::status(&cli.config, out).await,
            Command::Rotate { credential, dry_run, wait, reason } => {
                rotate::rotate(&cli.config, &credential, dry_run, wait, reason, out).await
            }
            Command::Confirm { execution } => rotate::confirm(&cli.config, &execution, out).await,
            Command::Cancel { execution } => rotate::cancel(&cli.config, &execution, out).await,
            Command::Reveal { execution } => rotate::reveal(&cli.config, &execution, out).await,
            Command::History(a) => commands::history(&cli.config, &a.credential, a.limit, out).await,
            Command::Dlq(DlqCommand::List { queue }) => commands::dlq_list(&cli.config, queue.as_deref(), out).await,
            Command::Dlq(DlqCommand::Show { id }) => commands::dlq_show(&cli.config, &id, out).await,
            Command::Integrations(IntegrationsCommand::Check { name }) => {
                commands::integrations_check(&cli.config, name.as_deref(), out).await
            }
            Command::Agents(AgentsCommand::Enroll { name, expires_in }) => {
                agents::enroll(&cli.config, &name, expires_in, out).await
            }
            Command::Agents(AgentsCommand::List) => agents::list(&cli.config, out).await,
            Command::Agents(AgentsCommand::Revoke { id }) => agents::revoke(&cli.config, &id, out).await,
            Command::Keys(KeysCommand::List) => commands::keys(&cli.config, false, out),
            Command::Keys(KeysCommand::Rotate) => commands::keys(&cli.config, true, out),
            Command::Dlq(DlqCommand::Redrive { queue, ids }) => {
                commands::dlq_redrive(&cli.config, queue.as_deref(), &ids, out).await
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            // anyhow's alternate form prints the causes on one line.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

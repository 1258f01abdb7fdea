//! `entra-sim`: run the simulated tenant on its own, for `make demo` and manual testing.
//!
//! Prints one JSON line on stdout — where to reach it (`base_url`, `authority_host`, `graph_base_url`,
//! and `targets_base` for the rollout targets under `apps/…` and `hooks/…`), which CA to trust
//! (`ca_cert`), `tenant_id`, `client_id` and, with `--control`, the control API's `control_url` —
//! then serves until Ctrl-C (or SIGTERM). Logs go to stderr. Secrets are never printed: the
//! management secret comes from `--client-secret` or `ENTRA_SIM_CLIENT_SECRET`, the webhook key from
//! the variable `--webhook-key-env` names, so whoever starts the sim already knows them.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use entra_sim::{DEFAULT_MANAGEMENT_SECRET, Sim, SimOptions};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "entra-sim",
    version,
    about = "A simulated Microsoft Entra tenant: token endpoint, Graph and rollout targets over HTTPS."
)]
struct Cli {
    /// How many applications to generate.
    #[arg(long, default_value_t = 50)]
    apps: usize,
    /// The generator's seed (also fixes the tenant id and the management client id).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How long before a new secret signs in, e.g. `5s`, `500ms`, `2m`.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    replication_delay: Duration,
    /// The largest page the sim serves (1 to 999).
    #[arg(long, default_value_t = 999)]
    page_size: usize,
    /// Where to listen; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Serve the control API under `/_sim/` (touch, add, remove apps; advance the clock; faults;
    /// truth) and print its `control_url`. Unauthenticated: only for a sim on loopback.
    #[arg(long)]
    control: bool,
    /// The management application's client secret.
    #[arg(long, env = "ENTRA_SIM_CLIENT_SECRET", default_value = DEFAULT_MANAGEMENT_SECRET, hide_env_values = true)]
    client_secret: String,
    /// The environment variable holding the key every webhook receiver (`/hooks/{name}`) verifies
    /// Standard Webhooks signatures against (`whsec_<base64>` or raw). When it is unset or empty,
    /// deliveries are kept but not verified.
    #[arg(long, value_name = "VAR", default_value = "ENTRA_SIM_WEBHOOK_KEY")]
    webhook_key_env: String,
    /// Set up the runbook's Azure scenario (an app registration whose secret lives in Key Vault
    /// `portal-kv`, read by the App Service site `app-store-portal`) and print it as `azure`.
    #[arg(long)]
    azure_demo: bool,
    /// With `--azure-demo`: a plain restart of the site keeps its cached Key Vault references.
    #[arg(long, requires = "azure_demo")]
    azure_restart_keeps_references: bool,
    /// With `--azure-demo`: the site's stop, start, restart and refresh are long-running operations.
    #[arg(long, requires = "azure_demo")]
    azure_async_operations: bool,
    /// Set up the demo's Kubernetes scenario (the application "Orders API", whose secret is in the
    /// Secret `orders/orders-api-entra`, read by the Deployment `orders-api` through `envFrom`) and
    /// print it, with a kubeconfig for the simulated cluster, as `kubernetes`.
    #[arg(long)]
    kubernetes_demo: bool,
}

/// The webhook key from the variable `name`, if set and not empty.
#[expect(
    clippy::disallowed_methods,
    reason = "the variable's name is only known at run time; the rule guards the product's configuration, and this is a test tool"
)]
fn webhook_key(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|key| !key.is_empty())
}

/// `250ms`, `5s`, `2m`, `1h`, `7d` (anything `humantime` reads, such as `1m 30s`); a bare number
/// is seconds, which `humantime` alone refuses.
fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
        return raw.parse().map(Duration::from_secs).map_err(|e| format!("'{raw}': {e}"));
    }
    humantime::parse_duration(raw).map_err(|e| format!("'{raw}' is not a duration such as 5s or 250ms: {e}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let cli = Cli::parse();

    let sim = Sim::start(SimOptions {
        apps: cli.apps,
        seed: cli.seed,
        replication_delay: cli.replication_delay,
        page_size: cli.page_size,
        listen: cli.listen,
        management_secret: cli.client_secret,
        control_api: cli.control,
        ..SimOptions::default()
    })
    .await
    .context("starting the simulated tenant")?;
    if let Some(key) = webhook_key(&cli.webhook_key_env) {
        sim.targets().set_default_webhook_key(&key);
        tracing::info!(variable = %cli.webhook_key_env, "webhook receivers verify signatures with the key from the environment");
    }

    let mut line = serde_json::json!({
        "base_url": sim.base_url().as_str(),
        "authority_host": sim.authority_host().as_str(),
        "graph_base_url": sim.graph_base_url().as_str(),
        "targets_base": sim.target_url("/").as_str(),
        "ca_cert": sim.ca_path().display().to_string(),
        "tenant_id": sim.tenant_id(),
        "client_id": sim.management_client_id(),
    });
    if let Some(control) = sim.control_url() {
        line["control_url"] = serde_json::json!(control.as_str());
    }
    if cli.azure_demo {
        let demo = sim.azure().runbook_demo(cli.azure_restart_keeps_references, cli.azure_async_operations);
        line["azure"] = demo.to_json();
    }
    if cli.kubernetes_demo {
        line["kubernetes"] = sim.kubernetes().orders_demo(&sim);
    }
    // One line, flushed at once: whoever started the sim is waiting to read it.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}").context("writing the address line")?;
    stdout.flush().context("writing the address line")?;
    drop(stdout);

    wait_for_stop().await;
    tracing::info!("stopping");
    sim.shutdown().await;
    Ok(())
}

async fn wait_for_stop() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_read_with_their_units() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("5 parsecs").is_err());
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("").is_err());
    }
}

//! `rotator serve`: the embedded runtime on one machine — workers, timers and the HTTP API on the
//! local database file, until Ctrl-C.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use entra_rotator::adapters::sealing::key_file::LocalKeyRing;
use entra_rotator::adapters::sqlite::LocalData;
use entra_rotator::adapters::system_clock::SystemClock;
use entra_rotator::inbound::api::ApiState;
use entra_rotator::inbound::handlers::chain_handlers;
use entra_rotator::inbound::runtime::{EmbeddedRuntime, Worker, WorkerOptions};
use entra_rotator::inbound::scheduler::Scheduler;
use entra_rotator::ports::{Clock, Queue, QueueName, Store};
use entra_rotator::wiring;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use crate::commands::load_config;

pub async fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    // Colour only on a terminal: a service manager's log or a file gets no escape codes.
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("ROTATOR_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let config = load_config(config_path)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let data = LocalData::open(&config.database_path(), clock.clone())
        .with_context(|| format!("opening {}", config.database_path().display()))?;
    let keys = LocalKeyRing::open_or_create(&config.key_file_path())
        .with_context(|| format!("opening key file {}", config.key_file_path().display()))?;

    let store: Arc<dyn Store> = Arc::new(data.store.clone());
    let queue: Arc<dyn Queue> = Arc::new(data.queue.clone());
    let services = wiring::services(&config, store, queue.clone(), clock.clone(), Arc::new(keys))?;
    // Once at start, beside the work: what each integration may do, in the log.
    let checked = services.clone();
    tokio::spawn(async move { entra_rotator::usecases::integration_check::log_checks(&checked).await });
    // One worker per link of the chain, with the handler the chain's table gives it.
    let mut runtime = EmbeddedRuntime::new();
    for (link, handler) in chain_handlers(&services) {
        runtime = runtime.with_worker(Worker::new(
            queue.clone(),
            QueueName::new(link.queue),
            handler,
            WorkerOptions::default(),
        ));
    }
    // The workers' health is shared with `/healthz`, which reports a worker that is down.
    let runtime = runtime.with_scheduler(Scheduler::new(queue.clone(), clock.clone(), wiring::timers(&config)));

    let shutdown = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    tracing::info!(
        listen = %config.listen,
        data = %config.database_path().display(),
        integrations = config.integrations.len(),
        policies = config.policies.len(),
        "entra-rotator serving"
    );
    let app = entra_rotator::inbound::api::router(
        ApiState::with_tokens(services, config.api_tokens.clone()).with_workers(runtime.health()),
    );
    let http_shutdown = shutdown.clone();
    let http = tokio::spawn(async move {
        axum::serve(listener, app).with_graceful_shutdown(async move { http_shutdown.cancelled().await }).await
    });
    let work = tokio::spawn(runtime.run(shutdown.clone()));

    stop_signal().await?;
    tracing::info!("shutting down: finishing the batches in hand");
    shutdown.cancel();
    let _ = work.await;
    http.await.context("HTTP server task")?.context("HTTP server")?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C (SIGINT), or SIGTERM as service managers and `kill` send it.
async fn stop_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("listening for SIGTERM")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    Ok(())
}

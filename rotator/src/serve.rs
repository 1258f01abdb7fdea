//! `rotator serve`: the embedded runtime on one machine — workers, timers and the HTTP API on the
//! local database file, until Ctrl-C.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use entra_rotator::adapters::sqlite::LocalData;
use entra_rotator::messages::queues;
use entra_rotator::ports::{Queue, QueueName, SystemClock};
use entra_rotator::runtime::EmbeddedRuntime;
use entra_rotator::seal::LocalKeyRing;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use crate::commands::load_config;

pub async fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("ROTATOR_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let config = load_config(config_path)?;
    let clock = Arc::new(SystemClock);
    let data = LocalData::open(&config.database_path(), clock.clone())
        .with_context(|| format!("opening {}", config.database_path().display()))?;
    let _keys = LocalKeyRing::open_or_create(&config.key_file_path())
        .with_context(|| format!("opening key file {}", config.key_file_path().display()))?;

    // The handlers register here as they arrive; until then the queues are kept but not worked.
    let runtime = EmbeddedRuntime::new();
    if runtime.worker_count() == 0 {
        tracing::warn!(
            "no handlers in this build yet: sync and expiry-scan arrive with Entra discovery, rotate, run-step and \
             grace-cleanup with the rotation chain; no timers started"
        );
    }

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
    let app = Router::new().route("/healthz", get(health)).with_state(Arc::new(data.clone()));
    let http_shutdown = shutdown.clone();
    let http = tokio::spawn(async move {
        axum::serve(listener, app).with_graceful_shutdown(async move { http_shutdown.cancelled().await }).await
    });
    let work = tokio::spawn(runtime.run(shutdown.clone()));

    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    tracing::info!("shutting down: finishing the batches in hand");
    shutdown.cancel();
    let _ = work.await;
    http.await.context("HTTP server task")?.context("HTTP server")?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Liveness and queue depths; no secrets, no identifiers.
async fn health(State(data): State<Arc<LocalData>>) -> Json<serde_json::Value> {
    let mut depths = serde_json::Map::new();
    for q in queues::ALL {
        if let Ok(d) = data.queue.depth(&QueueName::new(q)).await {
            depths.insert(q.to_string(), serde_json::to_value(d).unwrap_or_default());
        }
    }
    Json(json!({ "status": "ok", "queues": depths }))
}

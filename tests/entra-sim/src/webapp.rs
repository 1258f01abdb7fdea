//! The simulated web apps: each App Service site (or slot) created with
//! [`crate::AzureHandle::create_site`] runs a process that signs in to Entra with the client secret
//! it got from its Key Vault reference when it started (see `azure.rs` for when that happens), and
//! exposes its health at [`crate::Sim::site_health_url`]: `GET /sites/{name}/health` or
//! `GET /sites/{name}/slots/{slot}/health` (recorded as [`crate::Endpoint::Target`]; no token asked).
//!
//! - `200 {"status":"Healthy"}` only when the site is running and its secret signs in as
//!   [`crate::SiteSpec::app_client_id`] right now — checked with the token endpoint's own rule (the
//!   password exists on that application, has replicated, has started and has not ended), without
//!   HTTP.
//! - `503 {"status":"Unhealthy","reason":"…"}` otherwise: `no client secret resolved
//!   (AccessToKeyVaultDenied)` when its reference did not resolve at start, `Entra refused the client
//!   secret (AADSTS7000215: …)` or `(AADSTS7000222: …)` when the secret it holds no longer signs in.
//!   The reason never contains the secret.
//! - A stopped site answers as Azure's front end does for a stopped app: `403` with an HTML page
//!   titled "Error 403 - This web app is stopped.".
//! - An unknown site: `404`, as Azure's front end answers for a host it does not know.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use uuid::Uuid;

use crate::azure::find_site;
use crate::lock;
use crate::server::{AppState, Shared};
use crate::token::check_secret;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/sites/{name}/health", get(site_health))
        .route("/sites/{name}/slots/{slot}/health", get(slot_health))
}

async fn site_health(State(s): State<AppState>, Path(name): Path<String>) -> Response {
    health(&s, &name, None)
}

async fn slot_health(State(s): State<AppState>, Path((name, slot)): Path<(String, String)>) -> Response {
    health(&s, &name, Some(&slot))
}

/// What the process holds, read under the Azure lock and checked after it is released.
enum Process {
    Unknown,
    Stopped,
    Unresolved(&'static str),
    Holds { app: String, secret: String },
}

fn health(shared: &Shared, name: &str, slot: Option<&str>) -> Response {
    let process = {
        let azure = lock(&shared.azure);
        match find_site(&azure, name, slot) {
            None => Process::Unknown,
            Some(site) => match &site.process {
                None => Process::Stopped,
                Some(p) => match &p.value {
                    Some(secret) => Process::Holds { app: site.spec.app_client_id.clone(), secret: secret.clone() },
                    None => Process::Unresolved(p.status.as_str()),
                },
            },
        }
    };
    match process {
        Process::Unknown => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><head><title>404 Web Site not found.</title></head><body><h1>404 Web Site not found.</h1></body></html>",
        )
            .into_response(),
        Process::Stopped => (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/html")],
            "<!DOCTYPE html><html><head><title>Error 403 - This web app is stopped.</title></head><body><h1>Error 403 - This web app is stopped.</h1><p>The web app you have attempted to reach is currently stopped and does not accept any requests.</p></body></html>",
        )
            .into_response(),
        Process::Unresolved(status) => unhealthy(format!("no client secret resolved ({status})")),
        Process::Holds { app, secret } => {
            let signed_in = match Uuid::parse_str(&app) {
                Ok(client_id) => check_secret(shared, client_id, &secret).map_err(|e| e.summary()),
                Err(_) => Err(format!("the application id '{app}' is not a GUID")),
            };
            match signed_in {
                Ok(()) => (StatusCode::OK, axum::Json(json!({ "status": "Healthy" }))).into_response(),
                Err(reason) => unhealthy(format!("Entra refused the client secret ({reason})")),
            }
        }
    }
}

fn unhealthy(reason: String) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({ "status": "Unhealthy", "reason": reason }))).into_response()
}

//! The HTTPS server: the shared state every handler sees, the router, the middleware that records
//! requests and applies faults, and the accept loop (rustls in front of hyper).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use url::Url;
use uuid::Uuid;

use crate::azure::AzureState;
use crate::clock::SimClock;
use crate::error::GraphError;
use crate::faults::{Faults, fault_response};
use crate::records::{Endpoint, REQUEST_IDS, RequestIds, RequestRecord};
use crate::state::Directory;
use crate::targets::TargetState;
use crate::{arm, graph, keyvault, lock, targets, token, webapp};

/// An access token the sim issued.
#[derive(Debug, Clone)]
pub(crate) struct IssuedToken {
    pub(crate) client_id: Uuid,
    /// The resource the token is for (its `aud`): each resource server accepts only its own.
    pub(crate) audience: Audience,
    /// Real time, not the sim clock: the product's credential library caches tokens on real time, so
    /// expiring them on the (advanceable) sim clock would fail requests no real tenant would fail.
    pub(crate) expires: Instant,
}

/// The resource an access token was issued for, from the `scope` of the token request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Audience {
    /// `https://graph.microsoft.com` (or Graph's application id, or the sim's own origin).
    Graph,
    /// `https://vault.azure.net`: Key Vault's data plane.
    KeyVault,
    /// `https://management.azure.com`: Azure Resource Manager.
    Management,
    /// The AKS server application: the simulated Kubernetes API server with Entra sign-in.
    AksServer,
}

/// The bearer token of a request, if it carries one (`Authorization: Bearer …`).
pub(crate) fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
}

/// The live token issued as `token`, if any (unknown and expired tokens alike give `None`).
pub(crate) fn issued_token(shared: &Shared, token: &str) -> Option<IssuedToken> {
    lock(&shared.tokens).get(token).filter(|t| t.expires > Instant::now()).cloned()
}

/// Everything the handlers share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) directory: Mutex<Directory>,
    pub(crate) clock: SimClock,
    pub(crate) faults: Faults,
    pub(crate) records: Mutex<Vec<RequestRecord>>,
    /// Tokens granted to client secrets, and which password each matched (see `sign_ins.rs`).
    pub(crate) sign_ins: Mutex<Vec<crate::sign_ins::SecretSignIn>>,
    pub(crate) tokens: Mutex<HashMap<String, IssuedToken>>,
    /// Applications with a write (addPassword, removePassword) in progress.
    pub(crate) writes_in_flight: Mutex<HashSet<Uuid>>,
    pub(crate) tenant_id: Uuid,
    pub(crate) management_client_id: Uuid,
    pub(crate) management_secret_sha256: [u8; 32],
    pub(crate) replication_delay: Duration,
    pub(crate) page_size: usize,
    pub(crate) write_latency: Duration,
    /// `https://127.0.0.1:PORT/v1.0`, the base of every link the sim hands out.
    pub(crate) graph_base: Url,
    /// The rollout targets (Spring Actuator, health check, webhook receiver): what they received and
    /// how they are scripted to answer.
    pub(crate) targets: Mutex<TargetState>,
    /// The simulated Kubernetes cluster.
    pub(crate) kubernetes: Mutex<crate::kubernetes::ClusterState>,
    /// `https://127.0.0.1:PORT/`, the base of Key Vault ids, ARM operation links and site URLs.
    pub(crate) base_url: Url,
    /// Key Vault, Resource Manager and the web apps (see `azure.rs`).
    pub(crate) azure: Mutex<AzureState>,
    /// AWS STS's web identity tokens and Entra's federated identity credentials.
    pub(crate) federation: Mutex<crate::federation::FederationState>,
    /// Client certificates whose public half Entra holds (see `client_certs.rs`).
    pub(crate) client_certificates: Mutex<Vec<crate::client_certs::RegisteredCertificate>>,
    /// Graph application permissions and application owners (see `permissions.rs`).
    pub(crate) permissions: Mutex<crate::permissions::PermissionState>,
    /// The host's managed identities (see `managed_identity.rs`).
    pub(crate) managed_identities: Mutex<crate::managed_identity::ManagedIdentityState>,
    /// Graph's latency and write limits when switched on (see `throttle.rs`).
    pub(crate) pace: crate::throttle::Pace,
}

pub(crate) type AppState = Arc<Shared>;

/// The most request records kept; beyond it the oldest half is dropped.
const MAX_RECORDS: usize = 500_000;

/// Where the control API lives (see `control.rs`).
pub(crate) const CONTROL_PREFIX: &str = "/_sim/";

pub(crate) fn router(shared: AppState, control_api: bool) -> Router {
    let control = if control_api { crate::control::routes() } else { Router::new() };
    Router::new()
        .route("/", get(health))
        .route("/{tenant}/oauth2/v2.0/token", post(token::token))
        .route("/{tenant}/v2.0/.well-known/openid-configuration", get(token::openid_configuration))
        .merge(graph::routes())
        .merge(crate::permissions::routes())
        .merge(targets::routes())
        .merge(crate::kubernetes::routes())
        .merge(keyvault::routes())
        .merge(arm::routes())
        .merge(webapp::routes())
        .merge(crate::federation::routes())
        .merge(control)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(shared.clone(), observe))
        .with_state(shared)
}

async fn health() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

async fn not_found(request: Request) -> Response {
    let path = request.uri().path();
    if Endpoint::of_path(path) == Endpoint::Graph {
        // Graph's answer for a path it cannot route.
        let segment = path.rsplit('/').find(|s| !s.is_empty()).unwrap_or(path);
        GraphError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("Resource not found for the segment '{segment}'."),
        )
        .into_response()
    } else {
        GraphError::new(StatusCode::NOT_FOUND, "NotFound", format!("No resource at '{path}'.")).into_response()
    }
}

async fn method_not_allowed(request: Request) -> Response {
    GraphError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "Request_BadRequest",
        format!("The HTTP method '{}' is not allowed for this resource.", request.method()),
    )
    .into_response()
}

/// Around every request: give it a request id, apply the first matching fault, record the outcome.
async fn observe(State(shared): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    let endpoint = Endpoint::of_path(&path);
    let request_id = Uuid::new_v4();
    let client_request_id = request
        .headers()
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| request_id.to_string());
    let ids = RequestIds { request_id, client_request_id: client_request_id.clone() };

    // The control API is the tester's own channel: faults meant for the product never block it.
    let fault = if path.starts_with(CONTROL_PREFIX) { None } else { shared.faults.take(&method, &path) };
    let fault_path = path.as_str();
    let (paced, paced_method) = (shared.clone(), method.as_str());
    let mut response = REQUEST_IDS
        .scope(ids, async move {
            if let Some(kind) = fault {
                if let crate::FaultKind::Late { by, .. } = &kind {
                    tokio::time::sleep(*by).await;
                }
                if let crate::FaultKind::Slow(delay) = kind {
                    tokio::time::sleep(delay).await;
                } else if let Some(response) = fault_response(&kind, endpoint, fault_path) {
                    return response;
                }
            }
            let headers = request.headers().clone();
            crate::throttle::pace(&paced, paced_method, fault_path, &headers, next.run(request)).await
        })
        .await;

    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&request_id.to_string()) {
        headers.insert("request-id", value);
    }
    if let Ok(value) = HeaderValue::from_str(&client_request_id) {
        headers.insert("client-request-id", value);
    }
    let status = response.status().as_u16();
    tracing::debug!(%method, %path, status, "served");
    let mut records = lock(&shared.records);
    if records.len() >= MAX_RECORDS {
        // A sim left running (the demo) must not grow without bound; tests never get near this.
        records.drain(..MAX_RECORDS / 2);
    }
    records.push(RequestRecord { method, path, query, status, endpoint, request_id });
    drop(records);
    response
}

/// Serve HTTPS on `listener` until `shutdown` turns true.
pub(crate) async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
            accepted = listener.accept() => {
                match accepted {
                    Ok((stream, peer)) => {
                        connections.spawn(serve_connection(stream, peer, acceptor.clone(), router.clone()));
                    }
                    // Accept errors (e.g. too many open files) are transient; keep serving.
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

async fn serve_connection(stream: tokio::net::TcpStream, peer: SocketAddr, acceptor: TlsAcceptor, router: Router) {
    let tls = match acceptor.accept(stream).await {
        Ok(tls) => tls,
        Err(error) => {
            // A client that does not trust the sim's CA ends up here; worth a line in the log.
            tracing::debug!(%peer, %error, "TLS handshake failed");
            return;
        }
    };
    let service = TowerToHyperService::new(router);
    if let Err(error) = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(tls), service).await {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

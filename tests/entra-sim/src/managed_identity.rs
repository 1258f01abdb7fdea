//! Azure managed identities, as the host offers them to the code it runs, over plain HTTP on a port
//! of its own (as the real endpoints are):
//!
//! - **IMDS** (a VM, AKS node, Arc): `GET http://169.254.169.254/metadata/identity/oauth2/token?
//!   api-version=2018-02-01|2019-08-01&resource=…[&client_id=…]` with `Metadata: true`. The address cannot be
//!   bound by a test, so the endpoint also works as an HTTP proxy: a process with
//!   `HTTP_PROXY=<imds_proxy_url>` reaches it at the real address, exactly as `azure_identity` calls
//!   it.
//! - **App Service** (and Functions): `GET $IDENTITY_ENDPOINT?api-version=2019-08-01&resource=…
//!   [&client_id=…]` with `X-IDENTITY-HEADER: $IDENTITY_HEADER`.
//!
//! Answers follow the published examples: `access_token`, `expires_on` (Unix seconds as a string),
//! `resource`, `token_type`, `client_id`. The token is an access token of the simulated tenant for
//! that resource, issued to the identity's client id: Graph then decides by that identity's
//! permissions (see `permissions.rs`). A host without the identity asked for answers 400
//! "Identity not found"; IMDS without `Metadata: true` answers 400.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;
use url::Url;
use uuid::Uuid;

use crate::lock;
use crate::server::{Audience, IssuedToken, Shared};

const TOKEN_LIFETIME_SECS: u64 = 3599;

#[derive(Debug, Default)]
pub(crate) struct ManagedIdentityState {
    system_assigned: Option<Uuid>,
    user_assigned: BTreeSet<Uuid>,
    /// The App Service's `IDENTITY_HEADER`: a secret only the host's processes see.
    identity_header: String,
    /// Where the plain-HTTP endpoint listens.
    address: Option<SocketAddr>,
    requests: u32,
}

/// The tester's handle on the host's managed identities.
#[derive(Debug, Clone)]
pub struct ManagedIdentities {
    pub(crate) shared: Arc<Shared>,
}

impl ManagedIdentities {
    /// Gives the host a system-assigned identity (once); its client id.
    pub fn enable_system_assigned(&self) -> Uuid {
        *lock(&self.shared.managed_identities).system_assigned.get_or_insert_with(Uuid::new_v4)
    }

    /// Assigns a new user-assigned identity to the host; its client id.
    pub fn assign_user_assigned(&self) -> Uuid {
        let id = Uuid::new_v4();
        lock(&self.shared.managed_identities).user_assigned.insert(id);
        id
    }

    /// `HTTP_PROXY` for a process that should reach IMDS at `169.254.169.254`.
    pub fn imds_proxy_url(&self) -> Url {
        let address = lock(&self.shared.managed_identities).address;
        Url::parse(&format!("http://{}/", address.map_or_else(String::new, |a| a.to_string())))
            .expect("a socket address makes a URL")
    }

    /// `IDENTITY_ENDPOINT` of the simulated App Service.
    pub fn app_service_endpoint(&self) -> Url {
        self.imds_proxy_url().join("msi/token").expect("a path joins")
    }

    /// `IDENTITY_HEADER` of the simulated App Service.
    pub fn app_service_header(&self) -> String {
        lock(&self.shared.managed_identities).identity_header.clone()
    }

    /// Token requests served so far (both endpoints, refusals included).
    pub fn requests(&self) -> u32 {
        lock(&self.shared.managed_identities).requests
    }
}

/// Binds the plain-HTTP endpoint on loopback and serves it until `stopped` turns true.
pub(crate) async fn start(shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    {
        let mut state = lock(&shared.managed_identities);
        state.address = Some(listener.local_addr()?);
        state.identity_header = crate::graph::new_secret_text();
    }
    let router = Router::new()
        .route("/metadata/identity/oauth2/token", get(imds))
        .route("/msi/token", get(app_service))
        .with_state(shared);
    tokio::spawn(async move {
        let shutdown = async move {
            while stopped.changed().await.is_ok() {
                if *stopped.borrow() {
                    break;
                }
            }
        };
        let _ = axum::serve(listener, router).with_graceful_shutdown(shutdown).await;
    });
    Ok(())
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    #[serde(rename = "api-version")]
    api_version: Option<String>,
    resource: Option<String>,
    client_id: Option<String>,
}

fn refuse(status: StatusCode, error: &str, description: &str) -> Response {
    (status, axum::Json(json!({ "error": error, "error_description": description }))).into_response()
}

async fn imds(State(s): State<Arc<Shared>>, headers: HeaderMap, Query(q): Query<TokenQuery>) -> Response {
    lock(&s.managed_identities).requests += 1;
    if headers.get("metadata").and_then(|v| v.to_str().ok()) != Some("true") {
        return refuse(StatusCode::BAD_REQUEST, "invalid_request", "Required metadata header not specified");
    }
    issue(&s, &q, &["2018-02-01", "2019-08-01"])
}

async fn app_service(State(s): State<Arc<Shared>>, headers: HeaderMap, Query(q): Query<TokenQuery>) -> Response {
    let expected = {
        let mut state = lock(&s.managed_identities);
        state.requests += 1;
        state.identity_header.clone()
    };
    if headers.get("x-identity-header").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return refuse(StatusCode::UNAUTHORIZED, "unauthorized", "The X-IDENTITY-HEADER is missing or wrong.");
    }
    issue(&s, &q, &["2019-08-01"])
}

/// A token for the identity and resource `q` names, if the endpoint speaks one of `api_versions`.
fn issue(s: &Shared, q: &TokenQuery, api_versions: &[&str]) -> Response {
    if !q.api_version.as_deref().is_some_and(|v| api_versions.contains(&v)) {
        return refuse(StatusCode::BAD_REQUEST, "invalid_request", "Invalid or missing api-version.");
    }
    let Some(resource) = q.resource.as_deref() else {
        return refuse(StatusCode::BAD_REQUEST, "invalid_request", "Required query variable 'resource' is missing");
    };
    let own_origin = s.graph_base.origin().ascii_serialization();
    let trimmed = resource.trim_end_matches('/');
    let audience = if trimmed.eq_ignore_ascii_case("https://graph.microsoft.com") || trimmed == own_origin {
        Audience::Graph
    } else if trimmed.eq_ignore_ascii_case("https://vault.azure.net") {
        Audience::KeyVault
    } else if trimmed.eq_ignore_ascii_case("https://management.azure.com") {
        Audience::Management
    } else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            &format!("AADSTS500011: The resource principal named {resource} was not found in the tenant."),
        );
    };
    let client_id = {
        let state = lock(&s.managed_identities);
        match q.client_id.as_deref().map(Uuid::parse_str) {
            None => state.system_assigned,
            Some(Ok(id)) => state.user_assigned.contains(&id).then_some(id),
            Some(Err(_)) => None,
        }
    };
    let Some(client_id) = client_id else {
        return refuse(StatusCode::BAD_REQUEST, "invalid_request", "Identity not found");
    };
    let access_token = crate::graph::new_secret_text() + &crate::graph::new_secret_text();
    let expires_on = crate::clock::wall_clock_now().unix_timestamp() + TOKEN_LIFETIME_SECS as i64;
    lock(&s.tokens).insert(
        access_token.clone(),
        IssuedToken { client_id, audience, expires: Instant::now() + Duration::from_secs(TOKEN_LIFETIME_SECS) },
    );
    axum::Json(json!({
        "access_token": access_token,
        "expires_on": expires_on.to_string(),
        "resource": resource,
        "token_type": "Bearer",
        "client_id": client_id,
    }))
    .into_response()
}

//! What the simulated tenant saw: one [`RequestRecord`] per request served, for tests to assert on
//! (how many pages were fetched, whether a retry happened, that a link was followed verbatim).
//!
//! Records never hold secrets: the query string of a Graph request carries none, and the token
//! endpoint's form body (where secrets travel) is not recorded at all. A rollout target's query string
//! is recorded as the caller sent it; what the targets received is kept apart, in
//! [`crate::Targets`].

use uuid::Uuid;

/// Which part of the simulated tenant a request was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// Microsoft Graph (`/v1.0/…`).
    Graph,
    /// The Entra token endpoint (`/{tenant}/oauth2/v2.0/token`) or its discovery document.
    Token,
    /// A rollout target standing for a customer application: the Spring Actuator and health check
    /// under `/apps/…`, the webhook receiver under `/hooks/…`, and the simulated App Service web
    /// apps' own health under `/sites/…`.
    Target,
    /// The simulated Kubernetes API server (`/api/…`, `/apis/…`).
    Kubernetes,
    /// Azure Key Vault's secrets data plane (`/vaults/{vault}/…`).
    KeyVault,
    /// Azure Resource Manager (`/subscriptions/…`): App Service sites and their operations.
    ResourceManager,
    /// Anything else (the sim's own health check, the control API, unknown paths).
    Other,
}

impl Endpoint {
    pub(crate) fn of_path(path: &str) -> Self {
        if path == "/v1.0" || path.starts_with("/v1.0/") {
            Self::Graph
        } else if path.starts_with("/api/") || path.starts_with("/apis/") {
            Self::Kubernetes
        } else if path.starts_with("/apps/")
            || path.starts_with("/hooks/")
            || path.starts_with("/sites/")
            || path.starts_with("/consumers/")
        {
            Self::Target
        } else if path.starts_with("/vaults/") {
            Self::KeyVault
        } else if path.starts_with("/subscriptions/") {
            Self::ResourceManager
        } else if path.contains("/oauth2/") || path.contains("/.well-known/") {
            Self::Token
        } else {
            Self::Other
        }
    }
}

/// One request the simulated tenant served, and how it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, without the query string (percent-encoding kept as received).
    pub path: String,
    /// The raw query string, without the `?`, as received; `None` when there was none.
    pub query: Option<String>,
    /// The status code answered.
    pub status: u16,
    pub endpoint: Endpoint,
    /// The `request-id` the sim answered with (also in Graph error bodies).
    pub request_id: Uuid,
}

impl RequestRecord {
    pub fn is_graph(&self) -> bool {
        self.endpoint == Endpoint::Graph
    }

    pub fn is_token(&self) -> bool {
        self.endpoint == Endpoint::Token
    }

    pub fn is_target(&self) -> bool {
        self.endpoint == Endpoint::Target
    }

    pub fn is_key_vault(&self) -> bool {
        self.endpoint == Endpoint::KeyVault
    }

    pub fn is_resource_manager(&self) -> bool {
        self.endpoint == Endpoint::ResourceManager
    }
}

/// The ids of the request being served, set by the observing middleware for the duration of the
/// request so that error bodies deep in a handler carry the same id as the response header.
#[derive(Debug, Clone)]
pub(crate) struct RequestIds {
    pub(crate) request_id: Uuid,
    /// Echoes the caller's `client-request-id` when it sent one, as Graph does.
    pub(crate) client_request_id: String,
}

tokio::task_local! {
    pub(crate) static REQUEST_IDS: RequestIds;
}

pub(crate) fn current_request_ids() -> RequestIds {
    REQUEST_IDS.try_with(Clone::clone).unwrap_or_else(|_| {
        let request_id = Uuid::new_v4();
        RequestIds { request_id, client_request_id: request_id.to_string() }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_attributed_to_graph_the_token_endpoint_a_target_or_none_of_them() {
        assert_eq!(Endpoint::of_path("/v1.0/applications"), Endpoint::Graph);
        assert_eq!(Endpoint::of_path("/abc/oauth2/v2.0/token"), Endpoint::Token);
        assert_eq!(Endpoint::of_path("/"), Endpoint::Other);
        assert_eq!(Endpoint::of_path("/v1.0x"), Endpoint::Other);
        assert_eq!(Endpoint::of_path("/apps/orders/actuator/refresh"), Endpoint::Target);
        assert_eq!(Endpoint::of_path("/hooks/rotations"), Endpoint::Target);
        assert_eq!(Endpoint::of_path("/appsx"), Endpoint::Other);
        assert_eq!(Endpoint::of_path("/vaults/kv/secrets/a"), Endpoint::KeyVault);
        assert_eq!(Endpoint::of_path("/subscriptions/s/resourceGroups/rg"), Endpoint::ResourceManager);
        assert_eq!(Endpoint::of_path("/sites/portal/health"), Endpoint::Target);
    }
}

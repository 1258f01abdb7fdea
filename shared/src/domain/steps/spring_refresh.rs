//! `spring_actuator_refresh`: reloads a Spring Boot application's configuration by POSTing to its
//! `/actuator/refresh` endpoint.

use serde::Serialize;
use url::Url;

use super::issues::Notes;
use super::read::{Need, Obj, Schemes};
use super::{Phase, StepConfig, StepKind, StepType, TypeConfig, url_without_query};
use crate::domain::duration::Span;

/// How long a Spring Actuator refresh may take when the definition says nothing.
pub const DEFAULT_SPRING_TIMEOUT: Span = Span::from_secs(30);

pub(super) const TYPE: StepType = StepType {
    kind: StepKind::SpringActuatorRefresh,
    name: "spring_actuator_refresh",
    phase: Phase::Reload,
    takes_agent: false,
    config_fields: &["url", "bearer_token_env", "timeout"],
    env_field: Some("bearer_token_env"),
    read: |o, _agent, n| read(o, n).map(StepConfig::SpringActuatorRefresh),
};

/// `spring_actuator_refresh`: POSTs to a Spring Boot `/actuator/refresh` endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpringActuatorRefreshConfig {
    /// Taken as given, whether or not it ends in `/actuator/refresh`.
    #[serde(serialize_with = "super::ser_url")]
    pub url: Url,
    /// The name of the environment variable holding a bearer token, never the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bearer_token_env: Option<String>,
    pub timeout: Span,
}

impl TypeConfig for SpringActuatorRefreshConfig {
    fn describe(&self) -> String {
        format!("Refresh Spring Actuator {}", url_without_query(&self.url))
    }

    fn urls(&self) -> Vec<(&'static str, &Url)> {
        vec![("config.url", &self.url)]
    }
}

fn read(o: &Obj<'_>, n: &mut Notes) -> Option<SpringActuatorRefreshConfig> {
    let url = o.url(n, "url", Need::Required, Schemes::HttpOrHttps);
    let bearer_token_env = o.env_name(n, "bearer_token_env");
    let timeout = o.positive_span(n, "timeout");
    Some(SpringActuatorRefreshConfig {
        url: url?,
        bearer_token_env,
        timeout: timeout.unwrap_or(DEFAULT_SPRING_TIMEOUT),
    })
}
